//! Job execution as agents drive it, whichever way they connect: claiming a host's jobs,
//! extending leases, recording per-file results (the stub registry records each object as
//! `pending` before the agent touches the file, then `stubbed`), completing jobs and the
//! tier-2 reference check (recall reports are `crate::recall`).
//!
//! These are domain operations on the job contract (`alto_api_types::jobs`): the REST
//! handlers (`http/execution.rs`) and the agent link (`link/session.rs`, `link/dispatcher.rs`)
//! are transports that call them and render [`ExecError`] each in their own way.
//!
//! **Must never:** accept a result for a job that is not leased to the calling host, mark a
//! file stubbed without its `staged` entry (same hash) recorded first, or hand out a job whose
//! stored payload does not fit the contract (such a job fails, with its reason).

use std::collections::BTreeMap;

use alto_api_types::{
    CheckRefs, CheckedRefs, CompleteJob, ExecFile, ExecJob, ExecTarget, FileOutcome, FileResult,
    FileResults, JobCompleted, JobEnd, JobPayload, JobProgress, JobWork, ProgressReport,
    RecallWork, ResultsAccepted, TierWork, JOB_CONTRACT_VERSION,
};
use alto_db::execution as xdb;
use alto_db::DbError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit;
use crate::exec_error::valid_sha;
pub use crate::exec_error::{agent_text, ExecError};
use crate::principal::Host;
use crate::state::AppState;

/// How long a job claimed over REST stays leased without progress.
pub const REST_LEASE: chrono::Duration = chrono::Duration::minutes(10);

/// At most this many results per report.
pub const MAX_RESULTS: usize = 1000;

/// The longest job error kept (agents may report whole command outputs).
const MAX_JOB_ERROR: usize = 4000;

/// The longest per-file error kept.
const MAX_FILE_ERROR: usize = 2000;

fn invalid(m: impl Into<String>) -> ExecError {
    ExecError::Invalid(m.into())
}

fn conflict(m: impl Into<String>) -> ExecError {
    ExecError::Conflict(m.into())
}

/// A storage target as the agent opens it, with its current settings; a target removed since
/// planning keeps the planned kind and location (and no settings).
fn exec_target(
    id: Uuid,
    name: &str,
    kind: alto_api_types::TargetKind,
    location: &str,
    targets: &[alto_db::storage::TargetRow],
) -> Result<ExecTarget, String> {
    let mut target = ExecTarget {
        id,
        name: name.to_owned(),
        kind,
        location: location.to_owned(),
        config: serde_json::Value::Object(Default::default()),
    };
    if let Some(t) =
        targets.iter().find(|t| t.id == id).or_else(|| targets.iter().find(|t| t.name == name))
    {
        target.id = t.id;
        target.kind = t.kind.parse().map_err(|e| format!("storage target {}: {e}", t.name))?;
        target.location = t.location.clone();
        target.config = t.config.clone();
    }
    Ok(target)
}

/// The offer for a claimed job: its stored payload with the targets' current settings (the
/// payload names a target; credentials are never copied into it, since the API shows
/// payloads). A recall job carries the targets its stubs were tiered to (`recall_targets`).
fn offer(
    j: &alto_db::jobs::JobDetail,
    payload: &JobPayload,
    targets: &[alto_db::storage::TargetRow],
    recall_targets: &[String],
    files: Vec<xdb::ExecFile>,
    lease_until: DateTime<Utc>,
    bandwidth: Option<u64>,
) -> Result<ExecJob, String> {
    let host_id = j.host_id.ok_or("the job has no host")?;
    let files = files
        .into_iter()
        .map(|f| ExecFile {
            seq: f.seq,
            file_id: f.file_id,
            file_path: f.file_path,
            path_escaped: f.path_escaped,
            file_size: f.file_size,
            last_modified: f.last_modified,
            inode: f.inode,
            state: f.state,
        })
        .collect();
    let work = match payload {
        JobPayload::Tier(p) => {
            let planned = &p.storage_target;
            JobWork::Tier(TierWork {
                rule_id: j.rule_id,
                priority: p.priority,
                compression: p.compression,
                storage_target: exec_target(
                    planned.id,
                    &planned.name,
                    planned.kind,
                    &planned.location,
                    targets,
                )?,
                tiered_destination: p.tiered_destination.clone(),
                files,
            })
        }
        JobPayload::Recall(p) => JobWork::Recall(RecallWork {
            trigger: p.trigger,
            storage_targets: targets
                .iter()
                .filter(|t| recall_targets.contains(&t.name))
                .map(|t| {
                    exec_target(t.id, &t.name, alto_api_types::TargetKind::Directory, "", targets)
                })
                .collect::<Result<_, _>>()?,
            files,
        }),
    };
    Ok(ExecJob {
        version: JOB_CONTRACT_VERSION,
        job_id: j.id,
        customer_id: j.customer_id,
        host_id,
        lease_expires_at: Some(lease_until),
        bandwidth_bytes_per_second: bandwidth,
        work,
    })
}

