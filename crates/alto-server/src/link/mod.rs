//! The agent link: the gRPC service agents hold one stream to (`alto-link`'s protocol), in
//! three parts: [`registry`] (the agents connected to this replica; plain state, no
//! application state), [`session`] (one agent's stream: authentication, heartbeats, requests
//! answered by `crate::execution`, errors rendered as `Reply.error`) and [`dispatcher`] (offers
//! queued jobs, requeues expired leases, pushes cancels).
//!
//! * **Session.** The agent authenticates with its host credential (metadata
//!   `authorization: Bearer alto_h_…`, checked like the REST API's), sends `Hello`, gets
//!   `Welcome`. A second stream of the same host replaces the first (which is closed with
//!   ABORTED). Requests on a stream are handled one at a time, in order, by the same domain
//!   operations as the REST endpoints (`crate::execution`), so a file's `staged` is always recorded before
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

use std::net::SocketAddr;
use std::time::Duration;

use alto_link::pb;
use alto_link::tonic;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub mod dispatcher;
pub mod registry;
pub mod session;

pub use dispatcher::{dispatch_once, forward_events, requeue_expired};
pub use registry::{Connected, Registry};
pub use session::LinkService;

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
