//! The one place where the link's protobuf messages meet the job contract
//! (`alto_api_types`'s job types): both ends convert with these impls, so the link carries
//! exactly what the REST endpoints carry.
//!
//! Protobuf has no "required" and spells enums as integers; a message that does not map onto
//! the contract (an unknown outcome, a seq out of range, a job id that is not a UUID, an offer
//! whose document does not fit) is a [`ConvertError`], never a default.

use alto_api_types::{
    CompleteJob, ContractError, ExecJob, FileOutcome, FileResult, FileResults, JobEnd, JobProgress,
    OnAccessStatus, ProgressReport, RecallRecorded, Recalled,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::pb;

/// A link message that does not fit the job contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("job_id {0:?} is not a UUID")]
    JobId(String),
    #[error("seq {seq}: unknown outcome {outcome}")]
    Outcome { seq: i64, outcome: i32 },
    #[error("seq {0} out of range")]
    Seq(i64),
    #[error("state must be succeeded, failed or cancelled")]
    JobEnd,
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// A JSON document (recall report, recall answer, on-access status) that does not parse
    /// as its REST type.
    #[error("{what}: {message}")]
    Json { what: &'static str, message: String },
}

fn bad_json(what: &'static str) -> impl Fn(serde_json::Error) -> ConvertError {
    move |e| ConvertError::Json { what, message: e.to_string() }
}

/// A recall report, as `POST /agent/recalled` takes it.
pub fn recall_to_pb(r: &Recalled) -> pb::Recall {
    pb::Recall { recalled_json: serde_json::to_vec(r).expect("a report always serialises") }
}

/// A recall report as received (the REST body's rules: unknown fields are refused).
pub fn recall_from_pb(r: &pb::Recall) -> Result<Recalled, ConvertError> {
    serde_json::from_slice(&r.recalled_json).map_err(bad_json("recall report"))
}

/// The answer to a recall report.
pub fn recorded_to_ok(r: &RecallRecorded) -> pb::Ok {
    pb::Ok {
        result_json: serde_json::to_vec(r).expect("an answer always serialises"),
        ..Default::default()
    }
}

/// The answer to a recall report as received.
pub fn recorded_from_ok(ok: &pb::Ok) -> Result<RecallRecorded, ConvertError> {
    serde_json::from_slice(&ok.result_json).map_err(bad_json("recall answer"))
}

/// The host's on-access recall status.
pub fn on_access_to_pb(s: &OnAccessStatus) -> pb::OnAccess {
    pb::OnAccess { status_json: serde_json::to_vec(s).expect("a status always serialises") }
}

/// The host's on-access recall status as received.
pub fn on_access_from_pb(o: &pb::OnAccess) -> Result<OnAccessStatus, ConvertError> {
    serde_json::from_slice(&o.status_json).map_err(bad_json("on-access status"))
}

/// Reads a job id as the messages carry it (text).
pub fn job_id(s: &str) -> Result<Uuid, ConvertError> {
    s.parse().map_err(|_| ConvertError::JobId(s.to_owned()))
}

impl From<FileOutcome> for pb::Outcome {
    fn from(o: FileOutcome) -> Self {
        match o {
            FileOutcome::Staged => pb::Outcome::Staged,
            FileOutcome::Stubbed => pb::Outcome::Stubbed,
            FileOutcome::Skipped => pb::Outcome::Skipped,
            FileOutcome::Failed => pb::Outcome::Failed,
            FileOutcome::Recalled => pb::Outcome::Recalled,
        }
    }
}

impl From<JobEnd> for pb::JobEnd {
    fn from(e: JobEnd) -> Self {
        match e {
            JobEnd::Succeeded => pb::JobEnd::Succeeded,
            JobEnd::Failed => pb::JobEnd::Failed,
            JobEnd::Cancelled => pb::JobEnd::Cancelled,
        }
    }
}

impl From<&FileResult> for pb::FileResult {
    fn from(r: &FileResult) -> Self {
        pb::FileResult {
            seq: i64::from(r.seq),
            outcome: pb::Outcome::from(r.outcome) as i32,
            sha256: r.sha256.clone(),
            object_key: r.object_key.clone(),
            stored_size: r.stored_size,
            error: r.error.clone(),
        }
    }
}

impl TryFrom<pb::FileResult> for FileResult {
    type Error = ConvertError;

    fn try_from(r: pb::FileResult) -> Result<Self, ConvertError> {
        let outcome = match pb::Outcome::try_from(r.outcome) {
            Ok(pb::Outcome::Staged) => FileOutcome::Staged,
            Ok(pb::Outcome::Stubbed) => FileOutcome::Stubbed,
            Ok(pb::Outcome::Skipped) => FileOutcome::Skipped,
            Ok(pb::Outcome::Failed) => FileOutcome::Failed,
            Ok(pb::Outcome::Recalled) => FileOutcome::Recalled,
            _ => return Err(ConvertError::Outcome { seq: r.seq, outcome: r.outcome }),
        };
        Ok(FileResult {
            seq: i32::try_from(r.seq).map_err(|_| ConvertError::Seq(r.seq))?,
            outcome,
            sha256: r.sha256,
            object_key: r.object_key,
            stored_size: r.stored_size,
            error: r.error,
        })
    }
}

/// A batch of results of one job, as the link sends it.
pub fn files_to_pb(job: Uuid, r: &FileResults) -> pb::FileResults {
    pb::FileResults { job_id: job.to_string(), results: r.results.iter().map(Into::into).collect() }
}

/// A batch of results of one job, as the link received it.
pub fn files_from_pb(f: pb::FileResults) -> Result<(Uuid, FileResults), ConvertError> {
    let job = job_id(&f.job_id)?;
    let results = f.results.into_iter().map(FileResult::try_from).collect::<Result<_, _>>()?;
    Ok((job, FileResults { results }))
}

/// A completion, as the link sends it.
pub fn complete_to_pb(job: Uuid, c: &CompleteJob) -> pb::Complete {
    pb::Complete {
        job_id: job.to_string(),
        state: pb::JobEnd::from(c.state) as i32,
        error: c.error.clone(),
    }
}

/// A completion, as the link received it.
pub fn complete_from_pb(c: pb::Complete) -> Result<(Uuid, CompleteJob), ConvertError> {
    let job = job_id(&c.job_id)?;
    let state = match pb::JobEnd::try_from(c.state) {
        Ok(pb::JobEnd::Succeeded) => JobEnd::Succeeded,
        Ok(pb::JobEnd::Failed) => JobEnd::Failed,
        Ok(pb::JobEnd::Cancelled) => JobEnd::Cancelled,
        _ => return Err(ConvertError::JobEnd),
    };
    Ok((job, CompleteJob { state, error: c.error }))
}

/// A progress report, as the link sends it.
pub fn progress_to_pb(job: Uuid, p: ProgressReport) -> pb::Progress {
    pb::Progress { job_id: job.to_string(), files_done: p.files_done, bytes_done: p.bytes_done }
}

/// A progress report, as the link received it.
pub fn progress_from_pb(p: &pb::Progress) -> Result<(Uuid, ProgressReport), ConvertError> {
    Ok((job_id(&p.job_id)?, ProgressReport { files_done: p.files_done, bytes_done: p.bytes_done }))
}

/// The answer to a progress report, as the link's `Ok` carries it.
impl From<&JobProgress> for pb::Ok {
    fn from(p: &JobProgress) -> Self {
        pb::Ok {
            result_json: Vec::new(),
            cancel: p.cancel,
            lease_expires_at_ms: p.lease_expires_at.map_or(0, |t| t.timestamp_millis()),
            accepted: 0,
        }
    }
}

/// The answer to a progress report, read back from the link's `Ok` (0 means no lease time).
impl From<&pb::Ok> for JobProgress {
    fn from(ok: &pb::Ok) -> Self {
        JobProgress {
            cancel: ok.cancel,
            lease_expires_at: (ok.lease_expires_at_ms != 0)
                .then(|| DateTime::<Utc>::from_timestamp_millis(ok.lease_expires_at_ms))
                .flatten(),
        }
    }
}

/// A job offer: the contract's document, and beside it the host's upload limit (bytes per
/// second, 0 = none), which every job of the host shares.
pub fn offer_to_pb(job: &ExecJob, host_bandwidth: u64) -> pb::JobOffer {
    pb::JobOffer {
        job_json: serde_json::to_vec(job).expect("a job always serialises"),
        bandwidth_bytes_per_second: host_bandwidth,
    }
}

/// A job offer as received: the document, which must fit the contract, and the host's
/// upload limit (0 = none).
pub fn offer_from_pb(o: &pb::JobOffer) -> Result<(ExecJob, u64), ConvertError> {
    Ok((ExecJob::from_slice(&o.job_json)?, o.bandwidth_bytes_per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_reports_and_statuses_round_trip_as_rest_json() {
        let r: Recalled = serde_json::from_value(serde_json::json!({
            "path": "/srv/a", "sha256": "a".repeat(64), "trigger": "on_access",
            "outcome": "denied", "process": { "pid": 7, "exe": "/usr/bin/x" } }))
        .unwrap();
        let back = recall_from_pb(&recall_to_pb(&r)).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&r).unwrap());
        assert!(matches!(
            recall_from_pb(&pb::Recall { recalled_json: b"{\"path\": 1}".to_vec() }),
            Err(ConvertError::Json { .. })
        ));
        let rec = RecallRecorded {
            recorded: true,
            duplicate: false,
            stub_id: None,
            previous_state: Some("pending".into()),
            state: Some("rehydrated".into()),
            retain_until: None,
        };
        assert_eq!(recorded_from_ok(&recorded_to_ok(&rec)).unwrap(), rec);
        let st = OnAccessStatus {
            state: "partial".into(),
            reason: Some("tmpfs".into()),
            survives_restart: true,
            filesystems: vec![],
        };
        assert_eq!(on_access_from_pb(&on_access_to_pb(&st)).unwrap(), st);
    }
    use alto_api_types::{ExecTarget, JobWork, TierWork};
    use alto_model::TargetKind;

    #[test]
    fn results_round_trip_and_bad_ones_are_errors() {
        let r = FileResult::stored(3, FileOutcome::Stubbed, "ab".into(), "k".into(), 10);
        let pb_r = pb::FileResult::from(&r);
        assert_eq!(pb_r.outcome, pb::Outcome::Stubbed as i32);
        assert_eq!(FileResult::try_from(pb_r.clone()).unwrap(), r);
        let unknown = pb::FileResult { outcome: 0, ..pb_r.clone() };
        assert_eq!(
            FileResult::try_from(unknown),
            Err(ConvertError::Outcome { seq: 3, outcome: 0 })
        );
        let far = pb::FileResult { seq: i64::from(i32::MAX) + 1, ..pb_r };
        assert!(matches!(FileResult::try_from(far), Err(ConvertError::Seq(_))));
        let job = Uuid::now_v7();
        let batch = FileResults { results: vec![r, FileResult::skipped(4, "changed")] };
        let (j, back) = files_from_pb(files_to_pb(job, &batch)).unwrap();
        assert_eq!((j, back.results), (job, batch.results));
        assert!(files_from_pb(pb::FileResults { job_id: "x".into(), results: vec![] }).is_err());
    }

    #[test]
    fn completions_progress_and_offers_round_trip() {
        let job = Uuid::now_v7();
        for state in [JobEnd::Succeeded, JobEnd::Failed, JobEnd::Cancelled] {
            let c = CompleteJob { state, error: Some("e".into()) };
            let (j, back) = complete_from_pb(complete_to_pb(job, &c)).unwrap();
            assert_eq!((j, back.state, back.error), (job, state, c.error));
        }
        let none = pb::Complete { job_id: job.to_string(), state: 0, error: None };
        assert_eq!(complete_from_pb(none).unwrap_err(), ConvertError::JobEnd);

        let p = ProgressReport { files_done: 2, bytes_done: 9 };
        assert_eq!(progress_from_pb(&progress_to_pb(job, p)).unwrap(), (job, p));
        let jp = JobProgress {
            cancel: true,
            lease_expires_at: DateTime::from_timestamp_millis(1_700_000_000_123),
        };
        assert_eq!(JobProgress::from(&pb::Ok::from(&jp)), jp);
        assert_eq!(JobProgress::from(&pb::Ok::default()), JobProgress::default());

        let e = ExecJob {
            version: 1,
            job_id: job,
            customer_id: Uuid::nil(),
            host_id: Uuid::nil(),
            lease_expires_at: None,
            bandwidth_bytes_per_second: None,
            work: JobWork::Tier(TierWork {
                rule_id: None,
                priority: 1,
                compression: None,
                storage_target: ExecTarget {
                    id: Uuid::nil(),
                    name: "t".into(),
                    kind: TargetKind::Directory,
                    location: "/x".into(),
                    config: serde_json::json!({}),
                },
                tiered_destination: "d".into(),
                files: vec![],
            }),
        };
        let o = offer_to_pb(&e, 1000);
        assert_eq!(o.bandwidth_bytes_per_second, 1000);
        assert_eq!(offer_from_pb(&o).unwrap(), (e, 1000));
        let bad = pb::JobOffer { job_json: b"{\"kind\":\"tape\"}".to_vec(), ..o };
        assert!(matches!(offer_from_pb(&bad), Err(ConvertError::Contract(_))));
    }
}
