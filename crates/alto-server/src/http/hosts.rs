//! Hosts and their agent credentials, managed by tenant administrators.

use alto_api_types::{
    CreateHost, CreatedHost, Credential, EnrollmentToken, Host, Page, UpdateHost,
};
use alto_db::hosts;
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::page::{self, Created, Pager};
use crate::audit;
use crate::auth::User;
use crate::secrets;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct HostQuery {
    /// Only hosts with this status.
    status: Option<String>,
    /// Items per page, 1–1000 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Hosts of a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/hosts", tag = "hosts",
    params(("tenant_id" = Uuid, Path), HostQuery),
    responses((status = 200, body = Page<Host>), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<HostQuery>,
) -> ApiResult<Json<Page<Host>>> {
    let ctx = by.authorize(&state, Permission::HostRead, CustomerId(t)).await?;
    let p = Pager::<page::Hosts>::new(q.limit, q.cursor.as_deref())?;
    if let Some(s) = q.status.as_deref() {
        if !matches!(s, "pending" | "online" | "offline" | "decommissioned") {
            return Err(ApiError::new(
                alto_api_types::ErrorCode::InvalidQuery,
                "status must be pending, online, offline or decommissioned",
            ));
        }
    }
    let mut tx = state.db.begin(ctx).await?;
    let rows =
        hosts::list(&mut tx, t, q.status.as_deref(), p.fetch(), p.after.map(Into::into)).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Created::of(r.created_at, r.id), convert::host)))
}

async fn issue_enrollment(
    state: &AppState,
    tx: &mut alto_db::Tx,
    by: &User,
    tenant: Uuid,
    host: Uuid,
) -> ApiResult<EnrollmentToken> {
    let now = state.now();
    let token = secrets::new_token(secrets::ENROLL_PREFIX);
    let expires_at = now
        + chrono::Duration::from_std(state.config.agents.enrollment_token_ttl).unwrap_or_default();
    hosts::create_enrollment(
        tx,
        Uuid::now_v7(),
        tenant,
        host,
        &secrets::token_hash(&token),
        Some(by.user_id),
        now,
        expires_at,
    )
    .await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(tenant)),
        &by.actor(),
        "host.enrollment_token_create",
        Some(("host", host.to_string())),
        "success",
        serde_json::json!({ "expires_at": expires_at }),
    );
    audit::record(tx, &e).await?;
    Ok(EnrollmentToken { token, expires_at })
}

/// Registers a host and returns a one-time enrollment token for its agent.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/hosts", tag = "hosts",
    params(("tenant_id" = Uuid, Path)), request_body = CreateHost,
    responses((status = 201, body = CreatedHost), (status = 400, body = Err), (status = 409, body = Err)))]
pub(super) async fn create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateHost>,
) -> ApiResult<(StatusCode, Json<CreatedHost>)> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    alto_model::validate::hostname(&req.name).map_err(ApiError::validation)?;
    if let Some(d) = &req.description {
        alto_model::validate::display_name("description", d).map_err(ApiError::validation)?;
    }
    let now = state.now();
    let id = Uuid::now_v7();
    let mut tx = state.db.begin(ctx).await?;
    alto_db::tenants::get(&mut tx, t).await?;
    let row = hosts::create(&mut tx, id, t, &req.name, req.description.as_deref(), now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "host.create",
        Some(("host", id.to_string())),
        "success",
        serde_json::json!({ "name": req.name }),
    );
    audit::record(&mut tx, &e).await?;
    let enrollment = issue_enrollment(&state, &mut tx, &by, t, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedHost { host: convert::host(row), enrollment })))
}

/// One host.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}", tag = "hosts",
    params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)),
    responses((status = 200, body = Host), (status = 404, body = Err)))]
pub(super) async fn get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Host>> {
    let ctx = by.authorize(&state, Permission::HostRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = hosts::get(&mut tx, t, h).await?;
    tx.commit().await?;
    Ok(Json(convert::host(row)))
}

/// Renames a host or changes its description.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}", tag = "hosts",
    params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)), request_body = UpdateHost,
    responses((status = 200, body = Host), (status = 404, body = Err)))]
