//! One way to run recurring work: a [`Worker`] has a name, a `step` (one unit of work,
//! returning how much it did), an interval, wake-up triggers, cancellation, a status and
//! metrics.
//!
//! A worker runs as one or more instances ([`Worker::spawn`]); each instance calls the step,
//! and then either steps again at once (a [`Mode::Drain`] worker that did something) or waits
//! for the interval, a trigger or cancellation. Every step is counted in
//! `alto_worker_steps_total{worker,outcome}` (`outcome`: `work`, `idle`, `error`) and timed in
//! `alto_worker_step_duration_seconds{worker}`.
//!
//! Tests (and operators' tools) drive a worker by calling [`Worker::step`] or
//! [`Worker::run_until_idle`]: those run the same step exclusively, after the background
//! instances' steps in flight have finished and before they start another, so that when
//! `run_until_idle` returns, every unit of work this replica could do has been done.
//!
//! The worker knows nothing of the server: it is generic over the context handed to its step
//! (the server uses [`crate::state::AppState`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, RwLock};
use tokio_util::sync::CancellationToken;

/// The shortest wait between steps of an idle instance (an interval of zero does not spin).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What a failed step reports (logged, kept as the worker's last error).
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// A step in progress: how many units of work it did (0: nothing to do).
pub type StepFuture = Pin<Box<dyn Future<Output = Result<usize, StepError>> + Send>>;

/// The step function: context, and the name of the instance running it (e.g. the lease owner
/// of a claimed job).
type StepFn<C> = dyn Fn(C, Arc<str>) -> StepFuture + Send + Sync;

/// When an instance steps again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Steps again at once while a step did something (a queue is drained), then waits.
    Drain,
    /// One step per interval (or trigger), whatever it did.
    Periodic,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Not started, or waiting for its interval or a trigger.
    Idle,
    /// A step is in progress.
    Running,
    /// Every instance has stopped (cancelled).
    Stopped,
}

/// A snapshot of a worker's status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerStatus {
    pub name: &'static str,
    pub state: WorkerState,
    /// Steps finished (background and driven).
    pub steps: u64,
    /// Units of work the last successful step did.
    pub last_result: Option<usize>,
    /// The last failed step's error (cleared by the next successful step).
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    running: usize,
    instances: usize,
    started: bool,
    steps: u64,
    last_result: Option<usize>,
    last_error: Option<String>,
}

struct Inner<C> {
    name: &'static str,
    mode: Mode,
    interval: Duration,
    triggers: Vec<Arc<Notify>>,
    step: Box<StepFn<C>>,
    /// Background steps hold it shared; driven steps exclusively.
    gate: RwLock<()>,
    counters: Mutex<Counters>,
    /// Bumped after every step.
    stepped: watch::Sender<u64>,
}

/// A recurring unit of work. Cheap to clone; clones share status and gate.
pub struct Worker<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Worker<C> {
    fn clone(&self) -> Self {
        Worker { inner: self.inner.clone() }
    }
}

impl<C> std::fmt::Debug for Worker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

