//! The agent link: the gRPC service agents hold one stream to (`alto-link`'s protocol), the
//! registry of agents connected to this replica, and the dispatcher (the "actor service")
//! that offers queued tiering jobs to them.
//!
//! * **Session.** The agent authenticates with its host credential (metadata
//!   `authorization: Bearer alto_h_…`, checked like the REST API's), sends `Hello`, gets
//!   `Welcome`. A second stream of the same host replaces the first (which is closed with
//!   ABORTED). Requests on a stream are handled one at a time, in order, by the same code as
//!   the REST endpoints (`http::execution`), so a file's `staged` is always recorded before
//!   its `stubbed`.
//! * **Dispatch.** Woken when a plan or job changes (events), when an agent connects or ends a
//!   job, and every `link.dispatch_interval`: for each connected agent with a free slot
//!   (`min(link.max_jobs_per_host, Hello.max_jobs)`) it leases the host's next queued jobs
//!   (priority first) and sends them as `JobOffer`s with the host's bandwidth limit. The first
//!   dispatch of a session also takes back jobs still leased to the host that the agent does
//!   not say it runs (a stream broke after an offer).
//! * **Leases.** A job offered over the link is leased for `link.lease`; heartbeats and
//!   progress extend it. When it runs out (the agent vanished) the job goes back to its
//!   host's queue (`job_state` event, `alto_link_jobs_requeued_total`) and is offered again
//!   when the agent returns; the agent's journal resumes it.
//! * **Cancel.** A cancel through the API (any replica: it travels as a `job_state` event)
//!   is pushed to the agent at once as `Cancel`; the progress reply says so too.
//!
//! **Must never:** offer a job to an agent of another host or tenant (jobs are claimed by the
//! session's authenticated host id); offer a job the agent says it is running; let one
//! agent's slow requests delay another's (each session has its own task).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use alto_api_types::{CompleteJob, FileOutcome, FileResult, FileResults};
use alto_link::pb::{self, agent_message, request, server_message};
use alto_link::tonic::{self, Request, Response, Status, Streaming};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Host;
use crate::http::error::ApiError;
use crate::http::execution;
use crate::http::extract::ClientIp;
use crate::state::AppState;

type Outbound = mpsc::Sender<Result<pb::ServerMessage, Status>>;

/// One connected agent.
struct Session {
    id: u64,
    host: Host,
    tx: Outbound,
    /// Jobs offered to (or reported running by) the agent, with when they were offered.
    running: HashMap<Uuid, DateTime<Utc>>,
    /// Jobs the agent said it runs at Hello: never offered again in this session.
    exclude: HashSet<Uuid>,
    max_jobs: u32,
    /// The next dispatch takes back jobs still leased to the host.
    resume: bool,
    connected_at: DateTime<Utc>,
    agent_version: String,
}

/// A connected agent, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    pub host_id: Uuid,
    pub customer_id: Uuid,
    pub connected_at: DateTime<Utc>,
    pub agent_version: String,
    pub running_jobs: Vec<Uuid>,
}

/// The agents connected to this replica.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<Uuid, Session>>,
    next_id: AtomicU64,
    /// Wakes the dispatcher.
    pub wake: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is the host's agent connected to this replica?
    pub fn is_online(&self, host_id: Uuid) -> bool {
        self.lock().contains_key(&host_id)
    }

    /// The connected agents (of one tenant, or all).
    pub fn connected(&self, customer: Option<Uuid>) -> Vec<Connected> {
        let mut out: Vec<Connected> = self
            .lock()
            .values()
            .filter(|s| customer.is_none_or(|c| s.host.customer_id.0 == c))
            .map(|s| Connected {
                host_id: s.host.host_id,
                customer_id: s.host.customer_id.0,
                connected_at: s.connected_at,
                agent_version: s.agent_version.clone(),
                running_jobs: s.running.keys().copied().collect(),
            })
            .collect();
        out.sort_by_key(|c| c.host_id);
        out
    }

    fn register(&self, s: Session) {
        let old = self.lock().insert(s.host.host_id, s);
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted("replaced by a newer connection")));
        }
        metrics::gauge!("alto_link_agents_connected").set(self.lock().len() as f64);
        self.wake.notify_one();
    }

    fn unregister(&self, host_id: Uuid, id: u64) -> bool {
        let mut g = self.lock();
        let mine = g.get(&host_id).is_some_and(|s| s.id == id);
        if mine {
            g.remove(&host_id);
        }
        metrics::gauge!("alto_link_agents_connected").set(g.len() as f64);
        mine
    }

    fn job_ended(&self, host_id: Uuid, job: Uuid) {
        if let Some(s) = self.lock().get_mut(&host_id) {
            s.running.remove(&job);
        }
        self.wake.notify_one();
    }

    /// The agent's heartbeat: the jobs it runs. Jobs offered more than `grace` ago that it
    /// no longer lists are forgotten (it dropped them; their lease will run out).
    fn heartbeat(
        &self,
        host_id: Uuid,
        id: u64,
        listed: &[Uuid],
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) {
        let mut g = self.lock();
        let Some(s) = g.get_mut(&host_id).filter(|s| s.id == id) else { return };
        let before = s.running.len();
        s.running.retain(|j, at| listed.contains(j) || now - *at < grace);
        for j in listed {
            s.running.entry(*j).or_insert(now);
        }
        if s.running.len() < before {
            self.wake.notify_one();
        }
    }

    /// Pushes a cancel to the host's agent, if connected here. Returns whether it was sent.
    pub fn cancel(&self, host_id: Uuid, job: Uuid, reason: &str) -> bool {
        let g = self.lock();
        let Some(s) = g.get(&host_id) else { return false };
        let msg = pb::ServerMessage {
            body: Some(server_message::Body::Cancel(pb::Cancel {
                job_id: job.to_string(),
                reason: reason.to_owned(),
            })),
        };
        s.tx.try_send(Ok(msg)).is_ok()
    }
}

