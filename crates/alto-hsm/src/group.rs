//! `HsmGroup` (the fanotify pre-content group and its marks) and `EventReader` (the read
//! loop's buffer, turning records into owned, must-answer [`Event`]s).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{HsmError, UnsupportedReason};
use crate::event::{DenyErrno, Event};
use crate::parse::parse;
use crate::sys::{self, FAN_PRE_ACCESS};

/// Event buffer size: many events per `read`, far above the 4 KiB `nix` uses.
pub const EVENT_BUFFER_BYTES: usize = 64 * 1024;

/// A fanotify group of class `FAN_CLASS_PRE_CONTENT`. Closing it (dropping the group, every
/// reader and every event) makes the kernel ALLOW everything still pending and drops all
/// marks, so the owner must keep it alive for as long as stubs exist.
#[derive(Debug)]
pub struct HsmGroup {
    fd: Arc<OwnedFd>,
}

impl HsmGroup {
    /// `fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE |
    /// FAN_UNLIMITED_MARKS | FAN_REPORT_TID, O_RDWR | O_LARGEFILE | O_CLOEXEC)`: unlimited
    /// queue and marks (no silently lost events, no `ENOSPC` at 205k marks), read-write
    /// event descriptors (the fill writes through them). Needs `CAP_SYS_ADMIN`.
    pub fn new() -> Result<Self, HsmError> {
        let flags = libc::FAN_CLASS_PRE_CONTENT
            | libc::FAN_CLOEXEC
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_UNLIMITED_MARKS
            | libc::FAN_REPORT_TID;
        let event_f_flags = (libc::O_RDWR | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        let fd = sys::init(flags, event_f_flags).map_err(HsmError::Init)?;
        Ok(HsmGroup { fd: Arc::new(fd) })
    }

    /// Adopts a group descriptor handed over by another process (a holder, the systemd FD
    /// store, `SCM_RIGHTS`). Refuses any descriptor that is not a fanotify group.
    pub fn adopt(fd: OwnedFd) -> Result<Self, HsmError> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| HsmError::NotAGroup(e.to_string()))?;
        if link.as_os_str() != "anon_inode:[fanotify]" {
            return Err(HsmError::NotAGroup(link.display().to_string()));
        }
        Ok(HsmGroup { fd: Arc::new(fd) })
    }

    /// Takes the group held as descriptor `fd` by process `pid` (`pidfd_getfd`; needs
    /// `CAP_SYS_PTRACE` over it). Events that process read but did not answer stay pending
    /// and can be answered with [`HsmGroup::answer_orphan`].
    pub fn from_process(pid: i32, fd: i32) -> Result<Self, HsmError> {
        let fd = sys::take_fd_of(pid, fd).map_err(|source| HsmError::Adopt { pid, source })?;
        Self::adopt(fd)
    }

    /// Answers an event that an earlier owner of this group read but never answered (it
    /// crashed), by the descriptor number that owner had for it: allow (`None`) or deny.
    /// `Ok(false)` when no pending event has that number. Call this for every orphan
    /// **before** reading new events: numbers of new events could collide with them.
    pub fn answer_orphan(&self, fd: i32, deny: Option<DenyErrno>) -> Result<bool, HsmError> {
        let response = deny.map_or(libc::FAN_ALLOW, DenyErrno::response);
        match sys::respond(self.fd.as_fd(), fd, response) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(HsmError::Respond { response, fallback_ok: false, source }),
        }
    }

    /// A reader with its own buffer. Several readers of one group are allowed.
    pub fn reader(&self) -> EventReader {
        EventReader { group: Arc::clone(&self.fd), buf: vec![0u64; EVENT_BUFFER_BYTES / 8] }
    }

    /// Pre-content events for every file of the file system holding `path`, opened from now
    /// on (files opened before the mark never raise events). `Unsupported` on tmpfs, FUSE…
    pub fn mark_filesystem(&self, path: &Path) -> Result<(), HsmError> {
        let c = cpath(path)?;
        sys::mark(
            self.fd.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            FAN_PRE_ACCESS,
            None,
            Some(&c),
        )
        .map_err(|e| mark_error("mark filesystem", path, e))
    }

    /// A non-evictable inode mark on one file (the per-stub design for small deployments).
    /// Pins the inode (~1.5 KB of kernel memory) until removed. Stub marks are never
    /// evictable: an evicted mark means the next read gets zeros without any event.
    pub fn mark_inode(&self, fd: impl AsFd) -> Result<(), HsmError> {
        sys::mark(self.fd.as_fd(), libc::FAN_MARK_ADD, FAN_PRE_ACCESS, Some(fd.as_fd()), None)
            .map_err(|e| mark_error_fd("mark inode", fd.as_fd(), e))
    }

    /// An evictable ignore mark on a file that is *not* a stub: no more events for it until
    /// its inode leaves the cache (then the next access raises one event again). Never call
    /// this for a stub, and remove it ([`HsmGroup::remove_inode_ignore`]) before turning a
    /// file into a stub, or reads of the stub would return zeros without an event.
    pub fn ignore_inode_evictable(&self, fd: impl AsFd) -> Result<(), HsmError> {
        sys::mark(
            self.fd.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORE_SURV | libc::FAN_MARK_EVICTABLE,
            FAN_PRE_ACCESS,
            Some(fd.as_fd()),
            None,
        )
        .map_err(|e| mark_error_fd("ignore inode", fd.as_fd(), e))
    }

    /// An ignore mark on the mount at `path`: nothing opened through that mount raises
    /// events. Meant for the daemon's own private bind mount (in its own mount namespace),
    /// through which it stubs, verifies and recalls without triggering itself.
    pub fn ignore_mount(&self, path: &Path) -> Result<(), HsmError> {
        let c = cpath(path)?;
        sys::mark(
            self.fd.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT | libc::FAN_MARK_IGNORE_SURV,
            FAN_PRE_ACCESS,
            None,
            Some(&c),
        )
        .map_err(|e| mark_error("ignore mount", path, e))
    }

    /// Removes the inode mark added by [`HsmGroup::mark_inode`]. `Ok(false)` when there was
    /// none.
    pub fn remove_inode_mark(&self, fd: impl AsFd) -> Result<bool, HsmError> {
        removed(
            sys::mark(
                self.fd.as_fd(),
                libc::FAN_MARK_REMOVE,
                FAN_PRE_ACCESS,
                Some(fd.as_fd()),
                None,
            ),
            "remove inode mark",
            fd.as_fd(),
        )
    }

    /// Removes an ignore mark added by [`HsmGroup::ignore_inode_evictable`]. `Ok(false)` when
    /// there was none.
    pub fn remove_inode_ignore(&self, fd: impl AsFd) -> Result<bool, HsmError> {
        removed(
            sys::mark(
                self.fd.as_fd(),
                libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORE,
                FAN_PRE_ACCESS,
                Some(fd.as_fd()),
                None,
            ),
            "remove inode ignore",
            fd.as_fd(),
        )
    }
}

