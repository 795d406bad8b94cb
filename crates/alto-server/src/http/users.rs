//! Users and their roles: tenant users under `/tenants/{id}/users`, platform staff under
//! `/platform/users`. Both share one implementation parameterised by scope.

use alto_api_types::{CreateUser, Page, SetRoles, UpdateUser, User as ApiUser};
use alto_db::{users, TenantCtx, Tx};
use alto_model::{CustomerId, Permission, Role, Scope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::page::{self, Created, PageQuery, Pager};
use crate::audit;
use crate::auth::User;
use crate::secrets;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

pub(super) fn validate_roles(roles: &[Role], scope: Scope) -> Result<(), ApiError> {
    if roles.is_empty() {
        return Err(ApiError::validation("a user needs at least one role"));
    }
    for r in roles {
        if !r.allowed_at(scope) {
            let at = if scope == Scope::Platform { "platform" } else { "tenant" };
            return Err(ApiError::validation(format!("role `{r}` cannot be held at {at} scope")));
        }
    }
    Ok(())
}

pub(super) fn validate_new_user(req: &CreateUser, scope: Scope) -> Result<(), ApiError> {
    alto_model::validate::username(&req.username).map_err(ApiError::validation)?;
    alto_model::validate::password(&req.password).map_err(ApiError::validation)?;
    if let Some(d) = &req.display_name {
        alto_model::validate::display_name("display_name", d).map_err(ApiError::validation)?;
    }
    validate_roles(&req.roles, scope)
}

fn role_strings(roles: &[Role]) -> Vec<String> {
    let mut v: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

/// Inserts a user and audits it, inside the caller's transaction.
pub(super) async fn create_user_in(
    state: &AppState,
    tx: &mut Tx,
    by: &User,
    tenant: Option<CustomerId>,
    req: &CreateUser,
    password_hash: &str,
    now: DateTime<Utc>,
) -> ApiResult<ApiUser> {
    let id = Uuid::now_v7();
    let roles = role_strings(&req.roles);
    let row = users::create(
        tx,
        &users::NewUser {
            id,
            customer_id: tenant.map(|t| t.0),
            username: &req.username,
            display_name: req.display_name.as_deref(),
            password_hash,
        },
        &roles,
        Some(by.user_id),
        now,
    )
    .await?;
    let e = audit::entry(
        state.now(),
        tenant,
        &by.actor(),
        "user.create",
        Some(("user", id.to_string())),
        "success",
        serde_json::json!({ "username": req.username, "roles": roles }),
    );
    audit::record(tx, &e).await?;
    Ok(convert::user(row))
}

async fn authorize(
    state: &AppState,
    by: &User,
    perm: Permission,
    tenant: Option<CustomerId>,
) -> ApiResult<TenantCtx> {
    match tenant {
        Some(t) => by.authorize(state, perm, t).await,
        None => by.authorize_platform(state, perm).await,
    }
}

fn scope_of(tenant: Option<CustomerId>) -> Scope {
    tenant.map(Scope::Tenant).unwrap_or(Scope::Platform)
}

async fn do_list(
    state: AppState,
    by: User,
    tenant: Option<CustomerId>,
    q: PageQuery,
) -> ApiResult<Json<Page<ApiUser>>> {
    let p = Pager::<page::Users>::new(q.limit, q.cursor.as_deref())?;
    let ctx = authorize(&state, &by, Permission::UserRead, tenant).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows =
        users::list(&mut tx, tenant.map(|t| t.0), p.fetch(), p.after.map(Into::into)).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Created::of(r.created_at, r.id), convert::user)))
}

async fn do_create(
    state: AppState,
    by: User,
    tenant: Option<CustomerId>,
    req: CreateUser,
) -> ApiResult<(StatusCode, Json<ApiUser>)> {
    let ctx = authorize(&state, &by, Permission::UserManage, tenant).await?;
    validate_new_user(&req, scope_of(tenant))?;
    let hash = secrets::hash_password_async(req.password.clone()).await;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    if let Some(t) = tenant {
        alto_db::tenants::get(&mut tx, t.0).await?;
    }
    let user = create_user_in(&state, &mut tx, &by, tenant, &req, &hash, now).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Loads a user and checks it belongs to `tenant` (or is platform staff when `None`).
async fn load(tx: &mut Tx, tenant: Option<CustomerId>, id: Uuid) -> ApiResult<users::UserRow> {
    let row = users::get(tx, id).await?;
    if row.customer_id != tenant.map(|t| t.0) {
        return Err(ApiError::not_found("user"));
    }
    Ok(row)
}

async fn do_get(
    state: AppState,
    by: User,
    tenant: Option<CustomerId>,
    id: Uuid,
) -> ApiResult<Json<ApiUser>> {
    let ctx = authorize(&state, &by, Permission::UserRead, tenant).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = load(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(convert::user(row)))
}

async fn do_update(
    state: AppState,
    by: User,
    tenant: Option<CustomerId>,
    id: Uuid,
    req: UpdateUser,
) -> ApiResult<Json<ApiUser>> {
    let ctx = authorize(&state, &by, Permission::UserManage, tenant).await?;
    if let Some(d) = &req.display_name {
        alto_model::validate::display_name("display_name", d).map_err(ApiError::validation)?;
    }
    if let Some(p) = &req.password {
        alto_model::validate::password(p).map_err(ApiError::validation)?;
    }
    if req.disabled == Some(true) && id == by.user_id {
        return Err(ApiError::validation("you cannot disable your own account"));
    }
    let hash = match &req.password {
        Some(p) => Some(secrets::hash_password_async(p.clone()).await),
        None => None,
    };
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    load(&mut tx, tenant, id).await?;
    users::update(&mut tx, id, req.display_name.as_deref(), req.disabled, hash.as_deref(), now)
        .await?;
    if tenant.is_none() && users::count_active_platform_admins(&mut tx).await? == 0 {
        return Err(ApiError::validation("the last platform administrator cannot be disabled"));
    }
    if req.disabled == Some(true) || hash.is_some() {
        users::revoke_user_sessions(&mut tx, id, now).await?;
    }
    let e = audit::entry(
        state.now(),
        tenant,
        &by.actor(),
        "user.update",
        Some(("user", id.to_string())),
        "success",
        serde_json::json!({
            "display_name": req.display_name,
            "disabled": req.disabled,
            "password_changed": hash.is_some(),
        }),
    );
    audit::record(&mut tx, &e).await?;
    let row = users::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(convert::user(row)))
}

