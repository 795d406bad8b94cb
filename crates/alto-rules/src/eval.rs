//! The reference evaluator. The planner confirms every database-selected candidate with
//! [`decide`], previews use it for samples, and [`explain`] walks the same checks for one
//! file and says which held and which failed.
//!
//! Order, per the specification: rules by priority (lower first); within a rule, scope, then
//! path, age, size, extension, then owner, permissions, tags and stub state; the first rule
//! whose conditions all hold decides. An exclude rule keeps the file. A tier rule makes it a
//! candidate unless it is already stubbed, was recalled within the retention after recall
//! (the rule's `action.retain_after_recall_days`, else the tenant's), or was modified within
//! the safety window.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::compile::{cutoff, under, CompiledRule};
use crate::spec::StubState;

/// What the evaluator knows about a host.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts<'a> {
    pub id: Uuid,
    pub groups: &'a [String],
}

/// What the evaluator knows about a file (one inventory row).
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    pub path: &'a str,
    pub size: i64,
    pub modified: Option<DateTime<Utc>>,
    pub accessed: Option<DateTime<Utc>>,
    /// As stored: lower case with the dot, `""` for none.
    pub extension: &'a str,
    pub owner: Option<&'a str>,
    pub mode: Option<i64>,
    /// Stubbed according to the registry or the last scan.
    pub stubbed: bool,
    pub deleted: bool,
    /// When its content last came back from tier-2 (a recall), if ever.
    pub recalled_at: Option<DateTime<Utc>>,
}

/// Time and safety settings of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalSettings {
    pub now: DateTime<Utc>,
    /// Files modified less than this long ago are never candidates.
    pub safety_window: Duration,
    /// The tenant's retention after recall, in days: a file recalled less than this long ago
    /// is not tiered again (a rule's `action.retain_after_recall_days` overrides it).
    pub recall_retention_days: u32,
}

impl EvalSettings {
    /// Files modified at or after this instant are too recent.
    pub fn safety_cutoff(&self) -> DateTime<Utc> {
        self.now - self.safety_window
    }

    /// Files recalled after this instant are still retained by rule `r`.
    pub fn recall_cutoff(&self, r: &CompiledRule) -> DateTime<Utc> {
        cutoff(self.now, r.retain_after_recall_days(self.recall_retention_days))
    }

    /// Whether rule `r` leaves the file alone because it was recalled within the retention.
    pub fn recently_recalled(&self, r: &CompiledRule, f: &FileFacts<'_>) -> bool {
        f.recalled_at.is_some_and(|t| t > self.recall_cutoff(r))
    }
}

/// One tag attached to a path (a file, or a directory and everything below it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PathTag {
    /// `None`: on every host.
    pub host_id: Option<Uuid>,
    pub path: String,
    pub key: String,
    pub value: String,
}

/// Tags by path, for inheritance look-ups.
#[derive(Debug, Clone, Default)]
pub struct TagIndex {
    by_path: HashMap<String, Vec<PathTag>>,
}

impl TagIndex {
    pub fn new(tags: impl IntoIterator<Item = PathTag>) -> TagIndex {
        let mut by_path: HashMap<String, Vec<PathTag>> = HashMap::new();
        for t in tags {
            let key = crate::compile::normalize_prefix(&t.path).unwrap_or_else(|_| t.path.clone());
            by_path.entry(key).or_default().push(t);
        }
        TagIndex { by_path }
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Tags of `path` on `host`: its own and those of every directory above it.
    pub fn effective<'a>(&'a self, host: Uuid, path: &str) -> Vec<&'a PathTag> {
        let mut out = Vec::new();
        if self.by_path.is_empty() {
            return out;
        }
        let mut cur = path;
        loop {
            if let Some(v) = self.by_path.get(cur) {
                out.extend(v.iter().filter(|t| t.host_id.is_none_or(|h| h == host)));
            }
            if cur == "/" || cur.is_empty() {
                break;
            }
            cur = match cur.rfind('/') {
                Some(0) => "/",
                Some(i) => &cur[..i],
                None => break,
            };
        }
        out
    }
}