/// A job's own bandwidth: its equal share of the tenant's limit for its kind among the
/// tenant's running jobs of that kind (this one included). The host's limit for the kind
/// travels beside the offer ([`host_bandwidth`]).
async fn job_bandwidth(
    tx: &mut alto_db::Tx,
    host: &Host,
    kind: &str,
) -> Result<Option<u64>, DbError> {
    let (_, tenant, running) =
        alto_db::recalls::bandwidth(tx, host.customer_id.0, host.host_id, kind).await?;
    Ok(tenant.map(|t| (t.max(1) as u64) / (running.max(1) as u64)).map(|b| b.max(1)))
}

/// The host's bandwidth limit for jobs of `kind` (`tier`: uploads, `recall`: downloads), 0
/// for none: every job of that kind the agent runs shares it.
pub async fn host_bandwidth(state: &AppState, host: &Host, kind: &str) -> Result<u64, DbError> {
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let (h, _, _) =
        alto_db::recalls::bandwidth(&mut tx, host.customer_id.0, host.host_id, kind).await?;
    tx.commit().await?;
    Ok(h.unwrap_or(0).max(0) as u64)
}

/// Leases up to `max` (1–10) of the host's next queued jobs (with `resume`, also its running
/// ones) to it until now + `lease`, with the files still to do. A job whose stored payload
/// does not fit the contract is failed with the reason (and audited), never handed out.
pub async fn claim(
    state: &AppState,
    host: &Host,
    max: u32,
    resume: bool,
    lease: chrono::Duration,
) -> Result<Vec<ExecJob>, ExecError> {
    if !(1..=10).contains(&max) {
        return Err(invalid("max_jobs must be 1 to 10"));
    }
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let jobs =
        xdb::claim_for_host(&mut tx, host.host_id, i64::from(max), lease, resume, now).await?;
    let mut out = Vec::new();
    let targets = alto_db::storage::list_targets(&mut tx, host.customer_id.0).await?;
    for j in &jobs {
        let made = match JobPayload::parse(&j.kind, &j.payload) {
            Ok(p) => {
                let files = xdb::pending_files(&mut tx, j.id).await?;
                let recall_targets = if p.kind() == "recall" {
                    alto_db::recalls::job_target_names(&mut tx, host.customer_id.0, j.id).await?
                } else {
                    Vec::new()
                };
                let bw = job_bandwidth(&mut tx, host, &j.kind).await?;
                offer(j, &p, &targets, &recall_targets, files, now + lease, bw)
            }
            Err(e) => Err(e.to_string()),
        };
        let e = match made {
            Ok(e) => e,
            Err(why) => {
                let why = format!("the job does not fit the job contract: {why}");
                tracing::error!(job = %j.id, error = %why, "job failed instead of dispatched");
                xdb::finish(&mut tx, j.id, "failed", Some(&why), now).await?;
                let a = audit::entry(
                    now,
                    Some(host.customer_id),
                    &audit::Actor::system(),
                    "job.complete",
                    Some(("job", j.id.to_string())),
                    "failure",
                    serde_json::json!({ "state": "failed", "error": why }),
                );
                audit::record(&mut tx, &a).await?;
                crate::events::publish(
                    &mut tx,
                    &serde_json::json!({ "type": "job_state",
                    "customer_id": host.customer_id.0, "job_id": j.id, "state": "failed",
                    "previous": "queued" }),
                )
                .await?;
                metrics::counter!("alto_tier_jobs_total", "state" => "failed").increment(1);
                continue;
            }
        };
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "job_state",
            "customer_id": host.customer_id.0, "job_id": j.id, "state": "running",
            "previous": "queued" }),
        )
        .await?;
        out.push(e);
    }
    tx.commit().await?;
    if !out.is_empty() {
        metrics::counter!("alto_tier_jobs_dispatched_total").increment(out.len() as u64);
    }
    Ok(out)
}

