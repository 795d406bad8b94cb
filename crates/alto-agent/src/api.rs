//! The agent's side of the tiering API: the wire types of `/api/v1/agent/jobs/…` and
//! `/api/v1/agent/recalled`, and [`ServerApi`], the HTTP implementation of
//! [`crate::tier::Reporter`] (every call carries the host credential, like the heartbeat).
//!
//! The job document is read leniently (unknown fields are ignored, optional ones may be
//! missing) because the server adds fields over time; what the agent sends is exactly the
//! documented shape.

use std::future::Future;
use std::pin::Pin;

use alto_client::Client;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A boxed future, so that [`crate::tier::Reporter`] can be a trait object.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ReportError>> + Send + 'a>>;

/// One tiering job as `POST /agent/jobs/claim` hands it out (only files still `pending`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobDoc {
    pub job_id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    #[serde(default)]
    pub rule_id: Option<Uuid>,
    #[serde(default)]
    pub priority: Option<i64>,
    /// `none`, `zstd`, or absent/null (= `none`).
    #[serde(default)]
    pub compression: Option<String>,
    pub storage_target: StorageTargetRef,
    #[serde(default)]
    pub tiered_destination: Option<String>,
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Upload bandwidth the job may use (bytes per second); set from the link's offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_second: Option<u64>,
    pub files: Vec<JobFile>,
}

/// The storage target a job writes to.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct StorageTargetRef {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub name: String,
    /// `directory`, `smb`, `s3` or `azure`.
    pub kind: String,
    #[serde(default)]
    pub location: Option<String>,
    /// Connection settings and credentials (never logged: `Debug` leaves them out).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
}

impl std::fmt::Debug for StorageTargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageTargetRef")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("config", &"<redacted>")
            .finish()
    }
}

/// One file of a job: the inventory's snapshot of it when it was planned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobFile {
    pub seq: i64,
    #[serde(default)]
    pub file_id: Option<Uuid>,
    /// As the scan batch spells it: UTF-8, or `alto-batch`'s escape when `path_escaped`.
    pub file_path: String,
    #[serde(default)]
    pub path_escaped: bool,
    pub file_size: i64,
    /// The inventory's mtime; a file without one is never stubbed.
    #[serde(default)]
    pub last_modified: Option<DateTime<Utc>>,
    /// The inode number as the inventory stores it (a signed 64-bit integer).
    #[serde(default)]
    pub inode: Option<i64>,
    #[serde(default)]
    pub state: Option<String>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Copied to tier-2 and verified; the file is untouched. The server records a pending
    /// stub-registry entry.
    Staged,
    /// The file is a stub of the staged object.
    Stubbed,
    /// Left alone on purpose (`error` says why: changed, open elsewhere, …).
    Skipped,
    /// Left alone because something went wrong (`error`).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Staged => "staged",
            Outcome::Stubbed => "stubbed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

/// One entry of `POST /agent/jobs/{id}/files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileResult {
    pub seq: i64,
    pub outcome: Outcome,
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
    pub fn skipped(seq: i64, why: impl Into<String>) -> FileResult {
        FileResult {
            seq,
            outcome: Outcome::Skipped,
            sha256: None,
            object_key: None,
            stored_size: None,
            error: Some(why.into()),
        }
    }

    pub fn failed(seq: i64, why: impl Into<String>) -> FileResult {
        FileResult { outcome: Outcome::Failed, ..FileResult::skipped(seq, why) }
    }

    /// `staged` or `stubbed` with the object's facts.
    pub fn stored(
        seq: i64,
        outcome: Outcome,
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

/// How a job ends (`POST /agent/jobs/{id}/complete`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobEnd {
    Succeeded,
    Failed,
    Cancelled,
}

/// The answer to `POST /agent/jobs/{id}/progress`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobProgress {
    #[serde(default)]
    pub cancel: bool,
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

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

#[derive(Serialize)]
struct ClaimReq {
    max_jobs: u32,
    resume: bool,
}

#[derive(Deserialize)]
struct ClaimResp {
    jobs: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct FilesReq<'a> {
    results: &'a [FileResult],
}

#[derive(Serialize)]
struct CompleteReq<'a> {
    state: JobEnd,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct RecalledReq<'a> {
    path: &'a str,
    path_escaped: bool,
    sha256: &'a str,
}

