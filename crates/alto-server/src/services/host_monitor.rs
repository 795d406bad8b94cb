//! Marks hosts offline when their heartbeats stop, and announces it (a periodic [`Worker`]).

use std::time::Duration;

use alto_db::{hosts, TenantCtx};
use alto_model::CustomerId;

use crate::audit::{self, Actor};
use crate::state::AppState;
use crate::worker::{Mode, Worker};

/// Advisory-lock key of the sweep.
const HOST_MONITOR_LOCK: i64 = 73010002;

/// One sweep. Only one replica sweeps at a time (transaction-scoped advisory lock).
/// Returns how many hosts went offline.
pub async fn sweep(state: &AppState) -> Result<usize, alto_db::DbError> {
    let now = state.now();
    let cutoff =
        now - chrono::Duration::from_std(state.config.agents.offline_after).unwrap_or_default();
    let mut tx = state.db.begin(TenantCtx::Platform).await?;
    if !alto_db::try_singleton_lock(&mut tx, HOST_MONITOR_LOCK).await? {
        return Ok(0);
    }
    let gone = hosts::mark_stale_offline(&mut tx, cutoff, now).await?;
    for h in &gone {
        let e = audit::entry(
            state.now(),
            Some(CustomerId(h.customer_id)),
            &Actor::system(),
            "host.offline",
            Some(("host", h.id.to_string())),
            "success",
            serde_json::json!({ "last_seen_at": h.last_seen_at }),
        );
        audit::record(&mut tx, &e).await?;
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "host_status", "customer_id": h.customer_id,
                                 "host_id": h.id, "status": "offline", "previous": "online" }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(gone.len())
}

/// Records, in the transaction that saw it, that a host whose status was `previous` is
/// online again: the `host.online` audit entry (with `details`) and the `host_status` event.
/// Nothing when it was online already. Both ways an agent shows it is alive (a REST
/// heartbeat, the link) use it.
pub async fn announce_online(
    tx: &mut alto_db::Tx,
    host: &crate::principal::Host,
    previous: &str,
    now: chrono::DateTime<chrono::Utc>,
    details: serde_json::Value,
) -> Result<(), alto_db::DbError> {
    if previous == "online" {
        return Ok(());
    }
    let mut details = details;
    details["previous"] = previous.into();
    let e = audit::entry(
        now,
        Some(host.customer_id),
        &host.actor(),
        "host.online",
        Some(("host", host.host_id.to_string())),
        "success",
        details,
    );
    audit::record(tx, &e).await?;
    crate::events::publish(
        tx,
        &serde_json::json!({
        "type": "host_status", "customer_id": host.customer_id, "host_id": host.host_id,
        "status": "online", "previous": previous }),
    )
    .await
}

/// The host monitor worker: one sweep every `interval`.
pub fn worker(interval: Duration) -> Worker<AppState> {
    Worker::new("host-monitor", Mode::Periodic, interval, |state: AppState, _| async move {
        let n = sweep(&state).await?;
        if n > 0 {
            tracing::info!(hosts = n, "hosts marked offline");
        }
        Ok(n)
    })
}
