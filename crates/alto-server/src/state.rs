//! Shared application state handed to every handler.

use std::sync::Arc;

use alto_db::Db;
use alto_model::Clock;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::events::Event;

/// Cheap to clone; everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// Live events from PostgreSQL `LISTEN alto_events`, fanned out to WebSocket clients.
    pub events: broadcast::Sender<Arc<Event>>,
    /// An Argon2id hash of a random password, verified against when a login names an unknown
    /// user, so both cases cost the same time.
    pub dummy_hash: Arc<String>,
    /// Woken when a job is enqueued (by `LISTEN alto_jobs`, on every replica).
    pub jobs_wakeup: Arc<tokio::sync::Notify>,
    /// The agents connected to this replica's agent link.
    pub link: Arc<crate::link::registry::Registry>,
    /// Where the agent link listens and its CA (None: the link is disabled).
    pub link_info: Option<Arc<alto_api_types::AgentLinkInfo>>,
}

impl AppState {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}
