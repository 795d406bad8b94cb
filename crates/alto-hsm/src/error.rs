//! The crate's typed errors.

use std::io;
use std::path::PathBuf;

/// Why pre-content events are unavailable for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedReason {
    /// The file system does not opt in to pre-content events (`EOPNOTSUPP`: tmpfs, FUSE, NFS…).
    FileSystem,
    /// The kernel rejected `FAN_PRE_ACCESS` itself (`EINVAL` on a well-formed mark: kernels
    /// before 6.14).
    Kernel,
}

impl std::fmt::Display for UnsupportedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnsupportedReason::FileSystem => "the file system does not support them",
            UnsupportedReason::Kernel => "the kernel does not support them (needs Linux 6.14+)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// No transparent recall here: explicit recall still works.
    #[error("fanotify pre-content events are unavailable for {path}: {reason}")]
    Unsupported { path: PathBuf, reason: UnsupportedReason },
    #[error("fanotify_init failed (needs CAP_SYS_ADMIN): {0}")]
    Init(#[source] io::Error),
    #[error("fanotify mark ({op}) on {target} failed: {source}")]
    Mark {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("path {0} contains a NUL byte")]
    InvalidPath(PathBuf),
    #[error("reading fanotify events failed: {0}")]
    Read(#[source] io::Error),
    #[error("malformed fanotify event buffer: {0}")]
    Malformed(String),
    /// The response write failed; the crate then tried `FAN_DENY_ERRNO(EIO)` so the accessing
    /// process is not left blocked (`fallback_ok` says whether that worked).
    #[error("answering fanotify event (response {response:#010x}) failed: {source}")]
    Respond {
        response: u32,
        fallback_ok: bool,
        #[source]
        source: io::Error,
    },
    /// The descriptor handed over is not a fanotify group.
    #[error("descriptor is not a fanotify group: {0}")]
    NotAGroup(String),
    /// Taking the group from its holder process failed (`pidfd_open`/`pidfd_getfd`: the
    /// holder is gone, or this process may not ptrace it).
    #[error("taking the fanotify group from process {pid} failed: {source}")]
    Adopt {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// A file handle could not be made or opened.
    #[error("file handle ({op}): {source}")]
    Handle {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The private mount namespace could not be set up.
    #[error("private mount namespace: {0}")]
    Namespace(String),
}