/// Extends the lease of a running job of the host to now + `lease` and publishes how far it
/// got; says whether it was cancelled.
pub async fn progress(
    state: &AppState,
    host: &Host,
    id: Uuid,
    report: &ProgressReport,
    lease: chrono::Duration,
) -> Result<JobProgress, ExecError> {
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let j = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if j.state != "running" {
        return Err(conflict(format!("the job is {}", j.state)));
    }
    let until = now + lease;
    xdb::extend_lease(&mut tx, id, until, now).await?;
    if report.files_done > 0 || report.bytes_done > 0 {
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "job_progress",
            "customer_id": host.customer_id.0, "job_id": id,
            "host_id": host.host_id, "files_done": report.files_done,
            "bytes_done": report.bytes_done }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(JobProgress { cancel: j.cancel_requested_at.is_some(), lease_expires_at: Some(until) })
}

/// Checks a batch of results before anything is written.
fn check_results(req: &FileResults) -> Result<(), ExecError> {
    if req.results.is_empty() || req.results.len() > MAX_RESULTS {
        return Err(invalid(format!("1 to {MAX_RESULTS} results per call")));
    }
    for r in &req.results {
        if matches!(r.outcome, FileOutcome::Staged | FileOutcome::Stubbed) {
            let ok = r.sha256.as_deref().is_some_and(valid_sha)
                && r.object_key.as_deref().is_some_and(|k| !k.is_empty() && k.len() <= 1024)
                && r.stored_size.is_some_and(|s| i64::try_from(s).is_ok());
            if !ok {
                return Err(invalid(format!(
                    "seq {}: staged and stubbed results carry sha256 (64 hex), object_key and stored_size",
                    r.seq
                )));
            }
        }
        if r.outcome == FileOutcome::Recalled
            && !(r.sha256.as_deref().is_some_and(valid_sha)
                && r.stored_size.is_some_and(|s| i64::try_from(s).is_ok()))
        {
            return Err(invalid(format!(
                "seq {}: recalled results carry sha256 (64 hex) and stored_size",
                r.seq
            )));
        }
        if r.error.as_ref().is_some_and(|e| e.len() > MAX_FILE_ERROR) {
            return Err(invalid(format!("error messages are at most {MAX_FILE_ERROR} bytes")));
        }
    }
    Ok(())
}