pub(super) async fn update(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<UpdateHost>,
) -> ApiResult<Json<Host>> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    if let Some(n) = &req.name {
        alto_model::validate::hostname(n).map_err(ApiError::validation)?;
    }
    if let Some(d) = &req.description {
        alto_model::validate::display_name("description", d).map_err(ApiError::validation)?;
    }
    if req.bandwidth_limit_bytes_per_second.is_some_and(|b| !(0..=1 << 40).contains(&b)) {
        return Err(ApiError::validation(
            "bandwidth_limit_bytes_per_second must be 0 (no limit) to 1099511627776",
        ));
    }
    if req.recall_bandwidth_limit_bytes_per_second.is_some_and(|b| !(0..=1 << 40).contains(&b)) {
        return Err(ApiError::validation(
            "recall_bandwidth_limit_bytes_per_second must be 0 (no limit) to 1099511627776",
        ));
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let row = hosts::update(
        &mut tx,
        t,
        h,
        req.name.as_deref(),
        req.description.as_deref(),
        req.bandwidth_limit_bytes_per_second,
        now,
    )
    .await?;
    let row = match req.recall_bandwidth_limit_bytes_per_second {
        Some(b) => {
            alto_db::recalls::set_host_recall_bandwidth(&mut tx, t, h, b).await?;
            hosts::get(&mut tx, t, h).await?
        }
        None => row,
    };
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "host.update",
        Some(("host", h.to_string())),
        "success",
        serde_json::json!({ "name": req.name, "description": req.description,
            "bandwidth_limit_bytes_per_second": req.bandwidth_limit_bytes_per_second,
            "recall_bandwidth_limit_bytes_per_second": req.recall_bandwidth_limit_bytes_per_second }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(convert::host(row)))
}

/// Decommissions a host: revokes every credential and token at once. The record stays for
/// history.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}", tag = "hosts",
    params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)),
    responses((status = 200, body = Host), (status = 404, body = Err)))]
pub(super) async fn decommission(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Host>> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let row = hosts::decommission(&mut tx, t, h, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "host.decommission",
        Some(("host", h.to_string())),
        "success",
        serde_json::json!({}),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "host_status", "customer_id": t, "host_id": h,
                             "status": "decommissioned" }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(convert::host(row)))
}

/// Issues a new one-time enrollment token (re-enrollment); earlier unused tokens stop working.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}/enrollment-tokens",
    tag = "hosts", params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)),
    responses((status = 201, body = EnrollmentToken), (status = 404, body = Err)))]
pub(super) async fn new_enrollment_token(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<(StatusCode, Json<EnrollmentToken>)> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let host = hosts::get(&mut tx, t, h).await?;
    if host.status == "decommissioned" {
        return Err(ApiError::new(
            alto_api_types::ErrorCode::Conflict,
            "the host is decommissioned; register it again",
        ));
    }
    let token = issue_enrollment(&state, &mut tx, &by, t, h).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// The host's credentials (metadata only; secrets are never stored or shown again).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}/credentials",
    tag = "hosts", params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path)),
    responses((status = 200, body = Vec<Credential>), (status = 404, body = Err)))]
pub(super) async fn list_credentials(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Vec<Credential>>> {
    let ctx = by.authorize(&state, Permission::HostRead, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    hosts::get(&mut tx, t, h).await?;
    let rows = hosts::list_credentials(&mut tx, t, h).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(|r| convert::credential(r, now)).collect()))
}

/// Revokes a credential immediately.
#[utoipa::path(post,
    path = "/api/v1/tenants/{tenant_id}/hosts/{host_id}/credentials/{credential_id}/revoke",
    tag = "hosts",
    params(("tenant_id" = Uuid, Path), ("host_id" = Uuid, Path), ("credential_id" = Uuid, Path)),
    responses((status = 200, body = Credential), (status = 404, body = Err)))]
pub(super) async fn revoke_credential(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, h, c)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<Json<Credential>> {
    let ctx = by.authorize(&state, Permission::HostManage, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let row = hosts::revoke_credential(&mut tx, t, h, c, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "host.credential_revoke",
        Some(("credential", c.to_string())),
        "success",
        serde_json::json!({ "host_id": h }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(convert::credential(row, now)))
}
