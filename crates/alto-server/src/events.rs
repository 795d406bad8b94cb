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
    alto_db::notify(tx, CHANNEL, &fit_payload(event)).await
}

/// PostgreSQL refuses a `NOTIFY` payload of 8,000 bytes or more, and with it the whole
/// transaction that publishes (a job's failure report could then never be recorded).
pub const MAX_PAYLOAD: usize = 7_900;

/// The event as JSON within [`MAX_PAYLOAD`]: long strings are cut (on a character boundary,
/// marked with `…`), shorter and shorter, and as a last resort only the event's top-level
/// scalar fields are kept, with `"truncated": true`.
pub fn fit_payload(event: &serde_json::Value) -> String {
    let s = event.to_string();
    if s.len() < MAX_PAYLOAD {
        return s;
    }
    for keep in [1024, 256, 64] {
        let mut v = event.clone();
        cut_strings(&mut v, keep);
        if let Some(o) = v.as_object_mut() {
            o.insert("truncated".into(), serde_json::Value::Bool(true));
        }
        let s = v.to_string();
        if s.len() < MAX_PAYLOAD {
            return s;
        }
    }
    let mut slim = serde_json::Map::new();
    if let Some(o) = event.as_object() {
        for (k, v) in o {
            if matches!(v, serde_json::Value::String(x) if x.len() <= 64)
                || v.is_number()
                || v.is_boolean()
            {
                slim.insert(k.clone(), v.clone());
            }
        }
    }
    slim.insert("truncated".into(), serde_json::Value::Bool(true));
    serde_json::Value::Object(slim).to_string()
}

fn cut_strings(v: &mut serde_json::Value, keep: usize) {
    match v {
        serde_json::Value::String(s) if s.len() > keep => {
            let mut end = keep;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| cut_strings(x, keep)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| cut_strings(x, keep)),
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_always_fit_the_notify_limit() {
        let small = serde_json::json!({ "type": "job.failed", "error": "short" });
        assert_eq!(fit_payload(&small), small.to_string(), "small events are untouched");
        let long = serde_json::json!({ "type": "job.failed", "job_id": "j1",
            "error": "é".repeat(20_000), "files": vec!["x".repeat(300); 100] });
        let s = fit_payload(&long);
        assert!(s.len() < MAX_PAYLOAD, "{}", s.len());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!((v["type"].as_str(), v["job_id"].as_str()), (Some("job.failed"), Some("j1")));
        assert_eq!(v["truncated"], true);
        let huge = serde_json::json!({ "type": "x", "id": 7, "list": vec![1; 10_000] });
        let s = fit_payload(&huge);
        assert!(s.len() < MAX_PAYLOAD);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!((v["id"].as_i64(), v["truncated"].as_bool()), (Some(7), Some(true)));
    }
}