/// Records per-file outcomes of a job leased to the host. `staged` writes the registry
/// entry (pending) before the agent touches the file; `stubbed` requires it (same hash) and
/// marks the file stubbed, in the inventory too. Each report is audited and published.
pub async fn record_results(
    state: &AppState,
    host: &Host,
    id: Uuid,
    req: &FileResults,
) -> Result<ResultsAccepted, ExecError> {
    check_results(req)?;
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let job = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if !matches!(job.state.as_str(), "running" | "dispatched") {
        return Err(conflict(format!("the job is {}", job.state)));
    }
    let payload = JobPayload::parse(&job.kind, &job.payload)
        .map_err(|e| conflict(format!("the job does not fit the job contract: {e}")))?;
    let p = match &payload {
        JobPayload::Tier(p) => p,
        JobPayload::Recall(_) => return record_recall_results(state, tx, host, id, req, now).await,
    };
    let target = p.storage_target.name.as_str();
    let location = p.tiered_destination.as_str();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bytes = 0i64;
    for r in &req.results {
        let f = xdb::job_file(&mut tx, id, r.seq).await?;
        let live =
            xdb::live_stub(&mut tx, host.customer_id.0, host.host_id, &f.file_path, f.path_escaped)
                .await?;
        match r.outcome {
            FileOutcome::Staged => {
                let sha = r.sha256.as_deref().unwrap_or_default();
                match live {
                    Some(s) if s.sha256 == sha && s.state == "pending" => {} // a resend
                    Some(s) if s.state == "stubbed" => {
                        return Err(conflict(format!("seq {}: the file is already a stub", r.seq)));
                    }
                    Some(s) => {
                        // A new attempt with other content: the old pending entry is void.
                        xdb::set_stub_state(&mut tx, s.id, "failed", Some("superseded"), now)
                            .await?;
                        insert(&mut tx, host, &f, r, location, target, id, now).await?;
                    }
                    None => insert(&mut tx, host, &f, r, location, target, id, now).await?,
                }
                *counts.entry("staged").or_default() += 1;
            }
            FileOutcome::Stubbed => {
                let sha = r.sha256.as_deref().unwrap_or_default();
                let Some(s) = live.filter(|s| s.sha256 == sha) else {
                    return Err(conflict(format!(
                        "seq {}: no staged object with this hash; report `staged` first",
                        r.seq
                    )));
                };
                if s.state == "pending" {
                    xdb::set_stub_state(&mut tx, s.id, "stubbed", None, now).await?;
                    xdb::mark_inventory(
                        &mut tx,
                        f.file_id,
                        true,
                        Some(&s.object_key),
                        Some(sha),
                        now,
                    )
                    .await?;
                    bytes = bytes.saturating_add(f.file_size);
                }
                xdb::set_file_state(&mut tx, id, r.seq, "succeeded", None, now).await?;
                *counts.entry("stubbed").or_default() += 1;
            }
            FileOutcome::Recalled => {
                return Err(invalid(format!(
                    "seq {}: `recalled` is the outcome of a recall job, this is a tier job",
                    r.seq
                )));
            }
            FileOutcome::Skipped | FileOutcome::Failed => {
                let st = r.outcome.as_str();
                let error = r.error.as_deref().map(|e| agent_text(e, MAX_FILE_ERROR));
                if let Some(s) = live.filter(|s| s.state == "pending") {
                    xdb::set_stub_state(&mut tx, s.id, "failed", error.as_deref(), now).await?;
                }
                if f.state == "pending" {
                    xdb::set_file_state(&mut tx, id, r.seq, st, error.as_deref(), now).await?;
                }
                *counts.entry(st).or_default() += 1;
            }
        }
    }
    for (k, n) in &counts {
        metrics::counter!("alto_tier_files_total", "outcome" => *k).increment(*n);
    }
    metrics::counter!("alto_tier_bytes_total").increment(bytes.max(0) as u64);
    let e = audit::entry(
        now,
        Some(host.customer_id),
        &host.actor(),
        "tier.files",
        Some(("job", id.to_string())),
        "success",
        serde_json::json!({ "outcomes": counts, "stubbed_bytes": bytes }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "job_progress",
        "customer_id": host.customer_id.0, "job_id": id, "outcomes": counts,
        "stubbed_bytes": bytes }),
    )
    .await?;
    tx.commit().await?;
    Ok(ResultsAccepted { accepted: req.results.len() as u64 })
}

