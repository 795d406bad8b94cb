//! Who is calling: user sessions (cookie or bearer token) and host credentials, and the
//! permission check every endpoint makes.
//!
//! The tenant a request acts on comes from the path, and is accepted only if the principal's
//! scope covers it; a tenant user naming another tenant gets the same `not_found` as for a
//! tenant that does not exist, so responses never hint at other tenants.

use alto_api_types::ErrorCode;
use alto_db::{users, TenantCtx};
use alto_model::rbac::allows;
use alto_model::{CustomerId, Permission, Role, Scope};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::http::error::ApiError;
pub use crate::principal::{ClientIp, Host};
use crate::secrets;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "alto_session";

/// An authenticated console or CLI user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: Uuid,
    pub username: String,
    pub session_id: Uuid,
    pub scope: Scope,
    pub roles: Vec<Role>,
    pub ip: ClientIp,
}

impl User {
    pub fn tenant(&self) -> Option<CustomerId> {
        match self.scope {
            Scope::Platform => None,
            Scope::Tenant(t) => Some(t),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            kind: "user",
            id: Some(self.user_id.to_string()),
            name: Some(self.username.clone()),
            ip: self.ip.to_opt_string(),
        }
    }

    pub fn permissions(&self) -> Vec<String> {
        let tenant = self.tenant();
        Permission::ALL
            .into_iter()
            .filter(|p| allows(self.scope, &self.roles, *p, tenant))
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    /// Authorises `perm` on `tenant` and returns the transaction context to use.
    ///
    /// Out-of-scope tenants answer `not_found` (no existence hint). In-scope but missing
    /// permission answers `forbidden` and is audited as a denied security event.
    pub async fn authorize(
        &self,
        state: &AppState,
        perm: Permission,
        tenant: CustomerId,
    ) -> Result<TenantCtx, ApiError> {
        if let Scope::Tenant(own) = self.scope {
            if own != tenant {
                return Err(ApiError::not_found("tenant"));
            }
        }
        if !allows(self.scope, &self.roles, perm, Some(tenant)) {
            self.audit_denied(state, perm, Some(tenant)).await;
            return Err(ApiError::forbidden());
        }
        Ok(TenantCtx::Tenant(tenant))
    }

    /// Authorises a platform-level permission (tenant lifecycle, platform users).
    pub async fn authorize_platform(
        &self,
        state: &AppState,
        perm: Permission,
    ) -> Result<TenantCtx, ApiError> {
        if self.scope != Scope::Platform {
            // Tenant users cannot see platform objects at all.
            return Err(ApiError::not_found("resource"));
        }
        if !allows(self.scope, &self.roles, perm, None) {
            self.audit_denied(state, perm, None).await;
            return Err(ApiError::forbidden());
        }
        Ok(TenantCtx::Platform)
    }

    async fn audit_denied(&self, state: &AppState, perm: Permission, tenant: Option<CustomerId>) {
        let ctx = tenant.map(TenantCtx::Tenant).unwrap_or(TenantCtx::Platform);
        let entry = audit::entry(
            state.now(),
            tenant,
            &self.actor(),
            "access.denied",
            None,
            "denied",
            serde_json::json!({ "permission": perm.as_str() }),
        );
        audit::record_alone(&state.db, ctx, entry).await;
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(&parts.headers);
    jar.get(name).map(|c| c.value().to_owned())
}

impl<S> FromRequestParts<S> for User
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let ip = ClientIp::from_request_parts(parts, state).await.unwrap_or(ClientIp(None));
        let token = bearer(parts).map(str::to_owned).or_else(|| cookie(parts, SESSION_COOKIE));
        let Some(token) = token else { return Err(ApiError::unauthenticated()) };
        authenticate_session(&app, &token, ip).await
    }
}

/// Resolves a session token to a user, or `unauthenticated`.
pub async fn authenticate_session(
    app: &AppState,
    token: &str,
    ip: ClientIp,
) -> Result<User, ApiError> {
    if !secrets::looks_like(token, secrets::SESSION_PREFIX) {
        return Err(ApiError::unauthenticated());
    }
    let mut tx = app.db.begin(TenantCtx::Anonymous).await?;
    let found = users::auth_session(&mut tx, &secrets::token_hash(token)).await?;
    tx.commit().await?;
    let Some(s) = found else { return Err(ApiError::unauthenticated()) };
    let now = app.now();
    if s.revoked_at.is_some() || s.expires_at <= now || s.disabled {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "the session has ended; log in again",
        ));
    }
    let scope = match s.customer_id {
        None => Scope::Platform,
        Some(c) => Scope::Tenant(CustomerId(c)),
    };
    if s.tenant_status.as_deref() == Some("suspended") {
        return Err(ApiError::new(ErrorCode::TenantSuspended, "the tenant is suspended"));
    }
    let roles = s.roles.iter().filter_map(|r| Role::parse(r)).collect();
    Ok(User {
        user_id: s.user_id,
        username: s.username,
        session_id: s.session_id,
        scope,
        roles,
        ip,
    })
}

impl<S> FromRequestParts<S> for Host
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let ip = ClientIp::from_request_parts(parts, state).await.unwrap_or(ClientIp(None));
        let Some(token) = bearer(parts) else { return Err(ApiError::unauthenticated()) };
        authenticate_host(&app, token, ip).await
    }
}

/// Resolves a host credential. Revoked or expired credentials are refused and audited.
pub async fn authenticate_host(
    app: &AppState,
    token: &str,
    ip: ClientIp,
) -> Result<Host, ApiError> {
    if !secrets::looks_like(token, secrets::HOST_PREFIX) {
        return Err(ApiError::unauthenticated());
    }
    let now = app.now();
    let mut tx = app.db.begin(TenantCtx::Anonymous).await?;
    let found = alto_db::hosts::auth_host_credential(&mut tx, &secrets::token_hash(token)).await?;
    tx.commit().await?;
    let Some(c) = found else { return Err(ApiError::unauthenticated()) };
    let customer = CustomerId(c.customer_id);
    let reason = if c.revoked_at.is_some() {
        Some("credential revoked")
    } else if c.expires_at.is_some_and(|e| e <= now) {
        Some("credential expired")
    } else if c.host_status == "decommissioned" {
        Some("host decommissioned")
    } else {
        None
    };
    if let Some(reason) = reason {
        let actor = Actor {
            kind: "host",
            id: Some(c.host_id.to_string()),
            name: None,
            ip: ip.to_opt_string(),
        };
        let entry = audit::entry(
            app.now(),
            Some(customer),
            &actor,
            "host.auth",
            Some(("credential", c.credential_id.to_string())),
            "failure",
            serde_json::json!({ "reason": reason }),
        );
        audit::record_alone(&app.db, TenantCtx::Tenant(customer), entry).await;
        return Err(ApiError::new(ErrorCode::Unauthenticated, reason));
    }
    if c.tenant_status.as_deref() == Some("suspended") {
        return Err(ApiError::new(ErrorCode::TenantSuspended, "the tenant is suspended"));
    }
    let mut tx = app.db.begin(TenantCtx::Tenant(customer)).await?;
    alto_db::hosts::touch_credential(&mut tx, c.credential_id, now).await?;
    tx.commit().await?;
    Ok(Host { host_id: c.host_id, customer_id: customer, credential_id: c.credential_id, ip })
}
