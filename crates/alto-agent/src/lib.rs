//! `alto-agent`: the agent that runs on each file server.
//!
//! `scan` is a one-shot, offline, parallel walk of one or more directory trees that writes one
//! [`alto_batch::ScanRecord`] per regular file to a batch file (Parquet by default, CSV
//! optionally). `enroll` trades a one-time token for the host credential (`state`), and `run`
//! is the daemon (`daemon`): heartbeats, scheduled full scans into a durable local spool
//! (`spool`), and uploads that survive server outages and restarts.
//!
//! **Must never (daemon):** delete a spooled scan before the server acknowledged its last
//! part, or send the host credential to a server other than the one it enrolled with unless
//! configured to.
//!
//! **Must never:** follow a symlink (below the roots, which are resolved once); modify the
//! scanned tree in any way (no writes, no attribute changes, no opening of files, which could
//! trigger a stub recall; directories are opened with `O_NOATIME` where permitted); cross into
//! another file system unless asked; send data anywhere during `scan` (it only writes the
//! output file); or stop on a per-entry problem (unreadable or vanished entries are counted and
//! reported, only an unopenable root or an unwritable output is fatal).

pub mod config;
pub mod daemon;
pub mod owners;
pub mod scanner;
pub mod spool;
pub mod state;

pub use owners::Owners;
pub use scanner::{
    ErrorKind, ErrorSample, Progress, ScanError, ScanOptions, ScanSummary, Scanner, MAX_PATH,
    STUB_XATTR,
};
