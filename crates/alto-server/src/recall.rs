//! Recall reports as domain operations, whichever way the agent sends them (REST
//! `POST /agent/recalled`, or a `Recall` request on the agent link): the stub registry and the
//! inventory are put right whatever state the file's entry was in, every recall is attributed
//! (audit trail and metrics: process, user, host, trigger, outcome, bytes, duration), failed
//! and denied recalls raise alerts, and the recall-storm detector counts recalls per
//! (host, executable) and (host, user) in PostgreSQL.
//!
//! The registry transitions a report makes (entry found by path and SHA-256, a live one
//! first):
//!
//! | outcome | entry was | entry becomes | inventory |
//! |---|---|---|---|
//! | `recalled` | `pending`, `stubbed`, `failed`, `orphaned`, `replaced` | `rehydrated` | resident, `recalled_at` now |
//! | `recalled` | `rehydrated` | (a resend: nothing) | |
//! | `replaced` | `pending`, `stubbed`, `failed`, `orphaned` | `replaced`, object kept until now + `recalls.replaced_retention` | resident |
//! | `replaced` | `replaced`, `rehydrated` | (a resend: nothing) | |
//! | `failed`, `denied` | `pending`, or `failed`/`orphaned` with no live entry | `stubbed` (the file is a stub) | stubbed |
//! | `failed`, `denied` | `stubbed` and the rest | unchanged | |
//! | any | no entry | nothing; answered `recorded: false`, audited | |
//!
//! **Must never:** answer "not found" for a file the registry knows, audit or count a resend
//! twice, release a replaced stub's object before its retention ends, or label a metric by
//! path, process id or user (unbounded cardinality).

use alto_api_types::{
    CreateRecall, OnAccessStatus, RecallCreated, RecallOutcome, RecallProcess, RecallRecorded,
    Recalled,
};
use alto_db::execution as xdb;
use alto_db::{DbError, Tx};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::audit;
use crate::exec_error::{agent_text, valid_sha, ExecError};
use crate::principal::Host;
use crate::state::AppState;

/// The longest recall error kept.
const MAX_RECALL_ERROR: usize = 2000;
/// The longest executable path or user name kept.
const MAX_NAME: usize = 4096;

/// A report's process, made storable (NUL replaced, lengths bounded).
fn clean_process(p: &RecallProcess) -> RecallProcess {
    RecallProcess {
        pid: p.pid,
        exe: p.exe.as_deref().map(|e| agent_text(e, MAX_NAME)),
        uid: p.uid,
        user: p.user.as_deref().map(|u| agent_text(u, MAX_NAME)),
    }
}

/// Checks a report before anything is written.
fn check(req: &Recalled) -> Result<(), ExecError> {
    if req.path.is_empty() || req.path.len() > 8192 || req.path.contains('\0') {
        return Err(ExecError::Invalid("path must be 1 to 8192 bytes without NUL".into()));
    }
    if !valid_sha(&req.sha256) {
        return Err(ExecError::Invalid("sha256 must be 64 lower-case hex digits".into()));
    }
    if i64::try_from(req.bytes).is_err() {
        return Err(ExecError::Invalid("bytes is out of range".into()));
    }
    if req.duration_ms.is_some_and(|d| d > 366 * 86_400_000) {
        return Err(ExecError::Invalid("duration_ms is out of range".into()));
    }
    Ok(())
}

