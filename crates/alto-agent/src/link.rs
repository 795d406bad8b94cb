//! The agent's end of the agent link: one gRPC stream over TLS to the server
//! (`alto-link`'s protocol), kept open with reconnects and backoff, and [`Link`], the
//! [`Reporter`] that sends progress, per-file results and completions as requests on it.
//! Messages become the job contract's types ([`crate::job`]) through `alto_link::convert`
//! only; an offer whose document does not fit the contract is failed with the reason.
//!
//! The server pushes job offers and cancels; [`worker`] executes offered jobs with the
//! [`TierExecutor`] (after the journals of interrupted ones are recovered) and forwards
//! cancels to it. The executor knows only [`Reporter`]: this module depends on `tier`, never
//! the other way round.
//!
//! **Must never:** trust a server certificate not issued by the CA handed out at enrollment
//! (the system roots are not used); send the credential anywhere but the configured link
//! URL; answer a request of one stream with the reply of another (a broken stream fails
//! every request in flight as transient, and the executor retries it on the next one).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alto_link::convert;
use alto_link::pb::{self, agent_message, request, server_message};
use alto_link::tonic;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::{
    BoxFut, CompleteJob, ExecJob, FileResult, JobEnd, JobProgress, ProgressReport, ReportError,
    Reporter, UnreadableJob,
};
use crate::tier::TierExecutor;

/// How long a request waits for its reply before it counts as failed (transient).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to connect.
#[derive(Clone)]
pub struct LinkParams {
    /// `https://host:port`.
    pub url: String,
    /// The CA the server's certificate must be issued by.
    pub ca_pem: String,
    /// The host credential (`alto_h_…`), read at every (re)connect (it may rotate).
    pub credential: crate::state::SharedCredential,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    /// Jobs at once this agent runs.
    pub max_jobs: u32,
}

impl std::fmt::Debug for LinkParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkParams")
            .field("url", &self.url)
            .field("credential", &"<redacted>")
            .field("max_jobs", &self.max_jobs)
            .finish()
    }
}

/// What the server pushed.
#[derive(Debug)]
pub enum LinkEvent {
    /// A job now leased to this host, and the host's upload bandwidth limit (0: none) the
    /// offer carries, which every running job shares.
    Offer { doc: Box<ExecJob>, bandwidth_bytes_per_second: u64 },
    /// An offered job whose document does not fit the contract.
    Unreadable(UnreadableJob),
    /// Stop a job once the files in flight are done.
    Cancel(Uuid),
}

type Pending = HashMap<u64, oneshot::Sender<Result<pb::Ok, ReportError>>>;

#[derive(Default)]
struct Inner {
    out: Mutex<Option<mpsc::Sender<pb::AgentMessage>>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    running: Mutex<HashSet<Uuid>>,
}

impl Inner {
    fn running(&self) -> Vec<String> {
        let g = self.running.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(Uuid::to_string).collect()
    }

    fn fail_pending(&self, why: &str) {
        let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (_, tx) in g.drain() {
            let _ = tx.send(Err(ReportError::Transient(why.to_owned())));
        }
    }
}

/// The link: a handle to the connection task. Cheap to clone.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
    connected: watch::Receiver<bool>,
    max_jobs: u32,
}

impl Link {
    /// Starts the connection task; pushed events go to `events`. `running` are the jobs this
    /// agent will run anyway (journals): the server never offers them.
    pub fn start(
        params: LinkParams,
        running: Vec<Uuid>,
        events: mpsc::Sender<LinkEvent>,
        cancel: CancellationToken,
    ) -> Link {
        let inner = Arc::new(Inner::default());
        inner.running.lock().unwrap_or_else(|p| p.into_inner()).extend(running);
        let (conn_tx, conn_rx) = watch::channel(false);
        let max_jobs = params.max_jobs.max(1);
        tokio::spawn(run(inner.clone(), params, events, conn_tx, cancel));
        Link { inner, connected: conn_rx, max_jobs }
    }

