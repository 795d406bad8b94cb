//! The tiering executor: takes a claimed job, copies its files to tier-2, has the server
//! record them, turns them into stubs and reports every outcome. Transport-independent: it
//! talks to the server only through a [`Reporter`] ([`crate::api::ServerApi`] is the HTTP
//! one).
//!
//! **Must never:** touch a file before its object is verified in tier-2 *and* the server
//! acknowledged `staged` (so the stub registry knows where the data is before the data
//! leaves the file); stub a file that differs from the job's snapshot (size, mtime, inode) or
//! that is open elsewhere; read a file that already carries a stub attribute (without a
//! recall that would copy zeros); hold a descriptor of a file while converting it (the write
//! lease counts our own descriptors); forget what was in flight when killed.
//!
//! # Per file
//!
//! 1. **Check.** Decode the path (`alto_batch::decode_path`). A `stubbed` attribute already
//!    present → `skipped` "already a stub" (one in `stubbing`/`recalling` is reconciled
//!    first). `lstat` it ([`alto_stub::identity`]) and compare size, mtime (at the
//!    inventory's microsecond precision) and inode with the job's snapshot: different or
//!    gone → `skipped` "changed".
//! 2. **Copy.** Open `O_RDONLY|O_NOFOLLOW|O_NOATIME` (the copy must not make the file look
//!    recently used), check the descriptor is the same file, and stream it into
//!    [`DirTarget::put`] with the expected size and the job's compression; the descriptor
//!    is closed when `put` returns. `put` hashes what it reads; a fresh object is then
//!    re-read with [`DirTarget::verify`] (a deduplicated one was already re-read and hashed
//!    by `put`). Size mismatch (the file changed while it was read) → `skipped` "changed";
//!    other tier-2 errors → `failed`; if the storage itself is unavailable (open fails, the
//!    health probe fails, disk full, read-only) the job stops: nothing more is started and
//!    it completes `failed` "storage unavailable: …" so the server keeps it.
//! 3. **Stage.** Report `staged` (SHA-256, object key, stored size) and wait for the
//!    acknowledgement: the server now has a pending stub-registry entry.
//! 4. **Stub.** [`alto_stub::convert_to_stub`] with the identity seen in step 1: `InUse` →
//!    `skipped` "open elsewhere", `Changed` → `skipped` "changed"; then report `stubbed`.
//!
//! Files go in batches (up to [`TierOptions::batch_files`] files or
//! [`TierOptions::batch_bytes`] bytes), [`TierOptions::parallel`] at a time: steps 1–2 for the
//! batch, one report with every `staged` and early outcome, step 4 for the batch, one report.
//! Every call to the server is retried on transient errors (unreachable, 5xx, 408, 429) with
//! exponential backoff, at most [`MAX_ATTEMPTS`] times; if the server stays away the job stops
//! where it is and its journal resumes it later. A batch the server *refuses* is resent one
//! result at a time, and a result refused on its own is given up (logged, counted as failed)
//! so that one bad file cannot wedge a job.
//!
//! While a job runs a ticker calls `progress` every [`TierOptions::progress_interval`],
//! which extends the lease. If the answer says `cancel`, no new file is started; the files in
//! flight are finished and reported, and the job completes `cancelled`. If the server refuses
//! `progress` (the job is no longer ours), no new file is started and the journal decides on
//! the next pass.
//!
//! # The journal and what a restarted agent does
//!
//! Each job in flight has an append-only journal ([`crate::journal`]), every record
//! `fsync`ed. Per file the records are, in order:
//!
//! | record | written | the file is |
//! |---|---|---|
//! | `staging` | before the copy starts | untouched |
//! | `staged` | after the server acknowledged `staged` | untouched, its object verified |
//! | `stubbing` | before `convert_to_stub` | anything `convert_to_stub` may leave: whole, `stubbing`, stub |
//! | `outcome` | before a final outcome is reported | final (stub, or left alone) |
//! | `acked` | after the server acknowledged the final outcome (or refused it for good) | final |
//!
//! plus `job` (the claimed document, first line) and `completed` (the server acknowledged
//! the job's end; the journal is then deleted). A file is *final* once `acked`. A final
//! outcome is always journaled before it is sent, so a file is never redone after the server
//! may have been told something final about it.
//!
//! On start (and at the beginning of every pass of the tier worker) the agent opens every
//! journal and, for every file that is started but not final:
//!
//! * an `outcome` not yet acknowledged → resend it;
//! * otherwise look at the file: no stub attribute, or [`alto_stub::reconcile`] rolled an
//!   interrupted conversion back (`AbortedStubbing`) → the file is **intact**; a stub of the
//!   object this journal staged (`Stubbed`, `FinishedStubbing`) → `stubbed`; gone →
//!   `skipped` "changed"; a stub of something else → `skipped` "already a stub"; a stale stub
//!   or a conflict → `failed`; open elsewhere (`InUse`) → left for the next pass.
//!
//! Then it asks the server (`progress`) whether the job is still leased to it. If so, the
//! derived outcomes are reported and the job simply continues: intact files are redone from
//! step 1 (the copy deduplicates onto the object already stored, `staged` is idempotent).
//! If the server says `cancel`, intact files are reported `skipped` "interrupted" and the job
//! completes `cancelled`. If the server refuses (the job is gone or someone else's), the
//! outcomes are reported best effort, intact files as `skipped` "interrupted", and the
//! journal is dropped. In every case each file is either whole without an attribute or a
//! stub whose object is verified in tier-2 and known to the server.
//!
//! A crash can also leave garbage in tier-2: a temporary of a killed put (removed by
//! [`DirTarget::cleanup_tmp`], run at the start of each job for temporaries older than an
//! hour), or an object and sidecar of a file that was then not stubbed (it changed, was
//! open, or the job was cancelled). Those stay until tier-2 garbage collection exists; the
//! next tiering of the same content deduplicates onto them.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alto_model::{Clock as _, HostId, SystemClock};
use alto_stub::{FileIdentity, Reconciled, StubAttr, StubError, StubState};
use alto_tier2::{Compression, DirTarget, ObjectKey, PutMeta, Target, Tier2Error};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::{
    BoxFut, FileResult, JobDoc, JobEnd, JobFile, JobProgress, Outcome, ReportError, ServerApi,
};
use crate::journal::{JobState, Journal, Record, SeqState, StagedFile};

