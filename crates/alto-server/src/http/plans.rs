//! Planning runs, tiering jobs (list, inspect, cancel, retry), path tags and host groups
//! (storage targets: `storage.rs`).

use alto_api_types::{
    CountBytes, CreateTag, ErrorCode, Host, Job, JobEstimates, JobFile, Page, PathTagEntry, Plan,
    PlanStats, RunPlan, SetHostGroups,
};
use alto_db::{jobs, planner as pdb, storage};
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::page::{self, Created, Pager, Seq};
use crate::audit;
use crate::auth::User;
use crate::services::planner::{self, PlanError, RunRequest, Trigger};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

fn plan_api(p: pdb::PlanRow) -> Plan {
    Plan {
        id: p.id,
        tenant_id: p.customer_id,
        trigger: p.trigger,
        requested_by: p.requested_by,
        host_ids: p.host_ids,
        rule_id: p.rule_id,
        ruleset_revision: p.ruleset_revision,
        rule_versions: serde_json::from_value(p.rule_versions).unwrap_or_default(),
        held: p.held,
        stats: serde_json::from_value::<PlanStats>(p.stats).unwrap_or_default(),
        created_at: p.created_at,
    }
}

/// Runs the planner now and answers with the plan it made (its jobs are queued, or held
/// as `planned` with `hold`).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/plans", tag = "jobs",
    params(("tenant_id" = Uuid, Path)), request_body = RunPlan,
    responses((status = 201, body = Plan), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn run(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RunPlan>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    if req.max_files.is_some_and(|v| v < 1) || req.max_bytes.is_some_and(|v| v < 1) {
        return Err(ApiError::validation("max_files and max_bytes must be at least 1"));
    }
    if req.host_ids.len() > 10_000 || req.rule_ids.len() > 1000 {
        return Err(ApiError::validation("too many host or rule ids"));
    }
    let mut r = RunRequest::new(t, Trigger::Manual);
    r.requested_by = Some(by.username.clone());
    r.host_ids = req.host_ids;
    r.rule_ids = req.rule_ids;
    r.max_files = req.max_files;
    r.max_bytes = req.max_bytes;
    r.hold = req.hold;
    let out = planner::run(&state, &r).await.map_err(|e| match e {
        PlanError::Db(d) => ApiError::from(d),
        PlanError::Invalid(m) => ApiError::validation(m),
    })?;
    let mut tx = state.db.begin(ctx).await?;
    let p = pdb::get_plan(&mut tx, out.plan_id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(plan_api(p))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Items per page, 1–1000 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Planning runs, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/plans", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ListQuery),
    responses((status = 200, body = Page<Plan>), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Plan>>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let p = Pager::<page::Plans>::new(q.limit, q.cursor.as_deref())?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = pdb::list_plans(&mut tx, t, p.fetch(), p.after.map(Into::into)).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Created::of(r.created_at, r.id), plan_api)))
}

/// One planning run.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/plans/{plan_id}", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("plan_id" = Uuid, Path)),
    responses((status = 200, body = Plan), (status = 404, body = Err)))]
pub(super) async fn get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Plan>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let p = pdb::get_plan(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(plan_api(p)))
}