    /// Waits until a session is up (or `cancel`).
    pub async fn wait_connected(&self, cancel: &CancellationToken) -> bool {
        let mut rx = self.connected.clone();
        tokio::select! {
            r = rx.wait_for(|c| *c) => r.is_ok(),
            _ = cancel.cancelled() => false,
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Marks a job as run by this agent (reported in heartbeats and at reconnects).
    pub fn set_running(&self, job: Uuid, running: bool) {
        let mut g = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        if running {
            g.insert(job);
        } else {
            g.remove(&job);
        }
    }

    async fn call(&self, call: request::Call) -> Result<pb::Ok, ReportError> {
        let out = self.inner.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(out) = out else {
            return Err(ReportError::Transient("the agent link is not connected".into()));
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let msg = pb::AgentMessage {
            body: Some(agent_message::Body::Request(pb::Request { id, call: Some(call) })),
        };
        if out.send(msg).await.is_err() {
            self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(ReportError::Transient("the agent link closed".into()));
        }
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ReportError::Transient("the agent link closed".into())),
            Err(_) => {
                self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                Err(ReportError::Transient("no reply from the server in time".into()))
            }
        }
    }
}

fn refused(e: pb::Error) -> ReportError {
    if e.retryable {
        return ReportError::Transient(format!("{}: {}", e.code, e.message));
    }
    let status = match e.code.as_str() {
        "not_found" => 404,
        "conflict" => 409,
        "unauthenticated" => 401,
        "forbidden" | "tenant_suspended" => 403,
        _ => 400,
    };
    ReportError::Refused { status, code: e.code, message: e.message }
}

impl Reporter for Link {
    fn progress(&self, job: Uuid, report: ProgressReport) -> BoxFut<'_, JobProgress> {
        Box::pin(async move {
            let ok =
                self.call(request::Call::Progress(convert::progress_to_pb(job, report))).await?;
            Ok(JobProgress::from(&ok))
        })
    }

    fn report_files<'a>(&'a self, job: Uuid, results: &'a [FileResult]) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let files = pb::FileResults {
                job_id: job.to_string(),
                results: results.iter().map(pb::FileResult::from).collect(),
            };
            self.call(request::Call::Files(files)).await?;
            Ok(())
        })
    }

    fn complete<'a>(&'a self, job: Uuid, end: &'a CompleteJob) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.call(request::Call::Complete(convert::complete_to_pb(job, end))).await?;
            Ok(())
        })
    }
}

/// The host name or address in `url` (the name the certificate must carry).
fn domain_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned()
}

async fn run(
    inner: Arc<Inner>,
    params: LinkParams,
    events: mpsc::Sender<LinkEvent>,
    connected: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut first = true;
    while !cancel.is_cancelled() {
        let res = session(&inner, &params, &events, &connected, first, &cancel).await;
        *inner.out.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = connected.send(false);
        inner.fail_pending("the agent link broke");
        if matches!(res, Ok(true)) {
            first = false;
            backoff.reset();
        }
        let delay = backoff.failed();
        match res {
            Ok(_) => {
                if !cancel.is_cancelled() {
                    tracing::info!("agent link stream ended; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, url = %params.url,
                "agent link unavailable"),
        }
        // Jitter so that a restarted server is not hit by every agent at once.
        let jitter = Duration::from_millis(rand_millis(delay.as_millis() as u64 / 4 + 1));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay + jitter) => {}
        }
    }
}

fn rand_millis(max: u64) -> u64 {
    let n = Uuid::new_v4().as_u128() as u64;
    n % max.max(1)
}

