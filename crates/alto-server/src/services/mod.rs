//! Background services. Each runs on every replica and coordinates through PostgreSQL
//! (advisory locks, rows), never through memory, so replicas can come and go.
//!
//! Every recurring service is a [`Worker`] ([`crate::worker`]); [`Workers`] holds this
//! replica's, for startup to spawn and for tests to drive.

pub mod host_monitor;
pub mod ingest;
pub mod planner;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::worker::{Worker, WorkerStatus};

/// The background workers of one replica.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Merges uploaded scans (`ingest.workers` instances).
    pub ingest: Worker<AppState>,
    /// Drops expired scan staging partitions.
    pub staging_expiry: Worker<AppState>,
    /// Runs queued planning runs (`planner.workers` instances).
    pub planner: Worker<AppState>,
    /// Queues scheduled and watermark planning runs.
    pub planner_sweep: Worker<AppState>,
    /// Marks silent hosts offline.
    pub host_monitor: Worker<AppState>,
    /// Drops the recall-storm detector's windows that no longer count.
    pub recall_expiry: Worker<AppState>,
    /// Queues the recall jobs of scheduled restoration rules that are due.
    pub recall_schedules: Worker<AppState>,
    /// Offers queued jobs to agents connected over the link and requeues expired leases
    /// (spawned only when the link is enabled).
    pub link_dispatcher: Worker<AppState>,
}

impl Workers {
    pub fn new(state: &AppState) -> Workers {
        Workers {
            ingest: ingest::worker(state),
            staging_expiry: ingest::staging_expiry_worker(),
            planner: planner::worker(state),
            planner_sweep: planner::sweep_worker(state),
            host_monitor: host_monitor::worker(state.config.agents.heartbeat_interval),
            recall_expiry: recall_expiry_worker(),
            recall_schedules: recall_schedule_worker(),
            link_dispatcher: crate::link::dispatcher::worker(state),
        }
    }

    /// Every worker.
    pub fn all(&self) -> [&Worker<AppState>; 8] {
        [
            &self.ingest,
            &self.staging_expiry,
            &self.planner,
            &self.planner_sweep,
            &self.host_monitor,
            &self.recall_expiry,
            &self.recall_schedules,
            &self.link_dispatcher,
        ]
    }

    /// Every worker's status.
    pub fn status(&self) -> Vec<WorkerStatus> {
        self.all().iter().map(|w| w.status()).collect()
    }

    /// Starts every worker's instances; `replica` names them (lease owners of claimed jobs:
    /// `{replica}-ingest-{n}`, `{replica}-planner-{n}`).
    pub fn spawn(
        &self,
        state: &AppState,
        replica: &str,
        cancel: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let cfg = &state.config;
        let mut tasks = Vec::new();
        tasks.extend(self.host_monitor.spawn(state, &format!("{replica}-host-monitor"), 1, cancel));
        tasks.extend(self.ingest.spawn(
            state,
            &format!("{replica}-ingest"),
            cfg.ingest.workers,
            cancel,
        ));
        tasks.extend(self.staging_expiry.spawn(state, &format!("{replica}-staging"), 1, cancel));
        tasks.extend(self.recall_expiry.spawn(
            state,
            &format!("{replica}-recall-expiry"),
            1,
            cancel,
        ));
        tasks.extend(self.recall_schedules.spawn(
            state,
            &format!("{replica}-recall-schedules"),
            1,
            cancel,
        ));
        tasks.extend(self.planner.spawn(
            state,
            &format!("{replica}-planner"),
            cfg.planner.workers,
            cancel,
        ));
        // A replica without planner workers does not sweep either (nor queue runs).
        let sweeps = usize::from(cfg.planner.workers > 0);
        tasks.extend(self.planner_sweep.spawn(state, &format!("{replica}-sweep"), sweeps, cancel));
        if cfg.link.enabled {
            tasks.extend(self.link_dispatcher.spawn(
                state,
                &format!("{replica}-dispatcher"),
                1,
                cancel,
            ));
            tasks.push(tokio::spawn(crate::link::forward_events(
                state.clone(),
                cancel.child_token(),
            )));
        }
        tasks
    }
}

/// The recall-storm detector's expiry: every 5 minutes, drops counter windows older than the
/// previous window (they no longer count); idempotent, so every replica may run it.
pub fn recall_expiry_worker() -> Worker<AppState> {
    Worker::new(
        "recall-expiry",
        crate::worker::Mode::Periodic,
        std::time::Duration::from_secs(300),
        |state: AppState, _| async move {
            let n = crate::recall::expire_rate_windows(&state).await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        },
    )
}

/// Scheduled restoration: every 30 seconds, queues the recall jobs of the schedules that are
/// due (each schedule row is taken by one replica).
pub fn recall_schedule_worker() -> Worker<AppState> {
    Worker::new(
        "recall-schedules",
        crate::worker::Mode::Periodic,
        std::time::Duration::from_secs(30),
        |state: AppState, _| async move { Ok(crate::recall::run_due_schedules(&state).await?) },
    )
}
