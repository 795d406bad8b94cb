//! Login, logout, the current principal, and changing one's own password.

use alto_api_types::{ErrorCode, LoginRequest, LoginResponse, Me};
use alto_db::{users, TenantCtx};
use alto_model::CustomerId;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ClientIp};
use crate::audit::{self, Actor};
use crate::auth::{User, SESSION_COOKIE};
use crate::secrets;
use crate::state::AppState;

/// Logs in with a username and password. Answers a bearer token and sets an HttpOnly,
/// SameSite=Strict session cookie. Repeated failures from one source lock that source out of
/// the username for a while, with a growing backoff (`429 too_many_attempts`,
/// `Retry-After`); many failures from many sources lock the username for everyone.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
              (status = 401, body = alto_api_types::ErrorBody, description = "invalid_credentials"),
              (status = 429, body = alto_api_types::ErrorBody, description = "too_many_attempts")))]
pub(super) async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let now = state.now();
    let username = req.username.trim().to_lowercase();
    if username.is_empty() || username.len() > 256 || req.password.len() > 1024 {
        return Err(ApiError::new(ErrorCode::InvalidCredentials, "invalid username or password"));
    }
    if alto_model::validate::username(&username).is_err() {
        // No account has such a name; it is not throttled either (a name with a space could
        // otherwise name another name's per-source key). Same work as a real check.
        let _ = secrets::verify_password_async(
            req.password.clone(),
            state.dummy_hash.as_str().to_owned(),
        )
        .await;
        metrics::counter!("alto_login_failures_total").increment(1);
        let actor = Actor {
            kind: "anonymous",
            id: None,
            name: Some(username.chars().filter(|c| !c.is_control()).take(64).collect()),
            ip: ip.to_opt_string(),
        };
        let e = audit::entry(
            state.now(),
            None,
            &actor,
            "auth.login",
            None,
            "failure",
            serde_json::json!({ "locked_until": null }),
        );
        audit::record_alone(&state.db, TenantCtx::Platform, e).await;
        return Err(ApiError::new(ErrorCode::InvalidCredentials, "invalid username or password"));
    }
    let cfg = &state.config.auth;
    let source_key = throttle_key(&username, ip);

    let mut tx = state.db.begin(TenantCtx::Anonymous).await?;
    let here = users::throttle_locked_until(&mut tx, &source_key, now).await?;
    let everywhere = users::throttle_locked_until(&mut tx, &username, now).await?;
    if let Some(until) = here.max(everywhere) {
        tx.commit().await?;
        let secs = (until - now).num_seconds().max(1) as u64;
        let whom = if everywhere.is_some() { "this username" } else { "this username from here" };
        return Err(ApiError {
            code: ErrorCode::TooManyAttempts,
            message: format!("too many failed logins for {whom}; try again in {secs} s"),
            retry_after: Some(secs),
        });
    }
    let found = users::auth_user_by_name(&mut tx, &username).await?;
    tx.commit().await?;

    let stored = found.as_ref().map(|u| u.password_hash.clone());
    let ok = secrets::verify_password_async(
        req.password.clone(),
        stored.unwrap_or_else(|| state.dummy_hash.as_str().to_owned()),
    )
    .await;
    // A failed attempt on a real account lands in that tenant's chain, so its auditors see it.
    let known_tenant = found.as_ref().and_then(|u| u.customer_id).map(CustomerId);
    let user = found.filter(|u| ok && !u.disabled);

    let actor = Actor {
        kind: if user.is_some() { "user" } else { "anonymous" },
        id: user.as_ref().map(|u| u.id.to_string()),
        name: Some(username.chars().take(64).collect()),
        ip: ip.to_opt_string(),
    };
    let Some(user) = user else {
        metrics::counter!("alto_login_failures_total").increment(1);
        let ctx = known_tenant.map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
        let mut tx = state.db.begin(ctx).await?;
        let window = chrono::Duration::from_std(cfg.failure_window).unwrap_or_default();
        let lockout = chrono::Duration::from_std(cfg.lockout).unwrap_or_default();
        let here = users::throttle_record_failure(
            &mut tx,
            &source_key,
            now,
            cfg.max_failed_logins as i32,
            window,
            lockout,
        )
        .await?;
        let everywhere = users::throttle_record_failure(
            &mut tx,
            &username,
            now,
            cfg.max_failed_logins_global as i32,
            window,
            lockout,
        )
        .await?;
        let locked = here.max(everywhere);
        let e = audit::entry(
            state.now(),
            known_tenant,
            &actor,
            "auth.login",
            None,
            "failure",
            serde_json::json!({ "locked_until": locked, "locked_for_all_sources": everywhere.is_some() }),
        );
        audit::record(&mut tx, &e).await?;
        tx.commit().await?;
        return Err(ApiError::new(ErrorCode::InvalidCredentials, "invalid username or password"));
    };

    let tenant = user.customer_id.map(CustomerId);
    let ctx = tenant.map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
    let token = secrets::new_token(secrets::SESSION_PREFIX);
    let expires_at = now + chrono::Duration::from_std(cfg.session_ttl).unwrap_or_default();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let ip_s = ip.to_opt_string();
    let session_id = uuid::Uuid::now_v7();
    let hash = secrets::token_hash(&token);
    let mut tx = state.db.begin(ctx).await?;
    let status: Option<String> = match tenant {
        Some(t) => Some(alto_db::tenants::get(&mut tx, t.0).await?.status),
        None => None,
    };
    if status.as_deref() == Some("suspended") {
        return Err(ApiError::new(ErrorCode::TenantSuspended, "the tenant is suspended"));
    }
    users::create_session(
        &mut tx,
        &users::NewSession {
            id: session_id,
            token_hash: &hash,
            user_id: user.id,
            customer_id: user.customer_id,
            kind: "token",
            expires_at,
            source_ip: ip_s.as_deref(),
            user_agent: user_agent.as_deref(),
        },
        now,
    )
    .await?;
    // Only this source's count: failures elsewhere may be someone guessing.
    users::throttle_reset(&mut tx, &source_key).await?;
    let e = audit::entry(
        state.now(),
        tenant,
        &actor,
        "auth.login",
        Some(("session", session_id.to_string())),
        "success",
        serde_json::json!({}),
    );
    audit::record(&mut tx, &e).await?;
    let row = users::get(&mut tx, user.id).await?;
    tx.commit().await?;

    let u = crate::auth::authenticate_session(&state, &token, ip).await?;
    let me = me_of(&u, &row);
    let cookie = session_cookie(
        &token,
        state.config.auth.session_ttl.as_secs(),
        state.config.http.secure_cookies,
    );
    let mut resp = axum::Json(LoginResponse { token, expires_at, me }).into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The throttle key of failures for `username` from `ip`: the address, or its /64 for IPv6