/// One session: connect, Hello, Welcome, then messages until the stream ends. `Ok(true)`:
/// it got as far as Welcome.
async fn session(
    inner: &Arc<Inner>,
    params: &LinkParams,
    events: &mpsc::Sender<LinkEvent>,
    connected: &watch::Sender<bool>,
    resume: bool,
    cancel: &CancellationToken,
) -> Result<bool, String> {
    let tls = alto_link::tls::client_config(&params.ca_pem, &domain_of(&params.url));
    let endpoint = tonic::transport::Endpoint::from_shared(params.url.clone())
        .map_err(|e| format!("link url {}: {e}", params.url))?
        .tls_config(tls)
        .map_err(|e| format!("TLS: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = tokio::select! {
        c = endpoint.connect() => c.map_err(|e| format!("connect: {e}: {:?}", std::error::Error::source(&e)))?,
        _ = cancel.cancelled() => return Ok(false),
    };
    let mut client =
        pb::agent_link_client::AgentLinkClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(256);
    let hello = pb::AgentMessage {
        body: Some(agent_message::Body::Hello(pb::Hello {
            agent_version: params.agent_version.clone(),
            capabilities: params.capabilities.clone(),
            running_jobs: inner.running(),
            max_jobs: params.max_jobs,
            resume,
        })),
    };
    tx.send(hello).await.map_err(|_| "channel".to_owned())?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let auth = format!("Bearer {}", params.credential.get())
        .parse()
        .map_err(|_| "the credential is not valid metadata".to_owned())?;
    req.metadata_mut().insert(alto_link::AUTHORIZATION, auth);
    let mut inbound = client
        .session(req)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let welcome = match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
        Ok(Ok(Some(pb::ServerMessage { body: Some(server_message::Body::Welcome(w)) }))) => w,
        Ok(Err(s)) => return Err(format!("{:?}: {}", s.code(), s.message())),
        Ok(_) => return Err("the server did not answer Hello with Welcome".into()),
        Err(_) => return Err("no Welcome within 30 seconds".into()),
    };
    tracing::info!(url = %params.url, host = %welcome.host_id, max_jobs = welcome.max_jobs,
        "agent link connected");
    *inner.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
    let _ = connected.send(true);
    let every = Duration::from_millis(welcome.heartbeat_interval_ms.clamp(100, 300_000));
    let mut beat = tokio::time::interval(every);
    beat.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(true),
            _ = beat.tick() => {
                let hb = pb::AgentMessage { body: Some(agent_message::Body::Heartbeat(
                    pb::Heartbeat { running_jobs: inner.running() })) };
                if tx.send(hb).await.is_err() {
                    return Ok(true);
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => dispatch(inner, events, m).await,
                Ok(None) => return Ok(true),
                Err(s) => {
                    tracing::warn!(code = ?s.code(), message = %s.message(), "agent link stream failed");
                    return Ok(true);
                }
            },
        }
    }
}

async fn dispatch(inner: &Arc<Inner>, events: &mpsc::Sender<LinkEvent>, m: pb::ServerMessage) {
    match m.body {
        Some(server_message::Body::Reply(r)) => {
            let tx = inner.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&r.id);
            if let Some(tx) = tx {
                let res = match r.result {
                    Some(pb::reply::Result::Ok(ok)) => Ok(ok),
                    Some(pb::reply::Result::Error(e)) => Err(refused(e)),
                    None => Err(ReportError::Transient("empty reply".into())),
                };
                let _ = tx.send(res);
            }
        }
        Some(server_message::Body::Offer(o)) => {
            let ev = match convert::offer_from_pb(&o) {
                Ok((doc, host_bandwidth)) => {
                    inner.running.lock().unwrap_or_else(|p| p.into_inner()).insert(doc.job_id);
                    // The offer's bandwidth is the host's limit, shared by every job (the
                    // executor's host bucket); the document's own is a limit of this job.
                    LinkEvent::Offer {
                        doc: Box::new(doc),
                        bandwidth_bytes_per_second: host_bandwidth,
                    }
                }
                Err(e) => LinkEvent::Unreadable(UnreadableJob::of(
                    &serde_json::from_slice(&o.job_json).unwrap_or_default(),
                    &e,
                )),
            };
            let _ = events.send(ev).await;
        }
        Some(server_message::Body::Cancel(c)) => {
            if let Ok(id) = c.job_id.parse() {
                tracing::info!(job = %id, reason = %c.reason, "the server cancels a job");
                let _ = events.send(LinkEvent::Cancel(id)).await;
            }
        }
        Some(server_message::Body::Welcome(_)) | None => {}
    }
}

