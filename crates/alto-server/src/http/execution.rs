//! Tiering execution: agents claim their host's jobs, report per-file outcomes (the stub
//! registry records each object as pending before the agent touches the file, then stubbed)
//! and complete jobs; the stub registry is browsable per tenant.
//!
//! These endpoints are the agent link until the gRPC stream lands; their bodies are the
//! messages that stream will carry.

use std::collections::BTreeMap;

use alto_api_types::{
    CheckRefs, CheckedRefs, ClaimJobs, ClaimedJobs, CompleteJob, ErrorCode, ExecFile, ExecJob,
    ExecTarget, FileOutcome, FileResults, HostStubSummary, Job, JobProgress, Page, Recalled,
    ResultsAccepted, Stub, StubSummary,
};
use alto_db::execution as xdb;
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::audit;
use crate::auth::{Host, User};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

/// How long a claimed job stays leased without progress.
const LEASE_MINUTES: i64 = 10;

fn exec_job(j: &alto_db::jobs::JobDetail, files: Vec<xdb::ExecFile>) -> ApiResult<ExecJob> {
    let p = &j.payload;
    let t = &p["storage_target"];
    let uuid = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<Uuid>().ok());
    Ok(ExecJob {
        job_id: j.id,
        customer_id: j.customer_id,
        host_id: j.host_id.ok_or_else(ApiError::internal)?,
        rule_id: j.rule_id,
        priority: p["priority"].as_i64().unwrap_or(0) as i32,
        compression: serde_json::from_value(p["compression"].clone()).ok().flatten(),
        storage_target: ExecTarget {
            id: uuid(&t["id"]).unwrap_or_default(),
            name: t["name"].as_str().unwrap_or("default").to_owned(),
            kind: t["kind"].as_str().unwrap_or("directory").to_owned(),
            location: t["location"].as_str().unwrap_or_default().to_owned(),
            config: serde_json::Value::Object(Default::default()),
        },
        tiered_destination: p["tiered_destination"].as_str().unwrap_or_default().to_owned(),
        lease_expires_at: None,
        files: files
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
            .collect(),
    })
}

