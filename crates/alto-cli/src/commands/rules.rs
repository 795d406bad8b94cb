//! `rules …`: the rule set, validation, previews and explanations.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use alto_api_types::{
    Action, ActionKind, Compression, Conditions, CountBytes, ExplainResponse, OrderBy, Preview,
    PreviewRequest, Rule, RuleScope, RuleSpec, RuleVersion, TagCondition,
};
use anyhow::{anyhow, Context as _, Result};
use serde::Deserialize;
use uuid::Uuid;

use super::Ctx;
use crate::args::{CreateRuleArgs, RulesCmd};
use crate::output;
use crate::CodedError;

/// Reads a rule (a `RuleSpec` as JSON) from `path`, or standard input for `-`.
pub(super) fn read_spec(path: &Path) -> Result<RuleSpec> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the rule from standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let name = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        CodedError::new("invalid_rule_file", format!("{name} is not a valid rule: {e}")).into()
    })
}

fn order_by(s: &str) -> OrderBy {
    match s {
        "oldest_modify" => OrderBy::OldestModify,
        "largest" => OrderBy::Largest,
        _ => OrderBy::OldestAccess,
    }
}

fn order_by_name(o: OrderBy) -> &'static str {
    match o {
        OrderBy::OldestAccess => "oldest_access",
        OrderBy::OldestModify => "oldest_modify",
        OrderBy::Largest => "largest",
    }
}

/// `KEY` or `KEY=VALUE`.
fn tag_condition(s: &str) -> Result<TagCondition> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.to_owned())),
        None => (s.trim(), None),
    };
    if key.is_empty() {
        return Err(anyhow!("--tag {s:?}: expected KEY or KEY=VALUE"));
    }
    Ok(TagCondition { key: key.to_owned(), value })
}

/// The rule the flags of `rules create` describe; the server validates it.
pub(super) fn spec_from_flags(a: &CreateRuleArgs, priority: i32) -> Result<RuleSpec> {
    let name = a.name.clone().ok_or_else(|| anyhow!("--name is required without --file"))?;
    let action = if a.exclude {
        Action::exclude()
    } else {
        let target = a
            .target
            .clone()
            .ok_or_else(|| anyhow!("a rule needs --target NAME (tier) or --exclude"))?;
        Action {
            kind: ActionKind::Tier,
            target: Some(target),
            compression: a.compression.as_deref().map(|c| match c {
                "zstd" => Compression::Zstd,
                _ => Compression::None,
            }),
            retain_after_recall_days: None,
        }
    };
    Ok(RuleSpec {
        name,
        description: a.description.clone(),
        enabled: !a.disabled,
        priority,
        scope: RuleScope {
            hosts: a.host.clone(),
            host_groups: a.host_group.clone(),
            path_prefixes: a.path_prefix.clone(),
        },
        conditions: Conditions {
            path_globs: a.glob.clone(),
            path_regex: a.regex.clone(),
            accessed_older_than_days: a.accessed_older_than_days,
            accessed_newer_than_days: a.accessed_newer_than_days,
            modified_older_than_days: a.modified_older_than_days,
            modified_newer_than_days: a.modified_newer_than_days,
            min_size_bytes: a.min_size,
            max_size_bytes: a.max_size,
            extensions: a.ext.clone(),
            exclude_extensions: a.exclude_ext.clone(),
            owners: a.owner.clone(),
            permissions: None,
            tags: a.tag.iter().map(|t| tag_condition(t)).collect::<Result<_>>()?,
            stub_state: None,
        },
        action,
        schedule: a.schedule.clone(),
        order_by: a.order_by.as_deref().map(order_by).unwrap_or_default(),
    })
}

