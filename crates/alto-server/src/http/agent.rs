//! Endpoints agents call: enrollment (with a one-time token), heartbeat and credential
//! rotation (with the host credential). The tenant and host always come from the token or
//! credential, never from the request body.

use alto_api_types::{
    AgentLinkInfo, EnrollRequest, ErrorCode, HeartbeatRequest, HeartbeatResponse, IssuedCredential,
    RotateCredential,
};
use alto_db::{hosts, TenantCtx};
use alto_model::CustomerId;
use axum::extract::State;
use axum::Json;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ClientIp};
use crate::audit::{self, Actor};
use crate::auth::Host;
use crate::secrets;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

fn bad_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidEnrollmentToken,
        "the enrollment token is invalid, used or expired",
    )
}

/// Trades a one-time enrollment token for the host's credential (shown once).
#[utoipa::path(post, path = "/api/v1/agent/enroll", tag = "agent", request_body = EnrollRequest,
    responses((status = 200, body = IssuedCredential), (status = 401, body = Err)))]
pub(super) async fn enroll(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> ApiResult<Json<IssuedCredential>> {
    alto_model::validate::hostname(&req.hostname).map_err(ApiError::validation)?;
    if req.agent_version.is_empty() || req.agent_version.len() > 64 {
        return Err(ApiError::validation("agent_version must be 1 to 64 characters"));
    }
    if !secrets::looks_like(&req.token, secrets::ENROLL_PREFIX) {
        return Err(bad_token());
    }
    let now = state.now();
    let mut tx = state.db.begin(TenantCtx::Anonymous).await?;
    let found = hosts::auth_enrollment_token(&mut tx, &secrets::token_hash(&req.token)).await?;
    tx.commit().await?;
    let actor = |host: Option<Uuid>| Actor {
        kind: "host",
        id: host.map(|h| h.to_string()),
        name: Some(req.hostname.clone()),
        ip: ip.to_opt_string(),
    };
    let Some(t) = found else {
        let e = audit::entry(
            state.now(),
            None,
            &actor(None),
            "host.enroll",
            None,
            "failure",
            serde_json::json!({ "reason": "unknown token" }),
        );
        audit::record_alone(&state.db, TenantCtx::Platform, e).await;
        return Err(bad_token());
    };
    let tenant = CustomerId(t.customer_id);
    let ctx = TenantCtx::Tenant(tenant);
    let mut tx = state.db.begin(ctx).await?;
    let host = hosts::get(&mut tx, t.customer_id, t.host_id).await?;
    let tenant_row = alto_db::tenants::get(&mut tx, t.customer_id).await?;
    let refusal = if t.used_at.is_some() {
        Some("token already used")
    } else if t.expires_at <= now {
        Some("token expired")
    } else if host.status == "decommissioned" {
        Some("host decommissioned")
    } else if tenant_row.status != "active" {
        Some("tenant suspended")
    } else if !hosts::consume_enrollment(&mut tx, t.token_id, now).await? {
        Some("token already used")
    } else {
        None
    };
    if let Some(reason) = refusal {
        drop(tx);
        let e = audit::entry(
            state.now(),
            Some(tenant),
            &actor(Some(t.host_id)),
            "host.enroll",
            Some(("host", t.host_id.to_string())),
            "failure",
            serde_json::json!({ "reason": reason }),
        );
        audit::record_alone(&state.db, ctx, e).await;
        return Err(bad_token());
    }
    let secret = secrets::new_token(secrets::HOST_PREFIX);
    let cred_id = Uuid::now_v7();
    // Re-enrollment replaces the machine's identity: earlier credentials end now.
    hosts::add_credential(
        &mut tx,
        cred_id,
        t.customer_id,
        t.host_id,
        &secrets::token_hash(&secret),
        "enrollment",
        now,
        now,
    )
    .await?;
    hosts::set_agent_info(
        &mut tx,
        t.customer_id,
        t.host_id,
        &req.agent_version,
        req.os.as_deref(),
        &req.hostname,
        now,
    )
    .await?;
    let e = audit::entry(
        state.now(),
        Some(tenant),
        &actor(Some(t.host_id)),
        "host.enroll",
        Some(("credential", cred_id.to_string())),
        "success",
        serde_json::json!({ "host_id": t.host_id, "agent_version": req.agent_version }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(IssuedCredential {
        host_id: t.host_id,
        tenant_id: t.customer_id,
        credential_id: cred_id,
        credential: secret,
        previous_expires_at: None,
        link: state.link_info.as_deref().cloned(),
    }))
}

/// Reports liveness, agent version and volume usage.
#[utoipa::path(post, path = "/api/v1/agent/heartbeat", tag = "agent", request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 401, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn heartbeat(
    State(state): State<AppState>,
    host: Host,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    if req.agent_version.is_empty() || req.agent_version.len() > 64 {
        return Err(ApiError::validation("agent_version must be 1 to 64 characters"));
    }
    if let Some(h) = &req.hostname {
        alto_model::validate::hostname(h).map_err(ApiError::validation)?;
    }
    if req.volumes.len() > 256 {
        return Err(ApiError::validation("at most 256 volumes"));
    }
    for v in &req.volumes {
        if v.mount_point.is_empty() || v.mount_point.len() > 4096 || v.free_bytes > v.total_bytes {
            return Err(ApiError::validation(format!(
                "volume `{}`: mount_point must be 1 to 4096 bytes and free_bytes ≤ total_bytes",
                v.mount_point.chars().take(64).collect::<String>()
            )));
        }
    }
    let on_access = match &req.on_access {
        Some(o) => {
            let o = crate::recall::clean_on_access(o).map_err(ApiError::validation)?;
            serde_json::to_value(o).ok()
        }
        None => None,
    };
    let now = state.now();
    let volumes = serde_json::to_value(&req.volumes).unwrap_or_default();
    let ip = host.ip.to_opt_string();
    let mut tx = state.db.begin(host.ctx()).await?;
    let prev = hosts::heartbeat(
        &mut tx,
        host.customer_id.0,
        host.host_id,
        &hosts::Heartbeat {
            agent_version: &req.agent_version,
            os: req.os.as_deref(),
            hostname: req.hostname.as_deref(),
            volumes,
            source_ip: ip.as_deref(),
            on_access,
        },
        now,
    )
    .await?;
    crate::services::host_monitor::announce_online(
        &mut tx,
        &host,
        &prev,
        now,
        serde_json::json!({ "agent_version": req.agent_version }),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("alto_agent_heartbeats_total").increment(1);
    Ok(Json(HeartbeatResponse {
        host_id: host.host_id,
        status: "online".into(),
        server_time: now,
        heartbeat_interval_seconds: state.config.agents.heartbeat_interval.as_secs(),
    }))
}

/// Issues a new credential. The one used for this call keeps working for the configured
/// overlap window, so an agent can switch without a gap. Only the host's current credential
/// may rotate: a superseded one (inside its overlap window) gets `403 forbidden` and changes
/// nothing.
///
/// Without a body the server makes the new secret. With a `RotateCredential` body the agent
/// proposes the new secret and id, which it has stored before asking: a crash between this
/// answer and the agent's save then cannot lose the new secret (the agent tries it at its
/// next start). A proposed id already in use is `409 conflict`.
#[utoipa::path(post, path = "/api/v1/agent/credentials/rotate", tag = "agent",
    request_body(content = Option<RotateCredential>, content_type = "application/json"),
    responses((status = 200, body = IssuedCredential), (status = 400, body = Err),
        (status = 401, body = Err), (status = 403, body = Err), (status = 409, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    host: Host,
    body: axum::body::Bytes,
) -> ApiResult<Json<IssuedCredential>> {
    let now = state.now();
    let overlap_end = now
        + chrono::Duration::from_std(state.config.agents.credential_overlap).unwrap_or_default();
    let (secret, cred_id) = if body.iter().all(u8::is_ascii_whitespace) {
        (secrets::new_token(secrets::HOST_PREFIX), Uuid::now_v7())
    } else {
        let p: RotateCredential = serde_json::from_slice(&body)
            .map_err(|e| ApiError::validation(format!("rotation request: {e}")))?;
        if !secrets::looks_like(&p.credential, secrets::HOST_PREFIX) {
            return Err(ApiError::validation(
                "credential must be alto_h_ followed by 43 base64url characters",
            ));
        }
        if p.credential_id.is_nil() {
            return Err(ApiError::validation("credential_id must not be the nil UUID"));
        }
        (p.credential, p.credential_id)
    };
    let mut tx = state.db.begin(host.ctx()).await?;
    if !hosts::lock_current_credential(
        &mut tx,
        host.customer_id.0,
        host.host_id,
        host.credential_id,
    )
    .await?
    {
        drop(tx);
        let e = audit::entry(
            state.now(),
            Some(host.customer_id),
            &host.actor(),
            "host.credential_rotate",
            Some(("credential", host.credential_id.to_string())),
            "denied",
            serde_json::json!({ "reason": "superseded credential" }),
        );
        audit::record_alone(&state.db, host.ctx(), e).await;
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the current credential can rotate; this one was superseded by a rotation \
             and only authenticates until its overlap window ends",
        ));
    }
    hosts::add_credential(
        &mut tx,
        cred_id,
        host.customer_id.0,
        host.host_id,
        &secrets::token_hash(&secret),
        "rotation",
        now,
        overlap_end,
    )
    .await?;
    let e = audit::entry(
        state.now(),
        Some(host.customer_id),
        &host.actor(),
        "host.credential_rotate",
        Some(("credential", cred_id.to_string())),
        "success",
        serde_json::json!({ "previous": host.credential_id, "previous_expires_at": overlap_end }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(IssuedCredential {
        host_id: host.host_id,
        tenant_id: host.customer_id.0,
        credential_id: cred_id,
        credential: secret,
        previous_expires_at: Some(overlap_end),
        link: state.link_info.as_deref().cloned(),
    }))
}

/// Where the agent link listens and the CA it presents (for agents enrolled before the link
/// existed, or after its certificate authority changed).
#[utoipa::path(get, path = "/api/v1/agent/link", tag = "agent",
    responses((status = 200, body = AgentLinkInfo), (status = 401, body = Err), (status = 404, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn link_info(
    State(state): State<AppState>,
    _host: Host,
) -> ApiResult<Json<AgentLinkInfo>> {
    state
        .link_info
        .as_deref()
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("the agent link (it is disabled)"))
}