/// The outcome for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Rule `rule` (index into the rule list) tiers it now.
    Candidate { rule: usize },
    /// Rule `rule` excludes it.
    Excluded { rule: usize },
    /// Rule `rule` would tier it, but it is already a stub.
    AlreadyStubbed { rule: usize },
    /// Rule `rule` would tier it, but it was recalled within the retention after recall.
    RecentlyRecalled { rule: usize },
    /// Rule `rule` would tier it, but it changed within the safety window (or its time is
    /// unknown).
    TooRecent { rule: usize },
    /// The file was deleted by a later scan.
    Deleted,
    /// No rule matches.
    NoMatch,
}

fn in_scope(r: &CompiledRule, host: &HostFacts<'_>, path: &str) -> bool {
    let s = &r.spec.scope;
    (s.hosts.is_empty() || s.hosts.contains(&host.id))
        && (s.host_groups.is_empty() || s.host_groups.iter().any(|g| host.groups.contains(g)))
        && (r.prefixes.is_empty() || r.prefixes.iter().any(|p| under(path, p)))
}

/// Whether `r` applies to `host` at all (ignoring path prefixes).
pub fn host_in_scope(r: &CompiledRule, host: &HostFacts<'_>) -> bool {
    let s = &r.spec.scope;
    (s.hosts.is_empty() || s.hosts.contains(&host.id))
        && (s.host_groups.is_empty() || s.host_groups.iter().any(|g| host.groups.contains(g)))
}

