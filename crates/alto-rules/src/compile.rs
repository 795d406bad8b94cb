//! Validation with precise, field-named errors, and compilation into [`CompiledRule`], the
//! form both the reference evaluator and the SQL compiler read.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::pattern::Pattern;
use crate::spec::{ActionKind, Conditions, RuleSpec, StubState};

/// Largest day count a condition accepts (100 years).
pub const MAX_DAYS: u32 = 36_500;
/// Largest size a condition accepts (1 EiB).
pub const MAX_SIZE: i64 = 1 << 60;
/// Largest priority.
pub const MAX_PRIORITY: i32 = 1_000_000;
/// Longest retention after recall (rule override and tenant setting), in days.
pub const MAX_RETAIN_AFTER_RECALL_DAYS: u32 = 3650;
/// Bytes of real data a stub keeps at the start of the file.
pub const STUB_KEEP_BYTES: i64 = 4096;

/// One validation failure, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleError {
    /// Dotted path of the field, e.g. `conditions.path_regex`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins errors into one message for an API error body.
pub fn describe(errors: &[RuleError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A rule ready to evaluate: patterns compiled, lists normalised.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: Uuid,
    pub version: i32,
    pub spec: RuleSpec,
    pub globs: Vec<Pattern>,
    pub regex: Option<Pattern>,
    /// Normalised absolute directories, without a trailing `/` (the root is `/`).
    pub prefixes: Vec<String>,
    /// Normalised extensions: lower case with the dot; `""` for none.
    pub extensions: Vec<String>,
    pub exclude_extensions: Vec<String>,
    pub perm_all: Option<i64>,
    pub perm_none: Option<i64>,
}

impl CompiledRule {
    pub fn is_tier(&self) -> bool {
        self.spec.action.kind == ActionKind::Tier
    }
    pub fn target(&self) -> Option<&str> {
        self.spec.action.target.as_deref()
    }
    pub fn conditions(&self) -> &Conditions {
        &self.spec.conditions
    }
    /// Days after a recall during which this rule does not tier the file again: the rule's
    /// own `action.retain_after_recall_days`, else the tenant's `default_days`.
    pub fn retain_after_recall_days(&self, default_days: u32) -> u32 {
        self.spec.action.retain_after_recall_days.unwrap_or(default_days)
    }
}

/// `now` minus `days` whole days: the one cutoff both engines compare against.
pub fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - Duration::days(i64::from(days))
}

/// Normalises an extension the way the scanner stores it: lower case, leading dot.
pub fn normalize_extension(e: &str) -> String {
    let e = e.trim().to_lowercase();
    if e.is_empty() || e.starts_with('.') {
        e
    } else {
        format!(".{e}")
    }
}

/// Normalises a directory prefix: absolute, no trailing `/`, no `.`/`..` components.
pub fn normalize_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    if p.contains('\0') || p.len() > 4096 {
        return Err("is too long or has a NUL byte".into());
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err("must not contain `.` or `..` components".into());
    }
    let t = p.trim_end_matches('/');
    Ok(if t.is_empty() { "/".into() } else { t.to_owned() })
}

/// Whether `path` is `dir` or below it (`dir` normalised by [`normalize_prefix`]).
pub fn under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn parse_octal(s: &str) -> Result<i64, String> {
    let t = s.trim().trim_start_matches("0o");
    if t.is_empty() || t.len() > 6 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("`{s}` is not an octal mode such as \"0002\""));
    }
    i64::from_str_radix(t, 8).map_err(|e| e.to_string())
}

