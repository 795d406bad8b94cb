//! Executing one tier job: [`TierExecutor`] batches the job's files through the per-file
//! steps ([`super::file`]), keeps the journal ([`crate::journal`]), reports every outcome
//! through a [`Reporter`] (retrying transient failures), recovers interrupted jobs from their
//! journals, and completes the job. See [`crate::tier`] for the protocol.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use alto_model::{Clock as _, HostId, SystemClock};
use alto_tier2::{DirTarget, Target, Tier2Error};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::file::{convert, prepare, recover_file, FileCtx, Prepared, Ready, Recovered, Signals};
use crate::job::{
    CompleteJob, ExecFile, ExecJob, ExecTarget, FileOutcome, FileResult, JobEnd, JobWork,
    ProgressReport, ReportError, Reporter, TargetKind, TierWork, INTERRUPTED, STORAGE_UNAVAILABLE,
};
use crate::journal::{JobState, Journal, Record, SeqState, StagedFile};

/// Attempts per server call before the job is left to its journal.
pub const MAX_ATTEMPTS: u32 = 3;

/// Results per `files` call (a batch never has more; a resend after a restart might).
const MAX_RESULTS_PER_CALL: usize = 500;

/// Knobs of the executor.
#[derive(Debug, Clone)]
pub struct TierOptions {
    /// Base directory of `directory` targets (`tier2.directory_base`).
    pub tier2_base: PathBuf,
    /// Where remote targets' puts spool (hash and compress before the upload) and where the
    /// settings of the targets jobs used are remembered for `recall` (`<state_dir>`).
    pub state_dir: PathBuf,
    /// Where journals live (`<state_dir>/tier-journal`).
    pub journal_dir: PathBuf,
    /// Files copied or converted at the same time.
    pub parallel: usize,
    /// Most files per batch (one `staged` report, one final report).
    pub batch_files: usize,
    /// Most bytes per batch (a batch has at least one file).
    pub batch_bytes: u64,
    /// Time between `progress` calls while a job runs (the lease is 10 minutes).
    pub progress_interval: Duration,
    /// First retry delay; doubles per attempt.
    pub retry_delay: Duration,
    /// Files of at least this many bytes, stored uncompressed, get a chunk manifest in
    /// tier-2 and a `chunks` field in their stub attribute (range-first recall;
    /// `on_access.range_fill_min_size`, 0: never).
    pub range_fill_min_size: u64,
    /// The preferred chunk size of those manifests (`on_access.range_fill_chunk_size`).
    pub range_fill_chunk_size: u64,
}

impl TierOptions {
    pub fn new(tier2_base: PathBuf, state_dir: &Path) -> TierOptions {
        TierOptions {
            tier2_base,
            state_dir: state_dir.to_owned(),
            journal_dir: crate::journal::journal_dir(state_dir),
            parallel: 4,
            batch_files: 32,
            batch_bytes: 256 << 20,
            progress_interval: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
            range_fill_min_size: crate::config::DEFAULT_RANGE_FILL_MIN_SIZE,
            range_fill_chunk_size: crate::config::DEFAULT_RANGE_FILL_CHUNK_SIZE,
        }
    }
}