/// Evaluates the conditions of `r`, calling `check` for each with its name, whether it held
/// and a description; stops at the first failure unless `all`.
fn conditions(
    r: &CompiledRule,
    host: Uuid,
    f: &FileFacts<'_>,
    tags: &TagIndex,
    now: DateTime<Utc>,
    all: bool,
    check: &mut dyn FnMut(&'static str, bool, String),
) -> bool {
    let c = &r.spec.conditions;
    let mut ok = true;
    macro_rules! test {
        ($name:expr, $pass:expr, $detail:expr) => {{
            let pass: bool = $pass;
            check($name, pass, $detail);
            if !pass {
                ok = false;
                if !all {
                    return false;
                }
            }
        }};
    }
    let fmt_t = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "unknown".into())
    };
    if !r.globs.is_empty() {
        let hit = r.globs.iter().find(|g| g.is_match(f.path));
        test!(
            "path_globs",
            hit.is_some(),
            match hit {
                Some(g) => format!("path matches `{}`", g.source()),
                None => format!(
                    "path matches none of {}",
                    r.globs
                        .iter()
                        .map(|g| format!("`{}`", g.source()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
    }
    if let Some(re) = &r.regex {
        let m = re.is_match(f.path);
        test!(
            "path_regex",
            m,
            format!("path {} /{}/", if m { "matches" } else { "does not match" }, re.source())
        );
    }
    let older = |t: Option<DateTime<Utc>>, days: u32| t.is_some_and(|t| t < cutoff(now, days));
    let newer = |t: Option<DateTime<Utc>>, days: u32| t.is_some_and(|t| t >= cutoff(now, days));
    if let Some(d) = c.accessed_older_than_days {
        test!(
            "accessed_older_than_days",
            older(f.accessed, d),
            format!(
                "last accessed {} (must be before {}, {d} days ago)",
                fmt_t(f.accessed),
                fmt_t(Some(cutoff(now, d)))
            )
        );
    }
    if let Some(d) = c.accessed_newer_than_days {
        test!(
            "accessed_newer_than_days",
            newer(f.accessed, d),
            format!(
                "last accessed {} (must be on or after {}, {d} days ago)",
                fmt_t(f.accessed),
                fmt_t(Some(cutoff(now, d)))
            )
        );
    }
    if let Some(d) = c.modified_older_than_days {
        test!(
            "modified_older_than_days",
            older(f.modified, d),
            format!(
                "last modified {} (must be before {}, {d} days ago)",
                fmt_t(f.modified),
                fmt_t(Some(cutoff(now, d)))
            )
        );
    }
    if let Some(d) = c.modified_newer_than_days {
        test!(
            "modified_newer_than_days",
            newer(f.modified, d),
            format!(
                "last modified {} (must be on or after {}, {d} days ago)",
                fmt_t(f.modified),
                fmt_t(Some(cutoff(now, d)))
            )
        );
    }
    if let Some(min) = c.min_size_bytes {
        test!("min_size_bytes", f.size >= min, format!("size {} bytes (must be ≥ {min})", f.size));
    }
    if let Some(max) = c.max_size_bytes {
        test!("max_size_bytes", f.size <= max, format!("size {} bytes (must be ≤ {max})", f.size));
    }
    if !r.extensions.is_empty() {
        let hit = r.extensions.iter().any(|e| e == f.extension);
        test!(
            "extensions",
            hit,
            format!(
                "extension `{}` {} the include list {:?}",
                f.extension,
                if hit { "is in" } else { "is not in" },
                r.extensions
            )
        );
    }
    if !r.exclude_extensions.is_empty() {
        let hit = r.exclude_extensions.iter().any(|e| e == f.extension);
        test!(
            "exclude_extensions",
            !hit,
            format!(
                "extension `{}` {} the exclude list {:?}",
                f.extension,
                if hit { "is in" } else { "is not in" },
                r.exclude_extensions
            )
        );
    }
    if !c.owners.is_empty() {
        let hit = f.owner.is_some_and(|o| c.owners.iter().any(|x| x == o));
        test!(
            "owners",
            hit,
            format!(
                "owner `{}` {} {:?}",
                f.owner.unwrap_or("unknown"),
                if hit { "is in" } else { "is not in" },
                c.owners
            )
        );
    }
    if r.perm_all.is_some() || r.perm_none.is_some() {
        let pass = f.mode.is_some_and(|m| {
            r.perm_all.is_none_or(|a| m & a == a) && r.perm_none.is_none_or(|n| m & n == 0)
        });
        test!(
            "permissions",
            pass,
            format!(
                "mode {} (all of {}, none of {})",
                f.mode.map(|m| format!("{:04o}", m & 0o7777)).unwrap_or_else(|| "unknown".into()),
                r.perm_all.map(|a| format!("{a:04o}")).unwrap_or_else(|| "-".into()),
                r.perm_none.map(|a| format!("{a:04o}")).unwrap_or_else(|| "-".into()),
            )
        );
    }
    if !c.tags.is_empty() {
        let have = tags.effective(host, f.path);
        for want in &c.tags {
            let found = have
                .iter()
                .find(|t| t.key == want.key && want.value.as_ref().is_none_or(|v| *v == t.value));
            test!(
                "tags",
                found.is_some(),
                match (found, &want.value) {
                    (Some(t), _) => format!("tag {}={} from `{}`", t.key, t.value, t.path),
                    (None, Some(v)) =>
                        format!("no tag {}={v} on the file or its directories", want.key),
                    (None, None) => format!("no tag {} on the file or its directories", want.key),
                }
            );
        }
    }
    if let Some(s) = c.stub_state {
        let pass = match s {
            StubState::Stubbed => f.stubbed,
            StubState::NotStubbed => !f.stubbed,
        };
        test!(
            "stub_state",
            pass,
            format!(
                "file is {} (must be {})",
                if f.stubbed { "a stub" } else { "not a stub" },
                match s {
                    StubState::Stubbed => "a stub",
                    StubState::NotStubbed => "not a stub",
                }
            )
        );
    }
    ok
}

/// Whether every condition of `r` holds for the file (scope included).
pub fn rule_matches(
    r: &CompiledRule,
    host: &HostFacts<'_>,
    f: &FileFacts<'_>,
    tags: &TagIndex,
    now: DateTime<Utc>,
) -> bool {
    r.spec.enabled
        && in_scope(r, host, f.path)
        && conditions(r, host.id, f, tags, now, false, &mut |_, _, _| {})
}

/// The decision for one file. `rules` must be sorted by priority.
pub fn decide(
    rules: &[CompiledRule],
    host: &HostFacts<'_>,
    f: &FileFacts<'_>,
    tags: &TagIndex,
    s: &EvalSettings,
) -> Decision {
    if f.deleted {
        return Decision::Deleted;
    }
    for (i, r) in rules.iter().enumerate() {
        if !rule_matches(r, host, f, tags, s.now) {
            continue;
        }
        if !r.is_tier() {
            return Decision::Excluded { rule: i };
        }
        if f.stubbed {
            return Decision::AlreadyStubbed { rule: i };
        }
        if s.recently_recalled(r, f) {
            return Decision::RecentlyRecalled { rule: i };
        }
        if f.modified.is_none_or(|m| m >= s.safety_cutoff()) {
            return Decision::TooRecent { rule: i };
        }
        return Decision::Candidate { rule: i };
    }
    Decision::NoMatch
}

/// One condition check in an explanation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckTrace {
    pub condition: String,
    pub passed: bool,
    pub detail: String,
}

/// One rule in an explanation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleTrace {
    pub rule_id: Uuid,
    pub name: String,
    pub priority: i32,
    pub version: i32,
    /// `matched`, `not_matched`, `disabled`, `out_of_scope`, or `not_evaluated` (an
    /// earlier rule decided).
    pub outcome: String,
    pub checks: Vec<CheckTrace>,
}

/// Why a file will or will not move.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// `tier`, `excluded`, `already_stubbed`, `recently_recalled`, `too_recent`, `deleted` or
    /// `no_match`.
    pub decision: String,
    /// The deciding rule, if any.
    pub rule_id: Option<Uuid>,
    pub rule_name: Option<String>,
    /// Storage target when the decision is `tier`.
    pub target: Option<String>,
    /// One sentence for people.
    pub reason: String,
    pub rules: Vec<RuleTrace>,
}

/// Explains the decision for one file: every rule in order with each condition's result.
pub fn explain(
    rules: &[CompiledRule],
    host: &HostFacts<'_>,
    f: &FileFacts<'_>,
    tags: &TagIndex,
    settings: &EvalSettings,
) -> Explanation {
    let decision = decide(rules, host, f, tags, settings);
    let deciding = match decision {
        Decision::Candidate { rule }
        | Decision::Excluded { rule }
        | Decision::AlreadyStubbed { rule }
        | Decision::RecentlyRecalled { rule }
        | Decision::TooRecent { rule } => Some(rule),
        Decision::Deleted | Decision::NoMatch => None,
    };
    let mut traces = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let mut checks = Vec::new();
        let outcome = if deciding.is_some_and(|d| i > d) || f.deleted {
            "not_evaluated"
        } else if !r.spec.enabled {
            "disabled"
        } else {
            let s = &r.spec.scope;
            let host_ok = s.hosts.is_empty() || s.hosts.contains(&host.id);
            let group_ok =
                s.host_groups.is_empty() || s.host_groups.iter().any(|g| host.groups.contains(g));
            let prefix_ok = r.prefixes.is_empty() || r.prefixes.iter().any(|p| under(f.path, p));
            if !s.hosts.is_empty() {
                checks.push(CheckTrace {
                    condition: "scope.hosts".into(),
                    passed: host_ok,
                    detail: format!(
                        "host {} {} the rule's hosts",
                        host.id,
                        if host_ok { "is among" } else { "is not among" }
                    ),
                });
            }
            if !s.host_groups.is_empty() {
                checks.push(CheckTrace {
                    condition: "scope.host_groups".into(),
                    passed: group_ok,
                    detail: format!(
                        "host groups {:?}, rule groups {:?}",
                        host.groups, s.host_groups
                    ),
                });
            }
            if !r.prefixes.is_empty() {
                checks.push(CheckTrace {
                    condition: "scope.path_prefixes".into(),
                    passed: prefix_ok,
                    detail: format!(
                        "path {} under {:?}",
                        if prefix_ok { "is" } else { "is not" },
                        r.prefixes
                    ),
                });
            }
            if !(host_ok && group_ok && prefix_ok) {
                "out_of_scope"
            } else {
                let all_hold = conditions(
                    r,
                    host.id,
                    f,
                    tags,
                    settings.now,
                    true,
                    &mut |name, passed, detail| {
                        checks.push(CheckTrace { condition: name.into(), passed, detail });
                    },
                );
                if all_hold {
                    "matched"
                } else {
                    "not_matched"
                }
            }
        };
        traces.push(RuleTrace {
            rule_id: r.id,
            name: r.spec.name.clone(),
            priority: r.spec.priority,
            version: r.version,
            outcome: outcome.into(),
            checks,
        });
    }
    let rule = deciding.map(|i| &rules[i]);
    let name = rule.map(|r| r.spec.name.clone());
    let rn = name.clone().unwrap_or_default();
    let (kind, reason) = match decision {
        Decision::Candidate { .. } => (
            "tier",
            format!("rule `{rn}` matches: the file moves to `{}`", rule.and_then(|r| r.target()).unwrap_or("")),
        ),
        Decision::Excluded { .. } => ("excluded", format!("rule `{rn}` excludes it; later rules are not evaluated")),
        Decision::AlreadyStubbed { .. } => {
            ("already_stubbed", format!("rule `{rn}` matches, but the file is already a stub"))
        }
        Decision::RecentlyRecalled { .. } => (
            "recently_recalled",
            format!(
                "rule `{rn}` matches, but the file was recalled from tier-2 at {} and is retained for {} days after a recall",
                f.recalled_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                rule.map(|r| r.retain_after_recall_days(settings.recall_retention_days))
                    .unwrap_or(settings.recall_retention_days)
            ),
        ),
        Decision::TooRecent { .. } => (
            "too_recent",
            format!(
                "rule `{rn}` matches, but the file was modified within the safety window ({} minutes) or its modification time is unknown",
                settings.safety_window.num_minutes()
            ),
        ),
        Decision::Deleted => ("deleted", "the file was deleted (missing from the last full scan)".into()),
        Decision::NoMatch => ("no_match", "no enabled rule in scope matches; the file stays".into()),
    };
    Explanation {
        decision: kind.into(),
        rule_id: rule.map(|r| r.id),
        rule_name: name,
        target: match decision {
            Decision::Candidate { .. } => rule.and_then(|r| r.target().map(str::to_owned)),
            _ => None,
        },
        reason,
        rules: traces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Action, Conditions, OrderBy, RuleSpec, Scope};

    fn rule(retain: Option<u32>) -> CompiledRule {
        let mut action = Action::tier("t2");
        action.retain_after_recall_days = retain;
        let spec = RuleSpec {
            name: "all".into(),
            description: None,
            enabled: true,
            priority: 1,
            scope: Scope::default(),
            conditions: Conditions::default(),
            action,
            schedule: None,
            order_by: OrderBy::default(),
        };
        crate::compile(Uuid::nil(), 1, &spec, &|_| true).unwrap()
    }

    #[test]
    fn recently_recalled_files_are_retained_by_the_tenant_default_or_the_rule() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let s = EvalSettings { now, safety_window: Duration::hours(1), recall_retention_days: 30 };
        let host = HostFacts { id: Uuid::nil(), groups: &[] };
        let mut f = FileFacts {
            path: "/srv/a",
            size: 10,
            modified: Some(now - Duration::days(400)),
            accessed: None,
            extension: "",
            owner: None,
            mode: None,
            stubbed: false,
            deleted: false,
            recalled_at: Some(now - Duration::days(10)),
        };
        let tags = TagIndex::default();
        let default = [rule(None)];
        assert_eq!(decide(&default, &host, &f, &tags, &s), Decision::RecentlyRecalled { rule: 0 });
        let e = explain(&default, &host, &f, &tags, &s);
        assert_eq!(e.decision, "recently_recalled");
        assert!(e.reason.contains("30 days"), "{}", e.reason);
        // The rule's own retention overrides the tenant's.
        let short = [rule(Some(7))];
        assert_eq!(decide(&short, &host, &f, &tags, &s), Decision::Candidate { rule: 0 });
        // Past the retention, or never recalled: a candidate again.
        f.recalled_at = Some(now - Duration::days(31));
        assert_eq!(decide(&default, &host, &f, &tags, &s), Decision::Candidate { rule: 0 });
        f.recalled_at = None;
        assert_eq!(decide(&default, &host, &f, &tags, &s), Decision::Candidate { rule: 0 });
        // Retention 0: no retention.
        f.recalled_at = Some(now - Duration::seconds(1));
        let none = EvalSettings { recall_retention_days: 0, ..s };
        assert_eq!(decide(&default, &host, &f, &tags, &none), Decision::Candidate { rule: 0 });
    }
}