/// Attempts per server call before the job is left to its journal.
pub const MAX_ATTEMPTS: u32 = 3;

/// Results per `files` call (a batch never has more; a resend after a restart might).
const MAX_RESULTS_PER_CALL: usize = 500;

/// Why a file was left alone, as reported.
pub const CHANGED: &str = "changed";
pub const OPEN_ELSEWHERE: &str = "open elsewhere";
pub const INTERRUPTED: &str = "interrupted";
pub const ALREADY_STUB: &str = "already a stub";
pub const KIND_UNSUPPORTED: &str = "storage kind not supported by this agent yet";
pub const STORAGE_UNAVAILABLE: &str = "storage unavailable";

/// How the executor talks to the server. Every method is one request; the executor retries.
pub trait Reporter: Send + Sync {
    /// Extends the job's lease; says whether the job should stop.
    fn progress(&self, job: Uuid) -> BoxFut<'_, JobProgress>;
    /// Records per-file outcomes (idempotent per seq and outcome).
    fn report_files<'a>(&'a self, job: Uuid, results: &'a [FileResult]) -> BoxFut<'a, ()>;
    /// Ends the job.
    fn complete<'a>(&'a self, job: Uuid, state: JobEnd, error: Option<&'a str>) -> BoxFut<'a, ()>;
}

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
    pub skipped: u64,
    pub failed: u64,
    /// Bytes of the files stubbed.
    pub bytes_stubbed: u64,
    /// The job was found in a journal (a previous run was interrupted).
    pub resumed: bool,
    /// Why it ended as it did, if not plainly.
    pub note: Option<String>,
}