/// The tier worker over the link: recovers interrupted jobs, then executes offered jobs (in
/// the order offered, up to `max_jobs` at once), until `cancel`. Each offer carries the
/// host's bandwidth limit: it sets the executor's host bucket, which all running jobs share.
pub async fn worker(
    exec: TierExecutor,
    link: Link,
    mut events: mpsc::Receiver<LinkEvent>,
    cancel: CancellationToken,
) {
    if !link.wait_connected(&cancel).await {
        return;
    }
    let canceller = exec.canceller();
    // Cancels must reach a job while it runs, so they are taken off the channel by a task of
    // their own; offers wait in a queue.
    let (offer_tx, mut offers) = mpsc::unbounded_channel::<(Box<ExecJob>, u64)>();
    let forward = {
        let canceller = canceller.clone();
        let cancel = cancel.clone();
        let link = link.clone();
        let exec_reporter = link.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = events.recv() => match ev { Some(ev) => ev, None => return },
                };
                match ev {
                    LinkEvent::Offer { doc, bandwidth_bytes_per_second } => {
                        let _ = offer_tx.send((doc, bandwidth_bytes_per_second));
                    }
                    LinkEvent::Cancel(id) => canceller.cancel(id),
                    LinkEvent::Unreadable(UnreadableJob { job_id, error }) => {
                        tracing::error!(job = ?job_id, %error, "unreadable job offer");
                        if let Some(id) = job_id {
                            let end = CompleteJob { state: JobEnd::Failed, error: Some(error) };
                            let _ = exec_reporter.complete(id, &end).await;
                            link.set_running(id, false);
                        }
                    }
                }
            }
        })
    };
    match exec.recover().await {
        Ok(s) => {
            for j in &s.jobs {
                link.set_running(j.job_id, false);
            }
            if !s.jobs.is_empty() {
                tracing::info!(
                    jobs = s.jobs.len(),
                    stubbed = s.stubbed(),
                    "interrupted jobs recovered"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "recovery stopped; the journals are kept"),
    }
    let exec = Arc::new(exec);
    let max = link.max_jobs as usize;
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        let (doc, bw) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = jobs.join_next(), if !jobs.is_empty() => continue,
            o = offers.recv(), if jobs.len() < max => match o { Some(o) => o, None => break },
        };
        // The host's limit for the job's kind is not the job's: every running job of that
        // kind shares it.
        exec.set_host_bandwidth_for(doc.kind(), bw);
        let (exec, link, canceller) = (exec.clone(), link.clone(), canceller.clone());
        jobs.spawn(async move {
            let id = doc.job_id;
            match exec.execute(*doc).await {
                Ok(r) => {
                    tracing::info!(job = %id, end = ?r.end, stubbed = r.stubbed, skipped = r.skipped,
                        failed = r.failed, bytes = r.bytes_stubbed, "job done");
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "job stopped; its journal resumes it")
                }
            }
            link.set_running(id, false);
            canceller.forget(id);
        });
    }
    // Running jobs stop between files (the executor watches `cancel` too).
    while jobs.join_next().await.is_some() {}
    forward.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain_of("https://alto.example:8443"), "alto.example");
        assert_eq!(domain_of("https://127.0.0.1:8443/"), "127.0.0.1");
        assert_eq!(domain_of("https://[::1]:8443"), "::1");
        assert_eq!(domain_of("https://alto.example"), "alto.example");
    }

    #[test]
    fn refusals_map_to_statuses() {
        let e =
            refused(pb::Error { code: "conflict".into(), message: "m".into(), retryable: false });
        assert!(matches!(e, ReportError::Refused { status: 409, .. }));
        let e =
            refused(pb::Error { code: "unavailable".into(), message: "m".into(), retryable: true });
        assert!(e.is_transient());
    }
}
