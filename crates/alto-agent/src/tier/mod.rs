//! The tiering executor: takes a claimed job, copies its files to tier-2, has the server
//! record them, turns them into stubs and reports every outcome. Transport-independent: it
//! talks to the server only through [`crate::job`]'s interfaces, a
//! [`Reporter`](crate::job::Reporter) and (when polling) a [`JobSource`](crate::job::JobSource)
//! ([`crate::api::ServerApi`] is the REST one, [`crate::link::Link`] the agent link's); it
//! never imports a transport.
//!
//! By layer:
//!
//! * `poll`: orchestration of the polling agent ([`run_pass`], [`worker`]);
//! * `exec`: one job ([`TierExecutor`]): batches, the journal, reporting, recovery;
//! * `file`: the per-file steps (check, copy, verify, convert, recover).
//!
//! **Must never:** touch a file before its object is verified in tier-2 *and* the server
//! acknowledged `staged` (so the stub registry knows where the data is before the data
//! leaves the file); stub a file that differs from the job's snapshot (size, mtime, inode) or
//! that is open elsewhere; read a file that already carries a stub attribute (without a
//! recall that would copy zeros); hold a descriptor of a file while converting it (the write
//! lease counts our own descriptors); forget what was in flight when killed.
//!
//! # Per file
//!
//! 1. **Check.** Decode the path (`alto_batch::decode_path`). A `stubbed` attribute already
//!    present → `skipped` "already a stub" (one in `stubbing`/`recalling` is reconciled
//!    first). `lstat` it ([`alto_stub::identity`]) and compare size, mtime (at the
//!    inventory's microsecond precision) and inode with the job's snapshot: different or
//!    gone → `skipped` "changed".
//! 2. **Copy.** Open `O_RDONLY|O_NOFOLLOW|O_NOATIME` (the copy must not make the file look
//!    recently used), check the descriptor is the same file, and stream it into
//!    [`alto_tier2::DirTarget::put`] with the expected size and the job's compression; the descriptor
//!    is closed when `put` returns. `put` hashes what it reads; a fresh object is then
//!    re-read with [`alto_tier2::DirTarget::verify`] (a deduplicated one was already re-read and hashed
//!    by `put`). Size mismatch (the file changed while it was read) → `skipped` "changed";
//!    other tier-2 errors → `failed`; if the storage itself is unavailable (open fails, the
//!    health probe fails, disk full, read-only) the job stops: nothing more is started and
//!    it completes `failed` "storage unavailable: …" so the server keeps it.
//! 3. **Stage.** Report `staged` (SHA-256, object key, stored size) and wait for the
//!    acknowledgement: the server now has a pending stub-registry entry.
//! 4. **Stub.** [`alto_stub::convert_to_stub`] with the identity seen in step 1: `InUse` →
//!    `skipped` "open elsewhere", `Changed` → `skipped` "changed"; then report `stubbed`.
//!
//! Files go in batches (up to [`TierOptions::batch_files`] files or
//! [`TierOptions::batch_bytes`] bytes), [`TierOptions::parallel`] at a time: steps 1–2 for the
//! batch, one report with every `staged` and early outcome, step 4 for the batch, one report.
//! Every call to the server is retried on transient errors (unreachable, 5xx, 408, 429) with
//! exponential backoff, at most [`MAX_ATTEMPTS`] times; if the server stays away the job stops
//! where it is and its journal resumes it later. A batch the server *refuses* is resent one
//! result at a time, and a result refused on its own is given up (logged, counted as failed)
//! so that one bad file cannot wedge a job.
//!
//! While a job runs a ticker calls `progress` every [`TierOptions::progress_interval`],
//! which extends the lease. If the answer says `cancel`, no new file is started; the files in
//! flight are finished and reported, and the job completes `cancelled`. If the server refuses
//! `progress` (the job is no longer ours), no new file is started and the journal decides on
//! the next pass.
//!
//! # The journal and what a restarted agent does
//!
//! Each job in flight has an append-only journal ([`crate::journal`]), every record
//! `fsync`ed. Per file the records are, in order:
//!
//! | record | written | the file is |
//! |---|---|---|
//! | `staging` | before the copy starts | untouched |
//! | `staged` | after the server acknowledged `staged` | untouched, its object verified |
//! | `stubbing` | before `convert_to_stub` | anything `convert_to_stub` may leave: whole, `stubbing`, stub |
//! | `outcome` | before a final outcome is reported | final (stub, or left alone) |
//! | `acked` | after the server acknowledged the final outcome (or refused it for good) | final |
//!
//! plus `job` (the claimed document, first line) and `completed` (the server acknowledged
//! the job's end; the journal is then deleted). A file is *final* once `acked`. A final
//! outcome is always journaled before it is sent, so a file is never redone after the server
//! may have been told something final about it.
//!
//! On start (and at the beginning of every pass of the tier worker) the agent opens every
//! journal and, for every file that is started but not final:
//!
//! * an `outcome` not yet acknowledged → resend it;
//! * otherwise look at the file: no stub attribute, or [`alto_stub::reconcile`] rolled an
//!   interrupted conversion back (`AbortedStubbing`) → the file is **intact**; a stub of the
//!   object this journal staged (`Stubbed`, `FinishedStubbing`) → `stubbed`; gone →
//!   `skipped` "changed"; a stub of something else → `skipped` "already a stub"; a stale stub
//!   or a conflict → `failed`; open elsewhere (`InUse`) → left for the next pass.
//!
//! Then it asks the server (`progress`) whether the job is still leased to it. If so, the
//! derived outcomes are reported and the job simply continues: intact files are redone from
//! step 1 (the copy deduplicates onto the object already stored, `staged` is idempotent).
//! If the server says `cancel`, intact files are reported `skipped` "interrupted" and the job
//! completes `cancelled`. If the server refuses (the job is gone or someone else's), the
//! outcomes are reported best effort, intact files as `skipped` "interrupted", and the
//! journal is dropped. In every case each file is either whole without an attribute or a
//! stub whose object is verified in tier-2 and known to the server.
//!
//! A crash can also leave garbage in tier-2: a temporary of a killed put (removed by
//! [`alto_tier2::DirTarget::cleanup_tmp`], run at the start of each job for temporaries older than an
//! hour), or an object and sidecar of a file that was then not stubbed (it changed, was
//! open, or the job was cancelled). Those stay until tier-2 garbage collection exists; the
//! next tiering of the same content deduplicates onto them.

mod exec;
mod file;
mod poll;
mod recall;

pub use exec::{
    Canceller, JobReport, TierError, TierExecutor, TierOptions, TierSummary, MAX_ATTEMPTS,
};
pub use poll::{run_pass, worker};
