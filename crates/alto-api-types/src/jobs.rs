//! The job contract: every kind of work the server hands an agent, in one set of types.
//!
//! The same types travel both ways an agent talks to the server — the REST endpoints under
//! `/api/v1/agent/jobs/…` (as JSON) and the agent link (`alto-link` converts its protobuf
//! messages to and from exactly these types in one place) — and the planner stores
//! [`JobPayload`] in `jobs.payload`.
//!
//! * [`JobPayload`]: what a queued job of agent work is, as the planner wrote it; tagged by
//!   `kind` and versioned ([`JOB_CONTRACT_VERSION`]).
//! * [`ExecJob`]: the offer (or claim answer) an agent executes: the job's identity and lease
//!   plus its [`JobWork`], tagged by `kind` the same way (today `tier`; recall, scrub and
//!   sanitizer jobs join as new variants without another shape).
//! * [`ProgressReport`] → [`JobProgress`]: extends the lease, tells of a cancel.
//! * [`FileResult`] (in [`FileResults`]): what happened to one file.
//! * [`CompleteJob`]: how the job ended ([`JobEnd`]).
//!
//! A document that does not match is an error ([`ContractError`]), never a default: a job
//! whose payload names an unknown target kind fails instead of writing somewhere else.

use alto_model::{Compression, TargetKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The version of the job contract this build writes and understands. Documents written
/// before versions existed (no `version` field) are version 1.
pub const JOB_CONTRACT_VERSION: u32 = 1;

/// The job kinds agents execute (the `jobs.kind` of agent work).
pub const AGENT_JOB_KINDS: [&str; 2] = ["tier", "recall"];

fn v1() -> u32 {
    1
}

/// A document that does not fit the job contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("job document: {0}")]
    Malformed(String),
    #[error(
        "job contract version {0} is newer than this build understands ({JOB_CONTRACT_VERSION})"
    )]
    UnsupportedVersion(u32),
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
}

impl ContractError {
    pub fn field(field: &'static str, message: impl Into<String>) -> ContractError {
        ContractError::Field { field, message: message.into() }
    }
}

/// Inserts `kind` into a JSON object that lacks it (documents written before the contract
/// carried it; the kind then comes from elsewhere: the `jobs.kind` column, or `tier`, the only
/// kind agents executed then). An object that has a `kind` keeps it.
fn with_kind(v: &serde_json::Value, kind: &str) -> Result<serde_json::Value, ContractError> {
    let serde_json::Value::Object(m) = v else {
        return Err(ContractError::Malformed("not a JSON object".into()));
    };
    let mut m = m.clone();
    m.entry("kind").or_insert_with(|| serde_json::Value::String(kind.to_owned()));
    Ok(serde_json::Value::Object(m))
}

fn check_version(v: u32) -> Result<(), ContractError> {
    if v == 0 || v > JOB_CONTRACT_VERSION {
        return Err(ContractError::UnsupportedVersion(v));
    }
    Ok(())
}

// --- What the planner stores ------------------------------------------------------------------

/// The storage target a job writes to, as the planner named it. The agent receives the
/// target's current settings with the offer ([`ExecTarget`]); credentials are never copied into
/// a payload (the API shows payloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    pub id: Uuid,
    pub name: String,
    pub kind: TargetKind,
    pub location: String,
}

/// A queued job of agent work, as stored in `jobs.payload`, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobPayload {
    /// Copy files to tier-2 and replace them by stubs.
    Tier(TierPayload),
    /// Bring stubs back from tier-2 (an operator's request or a scheduled restoration).
    Recall(RecallPayload),
}

/// Dispatch priority of recall jobs: every recall job goes before every tiering job (whose
/// priorities are at most `alto_rules::MAX_PRIORITY`, 1,000,000), a manual recall before a
/// scheduled one. On-access recalls are no jobs: the agent serves them at once, beside any job.
pub const RECALL_PRIORITY_MANUAL: i32 = 3_000_000;
pub const RECALL_PRIORITY_SCHEDULED: i32 = 2_000_000;
const _: () = assert!(RECALL_PRIORITY_SCHEDULED > 1_000_000);
const _: () = assert!(RECALL_PRIORITY_MANUAL > RECALL_PRIORITY_SCHEDULED);