/// `tier → default (zstd)` or `exclude`.
pub(super) fn action_text(a: &Action) -> String {
    match a.kind {
        ActionKind::Exclude => "exclude".to_owned(),
        ActionKind::Tier => {
            let mut s = format!("tier → {}", a.target.as_deref().unwrap_or("?"));
            if a.compression == Some(Compression::Zstd) {
                s.push_str(" (zstd)");
            }
            s
        }
    }
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// One line per condition, in evaluation order.
pub(super) fn condition_lines(c: &Conditions) -> Vec<String> {
    let mut v = Vec::new();
    if !c.path_globs.is_empty() {
        v.push(format!("path glob {}", quoted(&c.path_globs)));
    }
    if let Some(r) = &c.path_regex {
        v.push(format!("path regex /{r}/"));
    }
    if let Some(d) = c.accessed_older_than_days {
        v.push(format!("accessed more than {d} days ago"));
    }
    if let Some(d) = c.accessed_newer_than_days {
        v.push(format!("accessed within {d} days"));
    }
    if let Some(d) = c.modified_older_than_days {
        v.push(format!("modified more than {d} days ago"));
    }
    if let Some(d) = c.modified_newer_than_days {
        v.push(format!("modified within {d} days"));
    }
    if let Some(b) = c.min_size_bytes {
        v.push(format!("size ≥ {}", output::bytes(b)));
    }
    if let Some(b) = c.max_size_bytes {
        v.push(format!("size ≤ {}", output::bytes(b)));
    }
    if !c.extensions.is_empty() {
        v.push(format!("extension {}", quoted(&c.extensions)));
    }
    if !c.exclude_extensions.is_empty() {
        v.push(format!("extension not {}", quoted(&c.exclude_extensions)));
    }
    if !c.owners.is_empty() {
        v.push(format!("owner {}", quoted(&c.owners)));
    }
    if let Some(p) = &c.permissions {
        let mut parts = Vec::new();
        if let Some(a) = &p.all_of {
            parts.push(format!("all of {a}"));
        }
        if let Some(n) = &p.none_of {
            parts.push(format!("none of {n}"));
        }
        v.push(format!("mode bits {}", parts.join(", ")));
    }
    for t in &c.tags {
        match &t.value {
            Some(val) => v.push(format!("tag {}={val}", t.key)),
            None => v.push(format!("tag {}", t.key)),
        }
    }
    if let Some(s) = c.stub_state {
        v.push(
            match s {
                alto_api_types::StubState::Stubbed => "is a stub",
                alto_api_types::StubState::NotStubbed => "is not a stub",
            }
            .to_owned(),
        );
    }
    v
}

pub(super) fn scope_lines(s: &RuleScope) -> Vec<String> {
    let mut v = Vec::new();
    if !s.hosts.is_empty() {
        let ids: Vec<String> = s.hosts.iter().map(ToString::to_string).collect();
        v.push(format!("hosts {}", ids.join(", ")));
    }
    if !s.host_groups.is_empty() {
        v.push(format!("host groups {}", s.host_groups.join(", ")));
    }
    if !s.path_prefixes.is_empty() {
        v.push(format!("under {}", s.path_prefixes.join(", ")));
    }
    v
}

fn or_dash(lines: &[String], empty: &str, sep: &str) -> String {
    if lines.is_empty() {
        empty.to_owned()
    } else {
        lines.join(sep)
    }
}

fn rule_row(r: &Rule) -> Vec<String> {
    let scope = {
        let s = &r.spec.scope;
        let mut v = Vec::new();
        if !s.hosts.is_empty() {
            v.push(format!("{} host(s)", s.hosts.len()));
        }
        if !s.host_groups.is_empty() {
            v.push(format!("groups {}", s.host_groups.join(",")));
        }
        if !s.path_prefixes.is_empty() {
            v.push(format!("under {}", s.path_prefixes.join(",")));
        }
        or_dash(&v, "everywhere", "; ")
    };
    vec![
        r.spec.priority.to_string(),
        r.id.to_string(),
        r.spec.name.clone(),
        output::yes_no(r.spec.enabled),
        action_text(&r.spec.action),
        or_dash(&condition_lines(&r.spec.conditions), "(every file)", "; "),
        scope,
        output::opt(r.spec.schedule.as_deref()),
        r.version.to_string(),
    ]
}

const RULE_HEADER: [&str; 9] =
    ["PRIORITY", "ID", "NAME", "ENABLED", "ACTION", "CONDITIONS", "SCOPE", "SCHEDULE", "VERSION"];

fn show(r: &Rule) {
    let s = &r.spec;
    output::fields(vec![
        ("id", r.id.to_string()),
        ("name", s.name.clone()),
        ("description", output::opt(s.description.as_deref())),
        ("enabled", output::yes_no(s.enabled)),
        ("priority", s.priority.to_string()),
        ("version", r.version.to_string()),
        ("scope", or_dash(&scope_lines(&s.scope), "everywhere", "\n")),
        ("conditions", or_dash(&condition_lines(&s.conditions), "(every file)", "\n")),
        ("action", action_text(&s.action)),
        ("order by", order_by_name(s.order_by).to_owned()),
        ("schedule", output::opt(s.schedule.as_deref())),
        ("next run", output::opt_ts(r.next_run_at)),
        ("last fired", output::opt_ts(r.last_fired_at)),
        ("created", output::ts(r.created_at)),
        ("updated", output::ts(r.updated_at)),
    ]);
}

fn print_rule(ctx: &Ctx, r: &Rule) -> Result<()> {
    if ctx.json() {
        output::json(r)
    } else {
        show(r);
        Ok(())
    }
}

fn version_row(v: &RuleVersion) -> Vec<String> {
    vec![
        v.version.to_string(),
        v.change.clone(),
        output::ts(v.changed_at),
        output::opt(v.changed_by),
        v.spec.name.clone(),
        output::yes_no(v.spec.enabled),
        v.spec.priority.to_string(),
        action_text(&v.spec.action),
        or_dash(&condition_lines(&v.spec.conditions), "(every file)", "; "),
    ]
}

/// The next free priority at the end of the rule set.
async fn next_priority(ctx: &Ctx, tenant: Uuid) -> Result<i32> {
    let rules = ctx.client.list_rules(tenant).await?;
    let max = rules.iter().map(|r| r.spec.priority).max();
    Ok(max.map_or(10, |m| m.saturating_add(10)))
}

async fn set_enabled(ctx: &Ctx, tenant: Uuid, id: Uuid, enabled: bool) -> Result<()> {
    let c = &ctx.client;
    let mut rule = c.get_rule(tenant, id).await?;
    let word = if enabled { "enabled" } else { "disabled" };
    if rule.spec.enabled == enabled {
        if ctx.json() {
            return output::json(&rule);
        }
        outln!("Rule {} ({}) is already {word}; nothing changed.", rule.spec.name, rule.id);
        return Ok(());
    }
    rule.spec.enabled = enabled;
    let updated = c.update_rule(tenant, id, &rule.spec, Some(rule.version)).await?;
    if ctx.json() {
        output::json(&updated)
    } else {
        outln!(
            "Rule {} ({}) is now {word} (version {}).",
            updated.spec.name,
            updated.id,
            updated.version
        );
        Ok(())
    }
}

fn buckets(title: &str, key: &str, list: &[CountBytes]) {
    outln!();
    outln!("{title}:");
    let rows = list
        .iter()
        .map(|b| vec![b.key.clone(), b.files.to_string(), output::bytes(b.bytes)])
        .collect();
    output::table(&[key, "FILES", "SIZE"], rows);
}

fn show_preview(p: &Preview) {
    output::fields(vec![
        ("evaluated at", output::ts(p.evaluated_at)),
        ("ruleset revision", p.ruleset_revision.to_string()),
        ("files", p.files.to_string()),
        ("size", output::bytes(p.bytes)),
        ("space saved", output::bytes(p.space_saved)),
        ("estimated time", output::seconds(p.estimated_seconds)),
    ]);
    buckets("Per host", "HOST", &p.per_host);
    buckets("Per target", "TARGET", &p.per_target);
    buckets("Per rule", "RULE", &p.per_rule);
    buckets("Top directories", "DIRECTORY", &p.top_directories);
    buckets("By last access", "ACCESSED", &p.accessed_age);
    outln!();
    outln!("Sample ({} of {} files):", p.sample.len(), p.files);
    let rows = p
        .sample
        .iter()
        .map(|f| {
            vec![
                f.file_path.clone(),
                output::bytes(f.file_size),
                output::opt_ts(f.last_accessed),
                output::opt_ts(f.last_modified),
                output::short_id(f.host_id),
                f.rule_name.clone(),
                f.target.clone(),
            ]
        })
        .collect();
    output::table(
        &["PATH", "SIZE", "LAST ACCESSED", "LAST MODIFIED", "HOST", "RULE", "TARGET"],
        rows,
    );
}

/// The `explanation` of an explain response (`alto_rules::eval::Explanation`).
#[derive(Debug, Deserialize)]
struct ExplanationView {
    decision: String,
    #[serde(default)]
    rule_name: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    rules: Vec<RuleTraceView>,
    /// Set when the file is already in a live job.
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RuleTraceView {
    name: String,
    priority: i32,
    version: i32,
    outcome: String,
    #[serde(default)]
    checks: Vec<CheckView>,
}

#[derive(Debug, Deserialize)]
struct CheckView {
    condition: String,
    passed: bool,
    detail: String,
}

/// What the CHECKS column says for one rule: the checks that decided its outcome.
fn trace_checks(t: &RuleTraceView) -> String {
    let line = |c: &CheckView| {
        format!("{} {}: {}", if c.passed { "✓" } else { "✗" }, c.condition, c.detail)
    };
    let lines: Vec<String> = match t.outcome.as_str() {
        "matched" => t.checks.iter().map(line).collect(),
        "disabled" => vec!["rule is disabled".to_owned()],
        "not_evaluated" => vec!["not evaluated: an earlier rule decided".to_owned()],
        _ => t.checks.iter().filter(|c| !c.passed).map(line).collect(),
    };
    if lines.is_empty() {
        match t.outcome.as_str() {
            "matched" => "(no conditions: every file in scope)".to_owned(),
            _ => "-".to_owned(),
        }
    } else {
        lines.join("\n")
    }
}

/// `Decision: tier (rule `x`, target `default`): <reason>`.
fn decision_line(e: &ExplanationView) -> String {
    let mut extra = Vec::new();
    if let Some(r) = &e.rule_name {
        extra.push(format!("rule `{r}`"));
    }
    if let Some(t) = &e.target {
        extra.push(format!("target `{t}`"));
    }
    let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
    format!("Decision: {}{extra}: {}", e.decision, e.reason)
}

fn show_explain(x: &ExplainResponse) -> Result<()> {
    output::fields(vec![
        ("path", x.file_path.clone()),
        ("host", x.host_id.to_string()),
        ("file id", x.file_id.to_string()),
        ("size", output::bytes(x.file_size)),
        ("last accessed", output::opt_ts(x.last_accessed)),
        ("last modified", output::opt_ts(x.last_modified)),
        ("in job", output::opt(x.in_job)),
        ("evaluated at", output::ts(x.evaluated_at)),
        ("ruleset revision", x.ruleset_revision.to_string()),
    ]);
    let e: ExplanationView = serde_json::from_value(x.explanation.clone())
        .context("the server's explanation has an unexpected shape (try --output json)")?;
    outln!();
    let rows = e
        .rules
        .iter()
        .map(|t| {
            vec![
                t.priority.to_string(),
                t.name.clone(),
                t.version.to_string(),
                t.outcome.clone(),
                trace_checks(t),
            ]
        })
        .collect();
    output::table(&["PRIORITY", "RULE", "VERSION", "OUTCOME", "CHECKS"], rows);
    outln!();
    outln!("{}", decision_line(&e));
    if let Some(n) = &e.note {
        outln!("Note: {n}");
    }
    Ok(())
}

pub(super) async fn run(ctx: &Ctx, cmd: RulesCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        RulesCmd::List { tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.list_rules(tenant).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&RULE_HEADER, list.iter().map(rule_row).collect());
            }
        }
        RulesCmd::Get { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_rule(ctx, &c.get_rule(tenant, id).await?)?;
        }
        RulesCmd::Create(a) => {
            let tenant = ctx.tenant(a.tenant).await?;
            let spec = match &a.file {
                Some(f) => read_spec(f)?,
                None => {
                    let priority = match a.priority {
                        Some(p) => p,
                        None => next_priority(ctx, tenant).await?,
                    };
                    spec_from_flags(&a, priority)?
                }
            };
            let r = c.create_rule(tenant, &spec).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                outln!("Created rule {} ({}), priority {}.", r.spec.name, r.id, r.spec.priority);
                show(&r);
            }
        }
        RulesCmd::Update { id, file, expected_version, tenant } => {
            let spec = read_spec(&file)?;
            let tenant = ctx.tenant(tenant).await?;
            let r = c.update_rule(tenant, id, &spec, expected_version).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                outln!("Updated rule {} ({}) to version {}.", r.spec.name, r.id, r.version);
                show(&r);
            }
        }
        RulesCmd::Delete { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let r = c.delete_rule(tenant, id).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                outln!("Deleted rule {} ({}).", r.spec.name, r.id);
            }
        }
        RulesCmd::Enable { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            set_enabled(ctx, tenant, id, true).await?;
        }
        RulesCmd::Disable { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            set_enabled(ctx, tenant, id, false).await?;
        }
        RulesCmd::Versions { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.rule_versions(tenant, id).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(
                    &[
                        "VERSION",
                        "CHANGE",
                        "CHANGED AT",
                        "CHANGED BY",
                        "NAME",
                        "ENABLED",
                        "PRIORITY",
                        "ACTION",
                        "CONDITIONS",
                    ],
                    list.iter().map(version_row).collect(),
                );
            }
        }
        RulesCmd::Reorder { ids, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.reorder_rules(tenant, &ids).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                outln!("New rule order:");
                output::table(&RULE_HEADER, list.iter().map(rule_row).collect());
            }
        }
        RulesCmd::Validate { file, tenant } => {
            let spec = read_spec(&file)?;
            let tenant = ctx.tenant(tenant).await?;
            let v = c.validate_rule(tenant, &spec).await?;
            if ctx.json() {
                output::json(&v)?;
            } else if v.valid {
                outln!("Rule {} is valid.", spec.name);
            } else {
                for e in &v.errors {
                    outln!("{}: {}", e.field, e.message);
                }
            }
            if !v.valid {
                let n = v.errors.len();
                eprintln!(
                    "error: the rule is not valid: {n} problem{} (validation_failed)",
                    if n == 1 { "" } else { "s" }
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        RulesCmd::Preview { file, replaces, hosts, sample, tenant } => {
            let draft = file.as_deref().map(read_spec).transpose()?;
            let tenant = ctx.tenant(tenant).await?;
            let req = PreviewRequest { draft, rule_id: replaces, host_ids: hosts, sample };
            let p = c.preview_rules(tenant, &req).await?;
            if ctx.json() {
                output::json(&p)?;
            } else {
                show_preview(&p);
            }
        }
        RulesCmd::Explain { host, path, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let x = c.explain_file(tenant, host, &path).await?;
            if ctx.json() {
                output::json(&x)?;
            } else {
                show_explain(&x)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn create_args(extra: &[&str]) -> Result<CreateRuleArgs, clap::Error> {
        let mut argv = vec!["altoctl", "rules", "create"];
        argv.extend_from_slice(extra);
        crate::args::Cli::try_parse_from(argv).map(|cli| match cli.command {
            crate::args::Command::Rules(RulesCmd::Create(a)) => *a,
            other => panic!("unexpected {other:?}"),
        })
    }

    #[test]
    fn flags_build_a_rule() {
        let a = create_args(&[
            "--name",
            "old-isos",
            "--target",
            "archive",
            "--compression",
            "zstd",
            "--accessed-older-than-days",
            "90",
            "--min-size",
            "10MiB",
            "--max-size",
            "1.5GB",
            "--ext",
            "iso",
            "--ext",
            ".IMG",
            "--exclude-ext",
            "",
            "--glob",
            "**/images/**",
            "--regex",
            "^/srv/",
            "--path-prefix",
            "/srv",
            "--tag",
            "project=apollo",
            "--tag",
            "keep",
            "--schedule",
            "0 2 * * 6",
            "--order-by",
            "largest",
            "--disabled",
        ])
        .expect("parses");
        let s = spec_from_flags(&a, 30).expect("spec");
        assert_eq!(s.name, "old-isos");
        assert_eq!(s.priority, 30);
        assert!(!s.enabled);
        assert_eq!(s.action.kind, ActionKind::Tier);
        assert_eq!(s.action.target.as_deref(), Some("archive"));
        assert_eq!(s.action.compression, Some(Compression::Zstd));
        assert_eq!(s.conditions.accessed_older_than_days, Some(90));
        assert_eq!(s.conditions.min_size_bytes, Some(10 << 20));
        assert_eq!(s.conditions.max_size_bytes, Some(1_500_000_000));
        assert_eq!(s.conditions.extensions, vec!["iso", ".IMG"]);
        assert_eq!(s.conditions.exclude_extensions, vec![""]);
        assert_eq!(s.conditions.path_globs, vec!["**/images/**"]);
        assert_eq!(s.conditions.path_regex.as_deref(), Some("^/srv/"));
        assert_eq!(s.scope.path_prefixes, vec!["/srv"]);
        assert_eq!(s.conditions.tags.len(), 2);
        assert_eq!(s.conditions.tags[0].value.as_deref(), Some("apollo"));
        assert_eq!(s.conditions.tags[1].value, None);
        assert_eq!(s.schedule.as_deref(), Some("0 2 * * 6"));
        assert_eq!(s.order_by, OrderBy::Largest);
        // The JSON the server receives is a plain RuleSpec.
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["action"]["type"], "tier");

        let x = create_args(&["--name", "keep-db", "--exclude", "--glob", "*.db"]).expect("parses");
        let s = spec_from_flags(&x, 5).expect("spec");
        assert_eq!(s.action, Action::exclude());
        assert!(s.enabled);
    }

    #[test]
    fn create_needs_a_file_or_a_name_and_an_action() {
        assert!(create_args(&["--file", "r.json"]).is_ok());
        // Neither a file nor a name.
        assert!(create_args(&["--priority", "5"]).is_err());
        // A name without --target or --exclude.
        assert!(create_args(&["--name", "x"]).is_err());
        // Both actions.
        assert!(create_args(&["--name", "x", "--target", "t", "--exclude"]).is_err());
        // A file and flags.
        assert!(create_args(&["--file", "r.json", "--name", "x", "--exclude"]).is_err());
        assert!(create_args(&["--file", "r.json", "--min-size", "5"]).is_err());
        // Sizes are checked while parsing.
        let e = create_args(&["--name", "x", "--exclude", "--min-size", "-5"]).expect_err("neg");
        assert!(e.to_string().contains("cannot be negative"), "{e}");
        assert!(create_args(&["--name", "x", "--exclude", "--max-size", "lots"]).is_err());
        // Compression only with a target.
        assert!(create_args(&["--name", "x", "--exclude", "--compression", "zstd"]).is_err());
    }

    #[test]
    fn descriptions() {
        let c = Conditions {
            accessed_older_than_days: Some(90),
            min_size_bytes: Some(1024),
            extensions: vec!["iso".into()],
            ..Conditions::default()
        };
        assert_eq!(
            condition_lines(&c),
            vec!["accessed more than 90 days ago", "size ≥ 1.0 KiB", "extension `iso`"]
        );
        assert_eq!(action_text(&Action::tier("default")), "tier → default");
        assert_eq!(action_text(&Action::exclude()), "exclude");
    }

    #[test]
    fn explanations_render() {
        let e: ExplanationView = serde_json::from_value(serde_json::json!({
            "decision": "tier",
            "rule_id": Uuid::nil(),
            "rule_name": "old",
            "target": "default",
            "reason": "rule `old` matches",
            "rules": [
                {"rule_id": Uuid::nil(), "name": "keep", "priority": 5, "version": 1,
                 "outcome": "not_matched",
                 "checks": [{"condition": "extensions", "passed": false, "detail": "extension `.iso` is not in the include list [\".db\"]"}]},
                {"rule_id": Uuid::nil(), "name": "old", "priority": 10, "version": 2,
                 "outcome": "matched",
                 "checks": [{"condition": "min_size_bytes", "passed": true, "detail": "size 5 bytes (must be ≥ 1)"}]},
                {"rule_id": Uuid::nil(), "name": "later", "priority": 20, "version": 1,
                 "outcome": "not_evaluated", "checks": []}
            ]
        }))
        .expect("shape");
        assert_eq!(
            trace_checks(&e.rules[0]),
            "✗ extensions: extension `.iso` is not in the include list [\".db\"]"
        );
        assert_eq!(trace_checks(&e.rules[1]), "✓ min_size_bytes: size 5 bytes (must be ≥ 1)");
        assert!(trace_checks(&e.rules[2]).contains("earlier rule"));
        assert_eq!(
            decision_line(&e),
            "Decision: tier (rule `old`, target `default`): rule `old` matches"
        );
    }
}