/// Queues the jobs of a held plan.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/plans/{plan_id}/release", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("plan_id" = Uuid, Path)),
    responses((status = 200, body = Plan), (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn release(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Plan>> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let p = pdb::get_plan(&mut tx, id).await?;
    if !p.held {
        return Err(ApiError::new(ErrorCode::Conflict, "the plan is not held"));
    }
    let n = pdb::release_plan(&mut tx, id, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "plan.release",
        Some(("plan", id.to_string())),
        "success",
        serde_json::json!({ "jobs_queued": n }),
    );
    audit::record(&mut tx, &e).await?;
    let p = pdb::get_plan(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(plan_api(p)))
}

fn job_api(j: jobs::JobDetail, file_states: Vec<CountBytes>) -> Job {
    Job {
        id: j.id,
        tenant_id: j.customer_id,
        host_id: j.host_id,
        kind: j.kind,
        state: j.state,
        priority: j.priority,
        plan_id: j.plan_id,
        rule_id: j.rule_id,
        rule_version: j.rule_version,
        target: j.target_name,
        file_count: j.file_count,
        total_bytes: j.total_bytes,
        estimates: j.estimates.and_then(|e| serde_json::from_value::<JobEstimates>(e).ok()),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        last_error: j.last_error,
        cancel_requested_at: j.cancel_requested_at,
        created_at: j.created_at,
        updated_at: j.updated_at,
        dispatched_at: j.dispatched_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        file_states,
    }
}

const STATES: [&str; 7] =
    ["planned", "queued", "dispatched", "running", "succeeded", "failed", "cancelled"];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    /// `planned`, `queued`, `dispatched`, `running`, `succeeded`, `failed` or `cancelled`.
    state: Option<String>,
    host_id: Option<Uuid>,
    plan_id: Option<Uuid>,
    /// `tier` (default), `plan`, `ingest`, or `all`.
    kind: Option<String>,
    /// Items per page, 1–1000 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Jobs, newest first (tiering jobs unless `kind` says otherwise).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/jobs", tag = "jobs",
    params(("tenant_id" = Uuid, Path), JobsQuery),
    responses((status = 200, body = Page<Job>), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn jobs_list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> ApiResult<Json<Page<Job>>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let p = Pager::<page::Jobs>::new(q.limit, q.cursor.as_deref())?;
    if q.state.as_deref().is_some_and(|s| !STATES.contains(&s)) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("state must be one of {STATES:?}"),
        ));
    }
    let kind = match q.kind.as_deref() {
        None | Some("tier") => Some("tier".to_owned()),
        Some("all") => None,
        Some(k @ ("plan" | "ingest" | "recall")) => Some(k.to_owned()),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "kind must be tier, recall, plan, ingest or all",
            ))
        }
    };
    let filter = jobs::JobFilter { kind, state: q.state, host_id: q.host_id, plan_id: q.plan_id };
    let mut tx = state.db.begin(ctx).await?;
    let rows = jobs::list(&mut tx, t, &filter, p.after.map(Into::into), p.fetch()).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |j| Created::of(j.created_at, j.id), |j| job_api(j, Vec::new()))))
}

async fn job_with_counts(tx: &mut alto_db::Tx, id: Uuid) -> ApiResult<Job> {
    let j = jobs::get(tx, id).await?;
    let counts = jobs::file_counts(tx, id)
        .await?
        .into_iter()
        .map(|(k, n, b)| CountBytes { key: k, files: n.max(0) as u64, bytes: b })
        .collect();
    Ok(job_api(j, counts))
}

/// One job with per-state file counts.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/jobs/{job_id}", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = Err)))]
pub(super) async fn job_get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Job>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let j = job_with_counts(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(j))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct FilesQuery {
    /// Items per page, 1–1000 (default 1000).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Deprecated: files after this sequence number (use `cursor`); not with `cursor`.
    #[deprecated(note = "use cursor")]
    after: Option<i32>,
}

/// A job's files with their per-file results, in `seq` order.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/jobs/{job_id}/files", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path), FilesQuery),
    responses((status = 200, body = Page<JobFile>), (status = 400, body = Err), (status = 404, body = Err)))]
