//! `GET /api/v1/events`: a WebSocket of live events for the caller's tenant (all tenants for
//! platform staff). The session is re-checked periodically; a revoked session is disconnected.

use std::time::Duration;

use alto_model::{Permission, Scope};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
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

async fn stream(state: AppState, user: User, mut socket: WebSocket) {
    let mut rx = state.events.subscribe();
    let tenant = user.tenant().map(|t| t.0);
    let mut recheck = tokio::time::interval(Duration::from_secs(15));
    recheck.tick().await;
    metrics::gauge!("alto_events_subscribers").increment(1.0);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let visible = match tenant {
                        None => true,
                        Some(t) => ev.customer_id == Some(t),
                    };
                    if visible && socket.send(Message::Text(ev.json.clone().into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let msg = serde_json::json!({ "type": "lagged", "missed": n }).to_string();
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = recheck.tick() => {
                let token_ok = check_session(&state, &user).await;
                if !token_ok {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    }
    metrics::gauge!("alto_events_subscribers").decrement(1.0);
}

async fn check_session(state: &AppState, user: &User) -> bool {
    let Ok(mut tx) = state.db.begin(alto_db::TenantCtx::Platform).await else { return true };
    let row = alto_db::users::session_state(&mut tx, user.session_id).await;
    let _ = tx.commit().await;
    match row {
        Ok(Some((revoked, expires))) => revoked.is_none() && expires > state.now(),
        Ok(None) => false,
        // A database hiccup does not cut live consoles off; the next check decides.
        Err(_) => true,
    }
}