/// An agent's on-access status (REST heartbeat or link), made storable: unknown states, more
/// than 256 file systems or a bad path are refused (the message names the field); free text
/// (`reason`, `error`, `fs_type`) is cut to its bound and NUL replaced rather than refused, so
/// a long kernel message never costs the host its heartbeat.
pub fn clean_on_access(s: &OnAccessStatus) -> Result<OnAccessStatus, String> {
    const STATES: [&str; 5] = ["active", "partial", "unsupported", "disabled", "error"];
    const FS_STATES: [&str; 4] =
        ["marked", "unsupported_filesystem", "unsupported_kernel", "error"];
    if !STATES.contains(&s.state.as_str()) {
        return Err(format!("on_access.state must be one of {}", STATES.join(", ")));
    }
    if s.filesystems.len() > 256 {
        return Err("on_access.filesystems: at most 256".into());
    }
    let mut out = s.clone();
    out.reason = s.reason.as_deref().map(|r| agent_text(r, 1024));
    for f in &mut out.filesystems {
        if f.path.is_empty() || f.path.len() > 4096 || f.path.contains('\0') {
            return Err("on_access.filesystems[].path must be 1 to 4096 bytes without NUL".into());
        }
        if !FS_STATES.contains(&f.state.as_str()) {
            return Err(format!(
                "on_access.filesystems[].state must be one of {}",
                FS_STATES.join(", ")
            ));
        }
        f.fs_type = f.fs_type.as_deref().map(|t| agent_text(t, 64));
        f.error = f.error.as_deref().map(|e| agent_text(e, 1024));
    }
    Ok(out)
}

/// What a report did to the registry.
struct Applied {
    recorded: bool,
    duplicate: bool,
    state: Option<String>,
    retain_until: Option<DateTime<Utc>>,
}

/// Applies one report to the file's registry entry and inventory row.
async fn apply(
    state: &AppState,
    tx: &mut Tx,
    host: &Host,
    req: &Recalled,
    s: &xdb::StubRow,
    now: DateTime<Utc>,
) -> Result<Applied, ExecError> {
    let cust = host.customer_id.0;
    let same = |recorded: bool, duplicate: bool| Applied {
        recorded,
        duplicate,
        state: Some(s.state.clone()),
        retain_until: s.retain_until,
    };
    match req.outcome {
        RecallOutcome::Recalled => {
            if s.state == "rehydrated" {
                return Ok(same(false, true));
            }
            // Another entry may be live for the path (other content, tiered since): leave it
            // and the inventory alone, record only this entry's end.
            let other_live = xdb::live_stub(tx, cust, host.host_id, &req.path, req.path_escaped)
                .await?
                .is_some_and(|l| l.id != s.id);
            xdb::set_stub_state(tx, s.id, "rehydrated", None, now).await?;
            if let (Some(f), false) = (s.file_id, other_live) {
                xdb::mark_resident(tx, cust, f, true, now).await?;
            }
            Ok(Applied {
                recorded: true,
                duplicate: false,
                state: Some("rehydrated".into()),
                retain_until: None,
            })
        }
        RecallOutcome::Replaced => {
            if matches!(s.state.as_str(), "replaced" | "rehydrated") {
                return Ok(same(false, true));
            }
            let keep = chrono::Duration::from_std(state.config.recalls.replaced_retention)
                .unwrap_or(chrono::Duration::days(30));
            let until = now + keep;
            let other_live = xdb::live_stub(tx, cust, host.host_id, &req.path, req.path_escaped)
                .await?
                .is_some_and(|l| l.id != s.id);
            xdb::replace_stub(tx, s.id, until, now).await?;
            if let (Some(f), false) = (s.file_id, other_live) {
                xdb::mark_resident(tx, cust, f, false, now).await?;
            }
            Ok(Applied {
                recorded: true,
                duplicate: false,
                state: Some("replaced".into()),
                retain_until: Some(until),
            })
        }
        RecallOutcome::Failed | RecallOutcome::Denied => {
            // The file is still a stub of this object: an entry an interrupted job left
            // `pending` (or `failed`) is in fact stubbed.
            let revive = match s.state.as_str() {
                "pending" => true,
                "failed" | "orphaned" => {
                    xdb::live_stub(tx, cust, host.host_id, &req.path, req.path_escaped)
                        .await?
                        .is_none()
                }
                _ => false,
            };
            if !revive {
                return Ok(same(false, false));
            }
            xdb::set_stub_state(tx, s.id, "stubbed", None, now).await?;
            if let Some(f) = s.file_id {
                xdb::mark_inventory(tx, f, true, Some(&s.object_key), Some(&s.sha256), now).await?;
            }
            Ok(Applied {
                recorded: true,
                duplicate: false,
                state: Some("stubbed".into()),
                retain_until: None,
            })
        }
    }
}