/// Records per-file outcomes of a recall job: `recalled` puts the file's registry entry and
/// inventory row right (as a recall report of trigger `job` would, whatever state the entry
/// was in) and the job's file `succeeded`; `skipped` and `failed` are the file's end. One
/// audit entry (`recall.files`) and one event per batch.
async fn record_recall_results(
    state: &AppState,
    mut tx: alto_db::Tx,
    host: &Host,
    id: Uuid,
    req: &FileResults,
    now: DateTime<Utc>,
) -> Result<ResultsAccepted, ExecError> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bytes = 0u64;
    let mut unknown = 0u64;
    for r in &req.results {
        let f = xdb::job_file(&mut tx, id, r.seq).await?;
        match r.outcome {
            FileOutcome::Recalled => {
                let sha = r.sha256.as_deref().unwrap_or_default();
                let n = r.stored_size.unwrap_or_default();
                let changed = crate::recall::apply_job_result(
                    state,
                    &mut tx,
                    host,
                    &f.file_path,
                    f.path_escaped,
                    sha,
                    n,
                    now,
                )
                .await?;
                if f.state == "pending" {
                    xdb::set_file_state(&mut tx, id, r.seq, "succeeded", None, now).await?;
                    bytes = bytes.saturating_add(n);
                    if !changed {
                        unknown += 1;
                    }
                }
            }
            FileOutcome::Skipped | FileOutcome::Failed => {
                let error = r.error.as_deref().map(|e| agent_text(e, MAX_FILE_ERROR));
                if f.state == "pending" {
                    xdb::set_file_state(
                        &mut tx,
                        id,
                        r.seq,
                        r.outcome.as_str(),
                        error.as_deref(),
                        now,
                    )
                    .await?;
                }
            }
            FileOutcome::Staged | FileOutcome::Stubbed => {
                return Err(invalid(format!(
                    "seq {}: `{}` is the outcome of a tier job, this is a recall job",
                    r.seq,
                    r.outcome.as_str()
                )));
            }
        }
        *counts.entry(r.outcome.as_str()).or_default() += 1;
    }
    for (k, n) in &counts {
        metrics::counter!("alto_recalls_total", "trigger" => "job", "outcome" => *k).increment(*n);
    }
    metrics::counter!("alto_recall_bytes_total", "trigger" => "job").increment(bytes);
    let e = audit::entry(
        now,
        Some(host.customer_id),
        &host.actor(),
        "recall.files",
        Some(("job", id.to_string())),
        "success",
        serde_json::json!({ "outcomes": counts, "recalled_bytes": bytes,
            "registry_unchanged": unknown }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "job_progress",
        "customer_id": host.customer_id.0, "job_id": id, "outcomes": counts,
        "recalled_bytes": bytes }),
    )
    .await?;
    tx.commit().await?;
    Ok(ResultsAccepted { accepted: req.results.len() as u64 })
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut alto_db::Tx,
    host: &Host,
    f: &xdb::ExecFile,
    r: &FileResult,
    location: &str,
    target: &str,
    job: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    xdb::insert_pending(
        tx,
        &xdb::NewStub {
            id: Uuid::now_v7(),
            customer_id: host.customer_id.0,
            host_id: host.host_id,
            file: f,
            sha256: r.sha256.as_deref().unwrap_or_default(),
            object_key: r.object_key.as_deref().unwrap_or_default(),
            tiered_location: location,
            target_name: target,
            // Checked by `check_results` to fit.
            stored_size: r.stored_size.and_then(|s| i64::try_from(s).ok()).unwrap_or_default(),
            job_id: job,
            now,
        },
    )
    .await
}