/// Why a recall job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecallJobTrigger {
    /// An operator asked (API, `altoctl recall`, the console).
    Manual,
    /// A scheduled restoration rule came due.
    Scheduled,
}

impl RecallJobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RecallJobTrigger::Manual => "manual",
            RecallJobTrigger::Scheduled => "scheduled",
        }
    }

    /// The job priority of this trigger.
    pub fn priority(self) -> i32 {
        match self {
            RecallJobTrigger::Manual => RECALL_PRIORITY_MANUAL,
            RecallJobTrigger::Scheduled => RECALL_PRIORITY_SCHEDULED,
        }
    }
}

/// The payload of a `recall` job. Its files are in `job_files` like a tier job's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallPayload {
    #[serde(default = "v1")]
    pub version: u32,
    pub job_id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub trigger: RecallJobTrigger,
    /// The request this job is part of (one request makes a job per 1,000 files).
    pub request_id: Uuid,
    /// Who asked (a user name), or the schedule's name.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// The scheduled restoration rule, for scheduled recalls.
    #[serde(default)]
    pub schedule_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// The payload of a `tier` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierPayload {
    #[serde(default = "v1")]
    pub version: u32,
    pub job_id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub rule_id: Uuid,
    pub rule_version: i32,
    pub plan_id: Uuid,
    /// The rule's priority.
    pub priority: i32,
    pub storage_target: TargetRef,
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Where in the target this job's objects go (a dated prefix).
    pub tiered_destination: String,
    pub estimated_space_saved: i64,
    pub estimated_duration_seconds: i64,
    pub estimated_bandwidth_bytes_per_second: i64,
    pub created_at: DateTime<Utc>,
}

impl JobPayload {
    /// Reads a stored payload of a job whose `jobs.kind` column is `kind`. A payload that
    /// names another kind, misses a field, has a wrong type or an unknown target kind is an
    /// error.
    pub fn parse(kind: &str, payload: &serde_json::Value) -> Result<JobPayload, ContractError> {
        let p: JobPayload = serde_json::from_value(with_kind(payload, kind)?)
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        if p.kind() != kind {
            return Err(ContractError::Malformed(format!(
                "the payload is a {} job, the job a {kind} job",
                p.kind()
            )));
        }
        check_version(p.version())?;
        Ok(p)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::Tier(_) => "tier",
            JobPayload::Recall(_) => "recall",
        }
    }

    pub fn version(&self) -> u32 {
        match self {
            JobPayload::Tier(t) => t.version,
            JobPayload::Recall(r) => r.version,
        }
    }

    /// The storage target a tier job's objects go to (a recall job reads from the targets
    /// its stubs name).
    pub fn target(&self) -> Option<&TargetRef> {
        match self {
            JobPayload::Tier(t) => Some(&t.storage_target),
            JobPayload::Recall(_) => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a job payload always serialises")
    }
}

// --- What an agent executes -----------------------------------------------------------------

/// A storage target as an agent opens it: the current settings, sent only to the agent of the
/// job's host over its authenticated connection. `Debug` leaves the settings out.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecTarget {
    pub id: Uuid,
    pub name: String,
    pub kind: TargetKind,
    pub location: String,
    /// The target's connection settings and credentials (see `TargetSpec` in alto-tier2).
    #[serde(default)]
    pub config: serde_json::Value,
}

impl std::fmt::Debug for ExecTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecTarget")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("config", &"<redacted>")
            .finish()
    }
}