/// Records one recall report of the host's agent; see the module documentation for what it
/// does to the registry. Every report but a resend is audited (`stub.recall`), counted
/// (`alto_recalls_total{trigger,outcome}`, `alto_recall_bytes_total{trigger}`,
/// `alto_recall_duration_seconds{trigger}`) and fed to the storm detector; failed and denied
/// recalls also raise an alert event (`recall.failed`, `recall.denied`).
pub async fn recalled(
    state: &AppState,
    host: &Host,
    req: &Recalled,
) -> Result<RecallRecorded, ExecError> {
    check(req)?;
    let error = req.error.as_deref().map(|e| agent_text(e, MAX_RECALL_ERROR));
    let process = req.process.as_ref().map(clean_process);
    let (trigger, outcome) = (req.trigger.as_str(), req.outcome.as_str());
    let now = state.now();
    let cust = host.customer_id.0;
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let entry =
        xdb::recall_entry(&mut tx, cust, host.host_id, &req.path, req.path_escaped, &req.sha256)
            .await?;
    let (applied, stub_id, previous) = match &entry {
        Some(s) => {
            (apply(state, &mut tx, host, req, s, now).await?, Some(s.id), Some(s.state.clone()))
        }
        None => (
            Applied { recorded: false, duplicate: false, state: None, retain_until: None },
            None,
            None,
        ),
    };
    let answer = RecallRecorded {
        recorded: applied.recorded,
        duplicate: applied.duplicate,
        stub_id,
        previous_state: previous.clone(),
        state: applied.state.clone(),
        retain_until: applied.retain_until,
    };
    if applied.duplicate {
        // A resend after a lost answer: already audited and counted.
        tx.commit().await?;
        return Ok(answer);
    }
    let host_name = alto_db::hosts::name(&mut tx, cust, host.host_id).await?;
    let failure = matches!(req.outcome, RecallOutcome::Failed | RecallOutcome::Denied);
    let detail = json!({
        "path": req.path,
        "path_escaped": req.path_escaped,
        "sha256": req.sha256,
        "trigger": trigger,
        "outcome": outcome,
        "error": error,
        "process": process,
        "host_id": host.host_id,
        "host": host_name,
        "bytes": req.bytes,
        "duration_ms": req.duration_ms,
        "registry": if entry.is_some() { "known" } else { "unknown" },
        "previous_state": previous,
        "state": applied.state,
        "retain_until": applied.retain_until,
    });
    let e = audit::entry(
        now,
        Some(host.customer_id),
        &host.actor(),
        "stub.recall",
        Some(match stub_id {
            Some(id) => ("stub", id.to_string()),
            None => ("host", host.host_id.to_string()),
        }),
        if failure { "failure" } else { "success" },
        detail,
    );
    audit::record(&mut tx, &e).await?;
    if failure {
        crate::events::publish(
            &mut tx,
            &json!({ "type": "alert", "kind": format!("recall.{outcome}"),
                "customer_id": cust, "host_id": host.host_id, "host": host_name,
                "path": req.path, "sha256": req.sha256, "trigger": trigger, "error": error,
                "process": process, "stub_id": stub_id, "at": now }),
        )
        .await?;
    }
    let storms = if matches!(req.outcome, RecallOutcome::Recalled | RecallOutcome::Failed) {
        detect_storm(state, &mut tx, host, host_name.as_deref(), process.as_ref(), now).await?
    } else {
        0
    };
    tx.commit().await?;
    metrics::counter!("alto_recalls_total", "trigger" => trigger, "outcome" => outcome)
        .increment(1);
    if req.outcome == RecallOutcome::Recalled {
        metrics::counter!("alto_recall_bytes_total", "trigger" => trigger).increment(req.bytes);
    }
    if let Some(ms) = req.duration_ms {
        metrics::histogram!("alto_recall_duration_seconds", "trigger" => trigger)
            .record(ms as f64 / 1000.0);
    }
    if storms > 0 {
        metrics::counter!("alto_recall_storms_total").increment(storms);
    }
    Ok(answer)
}

