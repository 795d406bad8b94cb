//! `alto-agent`: the agent that runs on each file server.
//!
//! `scan` is a one-shot, offline, parallel walk of one or more directory trees that writes one
//! [`alto_batch::ScanRecord`] per regular file to a batch file (Parquet by default, CSV
//! optionally). `enroll` trades a one-time token for the host credential (`state`), and `run`
//! is the daemon (`daemon`): heartbeats, scheduled full scans into a durable local spool
//! (`spool`), uploads that survive server outages and restarts, and the tier worker
//! (`tier`): claims tiering jobs, copies files to tier-2 (`alto-tier2`), turns them into
//! stubs (`alto-stub`) and reports every step, with a local journal (`journal`) so that a
//! killed agent finishes or rolls back what was in flight. `tier-once` runs one such pass;
//! `recall` brings stubs back (`recall`). The job contract and the interfaces the executor
//! talks to the server through are in `job`; `api` (REST) and `link` (the agent link) are the
//! transports that implement them.
//!
//! **Must never (daemon):** delete a spooled scan before the server acknowledged its last
//! part, or send the host credential to a server other than the one it enrolled with unless
//! configured to.
//!
//! **Must never (tiering):** touch a file before its tier-2 copy is verified and the server
//! acknowledged it, or stub a file that changed since it was planned or is open elsewhere
//! (see `tier` for the whole list); install a `SIGURG` handler (the stub crate's lease
//! breaks rely on its default action).
//!
//! **Must never:** follow a symlink (below the roots, which are resolved once); modify the
//! scanned tree in any way (no writes, no attribute changes, no opening of files, which could
//! trigger a stub recall; directories are opened with `O_NOATIME` where permitted); cross into
//! another file system unless asked; send data anywhere during `scan` (it only writes the
//! output file); or stop on a per-entry problem (unreadable or vanished entries are counted and
//! reported, only an unopenable root or an unwritable output is fatal).

pub mod api;
pub mod config;
pub mod daemon;
pub mod fault;
pub mod gc;
pub mod job;
pub mod journal;
pub mod link;
pub mod onaccess;
pub mod owners;
pub mod recall;
pub mod retry;
pub mod rotation;
pub mod scanner;
pub mod spool;
pub mod state;
pub mod targets;
pub mod throttle;
pub mod tier;

pub use owners::Owners;
pub use scanner::{
    ErrorKind, ErrorSample, Excludes, Progress, ScanError, ScanOptions, ScanSummary, Scanner,
    MAX_PATH, STUB_XATTR,
};
