//! `plans …`, `jobs …` and `planner-settings …`.

use std::process::ExitCode;

use alto_api_types::{Job, JobFile, OrderBy, Plan, PlannerSettings, RunPlan};
use alto_client::{JobQuery, StubQuery};
use anyhow::Result;

use super::{collect, more_hint, pages, Ctx};
use crate::args::{JobsCmd, PlannerSettingsCmd, PlansCmd, SetPlannerArgs, StubsCmd};
use crate::output;

fn plan_row(p: &Plan) -> Vec<String> {
    vec![
        p.id.to_string(),
        output::ts(p.created_at),
        p.trigger.clone(),
        output::yes_no(p.held),
        if p.host_ids.is_empty() { "all".to_owned() } else { p.host_ids.len().to_string() },
        p.stats.jobs.to_string(),
        p.stats.files.to_string(),
        output::bytes(p.stats.bytes),
        p.stats.deferred_files.to_string(),
        output::list(&p.stats.stopped_by),
    ]
}

const PLAN_HEADER: [&str; 10] = [
    "ID",
    "CREATED",
    "TRIGGER",
    "HELD",
    "HOSTS",
    "JOBS",
    "FILES",
    "SIZE",
    "DEFERRED",
    "STOPPED BY",
];

fn show_plan(p: &Plan) {
    let s = &p.stats;
    let rules = p
        .rule_versions
        .iter()
        .map(|r| format!("{} v{} ({})", r.name, r.version, r.rule_id))
        .collect::<Vec<_>>();
    output::fields(vec![
        ("id", p.id.to_string()),
        ("trigger", p.trigger.clone()),
        ("requested by", output::opt(p.requested_by.as_deref())),
        ("created", output::ts(p.created_at)),
        ("held", output::yes_no(p.held)),
        ("hosts", if p.host_ids.is_empty() { "all".to_owned() } else { output::list(&p.host_ids) }),
        ("rule", output::opt(p.rule_id)),
        ("ruleset revision", p.ruleset_revision.to_string()),
        ("rule versions", if rules.is_empty() { "-".to_owned() } else { rules.join("\n") }),
        ("jobs", s.jobs.to_string()),
        ("files", s.files.to_string()),
        ("size", output::bytes(s.bytes)),
        ("space saved", output::bytes(s.space_saved)),
        ("estimated time", output::seconds(s.estimated_seconds)),
        ("selected / confirmed", format!("{} / {}", s.selected, s.confirmed)),
        ("mismatches", s.mismatches.to_string()),
        ("deferred", format!("{} files, {}", s.deferred_files, output::bytes(s.deferred_bytes))),
        ("stopped by", output::list(&s.stopped_by)),
        ("duration", format!("{} ms", s.duration_ms)),
    ]);
}

fn print_plan(ctx: &Ctx, p: &Plan) -> Result<()> {
    if ctx.json() {
        output::json(p)
    } else {
        show_plan(p);
        Ok(())
    }
}

