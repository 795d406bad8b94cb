//! `GET /api/v1/events`: a WebSocket of live events for the caller's tenant (all tenants for
//! platform staff). The session, its user and tenant are re-checked periodically and before
//! delivering events: a socket whose session ended, whose user was disabled or lost the
//! permission, or whose tenant was suspended is closed (code 1008, the reason says why).

use std::time::{Duration, Instant};

use alto_model::rbac::allows;
use alto_model::{Permission, Role, Scope};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiResult;
use crate::auth::User;
use crate::state::AppState;

/// Upgrades to a WebSocket that streams JSON events: `{"type": "audit", …}` for audit
/// entries and `{"type": "host_status", …}` for host status changes.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 101, description = "WebSocket of JSON events"),
              (status = 401, body = alto_api_types::ErrorBody)))]
pub(super) async fn subscribe(
    State(state): State<AppState>,
    user: User,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    match user.scope {
        Scope::Platform => {
            user.authorize_platform(&state, Permission::EventsSubscribe).await?;
        }
        Scope::Tenant(t) => {
            user.authorize(&state, Permission::EventsSubscribe, t).await?;
        }
    }
    Ok(ws.on_upgrade(move |socket| stream(state, user, socket)))
}

/// How often an idle socket re-checks its session, user and tenant.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// An event is delivered only if that check is at most this old (otherwise it is re-run
/// first), so nothing the caller may no longer see goes out after a suspension, a disabled
/// account, a lost role or a logout.
const FRESH_FOR: Duration = Duration::from_secs(1);

async fn stream(state: AppState, user: User, mut socket: WebSocket) {
    let mut rx = state.events.subscribe();
    let tenant = user.tenant().map(|t| t.0);
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.tick().await;
    let mut checked = Instant::now();
    metrics::gauge!("alto_events_subscribers").increment(1.0);
    let ended = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let visible = match tenant {
                        None => true,
                        Some(t) => ev.customer_id == Some(t),
                    };
                    if !visible {
                        continue;
                    }
                    if checked.elapsed() >= FRESH_FOR {
                        if let Some(why) = still_allowed(&state, &user).await {
                            break Some(why);
                        }
                        checked = Instant::now();
                    }
                    if socket.send(Message::Text(ev.json.clone().into())).await.is_err() {
                        break None;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let msg = serde_json::json!({ "type": "lagged", "missed": n }).to_string();
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break None;
                    }
                }
                Err(RecvError::Closed) => break None,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            _ = recheck.tick() => {
                if let Some(why) = still_allowed(&state, &user).await {
                    break Some(why);
                }
                checked = Instant::now();
            }
        }
    };
    if let Some(why) = ended {
        // 1008: policy violation; the reason says which check failed.
        let frame = CloseFrame { code: 1008, reason: why.into() };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
    metrics::gauge!("alto_events_subscribers").decrement(1.0);
}

/// `None` while the session may still receive events; otherwise why not. Re-checks what
/// authentication checked at the upgrade: the session (logout, revocation, expiry), the user
/// (disabled, roles that no longer allow subscribing) and the tenant (suspended).
async fn still_allowed(state: &AppState, user: &User) -> Option<&'static str> {
    let Ok(mut tx) = state.db.begin(alto_db::TenantCtx::Platform).await else { return None };
    let row = alto_db::users::session_check(&mut tx, user.session_id).await;
    let _ = tx.commit().await;
    let s = match row {
        Ok(Some(s)) => s,
        Ok(None) => return Some("session ended"),
        // A database hiccup does not cut live consoles off; the next check decides.
        Err(_) => return None,
    };
    if s.revoked_at.is_some() || s.expires_at <= state.now() {
        return Some("session ended");
    }
    if s.disabled {
        return Some("account disabled");
    }
    if s.tenant_status.as_deref() == Some("suspended") {
        return Some("tenant suspended");
    }
    let roles: Vec<Role> = s.roles.iter().filter_map(|r| Role::parse(r)).collect();
    if !allows(user.scope, &roles, Permission::EventsSubscribe, user.tenant()) {
        return Some("permission withdrawn");
    }
    None
}