/// Applies a recall job's `recalled` result for one file to its registry entry and inventory
/// row, exactly as a report of trigger `job` would (see the module table). Returns whether
/// the registry changed (`false` for a resend or an unknown entry). The caller audits and
/// counts the job's results per batch.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_job_result(
    state: &AppState,
    tx: &mut Tx,
    host: &Host,
    path: &str,
    path_escaped: bool,
    sha256: &str,
    bytes: u64,
    now: DateTime<Utc>,
) -> Result<bool, ExecError> {
    let Some(s) =
        xdb::recall_entry(tx, host.customer_id.0, host.host_id, path, path_escaped, sha256).await?
    else {
        return Ok(false);
    };
    let req = Recalled {
        path: path.to_owned(),
        path_escaped,
        sha256: sha256.to_owned(),
        trigger: alto_api_types::RecallTrigger::Job,
        outcome: RecallOutcome::Recalled,
        error: None,
        process: None,
        bytes,
        duration_ms: None,
    };
    Ok(apply(state, tx, host, &req, &s, now).await?.recorded)
}

/// The longest path a recall request or schedule names, and how many paths it may name.
const MAX_PATH: usize = 4096;
const MAX_PATHS: usize = 100;
/// Files per recall job, and the most files one request may recall.
pub const RECALL_JOB_FILES: i64 = 1000;
pub const MAX_RECALL_FILES: i64 = 1_000_000;

/// Checks and normalises the paths of a recall request or schedule: absolute, no NUL, no
/// `.`/`..` component, without a trailing `/` (except the root), and without paths inside
/// another one of the list (the tree already holds them).
pub fn normalise_paths(paths: &[String]) -> Result<Vec<String>, String> {
    if paths.is_empty() || paths.len() > MAX_PATHS {
        return Err(format!("paths: 1 to {MAX_PATHS} paths"));
    }
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if !p.starts_with('/') || p.len() > MAX_PATH || p.contains('\0') {
            return Err(format!(
                "paths: {p:?} must be an absolute path of at most {MAX_PATH} bytes without NUL"
            ));
        }
        let trimmed = p.trim_end_matches('/');
        let n = if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() };
        if n.split('/').any(|c| c == "." || c == "..") || n.contains("//") {
            return Err(format!("paths: {p:?} must not contain `.`, `..` or empty components"));
        }
        out.push(n);
    }
    out.sort();
    out.dedup();
    let under =
        |p: &str, q: &str| q == "/" || p.strip_prefix(q).is_some_and(|r| r.starts_with('/'));
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && under(p, q)));
    Ok(out)
}

/// Who asks for a recall.
pub struct RecallOrigin<'a> {
    pub trigger: alto_api_types::RecallJobTrigger,
    pub requested_by: Option<&'a str>,
    pub schedule_id: Option<Uuid>,
}

