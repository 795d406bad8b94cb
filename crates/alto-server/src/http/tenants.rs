//! Tenants (customers). Platform staff list and manage all; a tenant's own users see theirs.

use alto_api_types::{CreateTenant, CreatedTenant, Page, Tenant, UpdateTenant};
use alto_db::tenants;
use alto_model::{CustomerId, Permission, Scope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::page::{self, Created, PageQuery, Pager};
use super::users::{create_user_in, validate_new_user};
use crate::audit;
use crate::auth::User;
use crate::state::AppState;

/// Lists tenants: all of them for platform staff, the caller's own for tenant users.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>)))]
pub(super) async fn list(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    let p = Pager::<page::Tenants>::new(q.limit, q.cursor.as_deref())?;
    let ctx = match user.scope {
        Scope::Platform => user.authorize_platform(&state, Permission::TenantRead).await?,
        Scope::Tenant(t) => user.authorize(&state, Permission::TenantRead, t).await?,
    };
    let mut tx = state.db.begin(ctx).await?;
    let rows = tenants::list(&mut tx, p.fetch(), p.after.map(Into::into)).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Created::of(r.created_at, r.id), convert::tenant)))
}

/// Creates a tenant, optionally with its first administrator (platform admins only).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = 409, body = alto_api_types::ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    user: User,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<CreatedTenant>)> {
    let ctx = user.authorize_platform(&state, Permission::TenantManage).await?;
    let name = req.name.trim().to_owned();
    alto_model::validate::display_name("name", &name).map_err(ApiError::validation)?;
    let id = CustomerId::new();
    if let Some(a) = &req.admin {
        validate_new_user(a, Scope::Tenant(id))?;
    }
    let admin_hash = match &req.admin {
        Some(a) => Some(crate::secrets::hash_password_async(a.password.clone()).await),
        None => None,
    };
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let row = tenants::create(&mut tx, id.0, &name, now).await?;
    let details = serde_json::json!({ "name": name });
    let target = || Some(("tenant", id.to_string()));
    for chain in [None, Some(id)] {
        let e = audit::entry(
            state.now(),
            chain,
            &user.actor(),
            "tenant.create",
            target(),
            "success",
            details.clone(),
        );
        audit::record(&mut tx, &e).await?;
    }
    let admin = match (&req.admin, admin_hash) {
        (Some(a), Some(hash)) => {
            Some(create_user_in(&state, &mut tx, &user, Some(id), a, &hash, now).await?)
        }
        _ => None,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedTenant { tenant: convert::tenant(row), admin })))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = alto_api_types::ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    user: User,
    ApiPath(tenant_id): ApiPath<Uuid>,
) -> ApiResult<Json<Tenant>> {
    let ctx = user.authorize(&state, Permission::TenantRead, CustomerId(tenant_id)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = tenants::get(&mut tx, tenant_id).await?;
    tx.commit().await?;
    Ok(Json(convert::tenant(row)))
}

/// Renames or suspends/reactivates a tenant (platform admins only). Suspension refuses the
/// tenant's users and agents at once.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = Uuid, Path)), request_body = UpdateTenant,
    responses((status = 200, body = Tenant), (status = 404, body = alto_api_types::ErrorBody)))]
pub(super) async fn update(
    State(state): State<AppState>,
    user: User,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let ctx = user.authorize_platform(&state, Permission::TenantManage).await?;
    let name = req.name.as_deref().map(str::trim);
    if let Some(n) = name {
        alto_model::validate::display_name("name", n).map_err(ApiError::validation)?;
    }
    if let Some(s) = req.status.as_deref() {
        if !matches!(s, "active" | "suspended") {
            return Err(ApiError::validation("status must be `active` or `suspended`"));
        }
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let row = tenants::update(&mut tx, tenant_id, name, req.status.as_deref(), now).await?;
    let details = serde_json::json!({ "name": name, "status": req.status });
    for chain in [None, Some(CustomerId(tenant_id))] {
        let e = audit::entry(
            state.now(),
            chain,
            &user.actor(),
            "tenant.update",
            Some(("tenant", tenant_id.to_string())),
            "success",
            details.clone(),
        );
        audit::record(&mut tx, &e).await?;
    }
    tx.commit().await?;
    Ok(Json(convert::tenant(row)))
}