/// One file of a job: the inventory's snapshot of it when it was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecFile {
    pub seq: i32,
    pub file_id: Uuid,
    /// As the scan batch spells it: UTF-8, or `alto-batch`'s escape when `path_escaped`.
    pub file_path: String,
    #[serde(default)]
    pub path_escaped: bool,
    pub file_size: i64,
    /// The inventory's mtime; a file without one is never stubbed.
    pub last_modified: Option<DateTime<Utc>>,
    /// The inode number as the inventory stores it (a signed 64-bit integer).
    pub inode: Option<i64>,
    /// `pending` for every file handed out (only files still to do are).
    pub state: String,
}

/// A job as an agent executes it (a link offer, or the answer to a REST claim): only the
/// files still to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecJob {
    #[serde(default = "v1")]
    pub version: u32,
    pub job_id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// A limit of this job's own on its upload bandwidth (bytes per second), within the
    /// host's limit that every job of the host shares (which the link's offer carries beside
    /// the document). The server sets none today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_second: Option<u64>,
    /// What to do, tagged by `kind`.
    #[serde(flatten)]
    pub work: JobWork,
}

/// The work of a job, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobWork {
    /// Copy each file to the target, report `staged`, convert it to a stub, report `stubbed`.
    Tier(TierWork),
    /// Recall each file (a stub) from the target its stub attribute names, report `recalled`.
    Recall(RecallWork),
}

/// The work of a `recall` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecallWork {
    pub trigger: RecallJobTrigger,
    /// The current settings of the targets this job's stubs were tiered to (an agent that
    /// lost its remembered settings can still read them). Directory targets are opened under
    /// the agent's own `tier2.directory_base`.
    #[serde(default)]
    pub storage_targets: Vec<ExecTarget>,
    pub files: Vec<ExecFile>,
}

/// The work of a `tier` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierWork {
    pub rule_id: Option<Uuid>,
    pub priority: i32,
    #[serde(default)]
    pub compression: Option<Compression>,
    pub storage_target: ExecTarget,
    pub tiered_destination: String,
    pub files: Vec<ExecFile>,
}

impl ExecJob {
    /// Reads a job document. Documents written before the contract carried `kind` are `tier`
    /// jobs (the only kind then); anything else that does not fit is an error.
    pub fn from_json(v: &serde_json::Value) -> Result<ExecJob, ContractError> {
        let j: ExecJob = serde_json::from_value(with_kind(v, "tier")?)
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        check_version(j.version)?;
        Ok(j)
    }

    pub fn from_slice(b: &[u8]) -> Result<ExecJob, ContractError> {
        let v: serde_json::Value =
            serde_json::from_slice(b).map_err(|e| ContractError::Malformed(e.to_string()))?;
        ExecJob::from_json(&v)
    }

    pub fn kind(&self) -> &'static str {
        match self.work {
            JobWork::Tier(_) => "tier",
            JobWork::Recall(_) => "recall",
        }
    }

    /// How many files the job has left.
    pub fn file_count(&self) -> usize {
        self.files().len()
    }

    /// The files the job has left.
    pub fn files(&self) -> &[ExecFile] {
        match &self.work {
            JobWork::Tier(t) => &t.files,
            JobWork::Recall(r) => &r.files,
        }
    }

    /// The tier work, if this is a tier job.
    pub fn tier(&self) -> Option<&TierWork> {
        match &self.work {
            JobWork::Tier(t) => Some(t),
            JobWork::Recall(_) => None,
        }
    }

    /// The recall work, if this is a recall job.
    pub fn recall(&self) -> Option<&RecallWork> {
        match &self.work {
            JobWork::Recall(r) => Some(r),
            JobWork::Tier(_) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimJobs {
    /// 1–10, default 1.
    #[serde(default)]
    pub max_jobs: Option<i64>,
    /// Also hand back jobs already leased to this host (an agent that restarted after a
    /// claim it never recorded). Send it only on the first claim after recovery.
    #[serde(default)]
    pub resume: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimedJobs {
    pub jobs: Vec<ExecJob>,
}

/// How far a job got (`POST /agent/jobs/{id}/progress`, or the link's `Progress`); the body
/// may be empty. Extends the job's lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    #[serde(default)]
    pub files_done: u64,
    #[serde(default)]
    pub bytes_done: u64,
}

/// The answer to a progress report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// The job was cancelled: finish the file in flight, report, complete as `cancelled`.
    #[serde(default)]
    pub cancel: bool,
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    /// The object is in tier-2 and verified; the file is not touched yet. The server records a
    /// pending stub-registry entry.
    Staged,
    /// The file is now a stub of that object.
    Stubbed,
    /// Left alone on purpose (`error` says why: changed, open elsewhere, gone); planned again
    /// by a later run.
    Skipped,
    /// Left alone because something went wrong (`error`).
    Failed,
    /// (Recall jobs) the file is whole again; `sha256` is its content's (the stub's) and
    /// `stored_size` the bytes brought back.
    Recalled,
}

impl FileOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOutcome::Staged => "staged",
            FileOutcome::Stubbed => "stubbed",
            FileOutcome::Skipped => "skipped",
            FileOutcome::Failed => "failed",
            FileOutcome::Recalled => "recalled",
        }
    }
}