async fn do_set_roles(
    state: AppState,
    by: User,
    tenant: Option<CustomerId>,
    id: Uuid,
    req: SetRoles,
) -> ApiResult<Json<ApiUser>> {
    let ctx = authorize(&state, &by, Permission::UserManage, tenant).await?;
    validate_roles(&req.roles, scope_of(tenant))?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let before = load(&mut tx, tenant, id).await?;
    let roles = role_strings(&req.roles);
    users::set_roles(&mut tx, id, tenant.map(|t| t.0), &roles, Some(by.user_id), now).await?;
    if tenant.is_none() && users::count_active_platform_admins(&mut tx).await? == 0 {
        return Err(ApiError::validation("the last platform administrator cannot lose the role"));
    }
    let e = audit::entry(
        state.now(),
        tenant,
        &by.actor(),
        "user.roles_change",
        Some(("user", id.to_string())),
        "success",
        serde_json::json!({ "before": before.roles, "after": roles }),
    );
    audit::record(&mut tx, &e).await?;
    let row = users::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(convert::user(row)))
}

/// Users of a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<ApiUser>), (status = 403, body = Err), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ApiUser>>> {
    do_list(state, by, Some(CustomerId(t)), q).await
}

/// Creates a user in a tenant with the given roles.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path)), request_body = CreateUser,
    responses((status = 201, body = ApiUser), (status = 400, body = Err), (status = 409, body = Err)))]
pub(super) async fn create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<ApiUser>)> {
    do_create(state, by, Some(CustomerId(t)), req).await
}

/// One user of a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = ApiUser), (status = 404, body = Err)))]
pub(super) async fn get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<ApiUser>> {
    do_get(state, by, Some(CustomerId(t)), id).await
}

/// Changes a tenant user's display name, password or disabled flag.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = ApiUser), (status = 404, body = Err)))]
pub(super) async fn update(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<ApiUser>> {
    do_update(state, by, Some(CustomerId(t)), id, req).await
}

/// Replaces a tenant user's roles.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/roles", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = SetRoles,
    responses((status = 200, body = ApiUser), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn set_roles(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<SetRoles>,
) -> ApiResult<Json<ApiUser>> {
    do_set_roles(state, by, Some(CustomerId(t)), id, req).await
}

/// Platform staff.
#[utoipa::path(get, path = "/api/v1/platform/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Page<ApiUser>), (status = 403, body = Err)))]
pub(super) async fn list_platform(
    State(state): State<AppState>,
    by: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ApiUser>>> {
    do_list(state, by, None, q).await
}

/// Creates a platform user (platform_admin, or platform-wide auditor/support).
#[utoipa::path(post, path = "/api/v1/platform/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = ApiUser), (status = 400, body = Err), (status = 409, body = Err)))]
pub(super) async fn create_platform(
    State(state): State<AppState>,
    by: User,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<ApiUser>)> {
    do_create(state, by, None, req).await
}

/// One platform user.
#[utoipa::path(get, path = "/api/v1/platform/users/{user_id}", tag = "users",
    params(("user_id" = Uuid, Path)), responses((status = 200, body = ApiUser), (status = 404, body = Err)))]
pub(super) async fn get_platform(
    State(state): State<AppState>,
    by: User,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ApiUser>> {
    do_get(state, by, None, id).await
}

/// Changes a platform user.
#[utoipa::path(patch, path = "/api/v1/platform/users/{user_id}", tag = "users",
    params(("user_id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = ApiUser), (status = 404, body = Err)))]
pub(super) async fn update_platform(
    State(state): State<AppState>,
    by: User,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<ApiUser>> {
    do_update(state, by, None, id, req).await
}

/// Replaces a platform user's roles.
#[utoipa::path(put, path = "/api/v1/platform/users/{user_id}/roles", tag = "users",
    params(("user_id" = Uuid, Path)), request_body = SetRoles,
    responses((status = 200, body = ApiUser), (status = 400, body = Err)))]
pub(super) async fn set_roles_platform(
    State(state): State<AppState>,
    by: User,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SetRoles>,
) -> ApiResult<Json<ApiUser>> {
    do_set_roles(state, by, None, id, req).await
}