/// Queues recall jobs (≤ [`RECALL_JOB_FILES`] files each, dispatched before any tiering job)
/// for the host's stubs a request selects, in the caller's transaction (tenant context);
/// a dry run only counts. The host (and the rule, if named) must be the tenant's (else
/// `NotFound`); more than `max_files` selected is refused and queues nothing. Audited
/// (`recall.request`) and published (`recall_requested`) when it queued anything.
pub async fn request(
    tx: &mut Tx,
    customer: alto_model::CustomerId,
    req: &CreateRecall,
    origin: &RecallOrigin<'_>,
    actor: &audit::Actor,
    now: DateTime<Utc>,
) -> Result<RecallCreated, ExecError> {
    let paths = normalise_paths(&req.paths).map_err(ExecError::Invalid)?;
    let max = req.max_files.unwrap_or(MAX_RECALL_FILES);
    if !(1..=MAX_RECALL_FILES).contains(&max) {
        return Err(ExecError::Invalid(format!("max_files must be 1 to {MAX_RECALL_FILES}")));
    }
    let cust = customer.0;
    alto_db::hosts::get(tx, cust, req.host_id).await.map_err(|e| match e {
        DbError::NotFound(_) => ExecError::NotFound("host"),
        e => e.into(),
    })?;
    if let Some(r) = req.rule_id {
        let rule = alto_db::rules::get(tx, r).await.map_err(|e| match e {
            DbError::NotFound(_) => ExecError::NotFound("rule"),
            e => e.into(),
        })?;
        if rule.customer_id != cust {
            return Err(ExecError::NotFound("rule"));
        }
    }
    let sel = alto_db::recalls::Selection {
        customer_id: cust,
        host_id: req.host_id,
        paths: &paths,
        rule_id: req.rule_id,
    };
    let (files, bytes) = alto_db::recalls::count(tx, &sel, max).await?;
    if files > max {
        return Err(ExecError::Invalid(format!(
            "more than {max} stubs match; narrow the paths or raise max_files (at most {MAX_RECALL_FILES})"
        )));
    }
    let request_id = Uuid::now_v7();
    let mut answer = RecallCreated {
        request_id,
        host_id: req.host_id,
        files,
        bytes,
        jobs: Vec::new(),
        dry_run: req.dry_run,
    };
    if req.dry_run || files == 0 {
        return Ok(answer);
    }
    let n_jobs = (files + RECALL_JOB_FILES - 1) / RECALL_JOB_FILES;
    let ids: Vec<Uuid> = (0..n_jobs).map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            alto_api_types::JobPayload::Recall(alto_api_types::RecallPayload {
                version: alto_api_types::JOB_CONTRACT_VERSION,
                job_id: *id,
                customer_id: cust,
                host_id: req.host_id,
                trigger: origin.trigger,
                request_id,
                requested_by: origin.requested_by.map(str::to_owned),
                schedule_id: origin.schedule_id,
                created_at: now,
            })
            .to_json()
        })
        .collect();
    let written = alto_db::recalls::insert_jobs(
        tx,
        &sel,
        &alto_db::recalls::NewRecallJobs {
            job_ids: &ids,
            payloads: &payloads,
            priority: origin.trigger.priority(),
            files_per_job: RECALL_JOB_FILES,
            now,
        },
    )
    .await?;
    answer.jobs = written.iter().map(|w| w.0).collect();
    answer.files = written.iter().map(|w| i64::from(w.1)).sum();
    answer.bytes = written.iter().map(|w| w.2).sum();
    let e = audit::entry(
        now,
        Some(customer),
        actor,
        "recall.request",
        Some(("host", req.host_id.to_string())),
        "success",
        json!({ "request_id": request_id, "trigger": origin.trigger.as_str(),
            "paths": paths, "rule_id": req.rule_id, "files": answer.files,
            "bytes": answer.bytes, "jobs": answer.jobs, "schedule_id": origin.schedule_id }),
    );
    audit::record(tx, &e).await?;
    crate::events::publish(
        tx,
        &json!({ "type": "recall_requested", "customer_id": cust, "host_id": req.host_id,
            "request_id": request_id, "trigger": origin.trigger.as_str(),
            "files": answer.files, "bytes": answer.bytes, "jobs": answer.jobs }),
    )
    .await?;
    metrics::counter!("alto_recall_requests_total", "trigger" => origin.trigger.as_str())
        .increment(1);
    Ok(answer)
}