/// Why a pass or a job stopped before its end. The journal keeps what was in flight.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("{0}")]
    Server(#[from] ReportError),
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What happened to one job in this process.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct JobReport {
    pub job_id: Uuid,
    /// How the job ended; `None`: it is not over (its journal resumes it).
    pub end: Option<JobEnd>,
    pub stubbed: u64,
    /// Files brought back (recall jobs).
    #[serde(skip_serializing_if = "is_zero")]
    pub recalled: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Bytes of the files stubbed.
    pub bytes_stubbed: u64,
    /// The job was found in a journal (a previous run was interrupted).
    pub resumed: bool,
    /// Why it ended as it did, if not plainly.
    pub note: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl JobReport {
    pub(super) fn count(&mut self, r: &FileResult, size: u64) {
        match r.outcome {
            FileOutcome::Recalled => self.recalled += 1,
            FileOutcome::Stubbed => {
                self.stubbed += 1;
                self.bytes_stubbed += size;
            }
            FileOutcome::Skipped => self.skipped += 1,
            FileOutcome::Failed | FileOutcome::Staged => self.failed += 1,
        }
    }
}

/// Totals of a pass.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TierSummary {
    pub jobs: Vec<JobReport>,
    /// A job stopped because tier-2 was unavailable (the pass claims nothing more).
    pub storage_unavailable: bool,
}

impl TierSummary {
    pub fn stubbed(&self) -> u64 {
        self.jobs.iter().map(|j| j.stubbed).sum()
    }
    pub fn skipped(&self) -> u64 {
        self.jobs.iter().map(|j| j.skipped).sum()
    }
    pub fn failed(&self) -> u64 {
        self.jobs.iter().map(|j| j.failed).sum()
    }
    pub fn bytes_stubbed(&self) -> u64 {
        self.jobs.iter().map(|j| j.bytes_stubbed).sum()
    }
    pub(super) fn push(&mut self, r: JobReport) {
        if r.note.as_deref().is_some_and(|n| n.starts_with(STORAGE_UNAVAILABLE)) {
            self.storage_unavailable = true;
        }
        self.jobs.push(r);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Resume,
    Cancelled,
    Lost,
}

/// Runs tiering jobs for one enrolled host.
pub struct TierExecutor {
    pub(super) reporter: Arc<dyn Reporter>,
    pub(super) opts: TierOptions,
    pub(super) host_id: HostId,
    pub(super) customer_id: alto_model::CustomerId,
    pub(super) shutdown: CancellationToken,
    pub(super) cancels: Canceller,
    /// The host's upload bandwidth limit, shared by every job this executor runs at once.
    host_throttle: Arc<crate::throttle::Throttle>,
    /// The host's recall-job download limit, shared by every recall job (on-access recalls
    /// are never throttled).
    pub(super) recall_throttle: Arc<crate::throttle::Throttle>,
}

/// Cancels running jobs from outside the executor (the agent link's `Cancel`). A cancel for
/// a job not running yet applies when it starts.
#[derive(Debug, Clone, Default)]
pub struct Canceller(Arc<std::sync::Mutex<CancelState>>);

#[derive(Debug, Default)]
struct CancelState {
    active: std::collections::HashMap<Uuid, Arc<Signals>>,
    requested: HashSet<Uuid>,
}

impl Canceller {
    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No new file of `job` starts; the files in flight finish and the job completes
    /// `cancelled`.
    pub fn cancel(&self, job: Uuid) {
        let mut g = self.lock();
        match g.active.get(&job) {
            Some(s) => s.cancel.store(true, Ordering::Relaxed),
            None => {
                g.requested.insert(job);
            }
        }
    }

    /// Drops a pending cancel of a job that is over.
    pub fn forget(&self, job: Uuid) {
        self.lock().requested.remove(&job);
    }

    pub(super) fn register(&self, job: Uuid, s: &Arc<Signals>) {
        let mut g = self.lock();
        if g.requested.remove(&job) {
            s.cancel.store(true, Ordering::Relaxed);
        }
        g.active.insert(job, s.clone());
    }

    pub(super) fn unregister(&self, job: Uuid) {
        self.lock().active.remove(&job);
    }
}

impl TierExecutor {
    /// `shutdown` stops the executor between files (the journal resumes the job later).
    pub fn new(
        reporter: Arc<dyn Reporter>,
        opts: TierOptions,
        host_id: Uuid,
        customer_id: Uuid,
        shutdown: CancellationToken,
    ) -> TierExecutor {
        TierExecutor {
            reporter,
            opts,
            host_id: HostId(host_id),
            customer_id: alto_model::CustomerId(customer_id),
            shutdown,
            cancels: Canceller::default(),
            host_throttle: crate::throttle::Throttle::shared(0),
            recall_throttle: crate::throttle::Throttle::shared(0),
        }
    }

    /// Sets the host's upload bandwidth limit (bytes per second, 0: none), which every job
    /// of this executor shares, including those already running.
    pub fn set_host_bandwidth(&self, bytes_per_second: u64) {
        if self.host_throttle.rate() != bytes_per_second {
            tracing::info!(bytes_per_second, "host bandwidth limit");
        }
        self.host_throttle.set_rate(bytes_per_second);
    }

    /// Sets the host's bandwidth limit for jobs of `kind` as an offer carries it: `recall`
    /// jobs' downloads, or (any other kind) tiering uploads.
    pub fn set_host_bandwidth_for(&self, kind: &str, bytes_per_second: u64) {
        if kind == "recall" {
            if self.recall_throttle.rate() != bytes_per_second {
                tracing::info!(bytes_per_second, "host recall bandwidth limit");
            }
            self.recall_throttle.set_rate(bytes_per_second);
        } else {
            self.set_host_bandwidth(bytes_per_second);
        }
    }

    /// The handle that cancels this executor's jobs.
    pub fn canceller(&self) -> Canceller {
        self.cancels.clone()
    }

    pub fn reporter(&self) -> &dyn Reporter {
        &*self.reporter
    }

    /// Calls `f` until it succeeds, fails for good, or failed [`MAX_ATTEMPTS`] times.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ReportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ReportError>>,
    {
        let mut delay = self.opts.retry_delay;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, what, retry_in = ?delay, "server call failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn journal_err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> TierError + '_ {
        let path = path.to_owned();
        move |source| TierError::Journal { path, source }
    }

    /// Executes a claimed job (resuming its journal if this agent already has one).
    pub async fn execute(&self, doc: ExecJob) -> Result<JobReport, TierError> {
        let path = Journal::path_for(&self.opts.journal_dir, doc.job_id);
        if path.exists() {
            return self.resume(&path).await;
        }
        if doc.host_id != self.host_id.0 || doc.customer_id != self.customer_id.0 {
            let why = format!(
                "the job is for host {} of tenant {}, this agent is host {} of tenant {}",
                doc.host_id, doc.customer_id, self.host_id, self.customer_id
            );
            tracing::error!(job = %doc.job_id, "{why}");
            let end = CompleteJob { state: JobEnd::Failed, error: Some(why.clone()) };
            self.retry("complete", || self.reporter.complete(doc.job_id, &end)).await?;
            return Ok(JobReport {
                job_id: doc.job_id,
                end: Some(JobEnd::Failed),
                note: Some(why),
                ..JobReport::default()
            });
        }
        if doc.recall().is_some() {
            return self.execute_recall(doc).await;
        }
        let (journal, state) =
            Journal::create(&self.opts.journal_dir, &doc).map_err(self.journal_err(&path))?;
        let report = JobReport { job_id: doc.job_id, ..JobReport::default() };
        self.run_job(journal, state, report, &path).await
    }

    /// Resumes every job this agent has a journal of (see the module docs).
    pub async fn recover(&self) -> Result<TierSummary, TierError> {
        let mut sum = TierSummary::default();
        let dir = &self.opts.journal_dir;
        for path in Journal::list(dir).map_err(self.journal_err(dir))? {
            if self.shutdown.is_cancelled() {
                break;
            }
            sum.push(self.resume(&path).await?);
        }
        Ok(sum)
    }

    async fn resume(&self, path: &Path) -> Result<JobReport, TierError> {
        let (mut journal, mut state) = match Journal::open(path) {
            Ok(j) => j,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let moved = Journal::quarantine(path).map_err(self.journal_err(path))?;
                tracing::error!(error = %e, moved_to = %moved.display(), "unreadable tiering journal set aside");
                return Ok(JobReport {
                    note: Some(format!("unreadable journal set aside: {e}")),
                    ..JobReport::default()
                });
            }
            Err(e) => return Err(self.journal_err(path)(e)),
        };
        let job = state.doc.job_id;
        if state.doc.tier().is_none() {
            // Only tier jobs keep journals; anything else here was not written by this agent.
            let moved = Journal::quarantine(path).map_err(self.journal_err(path))?;
            tracing::error!(%job, moved_to = %moved.display(), "a journal of a non-tier job set aside");
            return Ok(JobReport {
                job_id: job,
                note: Some("a journal of a non-tier job set aside".into()),
                ..JobReport::default()
            });
        }
        let mut report = JobReport { job_id: job, resumed: true, ..JobReport::default() };
        if state.completed.is_some() {
            report.end = state.completed;
            journal.remove().map_err(self.journal_err(path))?;
            return Ok(report);
        }
        tracing::info!(%job, "resuming an interrupted tiering job");
        // 1. Make every file in flight consistent and find out what it is now.
        let inflight: Vec<(ExecFile, SeqState)> = tier_work(&state.doc)
            .files
            .iter()
            .filter_map(|f| {
                let st = state.seqs.get(&f.seq)?;
                (!st.is_final()).then(|| (f.clone(), st.clone()))
            })
            .collect();
        let resolved = map_blocking(inflight, self.opts.parallel, |(f, st)| {
            let r = recover_file(&f, &st);
            (f.seq, st.outcome.is_some(), r)
        })
        .await;
        // 2. Is the job still ours?
        let mode = match self
            .retry("progress", || self.reporter.progress(job, ProgressReport::default()))
            .await
        {
            Ok(p) if p.cancel => Recovery::Cancelled,
            Ok(_) => Recovery::Resume,
            Err(ReportError::Refused { status, code, message }) => {
                tracing::warn!(%job, status, %code, %message, "the server no longer leases this job to us");
                Recovery::Lost
            }
            Err(e) => return Err(e.into()),
        };
        // 3. Report what is known.
        let mut fresh = Vec::new(); // outcomes not journaled yet
        let mut resend = Vec::new(); // journaled, not acknowledged
        let mut busy = HashSet::new();
        for (seq, journaled, r) in resolved {
            match r {
                Recovered::Final(res) if journaled => resend.push(res),
                Recovered::Final(res) => fresh.push(res),
                Recovered::Intact if mode != Recovery::Resume => {
                    fresh.push(FileResult::skipped(seq, INTERRUPTED))
                }
                Recovered::Intact => {} // redone below
                Recovered::Busy(why) => {
                    tracing::warn!(%job, seq, %why, "file in flight is busy; left for the next pass");
                    busy.insert(seq);
                }
            }
        }
        if !fresh.is_empty() {
            journal
                .append(&mut state, &[Record::Outcome { results: fresh.clone() }])
                .map_err(self.journal_err(path))?;
        }
        resend.extend(fresh);
        let sizes = sizes(&state.doc);
        let send = self.send_final(&mut journal, &mut state, &resend, &mut report, &sizes).await;
        match (mode, send) {
            (Recovery::Lost, _) => {
                report.note = Some("the server no longer leases this job to this agent".into());
                journal.remove().map_err(self.journal_err(path))?;
                return Ok(report);
            }
            (_, Err(e)) => return Err(e),
            (Recovery::Cancelled, Ok(())) => {
                if busy.is_empty() {
                    return self
                        .finish(journal, state, report, path, JobEnd::Cancelled, None)
                        .await;
                }
                report.note = Some(format!("{} file(s) busy; the job stays open", busy.len()));
                return Ok(report);
            }
            (Recovery::Resume, Ok(())) => {}
        }
        // 4. Continue the job.
        self.run_job_skipping(journal, state, report, path, busy).await
    }

    async fn run_job(
        &self,
        journal: Journal,
        state: JobState,
        report: JobReport,
        path: &Path,
    ) -> Result<JobReport, TierError> {
        self.run_job_skipping(journal, state, report, path, HashSet::new()).await
    }

    /// Executes every file of the job that is not final (and not in `busy`), then completes
    /// the job if nothing is left.
    async fn run_job_skipping(
        &self,
        mut journal: Journal,
        mut state: JobState,
        mut report: JobReport,
        path: &Path,
        busy: HashSet<i32>,
    ) -> Result<JobReport, TierError> {
        let doc = state.doc.clone();
        let job = doc.job_id;
        let work = tier_work(&doc);
        let sizes = sizes(&doc);
        let todo: Vec<ExecFile> = work
            .files
            .iter()
            .filter(|f| !state.is_final(f.seq) && !busy.contains(&f.seq))
            .cloned()
            .collect();

        // Every target kind and compression of the contract is supported: a job naming
        // another never got here (its document was refused and the job failed).
        let compression = work.compression.unwrap_or_default();
        if todo.is_empty() {
            // Everything is final (a run ended between its last report and the completion).
            let open = work.files.iter().filter(|f| !state.is_final(f.seq)).count();
            if open > 0 {
                report.note = Some(format!("{open} file(s) busy; the job stays open"));
                return Ok(report);
            }
            return self.finish(journal, state, report, path, JobEnd::Succeeded, None).await;
        }

        let signals = Arc::new(Signals::new(self.shutdown.clone()));
        let target = match self.open_target(&work.storage_target) {
            Ok(t) => t,
            Err(e) => {
                let why = format!("{STORAGE_UNAVAILABLE}: {e}");
                tracing::error!(%job, "{why}");
                return self.finish(journal, state, report, path, JobEnd::Failed, Some(why)).await;
            }
        };
        self.cancels.register(job, &signals);
        let ctx = Arc::new(FileCtx {
            target,
            throttles: std::iter::once(self.host_throttle.clone())
                .chain(crate::throttle::Throttle::new(doc.bandwidth_bytes_per_second.unwrap_or(0)))
                .collect(),
            target_name: work.storage_target.name.clone(),
            host_id: self.host_id,
            compression,
            signals: signals.clone(),
            range_fill_min_size: self.opts.range_fill_min_size,
            range_fill_chunk_size: self.opts.range_fill_chunk_size,
        });
        let ticker = self.spawn_ticker(job, signals.clone());
        let result =
            self.run_batches(&mut journal, &mut state, &mut report, &ctx, todo, &sizes, path).await;
        ticker.abort();
        self.cancels.unregister(job);
        result?;

        if let Some(why) = signals.storage_down() {
            return self.finish(journal, state, report, path, JobEnd::Failed, Some(why)).await;
        }
        if signals.lost.load(Ordering::Relaxed) {
            report.note = Some("the server no longer leases this job; left to the journal".into());
            return Ok(report);
        }
        if self.shutdown.is_cancelled() {
            report.note = Some("agent stopping; the journal resumes the job".into());
            return Ok(report);
        }
        if signals.cancel.load(Ordering::Relaxed) {
            return self.finish(journal, state, report, path, JobEnd::Cancelled, None).await;
        }
        let open = work.files.iter().filter(|f| !state.is_final(f.seq)).count();
        if open > 0 {
            report.note = Some(format!("{open} file(s) not final yet; the job stays open"));
            return Ok(report);
        }
        self.finish(journal, state, report, path, JobEnd::Succeeded, None).await
    }

    /// Opens the job's target: `directory` targets under `tier2.directory_base` as this
    /// agent mounts them, the others with the settings the job carries (remembered for
    /// `recall`).
    fn open_target(&self, t: &ExecTarget) -> Result<Target, Tier2Error> {
        let t = if t.kind == TargetKind::Directory {
            Target::from(DirTarget::open(&self.opts.tier2_base, self.customer_id)?)
        } else {
            let spec = crate::targets::spec_of(t)?;
            crate::targets::remember(&self.opts.state_dir, &t.name, &spec);
            let opts = alto_tier2::OpenOptions {
                spool_dir: Some(crate::targets::spool_dir(&self.opts.state_dir)),
                ..alto_tier2::OpenOptions::default()
            };
            Target::open(&spec, self.customer_id, &opts)?
        };
        t.health()?;
        let an_hour_ago = SystemClock.now() - chrono::Duration::hours(1);
        if let Err(e) = t.cleanup_tmp(an_hour_ago) {
            tracing::warn!(error = %e, "tier-2 temporary cleanup failed");
        }
        Ok(t)
    }

    pub(super) fn spawn_ticker(
        &self,
        job: Uuid,
        signals: Arc<Signals>,
    ) -> tokio::task::JoinHandle<()> {
        let reporter = self.reporter.clone();
        let every = self.opts.progress_interval;
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::time::sleep_until(next).await;
                next += every;
                match reporter.progress(job, ProgressReport::default()).await {
                    Ok(p) => {
                        if p.cancel && !signals.cancel.swap(true, Ordering::Relaxed) {
                            tracing::info!(%job, "the server asks to cancel the job");
                        }
                    }
                    Err(e @ ReportError::Refused { .. }) => {
                        tracing::warn!(%job, error = %e, "progress refused: stopping the job");
                        signals.lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => tracing::warn!(%job, error = %e, "progress failed"),
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_batches(
        &self,
        journal: &mut Journal,
        state: &mut JobState,
        report: &mut JobReport,
        ctx: &Arc<FileCtx>,
        todo: Vec<ExecFile>,
        sizes: &BTreeMap<i32, u64>,
        path: &Path,
    ) -> Result<(), TierError> {
        let job = state.doc.job_id;
        for batch in batches(todo, self.opts.batch_files, self.opts.batch_bytes) {
            if ctx.signals.halt() {
                break;
            }
            // Copy and verify.
            let seqs: Vec<i32> = batch.iter().map(|f| f.seq).collect();
            journal.append(state, &[Record::Staging { seqs }]).map_err(self.journal_err(path))?;
            let c = ctx.clone();
            let prepared = map_blocking(batch, self.opts.parallel, move |f| prepare(&c, &f)).await;
            let mut ready = Vec::new();
            let mut finals = Vec::new();
            for p in prepared {
                match p {
                    Prepared::Ready(r) => ready.push(*r),
                    Prepared::Final(r) => finals.push(r),
                    Prepared::StorageDown | Prepared::NotStarted => {}
                }
            }
            // Stage: one report with every staged file and every early outcome.
            if !finals.is_empty() {
                journal
                    .append(state, &[Record::Outcome { results: finals.clone() }])
                    .map_err(self.journal_err(path))?;
            }
            let mut send: Vec<FileResult> =
                ready.iter().map(|r| r.result(FileOutcome::Staged)).collect();
            send.extend(finals.iter().cloned());
            let (accepted, refused) = self.send(job, &send).await?;
            let accepted: HashSet<i32> = accepted.into_iter().collect();
            let mut staged = Vec::new();
            let mut records = Vec::new();
            let mut acked: Vec<i32> = finals.iter().map(|r| r.seq).collect();
            let mut given_up = Vec::new();
            for r in &ready {
                if accepted.contains(&r.seq) {
                    staged.push(StagedFile {
                        seq: r.seq,
                        sha256: r.key.sha256.to_hex(),
                        object_key: r.key.to_string(),
                        stored_size: r.stored_size,
                    });
                }
            }
            for (r, why) in &refused {
                tracing::error!(%job, seq = r.seq, outcome = r.outcome.as_str(), %why,
                    "the server refused a file's result; giving it up");
                if r.outcome == FileOutcome::Staged {
                    given_up.push(FileResult::failed(
                        r.seq,
                        format!("the server refused staged: {why}"),
                    ));
                } else {
                    report.failed += 1;
                }
            }
            for r in finals.iter().filter(|r| accepted.contains(&r.seq)) {
                report.count(r, sizes.get(&r.seq).copied().unwrap_or(0));
            }
            for r in &given_up {
                report.count(r, 0);
                acked.push(r.seq);
            }
            if !staged.is_empty() {
                records.push(Record::Staged { files: staged });
            }
            if !given_up.is_empty() {
                records.push(Record::Outcome { results: given_up });
            }
            if !acked.is_empty() {
                records.push(Record::Acked { seqs: acked });
            }
            journal.append(state, &records).map_err(self.journal_err(path))?;

            // Stub: only files the server acknowledged as staged.
            let ready: Vec<Ready> =
                ready.into_iter().filter(|r| accepted.contains(&r.seq)).collect();
            if ready.is_empty() {
                continue;
            }
            let seqs: Vec<i32> = ready.iter().map(|r| r.seq).collect();
            journal.append(state, &[Record::Stubbing { seqs }]).map_err(self.journal_err(path))?;
            let c = ctx.clone();
            let results = map_blocking(ready, self.opts.parallel, move |r| convert(&c, &r)).await;
            journal
                .append(state, &[Record::Outcome { results: results.clone() }])
                .map_err(self.journal_err(path))?;
            self.send_final(journal, state, &results, report, sizes).await?;
        }
        Ok(())
    }

    /// Sends journaled final outcomes and journals their acknowledgement.
    async fn send_final(
        &self,
        journal: &mut Journal,
        state: &mut JobState,
        results: &[FileResult],
        report: &mut JobReport,
        sizes: &BTreeMap<i32, u64>,
    ) -> Result<(), TierError> {
        if results.is_empty() {
            return Ok(());
        }
        let job = state.doc.job_id;
        let (accepted, refused) = self.send(job, results).await?;
        let accepted: HashSet<i32> = accepted.into_iter().collect();
        for r in results {
            if accepted.contains(&r.seq) {
                report.count(r, sizes.get(&r.seq).copied().unwrap_or(0));
            }
        }
        for (r, why) in &refused {
            tracing::error!(%job, seq = r.seq, outcome = r.outcome.as_str(), %why,
                "the server refused a file's outcome; giving it up");
            report.failed += 1;
        }
        let seqs: Vec<i32> = results.iter().map(|r| r.seq).collect();
        let path = Journal::path_for(&self.opts.journal_dir, job);
        journal.append(state, &[Record::Acked { seqs }]).map_err(self.journal_err(&path))
    }

    /// Sends results in calls of at most [`MAX_RESULTS_PER_CALL`]; a refused call is resent
    /// one result at a time. Returns the accepted seqs and the refused results with why.
    /// `Err` only if the server stayed unreachable.
    async fn send(
        &self,
        job: Uuid,
        results: &[FileResult],
    ) -> Result<(Vec<i32>, Vec<(FileResult, String)>), ReportError> {
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for chunk in results.chunks(MAX_RESULTS_PER_CALL) {
            match self.retry("report files", || self.reporter.report_files(job, chunk)).await {
                Ok(()) => accepted.extend(chunk.iter().map(|r| r.seq)),
                Err(ReportError::Refused { .. }) if chunk.len() > 1 => {
                    for r in chunk {
                        let one = std::slice::from_ref(r);
                        match self
                            .retry("report file", || self.reporter.report_files(job, one))
                            .await
                        {
                            Ok(()) => accepted.push(r.seq),
                            Err(e @ ReportError::Refused { .. }) => {
                                refused.push((r.clone(), e.to_string()))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e @ ReportError::Refused { .. }) => {
                    refused.extend(chunk.iter().map(|r| (r.clone(), e.to_string())))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((accepted, refused))
    }

    async fn finish(
        &self,
        mut journal: Journal,
        mut state: JobState,
        mut report: JobReport,
        path: &Path,
        end: JobEnd,
        error: Option<String>,
    ) -> Result<JobReport, TierError> {
        let job = state.doc.job_id;
        let complete = CompleteJob { state: end, error };
        match self.retry("complete", || self.reporter.complete(job, &complete)).await {
            Ok(()) => {
                journal
                    .append(&mut state, &[Record::Completed { state: end }])
                    .map_err(self.journal_err(path))?;
            }
            Err(e @ ReportError::Refused { .. }) => {
                tracing::warn!(%job, error = %e, "the server refused the job's completion");
                report.note = Some(format!("completion refused: {e}"));
            }
            Err(e) => return Err(e.into()),
        }
        journal.remove().map_err(self.journal_err(path))?;
        report.end = Some(end);
        if complete.error.is_some() {
            report.note = complete.error;
        }
        tracing::info!(%job, end = ?end, stubbed = report.stubbed, skipped = report.skipped,
            failed = report.failed, "tiering job finished");
        Ok(report)
    }
}

/// The tier work of a job. Every job kind the contract has is a tier job today; a new kind
/// makes this match fail to compile until the agent decides how to run it.
pub(super) fn tier_work(doc: &ExecJob) -> &TierWork {
    match &doc.work {
        JobWork::Tier(t) => t,
        // Recall jobs are executed apart (`super::recall`) and never journaled.
        JobWork::Recall(_) => unreachable!("a recall job in the tier path"),
    }
}

fn sizes(doc: &ExecJob) -> BTreeMap<i32, u64> {
    tier_work(doc).files.iter().map(|f| (f.seq, f.file_size.max(0) as u64)).collect()
}

/// Splits files into batches of at most `max_files` files and (unless one file is larger)
/// `max_bytes` bytes.
fn batches(files: Vec<ExecFile>, max_files: usize, max_bytes: u64) -> Vec<Vec<ExecFile>> {
    let mut out: Vec<Vec<ExecFile>> = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        let size = f.file_size.max(0) as u64;
        if !cur.is_empty() && (cur.len() >= max_files.max(1) || bytes + size > max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(f);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Runs `f` on every item on the blocking pool, `parallel` at a time; results in order.
pub(super) async fn map_blocking<T, R, F>(items: Vec<T>, parallel: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let n = items.len();
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut it = items.into_iter().enumerate();
    loop {
        while set.len() < parallel.max(1) {
            let Some((i, x)) = it.next() else { break };
            let f = f.clone();
            set.spawn_blocking(move || (i, f(x)));
        }
        match set.join_next().await {
            Some(Ok((i, r))) => out[i] = Some(r),
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Some(Err(e)) => panic!("blocking task failed: {e}"),
            None => break,
        }
    }
    out.into_iter().map(|r| r.expect("every item produced a result")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(seq: i32, size: i64) -> ExecFile {
        ExecFile {
            seq,
            file_id: Uuid::nil(),
            file_path: format!("/f{seq}"),
            path_escaped: false,
            file_size: size,
            last_modified: Some(chrono::DateTime::UNIX_EPOCH),
            inode: None,
            state: "pending".into(),
        }
    }

    #[test]
    fn batches_cap_files_and_bytes() {
        let files: Vec<ExecFile> =
            (0..10).map(|i| file(i, if i == 3 { 1000 } else { 10 })).collect();
        let b = batches(files, 4, 100);
        let seqs: Vec<Vec<i32>> = b.iter().map(|b| b.iter().map(|f| f.seq).collect()).collect();
        assert_eq!(seqs, vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert!(batches(vec![], 4, 100).is_empty());
    }
}
