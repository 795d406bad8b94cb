//! Recall reports waiting for the server: one JSON file per report under
//! `<state>/on-access/outbox`, written by the event handler (a plain thread, never blocked by
//! the network) and sent by [`run`] in the agent's runtime. A report survives an agent crash
//! and a server outage; one the server refuses (4xx) is logged and dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alto_api_types::Recalled;
use tokio_util::sync::CancellationToken;

use crate::api::ServerApi;

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(state_dir: &Path) -> Outbox {
        Outbox { dir: super::dir(state_dir).join("outbox") }
    }

    /// Queues `report` (write, then rename: a crash leaves no half report).
    pub fn put(&self, report: &Recalled) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let id = uuid::Uuid::now_v7();
            let tmp = self.dir.join(format!(".{id}.tmp"));
            std::fs::write(&tmp, serde_json::to_vec(report).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, self.dir.join(format!("{id}.json")))
        };
        if let Err(e) = write() {
            tracing::error!(path = %report.path, error = %e, "recall report not queued");
        }
    }

    /// Queued reports, oldest first (v7 ids sort by time).
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    }

    /// Sends every queued report; stops at the first transient failure. Returns how many
    /// were delivered.
    pub async fn drain(&self, api: &ServerApi) -> usize {
        let mut sent = 0;
        for p in self.pending() {
            let Some(report) =
                std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Recalled>(&b).ok())
            else {
                tracing::warn!(file = %p.display(), "unreadable recall report dropped");
                let _ = std::fs::remove_file(&p);
                continue;
            };
            match api.recalled(&report).await {
                Ok(()) => {
                    sent += 1;
                    let _ = std::fs::remove_file(&p);
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "recall reports wait for the server");
                    break;
                }
                Err(e) => {
                    tracing::error!(path = %report.path, error = %e, "recall report refused; dropped");
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        sent
    }
}

/// Sends queued reports every second until cancelled (and once more then).
pub async fn run(outbox: Outbox, api: ServerApi, cancel: CancellationToken) {
    loop {
        outbox.drain(&api).await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    outbox.drain(&api).await;
}