/// Runs the scheduled restoration rules that are due (any tenant; one replica takes each,
/// `FOR UPDATE SKIP LOCKED`): each queues its recall jobs as a `scheduled` recall (priority
/// below manual recalls, above tiering) and moves to its next firing. A run that cannot
/// queue (too many stubs, host gone) is audited as a failure and tried at the next firing.
/// Returns how many schedules ran.
pub async fn run_due_schedules(state: &AppState) -> Result<usize, ExecError> {
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Platform).await?;
    let due = alto_db::recalls::due_schedules(&mut tx, now, 20).await?;
    let mut queued = false;
    let ran = due.len();
    for mut sch in due {
        let req = CreateRecall {
            host_id: sch.host_id,
            paths: sch.paths.clone(),
            rule_id: sch.rule_id,
            max_files: None,
            dry_run: false,
        };
        let origin = RecallOrigin {
            trigger: alto_api_types::RecallJobTrigger::Scheduled,
            requested_by: Some(&sch.name),
            schedule_id: Some(sch.id),
        };
        let customer = alto_model::CustomerId(sch.customer_id);
        let actor = audit::Actor::system();
        match request(&mut tx, customer, &req, &origin, &actor, now).await {
            Ok(made) => {
                queued |= !made.jobs.is_empty();
                sch.last_request_id = Some(made.request_id);
                sch.last_files = Some(made.files);
            }
            Err(e @ (ExecError::Invalid(_) | ExecError::NotFound(_))) => {
                tracing::warn!(schedule = %sch.id, error = %e, "scheduled recall not queued");
                sch.last_request_id = None;
                sch.last_files = None;
                let a = audit::entry(
                    now,
                    Some(customer),
                    &actor,
                    "recall.request",
                    Some(("recall_schedule", sch.id.to_string())),
                    "failure",
                    json!({ "schedule_id": sch.id, "error": e.to_string() }),
                );
                audit::record(&mut tx, &a).await?;
            }
            Err(e) => return Err(e),
        }
        let cron = alto_rules::schedule::parse(&sch.cron).ok();
        sch.next_run_at = cron.and_then(|c| alto_rules::schedule::next_after(&c, now));
        sch.last_run_at = Some(now);
        sch.updated_at = now;
        alto_db::recalls::update_schedule(&mut tx, &sch).await?;
    }
    tx.commit().await?;
    if queued {
        state.jobs_wakeup.notify_one();
    }
    Ok(ran)
}

/// The subjects a recall counts for: the process's executable and its user (by name, else
/// by uid). Explicit and job recalls carry no process and count for none.
fn subjects(p: Option<&RecallProcess>) -> Vec<(&'static str, String)> {
    let Some(p) = p else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(exe) = p.exe.as_deref().filter(|e| !e.is_empty()) {
        out.push(("exe", exe.to_owned()));
    }
    match (p.user.as_deref().filter(|u| !u.is_empty()), p.uid) {
        (Some(u), _) => out.push(("user", u.to_owned())),
        (None, Some(uid)) => out.push(("user", format!("uid:{uid}"))),
        (None, None) => {}
    }
    out
}

/// The window `now` falls in (aligned to the Unix epoch), for a window of `secs` seconds.
fn window_start(now: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let t = now.timestamp();
    let start = t - t.rem_euclid(secs);
    DateTime::from_timestamp(start, 0).unwrap_or(now)
}

/// Recalls within the sliding window ending now, estimated from the current fixed window's
/// count and the previous one's, weighted by how much of it the sliding window still covers.
pub fn sliding_estimate(current: i64, previous: i64, elapsed_fraction: f64) -> f64 {
    current as f64 + previous as f64 * (1.0 - elapsed_fraction.clamp(0.0, 1.0))
}

/// Counts one recall for each subject of the process and raises a `recall.storm` alert (and
/// audit entry) for a subject over the threshold that has not been flagged within the window.
/// Returns how many alerts it raised.
async fn detect_storm(
    state: &AppState,
    tx: &mut Tx,
    host: &Host,
    host_name: Option<&str>,
    process: Option<&RecallProcess>,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let cfg = &state.config.recalls;
    let secs = cfg.storm_window.as_secs().max(1) as i64;
    let window = chrono::Duration::seconds(secs);
    let start = window_start(now, secs);
    let elapsed = (now - start).num_milliseconds() as f64 / (secs as f64 * 1000.0);
    let threshold = cfg.storm_threshold as f64;
    let mut raised = 0;
    for (kind, subject) in subjects(process) {
        let (cur, prev, flagged) = xdb::count_recall(
            tx,
            host.customer_id.0,
            host.host_id,
            kind,
            &subject,
            start,
            start - window,
        )
        .await?;
        let estimate = sliding_estimate(cur, prev, elapsed);
        if estimate <= threshold || flagged.is_some_and(|f| now - f < window) {
            continue;
        }
        xdb::flag_storm(tx, host.customer_id.0, host.host_id, kind, &subject, start, now).await?;
        let recalls = estimate.round() as u64;
        let e = audit::entry(
            now,
            Some(host.customer_id),
            &audit::Actor::system(),
            "recall.storm",
            Some(("host", host.host_id.to_string())),
            "failure",
            json!({ "subject_kind": kind, "subject": subject, "host_id": host.host_id,
                "host": host_name, "recalls": recalls, "threshold": cfg.storm_threshold,
                "window_seconds": secs }),
        );
        audit::record(tx, &e).await?;
        crate::events::publish(
            tx,
            &json!({ "type": "alert", "kind": "recall.storm", "customer_id": host.customer_id.0,
                "host_id": host.host_id, "host": host_name, "subject_kind": kind,
                "subject": subject, "recalls": recalls, "threshold": cfg.storm_threshold,
                "window_seconds": secs, "at": now }),
        )
        .await?;
        raised += 1;
    }
    Ok(raised)
}