pub(super) async fn plans(ctx: &Ctx, cmd: PlansCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        PlansCmd::Run { hosts, rules, max_files, max_bytes, hold, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let req = RunPlan { host_ids: hosts, rule_ids: rules, max_files, max_bytes, hold };
            let p = c.run_plan(tenant, &req).await?;
            if ctx.json() {
                output::json(&p)?;
            } else {
                outln!(
                    "Planned {} file(s), {} in {} job(s){}.",
                    p.stats.files,
                    output::bytes(p.stats.bytes),
                    p.stats.jobs,
                    if p.held { ", held: release with `altoctl plans release ID`" } else { "" }
                );
                show_plan(&p);
            }
        }
        PlansCmd::List { tenant, page } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = pages(&page, |limit, cursor| async move {
                c.list_plans(tenant, limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&PLAN_HEADER, list.items.iter().map(plan_row).collect());
                more_hint(list.next_cursor.as_deref());
            }
        }
        PlansCmd::Get { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_plan(ctx, &c.get_plan(tenant, id).await?)?;
        }
        PlansCmd::Release { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let p = c.release_plan(tenant, id).await?;
            if ctx.json() {
                output::json(&p)?;
            } else {
                outln!("Released plan {}: its jobs are queued.", p.id);
                show_plan(&p);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn job_row(j: &Job) -> Vec<String> {
    vec![
        j.id.to_string(),
        j.kind.clone(),
        j.state.clone(),
        j.host_id.map_or_else(|| "-".to_owned(), output::short_id),
        output::opt(j.target.as_deref()),
        j.file_count.to_string(),
        output::bytes(j.total_bytes),
        format!("{}/{}", j.attempts, j.max_attempts),
        output::ts(j.created_at),
        output::opt(j.last_error.as_deref()),
    ]
}

const JOB_HEADER: [&str; 10] =
    ["ID", "KIND", "STATE", "HOST", "TARGET", "FILES", "SIZE", "ATTEMPTS", "CREATED", "ERROR"];

fn show_job(j: &Job) {
    let mut f = vec![
        ("id", j.id.to_string()),
        ("kind", j.kind.clone()),
        ("state", j.state.clone()),
        ("host", output::opt(j.host_id)),
        ("plan", output::opt(j.plan_id)),
        (
            "rule",
            match (j.rule_id, j.rule_version) {
                (Some(r), Some(v)) => format!("{r} (version {v})"),
                (Some(r), None) => r.to_string(),
                _ => "-".to_owned(),
            },
        ),
        ("target", output::opt(j.target.as_deref())),
        ("priority", j.priority.to_string()),
        ("files", j.file_count.to_string()),
        ("size", output::bytes(j.total_bytes)),
        ("attempts", format!("{} of {}", j.attempts, j.max_attempts)),
        ("last error", output::opt(j.last_error.as_deref())),
    ];
    if let Some(e) = &j.estimates {
        f.push(("est. space saved", output::bytes(e.space_saved_bytes)));
        f.push(("est. duration", output::seconds(e.duration_seconds)));
        f.push(("est. bandwidth", format!("{}/s", output::bytes(e.bandwidth_bytes_per_second))));
    }
    f.extend([
        ("cancel requested", output::opt_ts(j.cancel_requested_at)),
        ("created", output::ts(j.created_at)),
        ("updated", output::ts(j.updated_at)),
        ("dispatched", output::opt_ts(j.dispatched_at)),
        ("started", output::opt_ts(j.started_at)),
        ("finished", output::opt_ts(j.finished_at)),
    ]);
    output::fields(f);
    if !j.file_states.is_empty() {
        outln!();
        outln!("Files by state:");
        // The server counts files per state; it does not total their bytes.
        output::table(
            &["STATE", "FILES"],
            j.file_states.iter().map(|b| vec![b.key.clone(), b.files.to_string()]).collect(),
        );
    }
}

/// What a cancel or retry did, in words.
fn transition_line(j: &Job, cancel: bool) -> String {
    match (cancel, j.state.as_str()) {
        (true, "cancelled") => format!("Job {} is cancelled.", j.id),
        (true, state) => format!(
            "Cancellation of job {} requested; it stays {state} until its agent confirms.",
            j.id
        ),
        (false, state) => format!("Job {} retried; it is now {state}.", j.id),
    }
}

fn print_job(ctx: &Ctx, j: &Job, transition: Option<bool>) -> Result<()> {
    if ctx.json() {
        return output::json(j);
    }
    if let Some(cancel) = transition {
        outln!("{}", transition_line(j, cancel));
    }
    show_job(j);
    Ok(())
}

fn file_row(f: &JobFile) -> Vec<String> {
    let path =
        if f.path_escaped { format!("{} (escaped)", f.file_path) } else { f.file_path.clone() };
    vec![
        f.seq.to_string(),
        path,
        output::bytes(f.file_size),
        f.state.clone(),
        f.attempts.to_string(),
        output::opt(f.error.as_deref()),
    ]
}

pub(super) async fn jobs(ctx: &Ctx, cmd: JobsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        JobsCmd::List { state, host, plan, kind, tenant, page } => {
            let tenant = ctx.tenant(tenant).await?;
            let base =
                JobQuery { state, host_id: host, plan_id: plan, kind, limit: None, cursor: None };
            let base = &base;
            let list = collect(page.limit, page.cursor.clone(), page.all, |limit, cursor| {
                let q = JobQuery { limit, cursor, ..base.clone() };
                async move { c.list_jobs(tenant, &q).await }
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&JOB_HEADER, list.items.iter().map(job_row).collect());
                more_hint(list.next_cursor.as_deref());
            }
        }
        JobsCmd::Get { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_job(ctx, &c.get_job(tenant, id).await?, None)?;
        }
        JobsCmd::Files { id, page, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let files = pages(&page, |limit, cursor| async move {
                c.job_files(tenant, id, limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&files)?;
            } else {
                output::table(
                    &["SEQ", "PATH", "SIZE", "STATE", "ATTEMPTS", "ERROR"],
                    files.items.iter().map(file_row).collect(),
                );
                more_hint(files.next_cursor.as_deref());
            }
        }
        JobsCmd::Document { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            // The document is JSON in either output format.
            output::json(&c.job_document(tenant, id).await?)?;
        }
        JobsCmd::Cancel { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_job(ctx, &c.cancel_job(tenant, id).await?, Some(true))?;
        }
        JobsCmd::Retry { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_job(ctx, &c.retry_job(tenant, id).await?, Some(false))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn order_name(o: OrderBy) -> &'static str {
    match o {
        OrderBy::OldestAccess => "oldest_access",
        OrderBy::OldestModify => "oldest_modify",
        OrderBy::Largest => "largest",
    }
}

fn cap(v: Option<i64>, f: fn(i64) -> String) -> String {
    v.map_or_else(|| "none".to_owned(), f)
}

fn show_settings(s: &PlannerSettings) {
    output::fields(vec![
        ("safety window", format!("{} s", s.safety_window_seconds)),
        ("high watermark", format!("{}%", s.high_watermark_pct)),
        ("low watermark", format!("{}%", s.low_watermark_pct)),
        ("watermark order", order_name(s.watermark_order).to_owned()),
        ("max files per run", cap(s.max_files_per_run, |n| n.to_string())),
        ("max bytes per run", cap(s.max_bytes_per_run, output::bytes)),
        ("host max files per hour", cap(s.host_max_files_per_hour, |n| n.to_string())),
        ("host max bytes per hour", cap(s.host_max_bytes_per_hour, output::bytes)),
        ("link speed", format!("{}/s", output::bytes(s.link_bytes_per_second))),
        ("per-file overhead", format!("{} ms", s.per_file_overhead_ms)),
        ("plan after ingest", output::yes_no(s.plan_after_ingest)),
        ("retention after recall", format!("{} days", s.recall_retention_days)),
        (
            "tiering bandwidth",
            cap(s.tier_bandwidth_limit_bytes_per_second, |b| format!("{}/s", output::bytes(b))),
        ),
        (
            "recall bandwidth",
            cap(s.recall_bandwidth_limit_bytes_per_second, |b| format!("{}/s", output::bytes(b))),
        ),
        ("ruleset revision", s.ruleset_revision.to_string()),
    ]);
}

/// Applies the given flags to the current settings.
pub(super) fn apply(s: &mut PlannerSettings, a: &SetPlannerArgs) {
    if let Some(v) = a.safety_window_seconds {
        s.safety_window_seconds = v;
    }
    if let Some(v) = a.high_watermark_pct {
        s.high_watermark_pct = v;
    }
    if let Some(v) = a.low_watermark_pct {
        s.low_watermark_pct = v;
    }
    if let Some(v) = a.watermark_order.as_deref() {
        s.watermark_order = match v {
            "oldest_modify" => OrderBy::OldestModify,
            "largest" => OrderBy::Largest,
            _ => OrderBy::OldestAccess,
        };
    }
    if let Some(v) = a.max_files_per_run {
        s.max_files_per_run = v.0;
    }
    if let Some(v) = a.max_bytes_per_run {
        s.max_bytes_per_run = v.0;
    }
    if let Some(v) = a.host_max_files_per_hour {
        s.host_max_files_per_hour = v.0;
    }
    if let Some(v) = a.host_max_bytes_per_hour {
        s.host_max_bytes_per_hour = v.0;
    }
    if let Some(v) = a.link_bytes_per_second {
        s.link_bytes_per_second = v;
    }
    if let Some(v) = a.per_file_overhead_ms {
        s.per_file_overhead_ms = v;
    }
    if let Some(v) = a.plan_after_ingest {
        s.plan_after_ingest = v;
    }
    if let Some(v) = a.recall_retention_days {
        s.recall_retention_days = v;
    }
    if let Some(v) = a.tier_bandwidth_limit {
        s.tier_bandwidth_limit_bytes_per_second = v.0;
    }
    if let Some(v) = a.recall_bandwidth_limit {
        s.recall_bandwidth_limit_bytes_per_second = v.0;
    }
}

pub(super) async fn settings(ctx: &Ctx, cmd: PlannerSettingsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    let s = match cmd {
        PlannerSettingsCmd::Get { tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            c.get_planner_settings(tenant).await?
        }
        PlannerSettingsCmd::Set(a) => {
            let tenant = ctx.tenant(a.tenant).await?;
            let mut s = c.get_planner_settings(tenant).await?;
            apply(&mut s, &a);
            c.put_planner_settings(tenant, &s).await?
        }
    };
    if ctx.json() {
        output::json(&s)?;
    } else {
        show_settings(&s);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn stubs(ctx: &Ctx, cmd: StubsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        StubsCmd::List { host, path_prefix, state, tenant, page } => {
            let tenant = ctx.tenant(tenant).await?;
            let base = StubQuery { host_id: host, path_prefix, state, limit: None, cursor: None };
            let base = &base;
            let list = collect(page.limit, page.cursor.clone(), page.all, |limit, cursor| {
                let q = StubQuery { limit, cursor, ..base.clone() };
                async move { c.list_stubs(tenant, &q).await }
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(
                    &["PATH", "SIZE", "STATE", "TARGET", "SHA-256", "TIERED AT"],
                    list.items
                        .iter()
                        .map(|s| {
                            vec![
                                s.file_path.clone(),
                                output::bytes(s.file_size),
                                s.state.clone(),
                                s.target.clone().unwrap_or_default(),
                                s.sha256.chars().take(16).collect::<String>(),
                                s.tiered_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            ]
                        })
                        .collect(),
                );
                more_hint(list.next_cursor.as_deref());
            }
        }
        StubsCmd::Summary { tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let s = c.stub_summary(tenant).await?;
            if ctx.json() {
                output::json(&s)?;
            } else {
                println!(
                    "{} stubs, {} tiered, {} saved, {} in tier-2",
                    s.stubs,
                    output::bytes(s.bytes),
                    output::bytes(s.space_saved),
                    output::bytes(s.stored_bytes)
                );
                output::table(
                    &[
                        "HOST",
                        "STUBS",
                        "BYTES",
                        "SAVED",
                        "TIER-2",
                        "PENDING",
                        "FAILED",
                        "REHYDRATED",
                        "REPLACED",
                    ],
                    s.per_host
                        .iter()
                        .map(|h| {
                            vec![
                                h.host_id.to_string(),
                                h.stubs.to_string(),
                                output::bytes(h.bytes),
                                output::bytes(h.space_saved),
                                output::bytes(h.stored_bytes),
                                h.pending.to_string(),
                                h.failed.to_string(),
                                h.rehydrated.to_string(),
                                h.replaced.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn set_args(extra: &[&str]) -> Result<SetPlannerArgs, clap::Error> {
        let mut argv = vec!["altoctl", "planner-settings", "set"];
        argv.extend_from_slice(extra);
        crate::args::Cli::try_parse_from(argv).map(|cli| match cli.command {
            crate::args::Command::PlannerSettings(PlannerSettingsCmd::Set(a)) => *a,
            other => panic!("unexpected {other:?}"),
        })
    }

    fn defaults() -> PlannerSettings {
        PlannerSettings {
            safety_window_seconds: 3600,
            high_watermark_pct: 90.0,
            low_watermark_pct: 80.0,
            watermark_order: OrderBy::OldestAccess,
            max_files_per_run: Some(1000),
            max_bytes_per_run: None,
            host_max_files_per_hour: None,
            host_max_bytes_per_hour: None,
            link_bytes_per_second: 125_000_000,
            per_file_overhead_ms: 5,
            plan_after_ingest: true,
            ruleset_revision: 7,
            recall_retention_days: 30,
            tier_bandwidth_limit_bytes_per_second: None,
            recall_bandwidth_limit_bytes_per_second: None,
        }
    }

    #[test]
    fn set_changes_only_the_given_settings() {
        let mut s = defaults();
        let a = set_args(&[
            "--max-bytes-per-run",
            "1.5GB",
            "--max-files-per-run",
            "none",
            "--plan-after-ingest",
            "false",
            "--high-watermark-pct",
            "95",
            "--watermark-order",
            "largest",
        ])
        .expect("parses");
        apply(&mut s, &a);
        assert_eq!(s.max_bytes_per_run, Some(1_500_000_000));
        assert_eq!(s.max_files_per_run, None);
        assert!(!s.plan_after_ingest);
        assert_eq!(s.high_watermark_pct, 95.0);
        assert_eq!(s.watermark_order, OrderBy::Largest);
        assert_eq!(s.safety_window_seconds, 3600);
        assert_eq!(s.link_bytes_per_second, 125_000_000);
        assert_eq!(s.ruleset_revision, 7);
        assert_eq!(s.recall_retention_days, 30, "untouched unless given");
        let a = set_args(&["--recall-retention-days", "7"]).expect("parses");
        apply(&mut s, &a);
        assert_eq!(s.recall_retention_days, 7);
    }

    #[test]
    fn set_needs_a_change_and_good_values() {
        assert!(set_args(&[]).is_err());
        assert!(set_args(&["--plan-after-ingest", "maybe"]).is_err());
        assert!(set_args(&["--max-files-per-run", "0"]).is_err());
        let e = set_args(&["--max-bytes-per-run", "-1G"]).expect_err("negative");
        assert!(e.to_string().contains("cannot be negative"), "{e}");
        assert!(set_args(&["--link-bytes-per-second", "fast"]).is_err());
        assert!(set_args(&["--link-bytes-per-second", "125MB"]).is_ok());
    }
}