fn status(e: &ApiError) -> Status {
    use alto_api_types::ErrorCode as C;
    let m = e.message.clone();
    match e.code {
        C::Unauthenticated | C::InvalidCredentials => Status::unauthenticated(m),
        C::Forbidden | C::TenantSuspended => Status::permission_denied(m),
        C::Unavailable => Status::unavailable(m),
        C::Internal => Status::internal(m),
        _ => Status::failed_precondition(m),
    }
}

fn error_reply(id: u64, e: &ApiError) -> pb::Reply {
    use alto_api_types::ErrorCode as C;
    let code = serde_json::to_value(e.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".into());
    pb::Reply {
        id,
        result: Some(pb::reply::Result::Error(pb::Error {
            code,
            message: e.message.clone(),
            retryable: matches!(e.code, C::Unavailable | C::Internal),
        })),
    }
}

fn ok_reply(id: u64, ok: pb::Ok) -> pb::Reply {
    pb::Reply { id, result: Some(pb::reply::Result::Ok(ok)) }
}

fn parse_job(s: &str) -> Result<Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::validation(format!("job_id {s:?} is not a UUID")))
}

fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.link.lease).unwrap_or(chrono::Duration::seconds(90))
}

/// The gRPC service.
#[derive(Clone)]
pub struct LinkService {
    state: AppState,
}

