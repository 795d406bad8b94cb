//! Claiming tier jobs by polling (the REST transport; over the agent link the server pushes
//! offers instead, see `crate::link::worker`): [`run_pass`] recovers interrupted jobs, then
//! claims and executes jobs until there are none; [`worker`] runs a pass every poll interval.
//! The jobs come from a [`JobSource`], so this module knows no transport.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::exec::{JobReport, TierError, TierExecutor, TierSummary};
use crate::job::{CompleteJob, JobEnd, JobSource};

/// Recovers what was in flight, then claims and executes jobs until the server has none
/// for this host (or the storage is unavailable, or `shutdown`). What `alto-agent tier-once`
/// runs, and each round of the tier worker.
pub async fn run_pass(
    exec: &TierExecutor,
    source: &dyn JobSource,
) -> Result<TierSummary, TierError> {
    let mut sum = exec.recover().await?;
    let mut seen: HashSet<Uuid> =
        sum.jobs.iter().filter(|j| j.end.is_some()).map(|j| j.job_id).collect();
    // The first claim after recovery also takes back jobs leased to this host that no journal
    // knows: claimed by a run that died before it could record them.
    let mut resume = true;
    while !exec.shutdown.is_cancelled() && !sum.storage_unavailable {
        let r = resume;
        resume = false;
        let (jobs, unreadable) = exec.retry("claim", || source.claim(1, r)).await?;
        if jobs.is_empty() && unreadable.is_empty() {
            break;
        }
        for bad in unreadable {
            tracing::error!(job = ?bad.job_id, error = %bad.error, "unreadable job document");
            if let Some(id) = bad.job_id {
                let end = CompleteJob { state: JobEnd::Failed, error: Some(bad.error.clone()) };
                exec.retry("complete", || exec.reporter.complete(id, &end)).await?;
                sum.push(JobReport {
                    job_id: id,
                    end: Some(JobEnd::Failed),
                    note: Some(bad.error.clone()),
                    ..JobReport::default()
                });
            }
        }
        for doc in jobs {
            if !seen.insert(doc.job_id) {
                // The server handed out a job this pass already ended or left open: stop
                // here rather than loop (the next pass takes it again).
                return Ok(sum);
            }
            let r = exec.execute(doc).await?;
            sum.push(r);
        }
    }
    Ok(sum)
}

/// The tier worker of `alto-agent run`: a pass, then every `poll` another (with backoff while
/// the server is unreachable), until `cancel`.
pub async fn worker(
    exec: TierExecutor,
    source: impl JobSource,
    poll: Duration,
    cancel: CancellationToken,
) {
    let mut backoff = crate::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        let wait = match run_pass(&exec, &source).await {
            Ok(s) => {
                backoff.reset();
                if !s.jobs.is_empty() {
                    tracing::info!(
                        jobs = s.jobs.len(),
                        stubbed = s.stubbed(),
                        skipped = s.skipped(),
                        failed = s.failed(),
                        bytes = s.bytes_stubbed(),
                        "tiering pass"
                    );
                }
                poll
            }
            Err(e) => {
                let w = backoff.failed().min(poll.max(Duration::from_secs(1)));
                tracing::warn!(error = %e, retry_in = ?w, "tiering pass stopped");
                w
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