impl JobReport {
    fn count(&mut self, r: &FileResult, size: u64) {
        match r.outcome {
            Outcome::Stubbed => {
                self.stubbed += 1;
                self.bytes_stubbed += size;
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed | Outcome::Staged => self.failed += 1,
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
    fn push(&mut self, r: JobReport) {
        if r.note.as_deref().is_some_and(|n| n.starts_with(STORAGE_UNAVAILABLE)) {
            self.storage_unavailable = true;
        }
        self.jobs.push(r);
    }
}

/// Flags shared by a running job, its ticker and its blocking workers.
#[derive(Debug)]
struct Signals {
    cancel: AtomicBool,
    lost: AtomicBool,
    storage_down: std::sync::Mutex<Option<String>>,
    shutdown: CancellationToken,
}

impl Signals {
    fn new(shutdown: CancellationToken) -> Signals {
        Signals {
            cancel: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            storage_down: std::sync::Mutex::new(None),
            shutdown,
        }
    }

    /// No new file may start.
    fn halt(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || self.lost.load(Ordering::Relaxed)
            || self.shutdown.is_cancelled()
            || self.storage_down().is_some()
    }

    fn storage_down(&self) -> Option<String> {
        self.storage_down.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_storage_down(&self, why: String) {
        let mut g = self.storage_down.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(why);
    }
}

/// What the blocking workers need about the job.
struct FileCtx {
    target: Target,
    /// The host's bandwidth bucket (shared by every job) and the job's own, if it has a limit.
    throttles: Vec<Arc<crate::throttle::Throttle>>,
    target_name: String,
    host_id: HostId,
    compression: Compression,
    signals: Arc<Signals>,
}

/// A file copied and verified, ready to be staged and converted.
#[derive(Debug, Clone)]
struct Ready {
    seq: i64,
    path: PathBuf,
    identity: FileIdentity,
    key: ObjectKey,
    stored_size: u64,
}

impl Ready {
    fn result(&self, outcome: Outcome) -> FileResult {
        FileResult::stored(
            self.seq,
            outcome,
            self.key.sha256.to_hex(),
            self.key.to_string(),
            self.stored_size,
        )
    }
}

enum Prepared {
    Ready(Box<Ready>),
    Final(FileResult),
    /// The storage failed; the file stays pending.
    StorageDown,
    /// Not started (the job is stopping); the file stays pending.
    NotStarted,
}

enum Recovered {
    Final(FileResult),
    Intact,
    Busy(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Resume,
    Cancelled,
    Lost,
}

/// Runs tiering jobs for one enrolled host.
pub struct TierExecutor {
    reporter: Arc<dyn Reporter>,
    opts: TierOptions,
    host_id: HostId,
    customer_id: alto_model::CustomerId,
    shutdown: CancellationToken,
    cancels: Canceller,
    /// The host's upload bandwidth limit, shared by every job this executor runs at once.
    host_throttle: Arc<crate::throttle::Throttle>,
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

    fn register(&self, job: Uuid, s: &Arc<Signals>) {
        let mut g = self.lock();
        if g.requested.remove(&job) {
            s.cancel.store(true, Ordering::Relaxed);
        }
        g.active.insert(job, s.clone());
    }

    fn unregister(&self, job: Uuid) {
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
    pub async fn execute(&self, doc: JobDoc) -> Result<JobReport, TierError> {
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
            self.retry("complete", || {
                self.reporter.complete(doc.job_id, JobEnd::Failed, Some(&why))
            })
            .await?;
            return Ok(JobReport {
                job_id: doc.job_id,
                end: Some(JobEnd::Failed),
                note: Some(why),
                ..JobReport::default()
            });
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
        let mut report = JobReport { job_id: job, resumed: true, ..JobReport::default() };
        if state.completed.is_some() {
            report.end = state.completed;
            journal.remove().map_err(self.journal_err(path))?;
            return Ok(report);
        }
        tracing::info!(%job, "resuming an interrupted tiering job");
        // 1. Make every file in flight consistent and find out what it is now.
        let inflight: Vec<(JobFile, SeqState)> = state
            .doc
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
        let mode = match self.retry("progress", || self.reporter.progress(job)).await {
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
        busy: HashSet<i64>,
    ) -> Result<JobReport, TierError> {
        let doc = state.doc.clone();
        let job = doc.job_id;
        let sizes = sizes(&doc);
        let todo: Vec<JobFile> = doc
            .files
            .iter()
            .filter(|f| !state.is_final(f.seq) && !busy.contains(&f.seq))
            .cloned()
            .collect();

        // Jobs this agent cannot run at all: every file fails, the job is over.
        let compression = match doc.compression.as_deref() {
            None | Some("none") => Some(Compression::None),
            Some("zstd") => Some(Compression::Zstd),
            Some(_) => None,
        };
        let unusable =
            if !["directory", "s3", "azure", "smb"].contains(&doc.storage_target.kind.as_str()) {
                Some(KIND_UNSUPPORTED.to_owned())
            } else if compression.is_none() {
                Some(format!(
                    "compression {:?} not supported by this agent",
                    doc.compression.as_deref().unwrap_or_default()
                ))
            } else {
                None
            };
        if let Some(why) = unusable {
            let results: Vec<FileResult> =
                todo.iter().map(|f| FileResult::failed(f.seq, why.clone())).collect();
            if !results.is_empty() {
                journal
                    .append(&mut state, &[Record::Outcome { results: results.clone() }])
                    .map_err(self.journal_err(path))?;
            }
            self.send_final(&mut journal, &mut state, &results, &mut report, &sizes).await?;
            return self.finish(journal, state, report, path, JobEnd::Succeeded, None).await;
        }
        let compression = compression.unwrap_or(Compression::None);
        if todo.is_empty() {
            // Everything is final (a run ended between its last report and the completion).
            let open = doc.files.iter().filter(|f| !state.is_final(f.seq)).count();
            if open > 0 {
                report.note = Some(format!("{open} file(s) busy; the job stays open"));
                return Ok(report);
            }
            return self.finish(journal, state, report, path, JobEnd::Succeeded, None).await;
        }

        let signals = Arc::new(Signals::new(self.shutdown.clone()));
        let target = match self.open_target(&doc.storage_target) {
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
            target_name: doc.storage_target.name.clone(),
            host_id: self.host_id,
            compression,
            signals: signals.clone(),
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
        let open = doc.files.iter().filter(|f| !state.is_final(f.seq)).count();
        if open > 0 {
            report.note = Some(format!("{open} file(s) not final yet; the job stays open"));
            return Ok(report);
        }
        self.finish(journal, state, report, path, JobEnd::Succeeded, None).await
    }

    /// Opens the job's target: `directory` targets under `tier2.directory_base` as this
    /// agent mounts them, the others with the settings the job carries (remembered for
    /// `recall`).
    fn open_target(&self, t: &crate::api::StorageTargetRef) -> Result<Target, Tier2Error> {
        let t = if t.kind == "directory" {
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

    fn spawn_ticker(&self, job: Uuid, signals: Arc<Signals>) -> tokio::task::JoinHandle<()> {
        let reporter = self.reporter.clone();
        let every = self.opts.progress_interval;
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::time::sleep_until(next).await;
                next += every;
                match reporter.progress(job).await {
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
        todo: Vec<JobFile>,
        sizes: &BTreeMap<i64, u64>,
        path: &Path,
    ) -> Result<(), TierError> {
        let job = state.doc.job_id;
        for batch in batches(todo, self.opts.batch_files, self.opts.batch_bytes) {
            if ctx.signals.halt() {
                break;
            }
            // Copy and verify.
            let seqs: Vec<i64> = batch.iter().map(|f| f.seq).collect();
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
                ready.iter().map(|r| r.result(Outcome::Staged)).collect();
            send.extend(finals.iter().cloned());
            let (accepted, refused) = self.send(job, &send).await?;
            let accepted: HashSet<i64> = accepted.into_iter().collect();
            let mut staged = Vec::new();
            let mut records = Vec::new();
            let mut acked: Vec<i64> = finals.iter().map(|r| r.seq).collect();
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
                if r.outcome == Outcome::Staged {
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
            let seqs: Vec<i64> = ready.iter().map(|r| r.seq).collect();
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
        sizes: &BTreeMap<i64, u64>,
    ) -> Result<(), TierError> {
        if results.is_empty() {
            return Ok(());
        }
        let job = state.doc.job_id;
        let (accepted, refused) = self.send(job, results).await?;
        let accepted: HashSet<i64> = accepted.into_iter().collect();
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
        let seqs: Vec<i64> = results.iter().map(|r| r.seq).collect();
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
    ) -> Result<(Vec<i64>, Vec<(FileResult, String)>), ReportError> {
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
        match self.retry("complete", || self.reporter.complete(job, end, error.as_deref())).await {
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
        if error.is_some() {
            report.note = error;
        }
        tracing::info!(%job, end = ?end, stubbed = report.stubbed, skipped = report.skipped,
            failed = report.failed, "tiering job finished");
        Ok(report)
    }
}

/// Recovers what was in flight, then claims and executes jobs until the server has none
/// for this host (or the storage is unavailable, or `shutdown`). What `alto-agent tier-once`
/// runs, and each round of the tier worker.
pub async fn run_pass(exec: &TierExecutor, api: &ServerApi) -> Result<TierSummary, TierError> {
    let mut sum = exec.recover().await?;
    let mut seen: HashSet<Uuid> =
        sum.jobs.iter().filter(|j| j.end.is_some()).map(|j| j.job_id).collect();
    // The first claim after recovery also takes back jobs leased to this host that no journal
    // knows: claimed by a run that died before it could record them.
    let mut resume = true;
    while !exec.shutdown.is_cancelled() && !sum.storage_unavailable {
        let r = resume;
        resume = false;
        let (jobs, unreadable) = exec.retry("claim", || api.claim(1, r)).await?;
        if jobs.is_empty() && unreadable.is_empty() {
            break;
        }
        for bad in unreadable {
            tracing::error!(job = ?bad.job_id, error = %bad.error, "unreadable job document");
            if let Some(id) = bad.job_id {
                exec.retry("complete", || {
                    exec.reporter.complete(id, JobEnd::Failed, Some(&bad.error))
                })
                .await?;
                sum.push(JobReport {
                    job_id: id,
                    end: Some(JobEnd::Failed),
                    note: Some(bad.error.clone()),
                    ..JobReport::default()
                });
            }
        }
        for doc in jobs {
            if !seen.insert(doc.job_id) {
                // The server handed out a job this pass already ended or left open: stop
                // here rather than loop (the next pass takes it again).
                return Ok(sum);
            }
            let r = exec.execute(doc).await?;
            sum.push(r);
        }
    }
    Ok(sum)
}

/// The tier worker of `alto-agent run`: a pass, then every `poll` another (with backoff while
/// the server is unreachable), until `cancel`.
pub async fn worker(exec: TierExecutor, api: ServerApi, poll: Duration, cancel: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match run_pass(&exec, &api).await {
            Ok(s) => {
                backoff = Duration::from_secs(1);
                if !s.jobs.is_empty() {
                    tracing::info!(
                        jobs = s.jobs.len(),
                        stubbed = s.stubbed(),
                        skipped = s.skipped(),
                        failed = s.failed(),
                        bytes = s.bytes_stubbed(),
                        "tiering pass"
                    );
                }
                poll
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "tiering pass stopped");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                w.min(poll.max(Duration::from_secs(1)))
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn sizes(doc: &JobDoc) -> BTreeMap<i64, u64> {
    doc.files.iter().map(|f| (f.seq, f.file_size.max(0) as u64)).collect()
}

/// Splits files into batches of at most `max_files` files and (unless one file is larger)
/// `max_bytes` bytes.
fn batches(files: Vec<JobFile>, max_files: usize, max_bytes: u64) -> Vec<Vec<JobFile>> {
    let mut out: Vec<Vec<JobFile>> = Vec::new();
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
async fn map_blocking<T, R, F>(items: Vec<T>, parallel: usize, f: F) -> Vec<R>
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

fn path_of(f: &JobFile) -> Option<PathBuf> {
    let bytes = alto_batch::decode_path(&f.file_path, f.path_escaped)?;
    if bytes.is_empty() {
        return None;
    }
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

fn is_not_found(e: &StubError) -> bool {
    match e {
        StubError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        StubError::NotRegular { .. } => true,
        _ => false,
    }
}

/// Whether the live file is the one the job planned (the inventory keeps mtime in
/// microseconds and the inode as a signed 64-bit number).
fn matches_snapshot(id: &FileIdentity, f: &JobFile) -> bool {
    i64::try_from(id.size).is_ok_and(|s| s == f.file_size)
        && f.last_modified.is_some_and(|m| id.mtime_ns.div_euclid(1000) == m.timestamp_micros())
        && f.inode.is_none_or(|i| i as u64 == id.inode)
}

/// Identity and atime of an open descriptor.
fn fd_identity(file: &std::fs::File) -> std::io::Result<(FileIdentity, i64)> {
    let st = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)?;
    let ns = |t: &rustix::fs::StatxTimestamp| t.tv_sec * 1_000_000_000 + i64::from(t.tv_nsec);
    Ok((
        FileIdentity {
            size: st.stx_size,
            mtime_ns: ns(&st.stx_mtime),
            inode: st.stx_ino,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        },
        ns(&st.stx_atime),
    ))
}

/// Opens the file to copy it: read-only, no symlink, no atime update (where permitted), no
/// blocking on someone's lease.
fn open_source(path: &Path) -> std::io::Result<std::fs::File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        Ok(fd) => Ok(fd.into()),
        Err(Errno::PERM) => Ok(rustix::fs::open(path, flags, Mode::empty())?.into()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a tier-2 error means the storage itself is unavailable (the job must stop).
fn storage_down(target: &Target, e: &Tier2Error) -> Option<String> {
    if !e.is_storage_failure() {
        return None;
    }
    let full = matches!(e, Tier2Error::Io { source, .. } if matches!(
        source.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS)
    ));
    if full {
        return Some(format!("{STORAGE_UNAVAILABLE}: {e}"));
    }
    match target.health() {
        Ok(()) => None,
        Err(h) => Some(format!("{STORAGE_UNAVAILABLE}: {h}")),
    }
}

/// Steps 1–2 of a file: check it against the snapshot, copy and verify.
fn prepare(ctx: &FileCtx, f: &JobFile) -> Prepared {
    if ctx.signals.halt() {
        return Prepared::NotStarted;
    }
    let seq = f.seq;
    let Some(path) = path_of(f) else {
        return Prepared::Final(FileResult::failed(seq, "malformed path escape"));
    };
    // A stub attribute first: reading a stub without a recall would copy zeros. One left
    // half way by a crash the journal does not know of (`stubbing`, `recalling`) is
    // reconciled; if that leaves the file whole it is tiered like any other.
    match alto_stub::read_attr(&path) {
        Ok(None) => {}
        Ok(Some(a)) if a.state == StubState::Stubbed => {
            return Prepared::Final(FileResult::skipped(seq, ALREADY_STUB))
        }
        Ok(Some(_)) => match alto_stub::reconcile(&path) {
            Ok(Reconciled::NotAStub | Reconciled::AbortedStubbing | Reconciled::FinishedRecall) => {
            }
            Ok(_) => return Prepared::Final(FileResult::skipped(seq, ALREADY_STUB)),
            Err(StubError::InUse) => {
                return Prepared::Final(FileResult::skipped(seq, OPEN_ELSEWHERE))
            }
            Err(e) if is_not_found(&e) => {
                return Prepared::Final(FileResult::skipped(seq, CHANGED))
            }
            Err(e) => return Prepared::Final(FileResult::failed(seq, format!("reconcile: {e}"))),
        },
        Err(e) if is_not_found(&e) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("stub attribute: {e}"))),
    }
    let id = match alto_stub::identity(&path) {
        Ok(id) => id,
        Err(e) if is_not_found(&e) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("stat: {e}"))),
    };
    if !matches_snapshot(&id, f) {
        return Prepared::Final(FileResult::skipped(seq, CHANGED));
    }
    let file = match open_source(&path) {
        Ok(file) => file,
        Err(e) => {
            return Prepared::Final(match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENXIO) => {
                    FileResult::skipped(seq, CHANGED)
                }
                Some(libc::EWOULDBLOCK) | Some(libc::ETXTBSY) => {
                    FileResult::skipped(seq, OPEN_ELSEWHERE)
                }
                _ => FileResult::failed(seq, format!("open: {e}")),
            })
        }
    };
    let atime_ns = match fd_identity(&file) {
        Ok((fid, atime)) if fid == id => atime,
        Ok(_) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("fstat: {e}"))),
    };
    let meta = PutMeta {
        host_id: ctx.host_id,
        path: f.file_path.clone(),
        path_escaped: f.path_escaped,
        size: id.size,
        mtime_ns: id.mtime_ns,
        atime_ns,
        expected_sha256: None,
        compression: ctx.compression,
        created_at: SystemClock.now(),
    };
    // `put` consumes (and closes) the descriptor: none of ours is open at the conversion.
    let out =
        match ctx.target.put(crate::throttle::Throttled::all(file, ctx.throttles.clone()), &meta) {
            Ok(o) => o,
            Err(Tier2Error::SizeMismatch { .. }) => {
                return Prepared::Final(FileResult::skipped(seq, CHANGED))
            }
            Err(Tier2Error::Source(e)) => {
                return Prepared::Final(FileResult::failed(seq, format!("reading the file: {e}")))
            }
            Err(e) => {
                if let Some(why) = storage_down(&ctx.target, &e) {
                    tracing::error!(seq, error = %e, "tier-2 unavailable");
                    ctx.signals.set_storage_down(why);
                    return Prepared::StorageDown;
                }
                return Prepared::Final(FileResult::failed(seq, format!("tier-2: {e}")));
            }
        };
    let key = out.key();
    if !out.deduplicated {
        if let Err(e) = ctx.target.verify(&key) {
            if let Some(why) = storage_down(&ctx.target, &e) {
                ctx.signals.set_storage_down(why);
                return Prepared::StorageDown;
            }
            return Prepared::Final(FileResult::failed(
                seq,
                format!("the tier-2 copy failed verification: {e}"),
            ));
        }
    }
    // Changed while it was copied (same length, new content)?
    match alto_stub::identity(&path) {
        Ok(now) if now == id => {}
        _ => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
    }
    Prepared::Ready(Box::new(Ready {
        seq,
        path,
        identity: id,
        key,
        stored_size: out.record.stored_size,
    }))
}

/// Step 4 of a file (after the server acknowledged `staged`).
fn convert(ctx: &FileCtx, r: &Ready) -> FileResult {
    let attr = StubAttr {
        state: StubState::Stubbed,
        object_key: r.key.to_string(),
        target: ctx.target_name.clone(),
        size: r.identity.size,
        mtime_ns: r.identity.mtime_ns,
        sha256: r.key.sha256.0,
    };
    match alto_stub::convert_to_stub(&r.path, &r.identity, &attr) {
        Ok(_) => r.result(Outcome::Stubbed),
        Err(StubError::InUse) => FileResult::skipped(r.seq, OPEN_ELSEWHERE),
        Err(StubError::Changed { .. }) => FileResult::skipped(r.seq, CHANGED),
        Err(e) if is_not_found(&e) => FileResult::skipped(r.seq, CHANGED),
        Err(StubError::BadState { .. }) => FileResult::skipped(r.seq, ALREADY_STUB),
        Err(e) => {
            // The conversion may have stopped half way: finish or undo it, then say which.
            tracing::warn!(path = %r.path.display(), error = %e, "conversion failed; reconciling");
            match alto_stub::reconcile(&r.path) {
                Ok(Reconciled::Stubbed | Reconciled::FinishedStubbing)
                    if is_our_stub(&r.path, &r.key.to_string(), &r.key.sha256.to_hex()) =>
                {
                    r.result(Outcome::Stubbed)
                }
                _ => FileResult::failed(r.seq, format!("conversion: {e}")),
            }
        }
    }
}

fn is_our_stub(path: &Path, key: &str, sha256: &str) -> bool {
    matches!(alto_stub::read_attr(path), Ok(Some(a))
        if a.state == StubState::Stubbed && a.object_key == key && a.sha256_hex() == sha256)
}

/// What a file in flight is after a restart (see the module docs).
fn recover_file(f: &JobFile, st: &SeqState) -> Recovered {
    if let Some(o) = &st.outcome {
        return Recovered::Final(o.clone());
    }
    let seq = f.seq;
    let Some(path) = path_of(f) else {
        return Recovered::Final(FileResult::failed(seq, "malformed path escape"));
    };
    match alto_stub::read_attr(&path) {
        Ok(None) => return Recovered::Intact,
        Ok(Some(_)) => {}
        Err(e) if is_not_found(&e) => return Recovered::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Recovered::Final(FileResult::failed(seq, format!("stub attribute: {e}"))),
    }
    match alto_stub::reconcile(&path) {
        Ok(Reconciled::NotAStub | Reconciled::AbortedStubbing | Reconciled::FinishedRecall) => {
            Recovered::Intact
        }
        Ok(Reconciled::Stubbed | Reconciled::FinishedStubbing | Reconciled::RolledBackRecall) => {
            match &st.staged {
                Some(s) if is_our_stub(&path, &s.object_key, &s.sha256) => {
                    Recovered::Final(FileResult::stored(
                        seq,
                        Outcome::Stubbed,
                        s.sha256.clone(),
                        s.object_key.clone(),
                        s.stored_size,
                    ))
                }
                _ => Recovered::Final(FileResult::skipped(seq, ALREADY_STUB)),
            }
        }
        Ok(Reconciled::Stale { .. }) => Recovered::Final(FileResult::failed(
            seq,
            "the stub changed after its conversion (size or mtime differ from its attribute)",
        )),
        Err(StubError::InUse) => Recovered::Busy(OPEN_ELSEWHERE.into()),
        Err(e) if is_not_found(&e) => Recovered::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => Recovered::Final(FileResult::failed(seq, format!("reconcile: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(seq: i64, size: i64) -> JobFile {
        JobFile {
            seq,
            file_id: None,
            file_path: format!("/f{seq}"),
            path_escaped: false,
            file_size: size,
            last_modified: Some(chrono::DateTime::UNIX_EPOCH),
            inode: None,
            state: None,
        }
    }

    #[test]
    fn batches_cap_files_and_bytes() {
        let files: Vec<JobFile> =
            (0..10).map(|i| file(i, if i == 3 { 1000 } else { 10 })).collect();
        let b = batches(files, 4, 100);
        let seqs: Vec<Vec<i64>> = b.iter().map(|b| b.iter().map(|f| f.seq).collect()).collect();
        assert_eq!(seqs, vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert!(batches(vec![], 4, 100).is_empty());
    }

    #[test]
    fn snapshot_compares_at_microseconds() {
        let mut f = file(0, 5);
        f.last_modified = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000);
        f.inode = Some(42);
        let id = FileIdentity { size: 5, mtime_ns: 1_700_000_000_123_456_789, inode: 42, dev: 1 };
        assert!(matches_snapshot(&id, &f));
        assert!(!matches_snapshot(&FileIdentity { size: 6, ..id }, &f));
        assert!(!matches_snapshot(&FileIdentity { inode: 43, ..id }, &f));
        assert!(!matches_snapshot(&FileIdentity { mtime_ns: id.mtime_ns + 1000, ..id }, &f));
        f.inode = Some(-1);
        assert!(matches_snapshot(&FileIdentity { inode: u64::MAX, ..id }, &f));
        f.last_modified = None;
        assert!(!matches_snapshot(&FileIdentity { inode: u64::MAX, ..id }, &f));
    }
}