/// (one subscriber's usual allocation, so rotating addresses within it gains nothing). Usernames
/// never contain a space, so these keys never collide with a bare username (the key of the
/// failures from every source).
fn throttle_key(username: &str, ip: ClientIp) -> String {
    let source = match ip.0 {
        Some(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(std::net::IpAddr::V6(v6)) => {
            v6.to_ipv4_mapped().map(|a| a.to_string()).unwrap_or_default()
        }
        Some(v4) => v4.to_string(),
        None => "unknown".to_owned(),
    };
    format!("{username} {source}")
}

/// The session cookie: HttpOnly (no script access), SameSite=Strict (no cross-site sends).
fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}")
}

fn me_of(u: &User, row: &alto_db::users::UserRow) -> Me {
    Me {
        user_id: u.user_id,
        username: u.username.clone(),
        tenant_id: row.customer_id,
        roles: u.roles.clone(),
        permissions: u.permissions(),
    }
}

/// Ends the current session (cookie or token) at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = alto_api_types::ErrorBody)))]
pub(super) async fn logout(State(state): State<AppState>, user: User) -> ApiResult<Response> {
    let now = state.now();
    let ctx = user.tenant().map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
    let mut tx = state.db.begin(ctx).await?;
    users::revoke_session(&mut tx, user.session_id, now).await?;
    let e = audit::entry(
        state.now(),
        user.tenant(),
        &user.actor(),
        "auth.logout",
        Some(("session", user.session_id.to_string())),
        "success",
        serde_json::json!({}),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    let clear = session_cookie("", 0, state.config.http.secure_cookies);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = clear.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The current principal, its roles and effective permissions.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = alto_api_types::ErrorBody)))]
pub(super) async fn me(State(state): State<AppState>, user: User) -> ApiResult<axum::Json<Me>> {
    let ctx = user.tenant().map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
    let mut tx = state.db.begin(ctx).await?;
    let row = users::get(&mut tx, user.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(me_of(&user, &row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changes the caller's own password; ends every session of the user, this one included.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePassword,
    responses((status = 204), (status = 400, body = alto_api_types::ErrorBody),
              (status = 401, body = alto_api_types::ErrorBody)))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    user: User,
    ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    alto_model::validate::password(&req.new_password).map_err(ApiError::validation)?;
    let mut tx = state.db.begin(TenantCtx::Anonymous).await?;
    let found = users::auth_user_by_name(&mut tx, &user.username).await?;
    tx.commit().await?;
    let Some(found) = found else { return Err(ApiError::unauthenticated()) };
    if !secrets::verify_password_async(req.current_password, found.password_hash).await {
        return Err(ApiError::new(ErrorCode::InvalidCredentials, "current password is wrong"));
    }
    let hash = secrets::hash_password_async(req.new_password).await;
    let now = state.now();
    let ctx = user.tenant().map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
    let mut tx = state.db.begin(ctx).await?;
    users::update(&mut tx, user.user_id, None, None, Some(&hash), now).await?;
    users::revoke_user_sessions(&mut tx, user.user_id, now).await?;
    let e = audit::entry(
        state.now(),
        user.tenant(),
        &user.actor(),
        "user.password_change",
        Some(("user", user.user_id.to_string())),
        "success",
        serde_json::json!({}),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
