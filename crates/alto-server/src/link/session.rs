//! One agent's stream: authentication, `Hello`/`Welcome`, heartbeats (online status and
//! lease extension) and the agent's requests, each answered by the same domain operations
//! the REST endpoints call (`crate::execution`), in order, so a file's `staged` is always
//! recorded before its `stubbed`. Errors are rendered here: [`ExecError`] as a `Reply.error`
//! with its stable code, authentication failures as gRPC statuses.
//!
//! **Must never:** answer a request for another host's job (every operation takes the
//! session's authenticated [`Host`]); let one agent's slow requests delay another's (each
//! session has its own task).

use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;

use alto_api_types::ErrorCode;
use alto_db::DbError;
use alto_link::convert::{self, ConvertError};
use alto_link::pb::{self, agent_message, request, server_message};
use alto_link::tonic::{self, Request, Response, Status, Streaming};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::registry::{Outbound, Session};
use crate::execution::{self, ExecError};
use crate::principal::{ClientIp, Host};
use crate::state::AppState;

/// The lease a job gets when offered or extended over the link.
pub(crate) fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.link.lease).unwrap_or(chrono::Duration::seconds(90))
}

impl From<ConvertError> for ExecError {
    fn from(e: ConvertError) -> Self {
        ExecError::Invalid(e.to_string())
    }
}

/// A refused request, as the link's `Reply.error` carries it.
fn error_reply(id: u64, e: &ExecError) -> pb::Reply {
    pb::Reply {
        id,
        result: Some(pb::reply::Result::Error(pb::Error {
            code: e.code().as_str().to_owned(),
            message: e.public_message(),
            retryable: e.retryable(),
        })),
    }
}

fn ok_reply(id: u64, ok: pb::Ok) -> pb::Reply {
    pb::Reply { id, result: Some(pb::reply::Result::Ok(ok)) }
}

/// An authentication failure as a gRPC status.
fn auth_status(e: &crate::http::error::ApiError) -> Status {
    let m = e.message.clone();
    match e.code {
        ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials => Status::unauthenticated(m),
        ErrorCode::Forbidden | ErrorCode::TenantSuspended => Status::permission_denied(m),
        ErrorCode::Unavailable => Status::unavailable(m),
        ErrorCode::Internal => Status::internal(m),
        _ => Status::failed_precondition(m),
    }
}

/// A database failure while opening a session, as a gRPC status (details stay in the log).
fn db_status(e: DbError) -> Status {
    let e = ExecError::Db(e);
    tracing::warn!(error = %e, "agent link session refused");
    match e.code() {
        ErrorCode::Unavailable => Status::unavailable("the database is unavailable"),
        _ => Status::internal("internal error"),
    }
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

    /// Answers one request of the session's agent.
    async fn handle(&self, host: &Host, req: pb::Request) -> pb::Reply {
        let id = req.id;
        let state = &self.state;
        let res: Result<pb::Ok, ExecError> = match req.call {
            None => Err(ExecError::Invalid("empty request".into())),
            Some(request::Call::Progress(p)) => {
                async {
                    let (job, report) = convert::progress_from_pb(&p)?;
                    let r = execution::progress(state, host, job, &report, lease(state)).await?;
                    Ok(pb::Ok::from(&r))
                }
                .await
            }
            Some(request::Call::Files(f)) => {
                async {
                    let (job, results) = convert::files_from_pb(f)?;
                    let a = execution::record_results(state, host, job, &results).await?;
                    Ok(pb::Ok {
                        accepted: a.accepted.min(u64::from(u32::MAX)) as u32,
                        ..Default::default()
                    })
                }
                .await
            }
            Some(request::Call::Complete(c)) => {
                async {
                    let (job, req) = convert::complete_from_pb(c)?;
                    execution::complete(state, host, job, &req).await?;
                    Ok(pb::Ok::default())
                }
                .await
            }
            Some(request::Call::Recall(r)) => {
                async {
                    let report = convert::recall_from_pb(&r)?;
                    let answer = crate::recall::recalled(state, host, &report).await?;
                    Ok(convert::recorded_to_ok(&answer))
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
                                tracing::warn!(host = %host.host_id, error = %e, "last_seen not recorded")
                            }
                        }
                    }
                    if !jobs.is_empty() {
                        if let Err(e) = self.extend(&host, &jobs, now).await {
                            tracing::warn!(host = %host.host_id, error = %e, "lease extension failed");
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
                Some(agent_message::Body::OnAccess(o)) => {
                    // A status that does not parse is logged and ignored: heartbeats carry no
                    // reply to refuse it with, and the stored one stays.
                    match convert::on_access_from_pb(&o)
                        .map_err(|e| e.to_string())
                        .and_then(|s| crate::recall::clean_on_access(&s))
                    {
                        Ok(status) => {
                            if let Err(e) = self.store_on_access(&host, &status).await {
                                tracing::warn!(host = %host.host_id, error = %e, "on-access status not stored");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(host = %host.host_id, error = %e, "bad on-access status")
                        }
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

    async fn extend(&self, host: &Host, jobs: &[Uuid], now: DateTime<Utc>) -> Result<(), DbError> {
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
    async fn seen(&self, host: &Host) -> Result<(), DbError> {
        let now = self.state.now();
        let ip = host.ip.to_opt_string();
        let mut tx = self.state.db.begin(host.ctx()).await?;
        let prev =
            alto_db::hosts::seen(&mut tx, host.customer_id.0, host.host_id, ip.as_deref(), now)
                .await?;
        crate::services::host_monitor::announce_online(
            &mut tx,
            host,
            &prev,
            now,
            serde_json::json!({ "via": "link" }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the host's on-access recall status, as a REST heartbeat does.
    async fn store_on_access(
        &self,
        host: &Host,
        status: &alto_api_types::OnAccessStatus,
    ) -> Result<(), DbError> {
        let value = serde_json::to_value(status).unwrap_or_default();
        let now = self.state.now();
        let mut tx = self.state.db.begin(host.ctx()).await?;
        alto_db::hosts::set_on_access(&mut tx, host.customer_id.0, host.host_id, &value, now)
            .await?;
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
            Ok::<_, DbError>(())
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "agent link event not published");
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
            .map_err(|e| auth_status(&e))?;
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
        let sid = self.state.link.next_session_id();
        if !running.is_empty() {
            let jobs: Vec<Uuid> = running.iter().copied().collect();
            self.extend(&host, &jobs, now).await.map_err(db_status)?;
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
            tracing::warn!(host = %host.host_id, error = %e, "last_seen not recorded");
        }
        self.publish_link_event(&host, true).await;
        tokio::spawn(self.clone().serve_session(host, sid, inbound, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