/// One file's outcome. `staged` and `stubbed` carry the object's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileResult {
    pub seq: i32,
    pub outcome: FileOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FileResult {
    pub fn skipped(seq: i32, why: impl Into<String>) -> FileResult {
        FileResult {
            seq,
            outcome: FileOutcome::Skipped,
            sha256: None,
            object_key: None,
            stored_size: None,
            error: Some(why.into()),
        }
    }

    pub fn failed(seq: i32, why: impl Into<String>) -> FileResult {
        FileResult { outcome: FileOutcome::Failed, ..FileResult::skipped(seq, why) }
    }

    /// `recalled`: the content (this SHA-256, this many bytes) is back.
    pub fn recalled(seq: i32, sha256: String, bytes: u64) -> FileResult {
        FileResult {
            seq,
            outcome: FileOutcome::Recalled,
            sha256: Some(sha256),
            object_key: None,
            stored_size: Some(bytes),
            error: None,
        }
    }

    /// `staged` or `stubbed` with the object's facts.
    pub fn stored(
        seq: i32,
        outcome: FileOutcome,
        sha256: String,
        object_key: String,
        stored_size: u64,
    ) -> FileResult {
        FileResult {
            seq,
            outcome,
            sha256: Some(sha256),
            object_key: Some(object_key),
            stored_size: Some(stored_size),
            error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileResults {
    pub results: Vec<FileResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultsAccepted {
    pub accepted: u64,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobEnd {
    Succeeded,
    Failed,
    Cancelled,
}

impl JobEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            JobEnd::Succeeded => "succeeded",
            JobEnd::Failed => "failed",
            JobEnd::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteJob {
    pub state: JobEnd,
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer to a completion: the job's state now (`queued` with `retry_at` when the
/// target was unavailable and the job will be tried again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobCompleted {
    pub id: Uuid,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> serde_json::Value {
        json!({
            "job_id": Uuid::nil(), "customer_id": Uuid::nil(), "host_id": Uuid::nil(),
            "rule_id": Uuid::nil(), "rule_version": 1, "plan_id": Uuid::nil(), "priority": 10,
            "storage_target": { "id": Uuid::nil(), "name": "t2", "kind": "s3", "location": "b" },
            "compression": "zstd", "tiered_destination": "2026/12/05",
            "estimated_space_saved": 1, "estimated_duration_seconds": 1,
            "estimated_bandwidth_bytes_per_second": 1, "created_at": "2026-12-05T00:00:00Z"
        })
    }

    #[test]
    fn a_payload_without_kind_or_version_reads_as_version_1_of_its_column_kind() {
        let p = JobPayload::parse("tier", &payload()).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.target().map(|t| t.kind), Some(TargetKind::S3));
        let again = JobPayload::parse("tier", &p.to_json()).unwrap();
        assert_eq!(again, p);
        assert_eq!(p.to_json()["kind"], "tier");
    }

    #[test]
    fn a_malformed_payload_is_an_error_never_a_default() {
        let mut bad_kind = payload();
        bad_kind["storage_target"]["kind"] = json!("nfs");
        assert!(JobPayload::parse("tier", &bad_kind).is_err());
        let mut no_target = payload();
        no_target.as_object_mut().unwrap().remove("storage_target");
        assert!(JobPayload::parse("tier", &no_target).is_err());
        assert!(JobPayload::parse("recall", &payload()).is_err());
        let mut future = payload();
        future["version"] = json!(JOB_CONTRACT_VERSION + 1);
        assert_eq!(
            JobPayload::parse("tier", &future),
            Err(ContractError::UnsupportedVersion(JOB_CONTRACT_VERSION + 1))
        );
        assert!(JobPayload::parse("tier", &json!([1])).is_err());
    }

    #[test]
    fn an_offer_is_flat_json_tagged_by_kind() {
        let j = ExecJob {
            version: 1,
            job_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            host_id: Uuid::nil(),
            lease_expires_at: None,
            bandwidth_bytes_per_second: Some(5),
            work: JobWork::Tier(TierWork {
                rule_id: None,
                priority: 1,
                compression: Some(Compression::Zstd),
                storage_target: ExecTarget {
                    id: Uuid::nil(),
                    name: "t".into(),
                    kind: TargetKind::Directory,
                    location: "/mnt".into(),
                    config: json!({"secret": "x"}),
                },
                tiered_destination: "d".into(),
                files: vec![],
            }),
        };
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["kind"], "tier");
        assert_eq!(v["storage_target"]["kind"], "directory");
        assert_eq!(v["files"], json!([]));
        assert_eq!(ExecJob::from_json(&v).unwrap(), j);
        assert!(!format!("{j:?}").contains("secret"));
        // A document from before the contract carried `kind` is a tier job.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("kind");
        old.as_object_mut().unwrap().remove("version");
        assert_eq!(ExecJob::from_json(&old).unwrap(), j);
        let mut bad = v;
        bad["storage_target"]["kind"] = json!("tape");
        assert!(ExecJob::from_json(&bad).is_err());
    }

    #[test]
    fn a_recall_job_is_a_variant_of_the_same_contract() {
        let p = JobPayload::Recall(RecallPayload {
            version: 1,
            job_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            host_id: Uuid::nil(),
            trigger: RecallJobTrigger::Scheduled,
            request_id: Uuid::nil(),
            requested_by: Some("nightly".into()),
            schedule_id: None,
            created_at: "2026-12-07T00:00:00Z".parse().unwrap(),
        });
        let v = p.to_json();
        assert_eq!(v["kind"], "recall");
        assert_eq!(JobPayload::parse("recall", &v).unwrap(), p);
        assert!(p.target().is_none());
        // A recall payload is not a tier job's, and unknown fields are refused.
        assert!(JobPayload::parse("tier", &v).is_err());
        let mut extra = v.clone();
        extra["paths"] = json!(["/x"]);
        assert!(JobPayload::parse("recall", &extra).is_err());
        let offer = json!({ "job_id": Uuid::nil(), "customer_id": Uuid::nil(),
            "host_id": Uuid::nil(), "lease_expires_at": null, "kind": "recall",
            "trigger": "manual", "files": [] });
        let j = ExecJob::from_json(&offer).unwrap();
        assert_eq!((j.kind(), j.file_count()), ("recall", 0));
        assert!(j.tier().is_none() && j.recall().is_some());
        let r = FileResult::recalled(1, "a".repeat(64), 5);
        assert_eq!(serde_json::to_value(&r).unwrap()["outcome"], "recalled");
    }

    #[test]
    fn results_and_ends_keep_their_wire_names() {
        let r = FileResult::stored(3, FileOutcome::Staged, "a".into(), "k".into(), 9);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["outcome"], "staged");
        assert!(v.get("error").is_none());
        assert_eq!(serde_json::to_value(JobEnd::Cancelled).unwrap(), "cancelled");
        assert!(serde_json::from_value::<CompleteJob>(json!({"state": "done"})).is_err());
    }
}