/// Drops the storm detector's windows that can no longer count (older than two windows).
pub async fn expire_rate_windows(state: &AppState) -> Result<u64, DbError> {
    let secs = state.config.recalls.storm_window.as_secs().max(1) as i64;
    let now = state.now();
    let keep_from = window_start(now, secs) - chrono::Duration::seconds(secs);
    let mut tx = state.db.begin(alto_db::TenantCtx::Platform).await?;
    let n = xdb::expire_recall_rate(&mut tx, keep_from).await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alto_api_types::{OnAccessFs, RecallTrigger};

    #[test]
    fn on_access_statuses_are_checked() {
        let mut s = OnAccessStatus {
            state: "partial".into(),
            reason: None,
            survives_restart: false,
            filesystems: vec![OnAccessFs {
                path: "/srv".into(),
                fs_type: Some("tmpfs".into()),
                state: "unsupported_filesystem".into(),
                error: None,
            }],
        };
        s.filesystems[0].error = Some("x".repeat(5000));
        let cleaned = clean_on_access(&s).unwrap();
        assert!(cleaned.filesystems[0].error.as_ref().unwrap().len() <= 1024 + 3, "cut, kept");
        s.filesystems[0].state = "bogus".into();
        assert!(clean_on_access(&s).unwrap_err().contains("filesystems[].state"));
        s.filesystems.clear();
        s.state = "on".into();
        assert!(clean_on_access(&s).unwrap_err().contains("on_access.state"));
    }

    #[test]
    fn windows_are_aligned_and_the_estimate_slides() {
        let t = DateTime::from_timestamp(1_000_000_123, 0).unwrap();
        assert_eq!(window_start(t, 600).timestamp(), 1_000_000_123 - 1_000_000_123 % 600);
        assert_eq!(sliding_estimate(10, 100, 0.0), 110.0);
        assert_eq!(sliding_estimate(10, 100, 0.75), 35.0);
        assert_eq!(sliding_estimate(10, 100, 1.5), 10.0);
    }

    #[test]
    fn subjects_are_the_executable_and_the_user() {
        let p = RecallProcess {
            pid: 7,
            exe: Some("/usr/bin/clamscan".into()),
            uid: Some(1001),
            user: None,
        };
        assert_eq!(
            subjects(Some(&p)),
            vec![("exe", "/usr/bin/clamscan".into()), ("user", "uid:1001".into())]
        );
        assert!(subjects(None).is_empty());
    }

    #[test]
    fn bad_reports_are_refused_before_anything_is_written() {
        let ok = Recalled {
            path: "/srv/a".into(),
            path_escaped: false,
            sha256: "a".repeat(64),
            trigger: RecallTrigger::OnAccess,
            outcome: RecallOutcome::Recalled,
            error: None,
            process: None,
            bytes: 1,
            duration_ms: Some(3),
        };
        assert!(check(&ok).is_ok());
        let mut bad = ok.clone();
        bad.sha256 = "A".repeat(64);
        assert!(matches!(check(&bad), Err(ExecError::Invalid(_))));
        let mut bad = ok.clone();
        bad.path = "/a\0b".into();
        assert!(check(&bad).is_err());
        let mut bad = ok;
        bad.bytes = u64::MAX;
        assert!(check(&bad).is_err());
    }
}
