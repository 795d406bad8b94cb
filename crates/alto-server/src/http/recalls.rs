//! Recall as a managed operation: `POST …/recalls` (a file, a tree, or the stubs a rule
//! tiered, on one host) and the scheduled restoration rules (`…/recall-schedules`). Both
//! render `crate::recall::request`, which queues recall jobs ahead of every tiering job; the
//! jobs are listed, followed, cancelled and retried like tiering jobs (`…/jobs?kind=recall`).

use alto_api_types::{
    CreateRecall, CreateRecallSchedule, RecallCreated, RecallJobTrigger, RecallSchedule,
    UpdateRecallSchedule,
};
use alto_db::recalls::{self as rdb, ScheduleRow};
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use crate::audit;
use crate::auth::User;
use crate::recall::{self, RecallOrigin};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

/// Queues recall jobs for the host's stubs under `paths` (optionally only those a rule
/// tiered). Recall jobs are dispatched before every tiering job; each carries up to 1,000
/// files. `dry_run` only counts.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/recalls", tag = "recall",
    params(("tenant_id" = Uuid, Path)), request_body = CreateRecall,
    responses((status = 202, body = RecallCreated), (status = 400, body = Err),
        (status = 404, body = Err)))]
pub(super) async fn create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateRecall>,
) -> ApiResult<(StatusCode, Json<RecallCreated>)> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let origin = RecallOrigin {
        trigger: RecallJobTrigger::Manual,
        requested_by: Some(&by.username),
        schedule_id: None,
    };
    let made = recall::request(&mut tx, CustomerId(t), &req, &origin, &by.actor(), now).await?;
    tx.commit().await?;
    if !made.jobs.is_empty() {
        state.jobs_wakeup.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(made)))
}

fn schedule_api(r: ScheduleRow) -> RecallSchedule {
    RecallSchedule {
        id: r.id,
        name: r.name,
        host_id: r.host_id,
        paths: r.paths,
        rule_id: r.rule_id,
        cron: r.cron,
        enabled: r.enabled,
        next_run_at: r.next_run_at,
        last_run_at: r.last_run_at,
        last_request_id: r.last_request_id,
        last_files: r.last_files,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// The first firing of `cron` after `now` (the expression checked).
fn next_run(cron: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let c = alto_rules::schedule::parse(cron)
        .map_err(|e| ApiError::validation(format!("cron: {e}")))?;
    Ok(alto_rules::schedule::next_after(&c, now))
}

/// Scheduled restoration rules of the tenant, by name.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/recall-schedules", tag = "recall",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<RecallSchedule>), (status = 404, body = Err)))]
pub(super) async fn schedules_list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<RecallSchedule>>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = rdb::list_schedules(&mut tx, t).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(schedule_api).collect()))
}

/// Creates a scheduled restoration rule: on `cron` (five fields, UTC), recall the host's
/// stubs under `paths`.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/recall-schedules", tag = "recall",
    params(("tenant_id" = Uuid, Path)), request_body = CreateRecallSchedule,
    responses((status = 201, body = RecallSchedule), (status = 400, body = Err),
        (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn schedules_create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateRecallSchedule>,
) -> ApiResult<(StatusCode, Json<RecallSchedule>)> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    alto_model::validate::display_name("name", &req.name).map_err(ApiError::validation)?;
    let paths = recall::normalise_paths(&req.paths).map_err(ApiError::validation)?;
    let now = state.now();
    let next = next_run(&req.cron, now)?;
    let mut tx = state.db.begin(ctx).await?;
    alto_db::hosts::get(&mut tx, t, req.host_id).await?;
    if let Some(r) = req.rule_id {
        let rule = alto_db::rules::get(&mut tx, r).await?;
        if rule.customer_id != t {
            return Err(ApiError::not_found("rule"));
        }
    }
    let row = rdb::create_schedule(
        &mut tx,
        &ScheduleRow {
            id: Uuid::now_v7(),
            customer_id: t,
            host_id: req.host_id,
            name: req.name.clone(),
            paths,
            rule_id: req.rule_id,
            cron: req.cron.trim().to_owned(),
            enabled: req.enabled,
            next_run_at: next,
            last_run_at: None,
            last_request_id: None,
            last_files: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    let e = audit::entry(
        now,
        Some(CustomerId(t)),
        &by.actor(),
        "recall_schedule.create",
        Some(("recall_schedule", row.id.to_string())),
        "success",
        serde_json::json!({ "name": row.name, "host_id": row.host_id, "paths": row.paths,
            "rule_id": row.rule_id, "cron": row.cron, "enabled": row.enabled }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(schedule_api(row))))
}

/// One scheduled restoration rule.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/recall-schedules/{schedule_id}",
    tag = "recall", params(("tenant_id" = Uuid, Path), ("schedule_id" = Uuid, Path)),
    responses((status = 200, body = RecallSchedule), (status = 404, body = Err)))]
pub(super) async fn schedules_get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<RecallSchedule>> {
    let ctx = by.authorize(&state, Permission::JobRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = rdb::get_schedule(&mut tx, t, id).await?;
    tx.commit().await?;
    Ok(Json(schedule_api(row)))
}

/// Changes a scheduled restoration rule's paths, schedule or whether it is enabled.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/recall-schedules/{schedule_id}",
    tag = "recall", params(("tenant_id" = Uuid, Path), ("schedule_id" = Uuid, Path)),
    request_body = UpdateRecallSchedule,
    responses((status = 200, body = RecallSchedule), (status = 400, body = Err),
        (status = 404, body = Err)))]
pub(super) async fn schedules_update(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<UpdateRecallSchedule>,
) -> ApiResult<Json<RecallSchedule>> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    let paths = match &req.paths {
        Some(p) => Some(recall::normalise_paths(p).map_err(ApiError::validation)?),
        None => None,
    };
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let mut row = rdb::get_schedule(&mut tx, t, id).await?;
    if let Some(p) = paths {
        row.paths = p;
    }
    if let Some(c) = &req.cron {
        row.cron = c.trim().to_owned();
    }
    if let Some(e) = req.enabled {
        row.enabled = e;
    }
    row.next_run_at = next_run(&row.cron, now)?;
    row.updated_at = now;
    let row = rdb::update_schedule(&mut tx, &row).await?;
    let e = audit::entry(
        now,
        Some(CustomerId(t)),
        &by.actor(),
        "recall_schedule.update",
        Some(("recall_schedule", id.to_string())),
        "success",
        serde_json::json!({ "paths": req.paths, "cron": req.cron, "enabled": req.enabled }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(schedule_api(row)))
}

/// Deletes a scheduled restoration rule (recall jobs it queued go on); answers what it was.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/recall-schedules/{schedule_id}",
    tag = "recall", params(("tenant_id" = Uuid, Path), ("schedule_id" = Uuid, Path)),
    responses((status = 200, body = RecallSchedule), (status = 404, body = Err)))]
pub(super) async fn schedules_delete(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<RecallSchedule>> {
    let ctx = by.authorize(&state, Permission::JobOperate, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = rdb::get_schedule(&mut tx, t, id).await?;
    rdb::delete_schedule(&mut tx, t, id).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "recall_schedule.delete",
        Some(("recall_schedule", id.to_string())),
        "success",
        serde_json::json!({}),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(schedule_api(row)))
}