/// A claimed job whose document this agent could not read.
#[derive(Debug, Clone)]
pub struct UnreadableJob {
    pub job_id: Option<Uuid>,
    pub error: String,
}

/// The server's tiering endpoints over HTTP, with the host credential.
#[derive(Debug, Clone)]
pub struct ServerApi {
    client: crate::state::HostClient,
}

impl ServerApi {
    /// `client` must carry the host credential (`alto_h_…`).
    pub fn new(client: Client) -> ServerApi {
        ServerApi { client: crate::state::HostClient::fixed(client) }
    }

    /// Every request carries the credential current at the time (it may rotate).
    pub fn shared(client: crate::state::HostClient) -> ServerApi {
        ServerApi { client }
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ReportError> {
        let resp = self
            .client
            .get()
            .request(Method::POST, &format!("/api/v1{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| ReportError::Transient(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ReportError::Transient(e.to_string()))?;
        if status.is_success() {
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body).map_err(|e| ReportError::Refused {
                status: status.as_u16(),
                code: "unexpected_response".into(),
                message: format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ),
            });
        }
        let (code, message) = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => (
                v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
                v["error"]["message"].as_str().unwrap_or("").to_owned(),
            ),
            Err(_) => (
                "unknown".to_owned(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            ),
        };
        let s = status.as_u16();
        if status.is_server_error() || s == 408 || s == 429 {
            return Err(ReportError::Transient(format!("HTTP {s} {code}: {message}")));
        }
        Err(ReportError::Refused { status: s, code, message })
    }

    /// `POST /agent/jobs/claim`: up to `max_jobs` queued jobs of this host, now `running` and
    /// leased to it. Documents that do not parse are returned separately so the caller can
    /// fail them instead of leaving them leased.
    /// `resume` also returns jobs already leased to this host: a claim this agent made but
    /// never journaled before it died (send it only right after recovery).
    pub async fn claim(
        &self,
        max_jobs: u32,
        resume: bool,
    ) -> Result<(Vec<JobDoc>, Vec<UnreadableJob>), ReportError> {
        let resp: ClaimResp =
            self.post("/agent/jobs/claim", &ClaimReq { max_jobs, resume }).await?;
        let mut jobs = Vec::new();
        let mut bad = Vec::new();
        for v in resp.jobs {
            match serde_json::from_value::<JobDoc>(v.clone()) {
                Ok(d) => jobs.push(d),
                Err(e) => bad.push(UnreadableJob {
                    job_id: v["job_id"].as_str().and_then(|s| s.parse().ok()),
                    error: format!("the agent cannot read the job document: {e}"),
                }),
            }
        }
        Ok((jobs, bad))
    }

    /// `POST /agent/stubs/check`: for each reference, `live` (the registry holds it pending or
    /// stubbed) or `unknown`.
    pub async fn check_refs(
        &self,
        refs: &[alto_api_types::RefToCheck],
    ) -> Result<Vec<String>, ReportError> {
        let r: alto_api_types::CheckedRefs =
            self.post("/agent/stubs/check", &serde_json::json!({ "refs": refs })).await?;
        Ok(r.states)
    }

    /// `POST /agent/recalled`: the stub at `path` (scan-batch spelling) is whole again.
    pub async fn recalled(
        &self,
        path: &str,
        path_escaped: bool,
        sha256: &str,
    ) -> Result<(), ReportError> {
        let _: serde_json::Value =
            self.post("/agent/recalled", &RecalledReq { path, path_escaped, sha256 }).await?;
        Ok(())
    }
}

impl crate::tier::Reporter for ServerApi {
    fn progress(&self, job: Uuid) -> BoxFut<'_, JobProgress> {
        Box::pin(async move {
            self.post(&format!("/agent/jobs/{job}/progress"), &serde_json::json!({})).await
        })
    }

    fn report_files<'a>(&'a self, job: Uuid, results: &'a [FileResult]) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let _: serde_json::Value =
                self.post(&format!("/agent/jobs/{job}/files"), &FilesReq { results }).await?;
            Ok(())
        })
    }

    fn complete<'a>(&'a self, job: Uuid, state: JobEnd, error: Option<&'a str>) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let _: serde_json::Value = self
                .post(&format!("/agent/jobs/{job}/complete"), &CompleteReq { state, error })
                .await?;
            Ok(())
        })
    }
}