impl LinkService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn handle(&self, host: &Host, req: pb::Request) -> pb::Reply {
        let id = req.id;
        let state = &self.state;
        let res = match req.call {
            None => Err(ApiError::validation("empty request")),
            Some(request::Call::Progress(p)) => {
                async {
                    let job = parse_job(&p.job_id)?;
                    let r = execution::extend_lease(state, host, job, lease(state)).await?;
                    if p.files_done > 0 || p.bytes_done > 0 {
                        let mut tx = state.db.begin(host.ctx()).await?;
                        crate::events::publish(
                            &mut tx,
                            &serde_json::json!({ "type": "job_progress",
                            "customer_id": host.customer_id.0, "job_id": job,
                            "host_id": host.host_id, "files_done": p.files_done,
                            "bytes_done": p.bytes_done }),
                        )
                        .await?;
                        tx.commit().await?;
                    }
                    Ok(pb::Ok {
                        cancel: r.cancel,
                        lease_expires_at_ms: r.lease_expires_at.map_or(0, |t| t.timestamp_millis()),
                        accepted: 0,
                    })
                }
                .await
            }
            Some(request::Call::Files(f)) => {
                async {
                    let job = parse_job(&f.job_id)?;
                    let mut results = Vec::with_capacity(f.results.len());
                    for r in f.results {
                        let outcome = match pb::Outcome::try_from(r.outcome) {
                            Ok(pb::Outcome::Staged) => FileOutcome::Staged,
                            Ok(pb::Outcome::Stubbed) => FileOutcome::Stubbed,
                            Ok(pb::Outcome::Skipped) => FileOutcome::Skipped,
                            Ok(pb::Outcome::Failed) => FileOutcome::Failed,
                            _ => {
                                return Err(ApiError::validation(format!(
                                    "seq {}: unknown outcome {}",
                                    r.seq, r.outcome
                                )))
                            }
                        };
                        let seq = i32::try_from(r.seq).map_err(|_| {
                            ApiError::validation(format!("seq {} out of range", r.seq))
                        })?;
                        let stored_size = r
                            .stored_size
                            .map(|s| {
                                i64::try_from(s)
                                    .map_err(|_| ApiError::validation("stored_size too large"))
                            })
                            .transpose()?;
                        results.push(FileResult {
                            seq,
                            outcome,
                            sha256: r.sha256,
                            object_key: r.object_key,
                            stored_size,
                            error: r.error,
                        });
                    }
                    let a = execution::record_results(state, host, job, &FileResults { results })
                        .await?;
                    Ok(pb::Ok {
                        accepted: a.accepted.min(u32::MAX as u64) as u32,
                        ..Default::default()
                    })
                }
                .await
            }
            Some(request::Call::Complete(c)) => {
                async {
                    let job = parse_job(&c.job_id)?;
                    let end = pb::JobEnd::try_from(c.state).unwrap_or(pb::JobEnd::Unspecified);
                    let Some(end) = alto_link::job_end_to_str(end) else {
                        return Err(ApiError::validation(
                            "state must be succeeded, failed or cancelled",
                        ));
                    };
                    let req = CompleteJob { state: end.to_owned(), error: c.error };
                    execution::complete_job(state, host, job, &req).await?;
                    state.link.job_ended(host.host_id, job);
                    Ok(pb::Ok::default())
                }
                .await
            }
        };
        match res {
            Ok(ok) => ok_reply(id, ok),
            Err(e) => {
                metrics::counter!("alto_link_requests_refused_total").increment(1);
                error_reply(id, &e)
            }
        }
    }

    /// Reads the session's messages until the stream ends.
    async fn serve_session(
        self,
        host: Host,
        sid: u64,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: Outbound,
    ) {
        let grace = chrono::Duration::from_std(self.state.config.link.heartbeat_interval * 3)
            .unwrap_or(chrono::Duration::seconds(30));
        // Link heartbeats keep the host online (no REST heartbeat is needed while the link is
        // up), written at most once per `touch_every` (link heartbeats are more frequent).
        let agents = &self.state.config.agents;
        let touch_every =
            chrono::Duration::from_std(agents.heartbeat_interval.min(agents.offline_after / 4))
                .unwrap_or(chrono::Duration::seconds(30));
        let mut last_touch = self.state.now();
        loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(host = %host.host_id, error = %e, "agent link stream ended");
                    break;
                }
            };
            match msg.body {
                Some(agent_message::Body::Heartbeat(hb)) => {
                    let jobs: Vec<Uuid> =
                        hb.running_jobs.iter().filter_map(|j| j.parse().ok()).collect();
                    let now = self.state.now();
                    self.state.link.heartbeat(host.host_id, sid, &jobs, now, grace);
                    if now - last_touch >= touch_every {
                        match self.seen(&host).await {
                            Ok(()) => last_touch = now,
                            Err(e) => {
                                tracing::warn!(host = %host.host_id, error = %e.message, "last_seen not recorded")
                            }
                        }
                    }
                    if !jobs.is_empty() {
                        if let Err(e) = self.extend(&host, &jobs, now).await {
                            tracing::warn!(host = %host.host_id, error = %e.message, "lease extension failed");
                        }
                    }
                }
                Some(agent_message::Body::Request(r)) => {
                    let reply = self.handle(&host, r).await;
                    let m = pb::ServerMessage { body: Some(server_message::Body::Reply(reply)) };
                    if tx.send(Ok(m)).await.is_err() {
                        break;
                    }
                }
                Some(agent_message::Body::Hello(_)) => {
                    let _ =
                        tx.send(Err(Status::failed_precondition("Hello was already sent"))).await;
                    break;
                }
                None => {}
            }
        }
        if self.state.link.unregister(host.host_id, sid) {
            self.publish_link_event(&host, false).await;
        }
    }

    async fn extend(&self, host: &Host, jobs: &[Uuid], now: DateTime<Utc>) -> Result<(), ApiError> {
        let mut tx = self.state.db.begin(host.ctx()).await?;
        alto_db::execution::extend_host_leases(
            &mut tx,
            host.host_id,
            jobs,
            now + lease(&self.state),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that the host's agent is alive (it opened a session or sent a heartbeat on
    /// one): online and `last_seen_at` now, as a REST heartbeat does, with the same audit
    /// entry and event when that brings the host back online.
    async fn seen(&self, host: &Host) -> Result<(), ApiError> {
        let now = self.state.now();
        let ip = host.ip.to_opt_string();
        let mut tx = self.state.db.begin(host.ctx()).await?;
        let prev =
            alto_db::hosts::seen(&mut tx, host.customer_id.0, host.host_id, ip.as_deref(), now)
                .await?;
        if prev != "online" {
            let e = crate::audit::entry(
                &self.state,
                Some(host.customer_id),
                &host.actor(),
                "host.online",
                Some(("host", host.host_id.to_string())),
                "success",
                serde_json::json!({ "previous": prev, "via": "link" }),
            );
            crate::audit::record(&mut tx, &e).await?;
            crate::events::publish(
                &mut tx,
                &serde_json::json!({
                "type": "host_status", "customer_id": host.customer_id, "host_id": host.host_id,
                "status": "online", "previous": prev }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn publish_link_event(&self, host: &Host, connected: bool) {
        let res = async {
            let mut tx = self.state.db.begin(host.ctx()).await?;
            crate::events::publish(
                &mut tx,
                &serde_json::json!({ "type": "agent_link", "customer_id": host.customer_id.0,
                    "host_id": host.host_id, "connected": connected }),
            )
            .await?;
            tx.commit().await?;
            Ok::<_, ApiError>(())
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e.message, "agent link event not published");
        }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_link_server::AgentLink for LinkService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let ip = ClientIp(req.remote_addr().map(|a| a.ip()));
        let token = req
            .metadata()
            .get(alto_link::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .ok_or_else(|| {
                Status::unauthenticated("authorization: Bearer <host credential> required")
            })?;
        let host = crate::auth::authenticate_host(&self.state, &token, ip)
            .await
            .map_err(|e| status(&e))?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(pb::AgentMessage { body: Some(agent_message::Body::Hello(h)) }))) => h,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 seconds")),
            _ => return Err(Status::failed_precondition("the first message must be Hello")),
        };
        if hello.agent_version.is_empty() || hello.agent_version.len() > 64 {
            return Err(Status::invalid_argument("agent_version must be 1 to 64 characters"));
        }
        let cfg = &self.state.config.link;
        let max_jobs = if hello.max_jobs == 0 {
            cfg.max_jobs_per_host
        } else {
            hello.max_jobs.min(cfg.max_jobs_per_host)
        };
        let now = self.state.now();
        let running: HashSet<Uuid> =
            hello.running_jobs.iter().filter_map(|j| j.parse().ok()).collect();
        let (tx, rx) = mpsc::channel(256);
        let welcome = pb::ServerMessage {
            body: Some(server_message::Body::Welcome(pb::Welcome {
                host_id: host.host_id.to_string(),
                tenant_id: host.customer_id.0.to_string(),
                heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u64,
                lease_ms: cfg.lease.as_millis() as u64,
                max_jobs,
                server_version: env!("CARGO_PKG_VERSION").into(),
            })),
        };
        tx.try_send(Ok(welcome)).map_err(|_| Status::internal("session channel"))?;
        let sid = self.state.link.next_id.fetch_add(1, Ordering::Relaxed);
        if !running.is_empty() {
            let jobs: Vec<Uuid> = running.iter().copied().collect();
            if let Err(e) = self.extend(&host, &jobs, now).await {
                return Err(status(&e));
            }
        }
        tracing::info!(host = %host.host_id, agent_version = %hello.agent_version,
            running = running.len(), "agent connected to the link");
        self.state.link.register(Session {
            id: sid,
            host: host.clone(),
            tx: tx.clone(),
            running: running.iter().map(|j| (*j, now)).collect(),
            exclude: running,
            max_jobs,
            resume: true,
            connected_at: now,
            agent_version: hello.agent_version.clone(),
        });
        metrics::counter!("alto_link_sessions_total").increment(1);
        if let Err(e) = self.seen(&host).await {
            tracing::warn!(host = %host.host_id, error = %e.message, "last_seen not recorded");
        }
        self.publish_link_event(&host, true).await;
        tokio::spawn(self.clone().serve_session(host, sid, inbound, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// One round of dispatch: offers queued jobs to every connected agent with a free slot.
pub async fn dispatch_once(state: &AppState) {
    struct Want {
        host: Host,
        sid: u64,
        free: u32,
        resume: bool,
        exclude: HashSet<Uuid>,
        tx: Outbound,
    }
    let wants: Vec<Want> = {
        let mut g = state.link.lock();
        g.values_mut()
            .filter(|s| (s.running.len() as u32) < s.max_jobs)
            .map(|s| {
                let w = Want {
                    host: s.host.clone(),
                    sid: s.id,
                    free: s.max_jobs - s.running.len() as u32,
                    resume: s.resume,
                    exclude: s.exclude.clone(),
                    tx: s.tx.clone(),
                };
                s.resume = false;
                w
            })
            .collect()
    };
    for w in wants {
        let jobs = match execution::claim_jobs(state, &w.host, w.free, w.resume, lease(state)).await
        {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(host = %w.host.host_id, error = %e.message, "dispatch: claim failed");
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        let bandwidth = async {
            let mut tx = state.db.begin(w.host.ctx()).await?;
            let b = alto_db::execution::host_bandwidth_limit(&mut tx, w.host.host_id).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(b.unwrap_or(0).max(0) as u64)
        }
        .await
        .unwrap_or(0);
        let now = state.now();
        for job in jobs {
            let id = job.job_id;
            {
                let mut g = state.link.lock();
                match g.get_mut(&w.host.host_id).filter(|s| s.id == w.sid) {
                    Some(s) => {
                        s.running.insert(id, now);
                    }
                    None => break, // the session ended; the lease brings the job back
                }
            }
            if w.exclude.contains(&id) {
                continue; // the agent runs it already
            }
            let Ok(json) = serde_json::to_vec(&job) else { continue };
            let offer = pb::ServerMessage {
                body: Some(server_message::Body::Offer(pb::JobOffer {
                    job_json: json,
                    bandwidth_bytes_per_second: bandwidth,
                })),
            };
            if w.tx.send(Ok(offer)).await.is_err() {
                break;
            }
            metrics::counter!("alto_link_jobs_offered_total").increment(1);
            tracing::info!(host = %w.host.host_id, job = %id, files = job.files.len(), "job offered");
        }
    }
}

/// Sends back to their host's queue the jobs whose lease ran out.
pub async fn requeue_expired(state: &AppState) {
    let res = async {
        let now = state.now();
        let mut tx = state.db.begin(alto_db::TenantCtx::Platform).await?;
        let jobs = alto_db::execution::requeue_expired(&mut tx, now).await?;
        for j in &jobs {
            crate::events::publish(
                &mut tx,
                &serde_json::json!({ "type": "job_state", "customer_id": j.customer_id,
                    "job_id": j.id, "host_id": j.host_id, "state": "queued",
                    "previous": "running", "reason": "lease expired" }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, ApiError>(jobs.len())
    }
    .await;
    match res {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(jobs = n, "jobs whose agent vanished went back to their queue");
            metrics::counter!("alto_link_jobs_requeued_total").increment(n as u64);
        }
        Err(e) => tracing::warn!(error = %e.message, "requeue of expired leases failed"),
    }
}

/// The dispatcher: runs until `cancel`.
pub async fn run_dispatcher(state: AppState, cancel: CancellationToken) {
    let mut events = state.events.subscribe();
    let every = state.config.link.dispatch_interval.max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = state.link.wake.notified() => {}
            _ = state.jobs_wakeup.notified() => {}
            _ = tokio::time::sleep(every) => requeue_expired(&state).await,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&ev.json) else { continue };
                    match v["type"].as_str() {
                        Some("job_state") => {
                            if v["cancel_requested"].as_bool() == Some(true) {
                                let host = v["host_id"].as_str().and_then(|h| h.parse().ok());
                                let job = v["job_id"].as_str().and_then(|h| h.parse().ok());
                                if let (Some(h), Some(j)) = (host, job) {
                                    if state.link.cancel(h, j, "cancelled by an operator") {
                                        tracing::info!(host = %h, job = %j, "cancel sent to the agent");
                                    }
                                }
                            }
                        }
                        Some("plan_created") => {}
                        _ => continue,
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
        dispatch_once(&state).await;
    }
}

/// Serves the agent link on `listener` with `tls` until `cancel`.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    tls: alto_link::tls::ServerTls,
    cancel: CancellationToken,
) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let svc = pb::agent_link_server::AgentLinkServer::new(LinkService::new(state))
        .max_decoding_message_size(16 << 20);
    let server = match tonic::transport::Server::builder().tls_config(tls.server_config()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "agent link TLS configuration refused");
            return;
        }
    };
    let res = server
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, ?addr, "agent link server stopped");
    }
}