#[allow(deprecated)] // reads the deprecated `after` alias
pub(super) async fn job_files(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> ApiResult<Json<Page<JobFile>>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let p = Pager::<page::JobFiles>::new(q.limit, q.cursor.as_deref())?;
    let after = match (p.after, q.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "give cursor or the deprecated after, not both",
            ))
        }
        (Some(k), None) => i32::try_from(k.seq)
            .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "invalid cursor"))?,
        (None, Some(a)) => a,
        (None, None) => -1,
    };
    let mut tx = state.db.begin(ctx).await?;
    jobs::get(&mut tx, id).await?;
    let rows = jobs::files(&mut tx, id, after, p.fetch()).await?;
    tx.commit().await?;
    Ok(Json(p.page(
        rows,
        |f| Seq { seq: i64::from(f.seq) },
        |f| JobFile {
            seq: f.seq,
            file_id: f.file_id,
            file_path: f.file_path,
            path_escaped: f.path_escaped,
            file_size: f.file_size,
            last_modified: f.last_modified,
            inode: f.inode,
            file_hash: f.file_hash,
            state: f.state,
            attempts: f.attempts,
            error: f.error,
        },
    )))
}

/// The job as the agent receives it: the seed's job structure (`job_id`, `customer_id`,
/// `host_id`, `rule_id`, `files[]` with path, size, hash and destination, `priority`,
/// estimates, `created_at`) plus what execution needs (mtime and inode to re-check,
/// target, compression).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/jobs/{job_id}/document", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, body = Object), (status = 404, body = Err)))]
pub(super) async fn job_document(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<serde_json::Value>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let j = jobs::get(&mut tx, id).await?;
    if !alto_api_types::AGENT_JOB_KINDS.contains(&j.kind.as_str()) {
        return Err(ApiError::not_found("tiering or recall job"));
    }
    let mut files = Vec::new();
    let mut after = -1;
    loop {
        let page = jobs::files(&mut tx, id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        files.extend(page);
    }
    tx.commit().await?;
    let mut doc = j.payload.clone();
    let dest = doc.get("tiered_destination").cloned().unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("state".into(), serde_json::Value::String(j.state.clone()));
        obj.insert(
            "files".into(),
            serde_json::Value::Array(
                files
                    .into_iter()
                    .map(|f| {
                        serde_json::json!({
                            "file_path": f.file_path,
                            "path_escaped": f.path_escaped,
                            "file_size": f.file_size,
                            "file_hash": f.file_hash.map(|h| format!("sha256:{h}")),
                            "tiered_destination": dest,
                            "file_id": f.file_id,
                            "last_modified": f.last_modified,
                            "inode": f.inode,
                            "state": f.state,
                        })
                    })
                    .collect(),
            ),
        );
    }
    Ok(Json(doc))
}

/// Cancels a job: at once if planned or queued; dispatched or running jobs are asked to
/// stop and end when the agent confirms.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/jobs/{job_id}/cancel", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn job_cancel(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Job>> {
    job_transition(state, by, t, id, true).await
}

/// Re-queues a failed or cancelled job (its unfinished files become pending again).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/jobs/{job_id}/retry", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn job_retry(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Job>> {
    job_transition(state, by, t, id, false).await
}

async fn job_transition(
    state: AppState,
    by: User,
    t: Uuid,
    id: Uuid,
    cancel: bool,
) -> ApiResult<Json<Job>> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let before = jobs::get(&mut tx, id).await?;
    if !alto_api_types::AGENT_JOB_KINDS.contains(&before.kind.as_str()) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "only tiering and recall jobs can be cancelled or retried",
        ));
    }
    let res = if cancel {
        jobs::cancel(&mut tx, id, now).await
    } else {
        jobs::retry(&mut tx, id, now).await
    };
    let after = match res {
        Ok(j) => j,
        Err(alto_db::DbError::Conflict { .. }) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                if cancel {
                    format!("the job already ended ({})", before.state)
                } else {
                    format!(
                        "only failed or cancelled jobs can be retried; this one is {}",
                        before.state
                    )
                },
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let action = if cancel { "job.cancel" } else { "job.retry" };
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        action,
        Some(("job", id.to_string())),
        "success",
        serde_json::json!({ "from": before.state, "to": after.state }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "job_state", "customer_id": t,
        "job_id": id, "host_id": after.host_id, "state": after.state, "previous": before.state,
        "cancel_requested": cancel && after.state == "running" }),
    )
    .await?;
    let j = job_with_counts(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(j))
}