/// The group descriptor itself, e.g. to hand to a holder process or the systemd FD store so
/// pending events survive a daemon restart.
impl AsFd for HsmGroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A file handle (`name_to_handle_at`): names an inode on its file system independently of
/// paths and descriptors, so a journal can name the file of a pending event and a restarted
/// process can open it again (`open_by_handle_at`, through a mount that carries an ignore
/// mark so the open raises no events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    pub handle_type: i32,
    pub bytes: Vec<u8>,
}

impl FileHandle {
    /// The handle of an open file (e.g. an event's descriptor).
    pub fn of(fd: impl AsFd) -> Result<Self, HsmError> {
        let (handle_type, bytes, _) = sys::handle_of(fd.as_fd())
            .map_err(|source| HsmError::Handle { op: "name_to_handle_at", source })?;
        Ok(FileHandle { handle_type, bytes })
    }

    /// Opens the file read-write (not following symlinks) relative to `mount_fd`, any
    /// descriptor on the same file system (needs `CAP_DAC_READ_SEARCH`).
    pub fn open(&self, mount_fd: impl AsFd) -> Result<std::fs::File, HsmError> {
        let flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_LARGEFILE;
        sys::open_handle(mount_fd.as_fd(), self.handle_type, &self.bytes, flags)
            .map(std::fs::File::from)
            .map_err(|source| HsmError::Handle { op: "open_by_handle_at", source })
    }
}

