//! `recall …` and `recall-schedules …`.

use std::process::ExitCode;
use std::time::Duration;

use alto_api_types::{CreateRecall, CreateRecallSchedule, RecallSchedule, UpdateRecallSchedule};
use anyhow::Result;

use super::Ctx;
use crate::args::{RecallArgs, RecallSchedulesCmd};
use crate::output;

pub(super) async fn recall(ctx: &Ctx, a: RecallArgs) -> Result<ExitCode> {
    let c = &ctx.client;
    let tenant = ctx.tenant(a.tenant).await?;
    let req = CreateRecall {
        host_id: a.host,
        paths: a.paths,
        rule_id: a.rule,
        max_files: a.max_files,
        dry_run: a.dry_run,
    };
    let made = c.create_recall(tenant, &req).await?;
    if !a.wait || made.jobs.is_empty() {
        if ctx.json() {
            output::json(&made)?;
        } else {
            let verb = if made.dry_run { "would recall" } else { "recall queued:" };
            outln!(
                "{verb} {} file(s), {} in {} job(s) (request {})",
                made.files,
                output::bytes(made.bytes),
                made.jobs.len(),
                made.request_id
            );
            for j in &made.jobs {
                outln!("  job {j}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Wait: poll the jobs until each ended, with one progress line per change.
    let bar = (!ctx.json()).then(|| {
        let b = indicatif::ProgressBar::new(made.files.max(0) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut jobs = Vec::new();
    loop {
        jobs.clear();
        for id in &made.jobs {
            jobs.push(c.get_job(tenant, *id).await?);
        }
        let count = |state: &str| -> u64 {
            jobs.iter()
                .flat_map(|j| j.file_states.iter())
                .filter(|s| s.key == state)
                .map(|s| s.files)
                .sum()
        };
        let done = count("succeeded") + count("failed") + count("skipped") + count("cancelled");
        if let Some(b) = &bar {
            b.set_position(done);
            b.set_message(format!("{} failed", count("failed")));
        }
        if jobs.iter().all(|j| j.finished_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(b) = &bar {
        b.finish();
    }
    let failed_files: u64 = jobs
        .iter()
        .flat_map(|j| j.file_states.iter())
        .filter(|s| s.key == "failed")
        .map(|s| s.files)
        .sum();
    let bad_jobs = jobs.iter().filter(|j| j.state != "succeeded").count();
    if ctx.json() {
        output::json(&serde_json::json!({ "request": made, "jobs": jobs }))?;
    } else {
        for j in &jobs {
            outln!("job {} {} ({} files)", j.id, j.state, j.file_count);
        }
    }
    Ok(if failed_files > 0 || bad_jobs > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn schedule_row(s: &RecallSchedule) -> Vec<String> {
    vec![
        s.id.to_string(),
        s.name.clone(),
        s.host_id.to_string(),
        s.cron.clone(),
        output::yes_no(s.enabled),
        output::opt_ts(s.next_run_at),
        output::opt_ts(s.last_run_at),
        output::opt(s.last_files),
        output::list(&s.paths),
    ]
}

const HEADER: [&str; 9] =
    ["ID", "NAME", "HOST", "CRON", "ENABLED", "NEXT RUN", "LAST RUN", "LAST FILES", "PATHS"];

fn show(ctx: &Ctx, s: &RecallSchedule) -> Result<()> {
    if ctx.json() {
        return output::json(s);
    }
    output::table(&HEADER, vec![schedule_row(s)]);
    Ok(())
}

pub(super) async fn schedules(ctx: &Ctx, cmd: RecallSchedulesCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        RecallSchedulesCmd::List { tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let all = c.list_recall_schedules(tenant).await?;
            if ctx.json() {
                output::json(&all)?;
            } else {
                output::table(&HEADER, all.iter().map(schedule_row).collect());
            }
        }
        RecallSchedulesCmd::Create { name, host, cron, rule, disabled, paths, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let req = CreateRecallSchedule {
                name,
                host_id: host,
                paths,
                rule_id: rule,
                cron,
                enabled: !disabled,
            };
            show(ctx, &c.create_recall_schedule(tenant, &req).await?)?;
        }
        RecallSchedulesCmd::Update { id, cron, enable, disable, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let enabled = if enable {
                Some(true)
            } else if disable {
                Some(false)
            } else {
                None
            };
            let req = UpdateRecallSchedule { paths: None, cron, enabled };
            show(ctx, &c.update_recall_schedule(tenant, id, &req).await?)?;
        }
        RecallSchedulesCmd::Delete { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let s = c.delete_recall_schedule(tenant, id).await?;
            if ctx.json() {
                output::json(&s)?;
            } else {
                outln!("deleted recall schedule {} ({})", s.name, s.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
