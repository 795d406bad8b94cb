//! Tier-2 reconciliation (`alto-agent reconcile-tier2`): deletes what tier-2 holds for this
//! host that the stub registry does not — objects and sidecars of files that were copied but
//! then not stubbed (they changed, were open, the job was cancelled, the agent was killed
//! between copy and `staged`), and of stubs that were recalled.
//!
//! For every sidecar of this host: skip it if it is younger than the grace period (a put or
//! a `staged` report may be in flight) or if its file belongs to a job this agent still has a
//! journal of; ask the server which of the rest are `pending` or `stubbed` in the registry
//! (`POST /agent/stubs/check`); delete the sidecars it does not know, then each object no
//! sidecar references any more (`delete_object_if_unreferenced` re-checks every sidecar of
//! the customer, other hosts' included, under the target's deletion protocol).
//!
//! **Must never:** delete a sidecar the server did not answer `unknown` for (a failed or
//! partial answer deletes nothing); touch another host's sidecars; delete an object another
//! sidecar still references; run against a server it cannot authenticate to.

use std::collections::HashSet;
use std::path::Path;

use alto_api_types::RefToCheck;
use alto_model::HostId;
use alto_tier2::{DeleteOutcome, Target, Tier2Error};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::ServerApi;
use crate::job::ReportError;

/// References per `check` call.
const CHECK_BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("tier-2: {0}")]
    Tier2(#[from] Tier2Error),
    #[error("server: {0}")]
    Server(#[from] ReportError),
    #[error("journals: {0}")]
    Journal(#[from] std::io::Error),
    #[error("the server answered {got} states for {sent} references")]
    BadAnswer { sent: usize, got: usize },
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GcReport {
    /// Sidecars of this host in tier-2.
    pub refs: u64,
    /// Kept: the registry holds them.
    pub live: u64,
    /// Kept: younger than the grace period or in a job this agent has a journal of.
    pub in_flight: u64,
    /// Sidecars with a malformed path (kept; reported).
    pub invalid: u64,
    /// Sidecars deleted (or, with `dry_run`, that would be).
    pub refs_deleted: u64,
    /// Objects deleted because no sidecar references them any more.
    pub objects_deleted: u64,
    /// Stored bytes of those objects.
    pub bytes_freed: u64,
}

/// The paths (scan-batch spelling) of every file of every job this agent has a journal of.
fn journaled_paths(journal_dir: &Path) -> Result<HashSet<(String, bool)>, GcError> {
    let mut out = HashSet::new();
    for p in crate::journal::Journal::list(journal_dir)? {
        match crate::journal::Journal::open(&p) {
            Ok((_, state)) => {
                out.extend(state.doc.files().iter().map(|f| (f.file_path.clone(), f.path_escaped)))
            }
            // An unreadable journal: be safe and keep everything.
            Err(e) => return Err(GcError::Journal(e)),
        }
    }
    Ok(out)
}

/// Reconciles this host's part of `target` with the registry.
pub async fn reconcile(
    api: &ServerApi,
    target: Target,
    host_id: HostId,
    journal_dir: &Path,
    grace: chrono::Duration,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let busy = journaled_paths(journal_dir)?;
    let t = target.clone();
    let listing = tokio::task::spawn_blocking(move || t.list_refs())
        .await
        .map_err(|e| GcError::Journal(std::io::Error::other(e)))??;
    let mut report = GcReport::default();
    let mut candidates = Vec::new();
    for r in listing.refs.into_iter().filter(|r| r.host_id == host_id) {
        report.refs += 1;
        if r.created_at > now - grace || busy.contains(&(r.path.clone(), r.path_escaped)) {
            report.in_flight += 1;
            continue;
        }
        if r.id().is_none() {
            report.invalid += 1;
            continue;
        }
        candidates.push(r);
    }
    let mut garbage = Vec::new();
    for chunk in candidates.chunks(CHECK_BATCH) {
        let refs: Vec<RefToCheck> = chunk
            .iter()
            .map(|r| RefToCheck {
                path: r.path.clone(),
                path_escaped: r.path_escaped,
                sha256: r.sha256.to_string(),
            })
            .collect();
        let states = api.check_refs(&refs).await?;
        if states.len() != chunk.len() {
            return Err(GcError::BadAnswer { sent: chunk.len(), got: states.len() });
        }
        for (r, s) in chunk.iter().zip(states) {
            if s == "unknown" {
                garbage.push(r.clone());
            } else {
                report.live += 1;
            }
        }
    }
    report.refs_deleted = garbage.len() as u64;
    if dry_run || garbage.is_empty() {
        return Ok(report);
    }
    let (objects, bytes) = tokio::task::spawn_blocking(move || {
        let mut keys = Vec::new();
        for r in &garbage {
            if let Some(id) = r.id() {
                target.delete_ref(&id)?;
                keys.push((r.object, r.stored_size));
            }
        }
        keys.sort_by_key(|(k, _)| k.to_string());
        keys.dedup_by_key(|(k, _)| k.to_string());
        let (mut n, mut b) = (0u64, 0u64);
        for (k, size) in keys {
            if matches!(target.delete_object_if_unreferenced(&k)?, DeleteOutcome::Deleted) {
                n += 1;
                b += size;
            }
        }
        Ok::<_, Tier2Error>((n, b))
    })
    .await
    .map_err(|e| GcError::Journal(std::io::Error::other(e)))??;
    report.objects_deleted = objects;
    report.bytes_freed = bytes;
    tracing::info!(refs = report.refs_deleted, objects, bytes, "tier-2 garbage deleted");
    Ok(report)
}