/// Ends a job leased to the host. A resend of the same end is answered again; a failure
/// that says `storage unavailable` requeues the job with backoff (while attempts remain) and
/// raises an alert instead of failing it.
pub async fn complete(
    state: &AppState,
    host: &Host,
    id: Uuid,
    req: &CompleteJob,
) -> Result<JobCompleted, ExecError> {
    // An agent's failure report must always be recordable (or its job could never be
    // queued again): its text is kept storable and bounded rather than refused.
    let error = req.error.as_deref().map(|e| agent_text(e, MAX_JOB_ERROR));
    let end = req.state.as_str();
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let job = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
        // A resend after a lost answer.
        if job.state == end {
            tx.commit().await?;
            return Ok(JobCompleted { id, state: job.state, retry_at: None });
        }
        return Err(conflict(format!("the job already ended ({})", job.state)));
    }
    // Storage unavailable: the job is not the files' fault. Keep it (and its pending files)
    // queued with backoff while attempts remain, and raise an alert.
    let unavailable = req.state == JobEnd::Failed
        && error.as_deref().is_some_and(|e| e.starts_with("storage unavailable"));
    if unavailable && job.attempts < job.max_attempts {
        let retry_at =
            now + chrono::Duration::seconds(60 * 2i64.pow(job.attempts.clamp(0, 6) as u32));
        alto_db::jobs::fail(&mut tx, id, error.as_deref().unwrap_or_default(), Some(retry_at), now)
            .await?;
        let e = audit::entry(
            now,
            Some(host.customer_id),
            &host.actor(),
            "job.requeue",
            Some(("job", id.to_string())),
            "failure",
            serde_json::json!({ "error": error, "retry_at": retry_at }),
        );
        audit::record(&mut tx, &e).await?;
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "alert",
            "customer_id": host.customer_id.0, "kind": "storage_unavailable", "job_id": id,
            "host_id": host.host_id, "message": error, "retry_at": retry_at }),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("alto_tier_storage_unavailable_total").increment(1);
        state.link.job_ended(host.host_id, id);
        return Ok(JobCompleted { id, state: "queued".into(), retry_at: Some(retry_at) });
    }
    let done = xdb::finish(&mut tx, id, end, error.as_deref(), now).await?;
    if let (Some(started), JobEnd::Succeeded, "tier") =
        (job.started_at, req.state, job.kind.as_str())
    {
        let secs = (now - started).num_milliseconds() as f64 / 1000.0;
        if secs > 1.0 {
            xdb::observe_throughput(&mut tx, host.host_id, (job.total_bytes as f64 / secs) as i64)
                .await?;
        }
    }
    let e = audit::entry(
        now,
        Some(host.customer_id),
        &host.actor(),
        "job.complete",
        Some(("job", id.to_string())),
        if req.state == JobEnd::Succeeded { "success" } else { "failure" },
        serde_json::json!({ "state": end, "error": error }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "job_state",
        "customer_id": host.customer_id.0, "job_id": id, "state": done.state,
        "previous": job.state }),
    )
    .await?;
    tx.commit().await?;
    if job.kind == "recall" {
        metrics::counter!("alto_recall_jobs_total", "state" => end).increment(1);
    } else {
        metrics::counter!("alto_tier_jobs_total", "state" => end).increment(1);
    }
    state.link.job_ended(host.host_id, id);
    Ok(JobCompleted { id, state: done.state, retry_at: None })
}

/// Which of the tier-2 references an agent found are still held by the registry (`live`: a
/// pending or stubbed entry, or a replaced stub's within its retention); the rest (`unknown`) are garbage reconciliation may delete (after checking its own journal
/// for puts in flight).
pub async fn check_refs(
    state: &AppState,
    host: &Host,
    req: &CheckRefs,
) -> Result<CheckedRefs, ExecError> {
    if req.refs.len() > 10_000 {
        return Err(invalid("at most 10000 references per call"));
    }
    if req
        .refs
        .iter()
        .any(|r| !valid_sha(&r.sha256) || r.path.len() > 8192 || r.path.contains('\0'))
    {
        return Err(invalid("each reference needs a path (≤ 8192 bytes) and a sha256 (64 hex)"));
    }
    let paths: Vec<String> = req.refs.iter().map(|r| r.path.clone()).collect();
    let escaped: Vec<bool> = req.refs.iter().map(|r| r.path_escaped).collect();
    let shas: Vec<String> = req.refs.iter().map(|r| r.sha256.clone()).collect();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let now = state.now();
    let live =
        xdb::live_refs(&mut tx, host.customer_id.0, host.host_id, &paths, &escaped, &shas, now)
            .await?;
    tx.commit().await?;
    Ok(CheckedRefs {
        states: live.into_iter().map(|l| if l { "live" } else { "unknown" }.to_owned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_text_is_storable_and_bounded() {
        assert_eq!(agent_text("a\0b", 10), "a\u{fffd}b");
        let long = "é".repeat(10);
        let cut = agent_text(&long, 5);
        assert!(cut.ends_with('…') && cut.len() <= 5 + '…'.len_utf8());
    }

    #[test]
    fn results_are_checked_before_anything_is_written() {
        let ok = FileResult::stored(0, FileOutcome::Staged, "a".repeat(64), "k".into(), 1);
        assert!(check_results(&FileResults { results: vec![ok.clone()] }).is_ok());
        assert!(check_results(&FileResults { results: vec![] }).is_err());
        let mut bad_sha = ok.clone();
        bad_sha.sha256 = Some("A".repeat(64));
        assert!(check_results(&FileResults { results: vec![bad_sha] }).is_err());
        let mut huge = ok;
        huge.stored_size = Some(u64::MAX);
        assert!(matches!(
            check_results(&FileResults { results: vec![huge] }),
            Err(ExecError::Invalid(_))
        ));
    }
}
