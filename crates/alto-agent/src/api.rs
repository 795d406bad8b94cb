//! The REST transport of agent work: [`ServerApi`] calls `/api/v1/agent/jobs/…`,
//! `/api/v1/agent/stubs/check` and `/api/v1/agent/recalled` with the host credential (like
//! the heartbeat), and implements [`Reporter`] and [`JobSource`] with the job contract's
//! types ([`crate::job`]). It knows HTTP, not what the messages mean.
//!
//! A claimed job document that does not fit the contract is not a job: it comes back as an
//! [`UnreadableJob`] so that the caller fails it with the reason.

use alto_api_types::ClaimJobs;
use alto_client::Client;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{
    BoxFut, CompleteJob, ExecJob, FileResult, JobProgress, JobSource, ProgressReport, ReportError,
    Reporter, UnreadableJob,
};

/// The claim answer, each job read on its own (one unreadable document must not hide the
/// others).
#[derive(Deserialize)]
struct ClaimResp {
    jobs: Vec<serde_json::Value>,
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
    ) -> Result<(Vec<ExecJob>, Vec<UnreadableJob>), ReportError> {
        let req = ClaimJobs { max_jobs: Some(i64::from(max_jobs)), resume };
        let resp: ClaimResp = self.post("/agent/jobs/claim", &req).await?;
        let mut jobs = Vec::new();
        let mut bad = Vec::new();
        for v in resp.jobs {
            match ExecJob::from_json(&v) {
                Ok(d) => jobs.push(d),
                Err(e) => bad.push(UnreadableJob::of(&v, &e)),
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

    /// `POST /agent/recalled`: one recall's result (the stub came back, or why not).
    pub async fn recalled(&self, report: &alto_api_types::Recalled) -> Result<(), ReportError> {
        let _: serde_json::Value = self.post("/agent/recalled", report).await?;
        Ok(())
    }
}

impl Reporter for ServerApi {
    fn progress(&self, job: Uuid, report: ProgressReport) -> BoxFut<'_, JobProgress> {
        Box::pin(async move { self.post(&format!("/agent/jobs/{job}/progress"), &report).await })
    }

    fn report_files<'a>(&'a self, job: Uuid, results: &'a [FileResult]) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let body = alto_api_types::FileResults { results: results.to_vec() };
            let _: serde_json::Value =
                self.post(&format!("/agent/jobs/{job}/files"), &body).await?;
            Ok(())
        })
    }

    fn complete<'a>(&'a self, job: Uuid, end: &'a CompleteJob) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let _: serde_json::Value =
                self.post(&format!("/agent/jobs/{job}/complete"), end).await?;
            Ok(())
        })
    }
}

impl JobSource for ServerApi {
    fn claim(&self, max_jobs: u32, resume: bool) -> BoxFut<'_, (Vec<ExecJob>, Vec<UnreadableJob>)> {
        Box::pin(ServerApi::claim(self, max_jobs, resume))
    }
}