/// Moves this process into its own mount namespace (`unshare(CLONE_NEWNS)`, mounts made slave
/// so the host's later mounts still appear). Its mounts are then its own copies: an ignore
/// mark on them ([`HsmGroup::ignore_mount`]) silences the process's own I/O on the managed
/// file systems while every other process still raises events. Must be called while the
/// process has one thread (a namespace change applies to the calling thread only).
pub fn enter_private_mount_namespace() -> Result<(), HsmError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| HsmError::Namespace(format!("/proc/self/task: {e}")))?
        .count();
    if threads != 1 {
        return Err(HsmError::Namespace(format!(
            "the process has {threads} threads; call this before starting any"
        )));
    }
    sys::private_mount_namespace().map_err(|e| HsmError::Namespace(e.to_string()))
}

/// Reads events of one group into a 64 KiB, 8-byte aligned buffer.
#[derive(Debug)]
pub struct EventReader {
    group: Arc<OwnedFd>,
    buf: Vec<u64>,
}

impl EventReader {
    /// Blocks until at least one event is queued, then returns every event read.
    pub fn read(&mut self) -> Result<Vec<Event>, HsmError> {
        self.read_inner(None)
    }

    /// Like [`EventReader::read`], but returns an empty list after `timeout` without events
    /// (so a loop can check for shutdown).
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Vec<Event>, HsmError> {
        self.read_inner(Some(timeout))
    }

    fn read_inner(&mut self, timeout: Option<Duration>) -> Result<Vec<Event>, HsmError> {
        if timeout.is_some()
            && !sys::poll_in(self.group.as_fd(), timeout).map_err(HsmError::Read)?
        {
            return Ok(Vec::new());
        }
        let n = sys::read(self.group.as_fd(), &mut self.buf).map_err(HsmError::Read)?;
        let (raw, malformed) = parse(sys::bytes(&self.buf, n));
        let mut events = Vec::with_capacity(raw.len());
        for r in &raw {
            if r.fd < 0 {
                // FAN_NOFD: a queue overflow notice (cannot happen with an unlimited queue);
                // there is nothing to answer.
                tracing::warn!(
                    mask = format_args!("{:#x}", r.mask),
                    "fanotify event without a descriptor"
                );
                continue;
            }
            events.push(Event::new(Arc::clone(&self.group), r));
        }
        if let Some(m) = malformed {
            // Dropping `events` answers each of them with EIO.
            drop(events);
            return Err(HsmError::Malformed(m.0));
        }
        Ok(events)
    }
}

fn cpath(path: &Path) -> Result<CString, HsmError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| HsmError::InvalidPath(path.to_path_buf()))
}

/// `EOPNOTSUPP` is the file system; `EINVAL` is only read as "kernel without
/// `FAN_PRE_ACCESS`" for the positive marks (elsewhere it may mean other things).
fn unsupported_reason(op: &str, e: &std::io::Error) -> Option<UnsupportedReason> {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Some(UnsupportedReason::FileSystem),
        Some(libc::EINVAL) if op.starts_with("mark ") => Some(UnsupportedReason::Kernel),
        _ => None,
    }
}

fn mark_error(op: &'static str, path: &Path, e: std::io::Error) -> HsmError {
    match unsupported_reason(op, &e) {
        Some(reason) => HsmError::Unsupported { path: path.to_path_buf(), reason },
        None => HsmError::Mark { op, target: path.display().to_string(), source: e },
    }
}

fn fd_target(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    std::fs::read_link(format!("/proc/self/fd/{raw}"))
        .map_or_else(|_| format!("fd {raw}"), |p| p.display().to_string())
}

fn mark_error_fd(op: &'static str, fd: BorrowedFd<'_>, e: std::io::Error) -> HsmError {
    match unsupported_reason(op, &e) {
        Some(reason) => HsmError::Unsupported { path: fd_target(fd).into(), reason },
        None => HsmError::Mark { op, target: fd_target(fd), source: e },
    }
}

fn removed(r: std::io::Result<()>, op: &'static str, fd: BorrowedFd<'_>) -> Result<bool, HsmError> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(HsmError::Mark { op, target: fd_target(fd), source: e }),
    }
}
