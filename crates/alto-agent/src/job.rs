//! The agent's side of the job contract: the job vocabulary (the contract's types, re-exported
//! from `alto_api_types`, so every module of the agent names them from one place), the
//! reasons the agent reports that the server relies on, and the two interfaces the executor
//! talks to the server through: [`Reporter`] (progress, per-file results, completion) and
//! [`JobSource`] (claiming jobs by polling).
//!
//! The transports implement them: [`crate::api::ServerApi`] over REST, [`crate::link::Link`]
//! over the agent link (which pushes offers instead of being polled). The executor
//! ([`crate::tier`]) depends on this module only, never on a transport.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

pub use alto_api_types::{
    CompleteJob, ContractError, ExecFile, ExecJob, ExecTarget, FileOutcome, FileResult,
    FileResults, JobEnd, JobProgress, JobWork, ProgressReport, TierWork,
};
pub use alto_model::{Compression, TargetKind};

/// Why a file was left alone, as reported.
pub const CHANGED: &str = "changed";
pub const OPEN_ELSEWHERE: &str = "open elsewhere";
pub const INTERRUPTED: &str = "interrupted";
pub const ALREADY_STUB: &str = "already a stub";
/// (Recall jobs) the file is whole already.
pub const NOT_A_STUB: &str = "not a stub";
/// The start of a job's failure that means tier-2 was unavailable: the server requeues such a
/// job with backoff instead of failing it for good.
pub const STORAGE_UNAVAILABLE: &str = "storage unavailable";

/// A boxed future, so that [`Reporter`] and [`JobSource`] can be trait objects.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ReportError>> + Send + 'a>>;

/// Why a call to the server did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReportError {
    /// Worth retrying: the server was unreachable, timed out, or answered 5xx, 408 or 429.
    #[error("server unavailable: {0}")]
    Transient(String),
    /// The server understood and said no (4xx); retrying the same call will not help.
    #[error("server refused: {message} ({code}, HTTP {status})")]
    Refused { status: u16, code: String, message: String },
}

impl ReportError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ReportError::Transient(_))
    }
}

/// How the executor talks to the server about a job it runs. Every method is one request;
/// the executor retries.
pub trait Reporter: Send + Sync {
    /// Extends the job's lease; says whether the job should stop.
    fn progress(&self, job: Uuid, report: ProgressReport) -> BoxFut<'_, JobProgress>;
    /// Records per-file outcomes (idempotent per seq and outcome).
    fn report_files<'a>(&'a self, job: Uuid, results: &'a [FileResult]) -> BoxFut<'a, ()>;
    /// Ends the job.
    fn complete<'a>(&'a self, job: Uuid, end: &'a CompleteJob) -> BoxFut<'a, ()>;
}

/// A claimed (or offered) job whose document does not fit the contract. The job is failed
/// with `error` (when its id is known) instead of being left leased.
#[derive(Debug, Clone)]
pub struct UnreadableJob {
    pub job_id: Option<Uuid>,
    pub error: String,
}

impl UnreadableJob {
    /// A document that did not parse: its `job_id` if it has a readable one.
    pub fn of(doc: &serde_json::Value, e: &dyn std::fmt::Display) -> UnreadableJob {
        UnreadableJob {
            job_id: doc["job_id"].as_str().and_then(|s| s.parse().ok()),
            error: format!("the agent cannot read the job document: {e}"),
        }
    }
}

/// Where a polling agent gets its jobs.
pub trait JobSource: Send + Sync {
    /// Up to `max_jobs` queued jobs of this host, now leased to it; documents that do not fit
    /// the contract come back separately so the caller can fail them. `resume` also returns
    /// jobs already leased to this host (send it only right after recovery).
    fn claim(&self, max_jobs: u32, resume: bool) -> BoxFut<'_, (Vec<ExecJob>, Vec<UnreadableJob>)>;
}