/// Validates a rule on its own. `target_exists` answers whether a storage target name is
/// known to the tenant. Checks that need other rules (unique name and priority) are the
/// caller's.
pub fn compile(
    id: Uuid,
    version: i32,
    spec: &RuleSpec,
    target_exists: &dyn Fn(&str) -> bool,
) -> Result<CompiledRule, Vec<RuleError>> {
    let mut errs = Vec::new();
    let mut err = |field: &str, msg: String| {
        errs.push(RuleError { field: field.to_owned(), message: msg });
    };
    let name = spec.name.trim();
    if name.is_empty() || spec.name.chars().count() > 100 || spec.name.chars().any(char::is_control)
    {
        err("name", "must be 1–100 characters without control characters".into());
    }
    if spec.description.as_ref().is_some_and(|d| d.chars().count() > 2000) {
        err("description", "must be at most 2000 characters".into());
    }
    if !(0..=MAX_PRIORITY).contains(&spec.priority) {
        err("priority", format!("must be 0 to {MAX_PRIORITY}"));
    }
    // Scope.
    let s = &spec.scope;
    if s.hosts.len() > 1000 || s.host_groups.len() > 100 || s.path_prefixes.len() > 100 {
        err("scope", "at most 1000 hosts, 100 groups and 100 path prefixes".into());
    }
    for g in &s.host_groups {
        if !crate::valid_group_name(g) {
            err("scope.host_groups", format!("`{g}` is not a valid group name"));
        }
    }
    let mut prefixes = Vec::new();
    for p in &s.path_prefixes {
        match normalize_prefix(p) {
            Ok(n) => prefixes.push(n),
            Err(m) => err("scope.path_prefixes", format!("`{p}` {m}")),
        }
    }
    // Conditions.
    let c = &spec.conditions;
    let mut globs = Vec::new();
    if c.path_globs.len() > 50 {
        err("conditions.path_globs", "at most 50 globs".into());
    }
    for gl in &c.path_globs {
        match Pattern::glob(gl) {
            Ok(p) => globs.push(p),
            Err(e) => err("conditions.path_globs", format!("`{gl}`: {e}")),
        }
    }
    let regex = match c.path_regex.as_deref().map(Pattern::regex) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            err("conditions.path_regex", e.to_string());
            None
        }
        None => None,
    };
    for (field, v) in [
        ("conditions.accessed_older_than_days", c.accessed_older_than_days),
        ("conditions.accessed_newer_than_days", c.accessed_newer_than_days),
        ("conditions.modified_older_than_days", c.modified_older_than_days),
        ("conditions.modified_newer_than_days", c.modified_newer_than_days),
    ] {
        if v.is_some_and(|d| d > MAX_DAYS) {
            err(field, format!("must be at most {MAX_DAYS} days (100 years)"));
        }
    }
    if let (Some(o), Some(n)) = (c.accessed_older_than_days, c.accessed_newer_than_days) {
        if o >= n {
            err(
                "conditions.accessed_newer_than_days",
                format!("older than {o} days and newer than {n} days can never both hold"),
            );
        }
    }
    if let (Some(o), Some(n)) = (c.modified_older_than_days, c.modified_newer_than_days) {
        if o >= n {
            err(
                "conditions.modified_newer_than_days",
                format!("older than {o} days and newer than {n} days can never both hold"),
            );
        }
    }
    for (field, v) in [
        ("conditions.min_size_bytes", c.min_size_bytes),
        ("conditions.max_size_bytes", c.max_size_bytes),
    ] {
        match v {
            Some(b) if b < 0 => err(field, "must not be negative".into()),
            Some(b) if b > MAX_SIZE => err(field, "must be at most 1 EiB".into()),
            _ => {}
        }
    }
    if let (Some(lo), Some(hi)) = (c.min_size_bytes, c.max_size_bytes) {
        if lo > hi {
            err("conditions.max_size_bytes", format!("is below min_size_bytes ({lo})"));
        }
    }
    let norm = |list: &[String], field: &str, err: &mut dyn FnMut(&str, String)| {
        let mut out: Vec<String> = Vec::new();
        if list.len() > 200 {
            err(field, "at most 200 extensions".into());
        }
        for e in list {
            let n = normalize_extension(e);
            if n.len() > 17 || n.contains('/') || n.chars().any(char::is_control) {
                err(field, format!("`{e}` is not an extension"));
            } else if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    };
    let extensions = norm(&c.extensions, "conditions.extensions", &mut err);
    let exclude_extensions = norm(&c.exclude_extensions, "conditions.exclude_extensions", &mut err);
    for e in &extensions {
        if exclude_extensions.contains(e) {
            err("conditions.exclude_extensions", format!("`{e}` is both included and excluded"));
        }
    }
    if c.owners.len() > 200 || c.owners.iter().any(|o| o.is_empty() || o.len() > 256) {
        err("conditions.owners", "1–200 owner names of 1–256 bytes".into());
    }
    let (mut perm_all, mut perm_none) = (None, None);
    if let Some(p) = &c.permissions {
        if p.all_of.is_none() && p.none_of.is_none() {
            err("conditions.permissions", "give all_of, none_of or both".into());
        }
        if let Some(a) = &p.all_of {
            match parse_octal(a) {
                Ok(v) => perm_all = Some(v),
                Err(m) => err("conditions.permissions.all_of", m),
            }
        }
        if let Some(n) = &p.none_of {
            match parse_octal(n) {
                Ok(v) => perm_none = Some(v),
                Err(m) => err("conditions.permissions.none_of", m),
            }
        }
        if let (Some(a), Some(n)) = (perm_all, perm_none) {
            if a & n != 0 {
                err(
                    "conditions.permissions",
                    format!("bits {:o} are required and forbidden at once", a & n),
                );
            }
        }
    }
    if c.tags.len() > 20 {
        err("conditions.tags", "at most 20 tags".into());
    }
    for t in &c.tags {
        if !crate::valid_tag_key(&t.key) {
            err("conditions.tags", format!("`{}` is not a valid tag key", t.key));
        }
        if t.value.as_ref().is_some_and(|v| v.len() > 256) {
            err("conditions.tags", "tag values are at most 256 bytes".into());
        }
    }
    // Action.
    let a = &spec.action;
    match a.kind {
        ActionKind::Tier => match a.target.as_deref() {
            None => err("action.target", "a tier action names its storage target".into()),
            Some(t) if !target_exists(t) => {
                err("action.target", format!("unknown storage target `{t}`"));
            }
            Some(_) => {}
        },
        ActionKind::Exclude => {
            if a.target.is_some() || a.compression.is_some() {
                err("action", "an exclude action takes no target or compression".into());
            }
            if a.retain_after_recall_days.is_some() {
                err(
                    "action.retain_after_recall_days",
                    "an exclude action never tiers, so it takes no retention after recall".into(),
                );
            }
        }
    }
    if a.retain_after_recall_days.is_some_and(|d| d > MAX_RETAIN_AFTER_RECALL_DAYS) {
        err(
            "action.retain_after_recall_days",
            format!("at most {MAX_RETAIN_AFTER_RECALL_DAYS} days"),
        );
    }
    if a.kind == ActionKind::Tier && c.stub_state == Some(StubState::Stubbed) {
        err(
            "conditions.stub_state",
            "a tier rule can never match stubbed files: they are already tiered".into(),
        );
    }
    if let Some(cron) = &spec.schedule {
        if let Err(m) = crate::schedule::parse(cron) {
            err("schedule", m);
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(CompiledRule {
        id,
        version,
        spec: spec.clone(),
        globs,
        regex,
        prefixes,
        extensions,
        exclude_extensions,
        perm_all,
        perm_none,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn base() -> RuleSpec {
        RuleSpec {
            name: "cold".into(),
            description: None,
            enabled: true,
            priority: 10,
            scope: Scope::default(),
            conditions: Conditions::default(),
            action: Action::tier("default"),
            schedule: None,
            order_by: OrderBy::default(),
        }
    }

    fn errors(spec: &RuleSpec) -> Vec<RuleError> {
        compile(Uuid::nil(), 1, spec, &|t| t == "default").unwrap_err()
    }

    #[test]
    fn precise_errors() {
        let mut s = base();
        s.priority = -1;
        s.conditions.min_size_bytes = Some(-5);
        s.conditions.accessed_older_than_days = Some(1_000_000);
        s.conditions.path_regex = Some("(a+)+".into());
        s.conditions.path_globs = vec!["relative/*.x".into()];
        s.conditions.extensions = vec!["iso".into(), "TMP".into()];
        s.conditions.exclude_extensions = vec![".tmp".into()];
        s.action = Action::tier("nowhere");
        s.schedule = Some("61 * * * *".into());
        s.scope.path_prefixes = vec!["srv".into()];
        let e = errors(&s);
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "priority",
            "conditions.min_size_bytes",
            "conditions.accessed_older_than_days",
            "conditions.path_regex",
            "conditions.path_globs",
            "conditions.exclude_extensions",
            "action.target",
            "schedule",
            "scope.path_prefixes",
        ] {
            assert!(fields.contains(&f), "{f} missing from {e:?}");
        }
        assert!(describe(&e).contains("unknown storage target `nowhere`"));
        assert!(describe(&e).contains("`.tmp` is both included and excluded"));
    }

    #[test]
    fn contradictions() {
        let mut s = base();
        s.conditions.accessed_older_than_days = Some(30);
        s.conditions.accessed_newer_than_days = Some(10);
        s.conditions.min_size_bytes = Some(10);
        s.conditions.max_size_bytes = Some(5);
        s.conditions.stub_state = Some(StubState::Stubbed);
        s.conditions.permissions =
            Some(PermissionCondition { all_of: Some("0644".into()), none_of: Some("0004".into()) });
        let e = describe(&errors(&s));
        assert!(e.contains("can never both hold"), "{e}");
        assert!(e.contains("below min_size_bytes"), "{e}");
        assert!(e.contains("already tiered"), "{e}");
        assert!(e.contains("required and forbidden"), "{e}");
        let mut x = base();
        x.action = Action {
            kind: ActionKind::Exclude,
            target: Some("default".into()),
            compression: None,
            retain_after_recall_days: None,
        };
        assert!(describe(&errors(&x)).contains("exclude action takes no target"));
        let mut r = base();
        r.action.retain_after_recall_days = Some(MAX_RETAIN_AFTER_RECALL_DAYS + 1);
        assert!(errors(&r).iter().any(|e| e.field == "action.retain_after_recall_days"));
        r.action.retain_after_recall_days = Some(7);
        assert!(compile(Uuid::nil(), 1, &r, &|t| t == "default").is_ok());
        let mut x = base();
        x.action = Action::exclude();
        x.action.retain_after_recall_days = Some(7);
        assert!(errors(&x).iter().any(|e| e.field == "action.retain_after_recall_days"));
    }

    #[test]
    fn normalises() {
        let mut s = base();
        s.conditions.extensions = vec!["ISO".into(), ".iso".into(), "".into()];
        s.scope.path_prefixes = vec!["/srv/data/".into(), "/".into()];
        let c = compile(Uuid::nil(), 1, &s, &|_| true).unwrap();
        assert_eq!(c.extensions, vec![".iso".to_string(), String::new()]);
        assert_eq!(c.prefixes, vec!["/srv/data".to_string(), "/".to_string()]);
        assert!(under("/srv/data/x", "/srv/data"));
        assert!(under("/srv/data", "/srv/data"));
        assert!(!under("/srv/database/x", "/srv/data"));
        assert!(under("/anything", "/"));
    }
}
