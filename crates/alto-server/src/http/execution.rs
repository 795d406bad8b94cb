//! The REST transport of job execution (`/api/v1/agent/jobs/…`, `/agent/recalled`,
//! `/agent/stubs/check`): each handler reads the contract's type, calls the domain operation
//! in `crate::execution` and renders its answer or error; plus the stub registry's pages for
//! people (`/tenants/{id}/stubs`).

use std::collections::BTreeMap;

use alto_api_types::{
    CheckRefs, CheckedRefs, ClaimJobs, ClaimedJobs, CompleteJob, ErrorCode, FileResults,
    HostStubSummary, JobCompleted, JobProgress, Page, ProgressReport, RecallRecorded, Recalled,
    ResultsAccepted, Stub, StubSummary,
};
use alto_db::execution as xdb;
use alto_model::{CustomerId, Permission};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::page::{self, Created, Pager};
use crate::auth::{Host, User};
use crate::execution::{self as exec, REST_LEASE};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

/// Leases the host's next queued jobs to its agent.
#[utoipa::path(post, path = "/api/v1/agent/jobs/claim", tag = "agent", request_body = ClaimJobs,
    responses((status = 200, body = ClaimedJobs), (status = 400, body = Err), (status = 401, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn claim(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<ClaimJobs>,
) -> ApiResult<Json<ClaimedJobs>> {
    let max = req.max_jobs.unwrap_or(1);
    let max = u32::try_from(max).map_err(|_| ApiError::validation("max_jobs must be 1 to 10"))?;
    let jobs = exec::claim(&state, &host, max, req.resume, REST_LEASE).await?;
    Ok(Json(ClaimedJobs { jobs }))
}

/// Extends a job's lease and reports how far it got (the body may be empty); says whether
/// the job was cancelled.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/progress", tag = "agent",
    params(("job_id" = Uuid, Path)), request_body(content = Option<ProgressReport>),
    responses((status = 200, body = JobProgress), (status = 400, body = Err), (status = 404, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn progress(
    State(state): State<AppState>,
    host: Host,
    ApiPath(id): ApiPath<Uuid>,
    body: Bytes,
) -> ApiResult<Json<JobProgress>> {
    let report: ProgressReport = if body.iter().all(u8::is_ascii_whitespace) {
        ProgressReport::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")))?
    };
    Ok(Json(exec::progress(&state, &host, id, &report, REST_LEASE).await?))
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
    Ok(Json(exec::record_results(&state, &host, id, &req).await?))
}

/// Ends a job the agent has worked through.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/complete", tag = "agent",
    params(("job_id" = Uuid, Path)), request_body = CompleteJob,
    responses((status = 200, body = JobCompleted), (status = 400, body = Err), (status = 404, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn complete(
    State(state): State<AppState>,
    host: Host,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CompleteJob>,
) -> ApiResult<Json<JobCompleted>> {
    Ok(Json(exec::complete(&state, &host, id, &req).await?))
}

/// An agent's report of one recall (on access, explicit or by a job): the content came back
/// (`recalled`), could not (`failed`, `denied`), or the stub had been truncated or overwritten
/// (`replaced`). Never answers "not found" for a file the registry knows in any state; a
/// path it does not know is answered `recorded: false` (and audited). Resends are harmless.
#[utoipa::path(post, path = "/api/v1/agent/recalled", tag = "agent", request_body = Recalled,
    responses((status = 200, body = RecallRecorded), (status = 400, body = Err), (status = 401, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn recalled(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<Recalled>,
) -> ApiResult<Json<RecallRecorded>> {
    Ok(Json(crate::recall::recalled(&state, &host, &req).await?))
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
    Ok(Json(exec::check_refs(&state, &host, &req).await?))
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
        retain_until: s.retain_until,
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
    /// Items per page, 1–1000 (default 100).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
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
    let p = Pager::<page::Stubs>::new(q.limit, q.cursor.as_deref())?;
    if q.state.as_deref().is_some_and(|s| {
        !["pending", "stubbed", "rehydrated", "orphaned", "failed", "replaced"].contains(&s)
    }) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "unknown state"));
    }
    if q.path_prefix.as_ref().is_some_and(|p| p.len() > 4096 || p.contains('\0')) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "path_prefix is too long or has a NUL byte",
        ));
    }
    let f = xdb::StubFilter { host_id: q.host_id, path_prefix: q.path_prefix, state: q.state };
    let mut tx = state.db.begin(ctx).await?;
    let rows = xdb::list_stubs(&mut tx, t, &f, p.after.map(Into::into), p.fetch()).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |s| Created::of(s.created_at, s.id), stub_api)))
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
            replaced: 0,
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
            "replaced" => h.replaced += r.files,
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
