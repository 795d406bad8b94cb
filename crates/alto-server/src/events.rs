//! Live events. Producers publish with `pg_notify('alto_events', …)` inside their transaction,
//! so an event is delivered exactly when its change commits, on every server replica. Each
//! replica holds one `LISTEN` connection and fans events out to its WebSocket clients.

use std::sync::Arc;
use std::time::Duration;

use alto_db::Db;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const CHANNEL: &str = "alto_events";

/// One event as received; `json` is sent to clients verbatim.
#[derive(Debug, Clone)]
pub struct Event {
    /// The tenant it belongs to; `None` for platform events (platform staff only).
    pub customer_id: Option<Uuid>,
    pub json: String,
}

#[derive(Deserialize)]
struct Envelope {
    customer_id: Option<Uuid>,
}

impl Event {
    pub fn parse(payload: &str) -> Option<Event> {
        let env: Envelope = serde_json::from_str(payload).ok()?;
        Some(Event { customer_id: env.customer_id, json: payload.to_owned() })
    }
}

/// Publishes an event that is delivered when `tx` commits.
pub async fn publish(
    tx: &mut alto_db::Tx,
    event: &serde_json::Value,
) -> Result<(), alto_db::DbError> {
    alto_db::notify(tx, CHANNEL, &event.to_string()).await
}

/// Runs until `cancel`: LISTEN and forward to `out`. Reconnects after errors.
pub async fn run_listener(
    db: Db,
    out: broadcast::Sender<Arc<Event>>,
    jobs: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(db.pool()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event listener cannot connect; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen_all([CHANNEL, alto_db::jobs::CHANNEL]).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                msg = listener.recv() => match msg {
                    Ok(n) if n.channel() == alto_db::jobs::CHANNEL => jobs.notify_waiters(),
                    Ok(n) => {
                        if let Some(ev) = Event::parse(n.payload()) {
                            let _ = out.send(Arc::new(ev));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener lost its connection");
                        break;
                    }
                }
            }
        }
    }
}