impl<C: Clone + Send + Sync + 'static> Worker<C> {
    /// A worker named `name` (the `worker` label of its metrics) running `step`.
    pub fn new<F, Fut>(name: &'static str, mode: Mode, interval: Duration, step: F) -> Worker<C>
    where
        F: Fn(C, Arc<str>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, StepError>> + Send + 'static,
    {
        Worker::with_triggers(name, mode, interval, Vec::new(), step)
    }

    /// As [`Worker::new`], also woken by any of `triggers`.
    pub fn with_triggers<F, Fut>(
        name: &'static str,
        mode: Mode,
        interval: Duration,
        triggers: Vec<Arc<Notify>>,
        step: F,
    ) -> Worker<C>
    where
        F: Fn(C, Arc<str>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, StepError>> + Send + 'static,
    {
        Worker {
            inner: Arc::new(Inner {
                name,
                mode,
                interval,
                triggers,
                step: Box::new(move |c, i| Box::pin(step(c, i))),
                gate: RwLock::new(()),
                counters: Mutex::new(Counters::default()),
                stepped: watch::channel(0).0,
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The worker's status now.
    pub fn status(&self) -> WorkerStatus {
        let c = self.counters();
        let state = if c.running > 0 {
            WorkerState::Running
        } else if c.started && c.instances == 0 {
            WorkerState::Stopped
        } else {
            WorkerState::Idle
        };
        WorkerStatus {
            name: self.inner.name,
            state,
            steps: c.steps,
            last_result: c.last_result,
            last_error: c.last_error.clone(),
        }
    }

    /// Starts `instances` background instances named `{prefix}-{n}` until `cancel`.
    pub fn spawn(
        &self,
        ctx: &C,
        prefix: &str,
        instances: usize,
        cancel: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        {
            let mut c = self.counters();
            c.started = true;
            c.instances += instances;
        }
        (0..instances)
            .map(|n| {
                let me = self.clone();
                let ctx = ctx.clone();
                let instance: Arc<str> = format!("{prefix}-{n}").into();
                let cancel = cancel.child_token();
                tokio::spawn(async move { me.run(ctx, instance, cancel).await })
            })
            .collect()
    }

    /// Runs one step now, exclusively (after background steps in flight have finished).
    pub async fn step(&self, ctx: &C) -> Result<usize, StepError> {
        let _exclusive = self.inner.gate.write().await;
        self.run_step(ctx.clone(), self.driven_instance()).await
    }

    /// Steps exclusively until a step does nothing (or fails); returns the work done.
    pub async fn run_until_idle(&self, ctx: &C) -> Result<usize, StepError> {
        let _exclusive = self.inner.gate.write().await;
        let instance = self.driven_instance();
        let mut total = 0;
        loop {
            match self.run_step(ctx.clone(), instance.clone()).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// How many steps have finished (background and driven); see [`Worker::wait_step_after`].
    pub fn steps(&self) -> u64 {
        *self.inner.stepped.borrow()
    }

    /// Waits until more than `seen` steps have finished, or `timeout`; returns whether they
    /// have. Read `seen` with [`Worker::steps`] before looking at what the steps change, and
    /// no step is missed.
    pub async fn wait_step_after(&self, seen: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.stepped.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > seen)).await.is_ok_and(|r| r.is_ok())
    }

    fn driven_instance(&self) -> Arc<str> {
        format!("{}-driven", self.inner.name).into()
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One step with its bookkeeping: status, metrics, log.
    async fn run_step(&self, ctx: C, instance: Arc<str>) -> Result<usize, StepError> {
        let name = self.inner.name;
        self.counters().running += 1;
        let started = Instant::now();
        let result = (self.inner.step)(ctx, instance).await;
        metrics::histogram!("alto_worker_step_duration_seconds", "worker" => name)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(0) => "idle",
            Ok(_) => "work",
            Err(_) => "error",
        };
        metrics::counter!("alto_worker_steps_total", "worker" => name, "outcome" => outcome)
            .increment(1);
        {
            let mut c = self.counters();
            c.running -= 1;
            c.steps += 1;
            match &result {
                Ok(n) => {
                    c.last_result = Some(*n);
                    c.last_error = None;
                }
                Err(e) => c.last_error = Some(e.to_string()),
            }
        }
        if let Err(e) = &result {
            tracing::warn!(worker = name, error = %e, "worker step failed");
        }
        self.inner.stepped.send_modify(|n| *n += 1);
        result
    }

    /// One background instance.
    async fn run(self, ctx: C, instance: Arc<str>, cancel: CancellationToken) {
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let result = {
                let _shared = tokio::select! {
                    _ = cancel.cancelled() => break,
                    g = self.inner.gate.read() => g,
                };
                self.run_step(ctx.clone(), instance.clone()).await
            };
            if self.inner.mode == Mode::Drain && matches!(result, Ok(n) if n > 0) {
                continue;
            }
            let triggered = async {
                if self.inner.triggers.is_empty() {
                    std::future::pending::<()>().await;
                } else {
                    let waits = self.inner.triggers.iter().map(|t| Box::pin(t.notified()));
                    futures::future::select_all(waits).await;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = triggered => {}
                _ = tokio::time::sleep(self.inner.interval.max(MIN_INTERVAL)) => {}
            }
        }
        self.counters().instances -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Queue = Arc<AtomicUsize>;

    /// One step: takes one item off the queue.
    async fn take_one(q: Queue, _: Arc<str>) -> Result<usize, StepError> {
        let took = q.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(usize::from(took.is_ok()))
    }

    #[tokio::test]
    async fn run_until_idle_drains_and_counts() {
        let q: Queue = Arc::new(AtomicUsize::new(3));
        let w = Worker::new("test-queue", Mode::Drain, Duration::from_secs(3600), take_one);
        assert_eq!(w.status().state, WorkerState::Idle);
        assert_eq!(w.run_until_idle(&q).await.unwrap(), 3);
        assert_eq!(q.load(Ordering::SeqCst), 0);
        let s = w.status();
        assert_eq!(s.steps, 4);
        assert_eq!(w.steps(), 4);
        assert_eq!(s.last_result, Some(0));
        assert_eq!(w.step(&q).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_drain_instance_empties_the_queue_then_waits_for_a_trigger() {
        let wake = Arc::new(Notify::new());
        let q: Queue = Arc::new(AtomicUsize::new(5));
        let w = Worker::with_triggers(
            "test-trigger",
            Mode::Drain,
            Duration::from_secs(3600),
            vec![wake.clone()],
            take_one,
        );
        let cancel = CancellationToken::new();
        let tasks = w.spawn(&q, "t", 1, &cancel);
        loop {
            let seen = w.steps();
            if q.load(Ordering::SeqCst) == 0 && w.status().last_result == Some(0) {
                break;
            }
            assert!(w.wait_step_after(seen, Duration::from_secs(5)).await, "steps while busy");
        }
        assert_eq!(w.steps(), 6, "five items and one empty look");
        q.store(2, Ordering::SeqCst);
        wake.notify_waiters();
        loop {
            let seen = w.steps();
            if q.load(Ordering::SeqCst) == 0 {
                break;
            }
            assert!(w.wait_step_after(seen, Duration::from_secs(5)).await, "woken");
        }
        cancel.cancel();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(w.status().state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn a_failed_step_is_the_last_error_until_one_succeeds() {
        let fail: Queue = Arc::new(AtomicUsize::new(1));
        let w = Worker::new(
            "test-fail",
            Mode::Periodic,
            Duration::from_secs(1),
            |f: Queue, _| async move {
                if f.swap(0, Ordering::SeqCst) == 1 {
                    Err(StepError::from("boom"))
                } else {
                    Ok(0)
                }
            },
        );
        assert!(w.step(&fail).await.is_err());
        assert_eq!(w.status().last_error.as_deref(), Some("boom"));
        assert_eq!(w.step(&fail).await.unwrap(), 0);
        assert_eq!(w.status().last_error, None);
    }

    #[tokio::test]
    async fn a_periodic_instance_steps_once_per_interval() {
        let q: Queue = Arc::new(AtomicUsize::new(10));
        let w = Worker::new("test-periodic", Mode::Periodic, Duration::from_millis(500), take_one);
        let cancel = CancellationToken::new();
        let tasks = w.spawn(&q, "p", 1, &cancel);
        assert!(w.wait_step_after(0, Duration::from_secs(1)).await);
        assert_eq!(q.load(Ordering::SeqCst), 9, "one step at start, not a drain");
        assert!(
            !w.wait_step_after(1, Duration::from_millis(100)).await,
            "none before the interval"
        );
        assert!(w.wait_step_after(1, Duration::from_secs(10)).await);
        assert_eq!(q.load(Ordering::SeqCst), 8);
        cancel.cancel();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(w.status().state, WorkerState::Stopped);
    }
}
