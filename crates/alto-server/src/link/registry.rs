//! The agents connected to this replica's link: one [`Session`] per host, what each runs,
//! and the dispatcher's wake-up. Plain state behind a mutex: no database, no application
//! state, so `AppState` can hold it without a cycle.
//!
//! **Must never:** block while holding the lock (no `.await` inside; sends use `try_send`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use alto_link::pb::{self, server_message};
use alto_link::tonic::Status;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::principal::Host;

/// The sending half of a session's stream to its agent.
pub(crate) type Outbound = mpsc::Sender<Result<pb::ServerMessage, Status>>;

/// One connected agent.
pub(crate) struct Session {
    pub id: u64,
    pub host: Host,
    pub tx: Outbound,
    /// Jobs offered to (or reported running by) the agent, with when they were offered.
    pub running: HashMap<Uuid, DateTime<Utc>>,
    /// Jobs the agent said it runs at Hello: never offered again in this session.
    pub exclude: HashSet<Uuid>,
    pub max_jobs: u32,
    /// The next dispatch takes back jobs still leased to the host.
    pub resume: bool,
    pub connected_at: DateTime<Utc>,
    pub agent_version: String,
}

/// A connected agent, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    pub host_id: Uuid,
    pub customer_id: Uuid,
    pub connected_at: DateTime<Utc>,
    pub agent_version: String,
    pub running_jobs: Vec<Uuid>,
}

/// What the dispatcher may offer one session: taken under the lock, used after it.
pub(crate) struct Want {
    pub host: Host,
    pub sid: u64,
    pub free: u32,
    pub resume: bool,
    pub exclude: HashSet<Uuid>,
    pub tx: Outbound,
}

/// The agents connected to this replica.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<Uuid, Session>>,
    next_id: AtomicU64,
    /// Wakes the dispatcher (one of its worker's triggers).
    pub wake: Arc<Notify>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is the host's agent connected to this replica?
    pub fn is_online(&self, host_id: Uuid) -> bool {
        self.lock().contains_key(&host_id)
    }

    /// The connected agents (of one tenant, or all).
    pub fn connected(&self, customer: Option<Uuid>) -> Vec<Connected> {
        let mut out: Vec<Connected> = self
            .lock()
            .values()
            .filter(|s| customer.is_none_or(|c| s.host.customer_id.0 == c))
            .map(|s| Connected {
                host_id: s.host.host_id,
                customer_id: s.host.customer_id.0,
                connected_at: s.connected_at,
                agent_version: s.agent_version.clone(),
                running_jobs: s.running.keys().copied().collect(),
            })
            .collect();
        out.sort_by_key(|c| c.host_id);
        out
    }

    /// A new session id.
    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a session; one already there for the host is closed (ABORTED).
    pub(crate) fn register(&self, s: Session) {
        let old = self.lock().insert(s.host.host_id, s);
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted("replaced by a newer connection")));
        }
        metrics::gauge!("alto_link_agents_connected").set(self.lock().len() as f64);
        self.wake.notify_one();
    }

    /// Removes the session if it is still the host's current one; says whether it was.
    pub(crate) fn unregister(&self, host_id: Uuid, id: u64) -> bool {
        let mut g = self.lock();
        let mine = g.get(&host_id).is_some_and(|s| s.id == id);
        if mine {
            g.remove(&host_id);
        }
        metrics::gauge!("alto_link_agents_connected").set(g.len() as f64);
        mine
    }

    /// A job of the host ended (whichever way it was reported): its slot is free.
    pub fn job_ended(&self, host_id: Uuid, job: Uuid) {
        if let Some(s) = self.lock().get_mut(&host_id) {
            s.running.remove(&job);
        }
        self.wake.notify_one();
    }

    /// The agent's heartbeat: the jobs it runs. Jobs offered more than `grace` ago that it
    /// no longer lists are forgotten (it dropped them; their lease will run out).
    pub(crate) fn heartbeat(
        &self,
        host_id: Uuid,
        id: u64,
        listed: &[Uuid],
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) {
        let mut g = self.lock();
        let Some(s) = g.get_mut(&host_id).filter(|s| s.id == id) else { return };
        let before = s.running.len();
        s.running.retain(|j, at| listed.contains(j) || now - *at < grace);
        for j in listed {
            s.running.entry(*j).or_insert(now);
        }
        if s.running.len() < before {
            self.wake.notify_one();
        }
    }

    /// The sessions with a free slot, and what each may be offered. The first call after a
    /// session starts carries its `resume` (take back jobs still leased to the host).
    pub(crate) fn wants(&self) -> Vec<Want> {
        let mut g = self.lock();
        g.values_mut()
            .filter(|s| (s.running.len() as u32) < s.max_jobs)
            .map(|s| {
                let w = Want {
                    host: s.host.clone(),
                    sid: s.id,
                    free: s.max_jobs - s.running.len() as u32,
                    resume: s.resume,
                    exclude: s.exclude.clone(),
                    tx: s.tx.clone(),
                };
                s.resume = false;
                w
            })
            .collect()
    }

    /// Records that `job` was offered in session `sid` of the host; false if that session
    /// has ended (the job's lease brings it back).
    pub(crate) fn offered(&self, host_id: Uuid, sid: u64, job: Uuid, now: DateTime<Utc>) -> bool {
        match self.lock().get_mut(&host_id).filter(|s| s.id == sid) {
            Some(s) => {
                s.running.insert(job, now);
                true
            }
            None => false,
        }
    }

    /// Pushes a cancel to the host's agent, if connected here. Returns whether it was sent.
    pub fn cancel(&self, host_id: Uuid, job: Uuid, reason: &str) -> bool {
        let g = self.lock();
        let Some(s) = g.get(&host_id) else { return false };
        let msg = pb::ServerMessage {
            body: Some(server_message::Body::Cancel(pb::Cancel {
                job_id: job.to_string(),
                reason: reason.to_owned(),
            })),
        };
        s.tx.try_send(Ok(msg)).is_ok()
    }
}
