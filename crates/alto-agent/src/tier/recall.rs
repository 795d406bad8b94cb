//! Executing one recall job (an operator's request or a scheduled restoration, sent over the
//! same job contract as tiering): each file is recalled from the target its stub attribute
//! names ([`crate::recall::recall_path_throttled`]: verified SHA-256, times restored, the
//! attribute removed only after the whole content is back), in batches of
//! `TierOptions::batch_files`, `parallel` at a time, each batch reported as one `files` call
//! (`recalled` with the content's hash and size, `skipped` "not a stub", or `failed`).
//!
//! The offer carries the settings of the targets the job's stubs were tiered to; they are
//! remembered like a tier job's, so an agent that lost its state can still read them.
//! Downloads pay in the host's recall bucket (its rate from the offers of recall jobs) and
//! in the job's own (the tenant's share), never in the tiering buckets; on-access recalls
//! pay in neither.
//!
//! A recall job has no journal: recalling is idempotent (a file already whole is `skipped`
//! "not a stub"; a recall interrupted mid-file is finished by the next one, see
//! `alto_stub::recall`). If the agent stops, the job's lease runs out and the server hands
//! the files not yet reported out again. Cancel: the files in flight finish, the rest are
//! left, the job completes `cancelled`. Tier-2 unavailable: nothing more starts and the job
//! completes `failed` "storage unavailable: …", which the server requeues with backoff.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use alto_model::TargetKind;

use super::exec::{map_blocking, JobReport, TierError, TierExecutor};
use super::file::Signals;
use crate::job::{
    CompleteJob, ExecFile, ExecJob, FileResult, JobEnd, NOT_A_STUB, STORAGE_UNAVAILABLE,
};
use crate::recall::RecallError;
use crate::throttle::Throttle;

/// What one file needs to be recalled, shared by the blocking tasks.
struct Ctx {
    state_dir: PathBuf,
    base: PathBuf,
    customer: alto_model::CustomerId,
    throttles: Vec<Arc<Throttle>>,
    signals: Arc<Signals>,
}

fn recall_one(ctx: &Ctx, f: &ExecFile) -> FileResult {
    if ctx.signals.halt() {
        // Not started: the server hands it out again (or the job ends cancelled).
        return FileResult::skipped(f.seq, crate::job::INTERRUPTED);
    }
    let Some(bytes) = alto_batch::decode_path(&f.file_path, f.path_escaped) else {
        return FileResult::failed(f.seq, "the path cannot be decoded");
    };
    let path = PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes),
    ));
    match crate::recall::recall_path_throttled(
        &ctx.state_dir,
        &ctx.base,
        ctx.customer,
        &path,
        ctx.throttles.clone(),
    ) {
        Ok(r) => FileResult::recalled(f.seq, r.sha256, r.size),
        Err(RecallError::NotAStub) => FileResult::skipped(f.seq, NOT_A_STUB),
        Err(RecallError::Stub(alto_stub::StubError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            FileResult::skipped(f.seq, "gone")
        }
        Err(RecallError::Tier2(e)) if e.is_storage_failure() => {
            let why = format!("{STORAGE_UNAVAILABLE}: {e}");
            ctx.signals.set_storage_down(why.clone());
            FileResult::failed(f.seq, why)
        }
        Err(e) => FileResult::failed(f.seq, e.to_string()),
    }
}

impl TierExecutor {
    /// Executes a recall job (see the module documentation).
    pub(super) async fn execute_recall(&self, doc: ExecJob) -> Result<JobReport, TierError> {
        let job = doc.job_id;
        let work = doc.recall().expect("a recall job").clone();
        let mut report = JobReport { job_id: job, ..JobReport::default() };
        for t in work.storage_targets.iter().filter(|t| t.kind != TargetKind::Directory) {
            match crate::targets::spec_of(t) {
                Ok(spec) => crate::targets::remember(&self.opts.state_dir, &t.name, &spec),
                Err(e) => tracing::warn!(%job, target = %t.name, error = %e, "target not usable"),
            }
        }
        let signals = Arc::new(Signals::new(self.shutdown.clone()));
        self.cancels.register(job, &signals);
        let ctx = Arc::new(Ctx {
            state_dir: self.opts.state_dir.clone(),
            base: self.opts.tier2_base.clone(),
            customer: self.customer_id,
            throttles: std::iter::once(self.recall_throttle.clone())
                .chain(Throttle::new(doc.bandwidth_bytes_per_second.unwrap_or(0)))
                .collect(),
            signals: signals.clone(),
        });
        let ticker = self.spawn_ticker(job, signals.clone());
        tracing::info!(%job, files = work.files.len(), trigger = work.trigger.as_str(), "recall job");
        let mut outcome = Ok(());
        for batch in work.files.chunks(self.opts.batch_files.max(1)) {
            if signals.halt() {
                break;
            }
            let sizes: Vec<u64> = batch.iter().map(|f| f.file_size.max(0) as u64).collect();
            let c = ctx.clone();
            let results: Vec<FileResult> =
                map_blocking(batch.to_vec(), self.opts.parallel, move |f| recall_one(&c, &f)).await;
            // Files never started stay pending on the server.
            let results: Vec<FileResult> = results
                .into_iter()
                .filter(|r| r.error.as_deref() != Some(crate::job::INTERRUPTED))
                .collect();
            if results.is_empty() {
                continue;
            }
            match self.retry("files", || self.reporter.report_files(job, &results)).await {
                Ok(()) => {
                    for (r, size) in results.iter().zip(sizes) {
                        report.count(r, size);
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        ticker.abort();
        self.cancels.unregister(job);
        if let Err(e) = outcome {
            // The server is away or refuses: its lease brings the job back.
            report.note = Some(format!("results not recorded ({e}); the lease returns the job"));
            return Ok(report);
        }
        let end = if let Some(why) = signals.storage_down() {
            CompleteJob { state: JobEnd::Failed, error: Some(why) }
        } else if signals.lost.load(Ordering::Relaxed) {
            report.note = Some("the server no longer leases this job".into());
            return Ok(report);
        } else if self.shutdown.is_cancelled() {
            report.note = Some("agent stopping; the lease returns the job".into());
            return Ok(report);
        } else if signals.cancel.load(Ordering::Relaxed) {
            CompleteJob { state: JobEnd::Cancelled, error: None }
        } else {
            CompleteJob { state: JobEnd::Succeeded, error: None }
        };
        self.retry("complete", || self.reporter.complete(job, &end)).await?;
        report.end = Some(end.state);
        report.note = end.error;
        Ok(report)
    }
}
