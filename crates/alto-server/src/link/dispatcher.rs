//! The dispatcher (the link's "actor service"): offers queued jobs to connected agents with
//! a free slot, sends back to their queue the jobs whose lease ran out, and pushes operator
//! cancels to the agent running the job.
//!
//! The dispatch itself is a [`Worker`] (`link-dispatcher`): one step requeues expired leases
//! (at most once per `link.dispatch_interval`) and offers jobs; it runs every interval and when
//! woken — by an agent connecting or ending a job (`Registry::wake`), by queued work
//! (`jobs_wakeup`) and by plan and job events, which [`forward_events`] turns into wake-ups and
//! cancel pushes. Claiming is the domain operation `crate::execution::claim` (the same one
//! REST agents use); this module only decides whom to offer what and sends it.
//!
//! **Must never:** offer a job to an agent of another host or tenant (jobs are claimed by the
//! session's authenticated host id); offer a job the agent says it is running.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alto_db::DbError;
use alto_link::convert;
use alto_link::pb::{self, server_message};
use tokio_util::sync::CancellationToken;

use super::session::lease;
use crate::execution;
use crate::state::AppState;
use crate::worker::{Mode, Worker};

/// One round of dispatch: offers queued jobs to every connected agent with a free slot.
/// Returns how many were offered.
pub async fn dispatch_once(state: &AppState) -> usize {
    let mut offered = 0;
    for w in state.link.wants() {
        let jobs = match execution::claim(state, &w.host, w.free, w.resume, lease(state)).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(host = %w.host.host_id, error = %e, "dispatch: claim failed");
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        // The host's limit of each kind (tier: uploads, recall: downloads), read once a round.
        let mut limits: std::collections::HashMap<&'static str, u64> = Default::default();
        let now = state.now();
        for job in jobs {
            let id = job.job_id;
            if !state.link.offered(w.host.host_id, w.sid, id, now) {
                break; // the session ended; the lease brings the job back
            }
            if w.exclude.contains(&id) {
                continue; // the agent runs it already
            }
            let kind = job.kind();
            let bandwidth = match limits.get(kind) {
                Some(b) => *b,
                None => {
                    let b = execution::host_bandwidth(state, &w.host, kind).await.unwrap_or(0);
                    limits.insert(kind, b);
                    b
                }
            };
            let offer = pb::ServerMessage {
                body: Some(server_message::Body::Offer(convert::offer_to_pb(&job, bandwidth))),
            };
            if w.tx.send(Ok(offer)).await.is_err() {
                break;
            }
            metrics::counter!("alto_link_jobs_offered_total").increment(1);
            offered += 1;
            tracing::info!(host = %w.host.host_id, job = %id, kind = job.kind(),
                files = job.file_count(), "job offered");
        }
    }
    offered
}

/// Sends back to their host's queue the jobs whose lease ran out; returns how many.
pub async fn requeue_expired(state: &AppState) -> Result<usize, DbError> {
    let now = state.now();
    let mut tx = state.db.begin(alto_db::TenantCtx::Platform).await?;
    let jobs = alto_db::execution::requeue_expired(&mut tx, now).await?;
    for j in &jobs {
        crate::events::publish(
            &mut tx,
            &serde_json::json!({ "type": "job_state", "customer_id": j.customer_id,
                "job_id": j.id, "host_id": j.host_id, "state": "queued",
                "previous": "running", "reason": "lease expired" }),
        )
        .await?;
    }
    tx.commit().await?;
    if !jobs.is_empty() {
        tracing::warn!(jobs = jobs.len(), "jobs whose agent vanished went back to their queue");
        metrics::counter!("alto_link_jobs_requeued_total").increment(jobs.len() as u64);
    }
    Ok(jobs.len())
}

/// The dispatcher as a [`Worker`]: each step requeues expired leases (once per interval at
/// most) and offers jobs; returns how many jobs it requeued and offered.
pub fn worker(state: &AppState) -> Worker<AppState> {
    let every = state.config.link.dispatch_interval.max(Duration::from_millis(100));
    let last_requeue: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::default();
    Worker::with_triggers(
        "link-dispatcher",
        Mode::Periodic,
        every,
        vec![state.link.wake.clone(), state.jobs_wakeup.clone()],
        move |state: AppState, _| {
            let last_requeue = last_requeue.clone();
            async move {
                let due = {
                    let mut last = last_requeue.lock().unwrap_or_else(PoisonError::into_inner);
                    let now = tokio::time::Instant::now();
                    let due = last.is_none_or(|t| now.duration_since(t) >= every);
                    if due {
                        *last = Some(now);
                    }
                    due
                };
                let requeued = if due { requeue_expired(&state).await? } else { 0 };
                Ok(requeued + dispatch_once(&state).await)
            }
        },
    )
}

/// Turns plan and job events (from any replica) into dispatcher wake-ups, and pushes an
/// operator's cancel to the agent running the job, if it is connected here. Runs until
/// `cancel`.
pub async fn forward_events(state: AppState, cancel: CancellationToken) {
    let mut events = state.events.subscribe();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(ev) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&ev.json) else { continue };
                match v["type"].as_str() {
                    Some("job_state") => {
                        if v["cancel_requested"].as_bool() == Some(true) {
                            let host = v["host_id"].as_str().and_then(|h| h.parse().ok());
                            let job = v["job_id"].as_str().and_then(|h| h.parse().ok());
                            if let (Some(h), Some(j)) = (host, job) {
                                if state.link.cancel(h, j, "cancelled by an operator") {
                                    tracing::info!(host = %h, job = %j, "cancel sent to the agent");
                                }
                            }
                        }
                    }
                    Some("plan_created") => {}
                    _ => continue,
                }
                state.link.wake.notify_one();
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                state.link.wake.notify_one()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