// --- Tags and host groups ---------------------------------------------------------------------

fn tag_api(t: storage::TagRow) -> PathTagEntry {
    PathTagEntry {
        id: t.id,
        host_id: t.host_id,
        path: t.path,
        key: t.key,
        value: t.value,
        created_at: t.created_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsQuery {
    /// Tags that apply on this host (its own and every-host tags).
    host_id: Option<Uuid>,
}

/// Metadata tags on paths.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/tags", tag = "rules",
    params(("tenant_id" = Uuid, Path), TagsQuery),
    responses((status = 200, body = Vec<PathTagEntry>), (status = 404, body = Err)))]
pub(super) async fn tags_list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<TagsQuery>,
) -> ApiResult<Json<Vec<PathTagEntry>>> {
    let ctx = by.authorize(&state, Permission::InventoryRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = storage::list_tags(&mut tx, t, q.host_id).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(tag_api).collect()))
}

/// Tags a file or directory (a directory's tags apply to everything below it). Setting a key
/// again on the same path replaces its value.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/tags", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = CreateTag,
    responses((status = 201, body = PathTagEntry), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn tags_create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateTag>,
) -> ApiResult<(StatusCode, Json<PathTagEntry>)> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let path = alto_rules::compile::normalize_prefix(&req.path)
        .map_err(|m| ApiError::validation(format!("path {m}")))?;
    if !alto_rules::valid_tag_key(&req.key) {
        return Err(ApiError::validation(
            "key must be 1–64 of letters, digits, `.`, `-`, `_`, `:`",
        ));
    }
    let value = req.value.unwrap_or_default();
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "value must be at most 256 bytes without control characters",
        ));
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    alto_db::tenants::get(&mut tx, t).await?;
    if let Some(h) = req.host_id {
        alto_db::hosts::get(&mut tx, t, h).await?;
    }
    let row =
        storage::put_tag(&mut tx, Uuid::now_v7(), t, req.host_id, &path, &req.key, &value, now)
            .await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "tag.set",
        Some(("tag", row.id.to_string())),
        "success",
        serde_json::json!({ "host_id": req.host_id, "path": path, "key": req.key, "value": value }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(tag_api(row))))
}

/// Removes a tag.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/tags/{tag_id}", tag = "rules",
    params(("tenant_id" = Uuid, Path), ("tag_id" = Uuid, Path)),
    responses((status = 200, body = PathTagEntry), (status = 404, body = Err)))]
pub(super) async fn tags_delete(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<PathTagEntry>> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = storage::delete_tag(&mut tx, id).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "tag.delete",
        Some(("tag", id.to_string())),
        "success",
        serde_json::json!({ "path": row.path, "key": row.key }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(tag_api(row)))
}

/// Sets the groups a host belongs to (rules can be scoped to groups).
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}/groups", tag = "hosts",
    params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)), request_body = SetHostGroups,
    responses((status = 200, body = Host), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn host_groups(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<SetHostGroups>,
) -> ApiResult<Json<Host>> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    if req.groups.len() > 50 {
        return Err(ApiError::validation("at most 50 groups"));
    }
    let mut groups = req.groups.clone();
    for g in &groups {
        if !alto_rules::valid_group_name(g) {
            return Err(ApiError::validation(format!(
                "`{g}` is not a valid group name (1–64 of letters, digits, `.`, `-`, `_`)"
            )));
        }
    }
    groups.sort();
    groups.dedup();
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    alto_db::hosts::get(&mut tx, t, h).await?;
    pdb::set_host_groups(&mut tx, h, &groups, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "host.groups_set",
        Some(("host", h.to_string())),
        "success",
        serde_json::json!({ "groups": groups }),
    );
    audit::record(&mut tx, &e).await?;
    let row = alto_db::hosts::get(&mut tx, t, h).await?;
    tx.commit().await?;
    Ok(Json(super::convert::host(row)))
}