/// Leases the host's next queued tiering jobs to its agent.
#[utoipa::path(post, path = "/api/v1/agent/jobs/claim", tag = "agent", request_body = ClaimJobs,
    responses((status = 200, body = ClaimedJobs), (status = 401, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn claim(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<ClaimJobs>,
) -> ApiResult<Json<ClaimedJobs>> {
    let max = req.max_jobs.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(ApiError::validation("max_jobs must be 1 to 10"));
    }
    let lease = chrono::Duration::minutes(LEASE_MINUTES);
    let jobs = claim_jobs(&state, &host, max as u32, req.resume, lease).await?;
    Ok(Json(ClaimedJobs { jobs }))
}

/// Leases up to `max` of the host's next queued tiering jobs (with `resume`, also its running
/// ones) to it until now + `lease`, with the files still to do. Shared by the REST endpoint
/// and the agent link.
pub(crate) async fn claim_jobs(
    state: &AppState,
    host: &Host,
    max: u32,
    resume: bool,
    lease: chrono::Duration,
) -> ApiResult<Vec<ExecJob>> {
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let jobs =
        xdb::claim_for_host(&mut tx, host.host_id, i64::from(max), lease, resume, now).await?;
    let mut out = Vec::new();
    let targets = alto_db::storage::list_targets(&mut tx, host.customer_id.0).await?;
    for j in &jobs {
        let files = xdb::pending_files(&mut tx, j.id).await?;
        let mut e = exec_job(j, files)?;
        // The current settings of the target (the job names it; its credentials are never
        // copied into the job's payload, which the API shows).
        if let Some(t) = targets
            .iter()
            .find(|t| t.id == e.storage_target.id)
            .or_else(|| targets.iter().find(|t| t.name == e.storage_target.name))
        {
            e.storage_target.id = t.id;
            e.storage_target.kind = t.kind.clone();
            e.storage_target.location = t.location.clone();
            e.storage_target.config = t.config.clone();
        }
        e.lease_expires_at = Some(now + lease);
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

/// Extends a job's lease; says whether the job was cancelled.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/progress", tag = "agent",
    params(("job_id" = Uuid, Path)),
    responses((status = 200, body = JobProgress), (status = 404, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn progress(
    State(state): State<AppState>,
    host: Host,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobProgress>> {
    Ok(Json(extend_lease(&state, &host, id, chrono::Duration::minutes(LEASE_MINUTES)).await?))
}

/// Extends the lease of a running job of the host to now + `lease`; says whether it was
/// cancelled.
pub(crate) async fn extend_lease(
    state: &AppState,
    host: &Host,
    id: Uuid,
    lease: chrono::Duration,
) -> ApiResult<JobProgress> {
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let j = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if j.state != "running" {
        return Err(ApiError::new(ErrorCode::Conflict, format!("the job is {}", j.state)));
    }
    let until = now + lease;
    xdb::extend_lease(&mut tx, id, until, now).await?;
    tx.commit().await?;
    Ok(JobProgress { cancel: j.cancel_requested_at.is_some(), lease_expires_at: Some(until) })
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Records per-file outcomes. `staged` writes the registry entry (pending) before the agent
/// touches the file; `stubbed` requires it and marks the file stubbed.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/files", tag = "agent",
    params(("job_id" = Uuid, Path)), request_body = FileResults,
    responses((status = 200, body = ResultsAccepted), (status = 400, body = Err), (status = 404, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn results(
    State(state): State<AppState>,
    host: Host,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<FileResults>,
) -> ApiResult<Json<ResultsAccepted>> {
    Ok(Json(record_results(&state, &host, id, &req).await?))
}

/// Records per-file outcomes of a job leased to the host (see [`results`]).
pub(crate) async fn record_results(
    state: &AppState,
    host: &Host,
    id: Uuid,
    req: &FileResults,
) -> ApiResult<ResultsAccepted> {
    if req.results.is_empty() || req.results.len() > 1000 {
        return Err(ApiError::validation("1 to 1000 results per call"));
    }
    for r in &req.results {
        if matches!(r.outcome, FileOutcome::Staged | FileOutcome::Stubbed) {
            let ok = r.sha256.as_deref().is_some_and(valid_sha)
                && r.object_key.as_deref().is_some_and(|k| !k.is_empty() && k.len() <= 1024)
                && r.stored_size.is_some_and(|s| s >= 0);
            if !ok {
                return Err(ApiError::validation(format!(
                    "seq {}: staged and stubbed results carry sha256 (64 hex), object_key and stored_size",
                    r.seq
                )));
            }
        }
        if r.error.as_ref().is_some_and(|e| e.len() > 2000) {
            return Err(ApiError::validation("error messages are at most 2000 bytes"));
        }
    }
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let job = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if !matches!(job.state.as_str(), "running" | "dispatched") {
        return Err(ApiError::new(ErrorCode::Conflict, format!("the job is {}", job.state)));
    }
    let target = job.payload["storage_target"]["name"].as_str().unwrap_or("default").to_owned();
    let location = job.payload["tiered_destination"].as_str().unwrap_or_default().to_owned();
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
                        return Err(ApiError::new(
                            ErrorCode::Conflict,
                            format!("seq {}: the file is already a stub", r.seq),
                        ));
                    }
                    Some(s) => {
                        // A new attempt with other content: the old pending entry is void.
                        xdb::set_stub_state(&mut tx, s.id, "failed", Some("superseded"), now)
                            .await?;
                        insert(&mut tx, host, &f, r, &location, &target, id, now).await?;
                    }
                    None => insert(&mut tx, host, &f, r, &location, &target, id, now).await?,
                }
                *counts.entry("staged").or_default() += 1;
            }
            FileOutcome::Stubbed => {
                let sha = r.sha256.as_deref().unwrap_or_default();
                let Some(s) = live.filter(|s| s.sha256 == sha) else {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!(
                            "seq {}: no staged object with this hash; report `staged` first",
                            r.seq
                        ),
                    ));
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
                    bytes += f.file_size;
                }
                xdb::set_file_state(&mut tx, id, r.seq, "succeeded", None, now).await?;
                *counts.entry("stubbed").or_default() += 1;
            }
            FileOutcome::Skipped | FileOutcome::Failed => {
                let st = if r.outcome == FileOutcome::Skipped { "skipped" } else { "failed" };
                if let Some(s) = live.filter(|s| s.state == "pending") {
                    xdb::set_stub_state(
                        &mut tx,
                        s.id,
                        "failed",
                        r.error.as_deref().map(|e| agent_text(e, 2000)).as_deref(),
                        now,
                    )
                    .await?;
                }
                if f.state == "pending" {
                    xdb::set_file_state(
                        &mut tx,
                        id,
                        r.seq,
                        st,
                        r.error.as_deref().map(|e| agent_text(e, 2000)).as_deref(),
                        now,
                    )
                    .await?;
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
        state,
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

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut alto_db::Tx,
    host: &Host,
    f: &xdb::ExecFile,
    r: &alto_api_types::FileResult,
    location: &str,
    target: &str,
    job: Uuid,
    now: DateTime<Utc>,
) -> Result<(), alto_db::DbError> {
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
            stored_size: r.stored_size.unwrap_or_default(),
            job_id: job,
            now,
        },
    )
    .await
}

/// Ends a job the agent has worked through.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/complete", tag = "agent",
    params(("job_id" = Uuid, Path)), request_body = CompleteJob,
    responses((status = 200, body = Job), (status = 400, body = Err), (status = 404, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn complete(
    State(state): State<AppState>,
    host: Host,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CompleteJob>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(complete_job(&state, &host, id, &req).await?))
}

/// Ends a job leased to the host (see [`complete`]).
pub(crate) async fn complete_job(
    state: &AppState,
    host: &Host,
    id: Uuid,
    req: &CompleteJob,
) -> ApiResult<serde_json::Value> {
    if !matches!(req.state.as_str(), "succeeded" | "failed" | "cancelled") {
        return Err(ApiError::validation("state must be succeeded, failed or cancelled"));
    }
    // An agent's failure report must always be recordable (or its job could never be
    // queued again): its text is kept storable and bounded rather than refused.
    let clipped = CompleteJob {
        error: req.error.as_deref().map(|e| agent_text(e, MAX_JOB_ERROR)),
        ..req.clone()
    };
    let req = &clipped;
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let job = xdb::leased_job(&mut tx, id, host.host_id).await?;
    if matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
        // A resend after a lost answer.
        if job.state == req.state {
            tx.commit().await?;
            return Ok(serde_json::json!({ "id": id, "state": job.state }));
        }
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the job already ended ({})", job.state),
        ));
    }
    // Storage unavailable: the job is not the files' fault. Keep it (and its pending files)
    // queued with backoff while attempts remain, and raise an alert.
    let unavailable = req.state == "failed"
        && req.error.as_deref().is_some_and(|e| e.starts_with("storage unavailable"));
    if unavailable && job.attempts < job.max_attempts {
        let retry_at =
            now + chrono::Duration::seconds(60 * 2i64.pow(job.attempts.clamp(0, 6) as u32));
        alto_db::jobs::fail(
            &mut tx,
            id,
            req.error.as_deref().unwrap_or_default(),
            Some(retry_at),
            now,
        )
        .await?;
        let e = audit::entry(
            state,
            Some(host.customer_id),
            &host.actor(),
            "job.requeue",
            Some(("job", id.to_string())),
            "failure",
            serde_json::json!({ "error": req.error, "retry_at": retry_at }),
        );
        audit::record(&mut tx, &e).await?;
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "alert",
            "customer_id": host.customer_id.0, "kind": "storage_unavailable", "job_id": id,
            "host_id": host.host_id, "message": req.error, "retry_at": retry_at }),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("alto_tier_storage_unavailable_total").increment(1);
        return Ok(serde_json::json!({ "id": id, "state": "queued", "retry_at": retry_at }));
    }
    let done = xdb::finish(&mut tx, id, &req.state, req.error.as_deref(), now).await?;
    if let (Some(started), true) = (job.started_at, req.state == "succeeded") {
        let secs = (now - started).num_milliseconds() as f64 / 1000.0;
        if secs > 1.0 {
            xdb::observe_throughput(&mut tx, host.host_id, (job.total_bytes as f64 / secs) as i64)
                .await?;
        }
    }
    let e = audit::entry(
        state,
        Some(host.customer_id),
        &host.actor(),
        "job.complete",
        Some(("job", id.to_string())),
        if req.state == "succeeded" { "success" } else { "failure" },
        serde_json::json!({ "state": req.state, "error": req.error }),
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
    metrics::counter!("alto_tier_jobs_total", "state" => req.state.clone()).increment(1);
    Ok(serde_json::json!({ "id": id, "state": done.state }))
}

/// An agent brought a stub's content back (explicit recall).
#[utoipa::path(post, path = "/api/v1/agent/recalled", tag = "agent", request_body = Recalled,
    responses((status = 200, body = Object), (status = 404, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn recalled(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<Recalled>,
) -> ApiResult<Json<serde_json::Value>> {
    if req.path.len() > 8192 || req.path.contains('\0') || !valid_sha(&req.sha256) {
        return Err(ApiError::validation(
            "path (≤ 8192 bytes, no NUL) and sha256 (64 hex) required",
        ));
    }
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let s = xdb::live_stub(&mut tx, host.customer_id.0, host.host_id, &req.path, req.path_escaped)
        .await?
        .filter(|s| s.state == "stubbed" && s.sha256 == req.sha256)
        .ok_or_else(|| ApiError::not_found("stub"))?;
    xdb::set_stub_state(&mut tx, s.id, "rehydrated", None, now).await?;
    if let Some(f) = s.file_id {
        xdb::mark_inventory(&mut tx, f, false, None, None, now).await?;
    }
    let e = audit::entry(
        &state,
        Some(host.customer_id),
        &host.actor(),
        "stub.recall",
        Some(("stub", s.id.to_string())),
        "success",
        serde_json::json!({ "path": req.path, "sha256": req.sha256 }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    metrics::counter!("alto_recalls_total", "kind" => "explicit").increment(1);
    Ok(Json(serde_json::json!({})))
}

/// Which of the tier-2 references an agent found are still held by the registry; the rest
/// are garbage reconciliation may delete (after checking its own journal for puts in flight).
#[utoipa::path(post, path = "/api/v1/agent/stubs/check", tag = "agent", request_body = CheckRefs,
    responses((status = 200, body = CheckedRefs), (status = 400, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn check_refs(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<CheckRefs>,
) -> ApiResult<Json<CheckedRefs>> {
    if req.refs.len() > 10_000 {
        return Err(ApiError::validation("at most 10000 references per call"));
    }
    if req
        .refs
        .iter()
        .any(|r| !valid_sha(&r.sha256) || r.path.len() > 8192 || r.path.contains('\0'))
    {
        return Err(ApiError::validation(
            "each reference needs a path (≤ 8192 bytes) and a sha256 (64 hex)",
        ));
    }
    let paths: Vec<String> = req.refs.iter().map(|r| r.path.clone()).collect();
    let escaped: Vec<bool> = req.refs.iter().map(|r| r.path_escaped).collect();
    let shas: Vec<String> = req.refs.iter().map(|r| r.sha256.clone()).collect();
    let mut tx = state.db.begin(alto_db::TenantCtx::Tenant(host.customer_id)).await?;
    let live =
        xdb::live_refs(&mut tx, host.customer_id.0, host.host_id, &paths, &escaped, &shas).await?;
    tx.commit().await?;
    Ok(Json(CheckedRefs {
        states: live.into_iter().map(|l| if l { "live" } else { "unknown" }.to_owned()).collect(),
    }))
}

fn stub_api(s: xdb::StubRow) -> Stub {
    Stub {
        id: s.id,
        host_id: s.host_id,
        file_id: s.file_id,
        file_path: s.file_path,
        path_escaped: s.path_escaped,
        file_size: s.file_size,
        sha256: s.sha256,
        object_key: s.object_key,
        tiered_location: s.tiered_location,
        target: s.target_name,
        stored_size: s.stored_size,
        state: s.state,
        job_id: s.job_id,
        tiered_at: s.tiered_at,
        rehydrated_at: s.rehydrated_at,
        created_at: s.created_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StubsQuery {
    host_id: Option<Uuid>,
    path_prefix: Option<String>,
    /// `pending`, `stubbed`, `rehydrated`, `orphaned` or `failed`.
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The shared `(created_at, id)` cursor format (`extract::encode_cursor`).
fn encode_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    super::extract::encode_cursor(alto_db::Cursor { created_at: t, id })
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let c = super::extract::decode_cursor(s)?;
    Ok((c.created_at, c.id))
}

/// The stub registry: every object and the file it holds, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/stubs", tag = "jobs",
    params(("tenant_id" = Uuid, Path), StubsQuery),
    responses((status = 200, body = Page<Stub>), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<StubsQuery>,
) -> ApiResult<Json<Page<Stub>>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit must be 1 to 1000"));
    }
    if q.state
        .as_deref()
        .is_some_and(|s| !["pending", "stubbed", "rehydrated", "orphaned", "failed"].contains(&s))
    {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "unknown state"));
    }
    if q.path_prefix.as_ref().is_some_and(|p| p.len() > 4096 || p.contains('\0')) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "path_prefix is too long or has a NUL byte",
        ));
    }
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let f = xdb::StubFilter { host_id: q.host_id, path_prefix: q.path_prefix, state: q.state };
    let mut tx = state.db.begin(ctx).await?;
    let mut rows = xdb::list_stubs(&mut tx, t, &f, before, limit + 1).await?;
    tx.commit().await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor =
        if more { rows.last().map(|s| encode_cursor(s.created_at, s.id)) } else { None };
    Ok(Json(Page { items: rows.into_iter().map(stub_api).collect(), next_cursor }))
}

/// Totals of the stub registry, per host: stubs, bytes, space saved, tier-2 bytes.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/stubs/summary", tag = "jobs",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = StubSummary), (status = 404, body = Err)))]
pub(super) async fn summary(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<StubSummary>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = xdb::stub_summary(&mut tx, t).await?;
    tx.commit().await?;
    let mut per: BTreeMap<Uuid, HostStubSummary> = BTreeMap::new();
    for r in rows {
        let h = per.entry(r.host_id).or_insert(HostStubSummary {
            host_id: r.host_id,
            stubs: 0,
            bytes: 0,
            space_saved: 0,
            stored_bytes: 0,
            pending: 0,
            failed: 0,
            rehydrated: 0,
        });
        match r.state.as_str() {
            "stubbed" => {
                h.stubs += r.files;
                h.bytes = h.bytes.saturating_add(r.bytes);
                h.space_saved = h.space_saved.saturating_add(r.saved);
                h.stored_bytes = h.stored_bytes.saturating_add(r.stored_bytes);
            }
            "pending" => h.pending += r.files,
            "failed" => h.failed += r.files,
            "rehydrated" => h.rehydrated += r.files,
            _ => {}
        }
    }
    let per_host: Vec<HostStubSummary> = per.into_values().collect();
    Ok(Json(StubSummary {
        stubs: per_host.iter().map(|h| h.stubs).sum(),
        bytes: per_host.iter().fold(0, |a, h| a.saturating_add(h.bytes)),
        space_saved: per_host.iter().fold(0, |a, h| a.saturating_add(h.space_saved)),
        stored_bytes: per_host.iter().fold(0, |a, h| a.saturating_add(h.stored_bytes)),
        per_host,
    }))
}

/// The longest job error kept (agents may report whole command outputs).
const MAX_JOB_ERROR: usize = 4000;

/// Text an agent reported, made storable: NUL (which PostgreSQL text cannot hold) becomes
/// U+FFFD, and more than `max` bytes are cut on a character boundary, marked with `…`.
pub(crate) fn agent_text(s: &str, max: usize) -> String {
    let mut out = s.replace('\0', "\u{fffd}");
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}
