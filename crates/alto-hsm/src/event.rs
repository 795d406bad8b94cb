//! `Event`: one pending pre-content access, owning the kernel's event descriptor, that is
//! answered exactly once — by `allow`, `deny`, or (as `deny(EIO)`) by its own `Drop`.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::error::HsmError;
use crate::parse::{Range, RawEvent};
use crate::sys;

/// The errors a denied access may fail with. These are the only values 6.18 accepts in
/// `FAN_DENY_ERRNO`; any other errno makes the response write fail with `EINVAL` and leaves
/// the accessing process blocked, so the type does not allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyErrno {
    /// `EPERM` (what a plain `FAN_DENY` gives).
    Perm,
    /// `EIO`: the default for "the content could not be brought back".
    Io,
    /// `EAGAIN`: a transient condition (tier-2 outage, rate limit).
    Again,
    /// `EBUSY`.
    Busy,
    /// `ETXTBSY`.
    TxtBsy,
    /// `ENOSPC`: no room to recall into.
    NoSpc,
    /// `EDQUOT`.
    DQuot,
}

impl DenyErrno {
    pub fn errno(self) -> i32 {
        match self {
            DenyErrno::Perm => libc::EPERM,
            DenyErrno::Io => libc::EIO,
            DenyErrno::Again => libc::EAGAIN,
            DenyErrno::Busy => libc::EBUSY,
            DenyErrno::TxtBsy => libc::ETXTBSY,
            DenyErrno::NoSpc => libc::ENOSPC,
            DenyErrno::DQuot => libc::EDQUOT,
        }
    }

    /// The variant for an errno the kernel accepts, `None` for any other.
    pub fn from_errno(errno: i32) -> Option<Self> {
        [
            DenyErrno::Perm,
            DenyErrno::Io,
            DenyErrno::Again,
            DenyErrno::Busy,
            DenyErrno::TxtBsy,
            DenyErrno::NoSpc,
            DenyErrno::DQuot,
        ]
        .into_iter()
        .find(|d| d.errno() == errno)
    }

    pub(crate) fn response(self) -> u32 {
        sys::fan_deny_errno(self.errno())
    }
}

/// A pending access. The accessing thread is blocked (killable only) until this is answered.
///
/// Read and write the file's content through [`Event::file`]: that descriptor was opened by
/// the kernel without notifications, so I/O on it raises no event (any other open of the file
/// would, and would deadlock a single-threaded handler). `try_clone` it to keep filling after
/// answering. It must be open `O_RDWR`, which [`crate::HsmGroup::new`] arranges.
pub struct Event {
    group: Arc<OwnedFd>,
    /// `Some` until answered; answering consumes the event, so user code always sees `Some`.
    file: Option<File>,
    mask: u64,
    pid: i32,
    range: Option<Range>,
}

impl Event {
    pub(crate) fn new(group: Arc<OwnedFd>, raw: &RawEvent) -> Self {
        let file = File::from(sys::own_event_fd(raw.fd));
        Event { group, file: Some(file), mask: raw.mask, pid: raw.pid, range: raw.range }
    }

    /// The accessed file, open read-write without notifications.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("an unanswered event always holds its descriptor")
    }

    /// The event mask (`FAN_PRE_ACCESS` for every mark this crate adds).
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// The event's descriptor number in this process: what the kernel matches the answer by,
    /// and what a journal records so a restarted owner can answer the event
    /// ([`crate::HsmGroup::answer_orphan`]) if this process dies first.
    pub fn raw_fd(&self) -> i32 {
        self.file().as_raw_fd()
    }

    /// The thread id of the accessing thread (the group reports tids, `FAN_REPORT_TID`).
    pub fn tid(&self) -> i32 {
        self.pid
    }

    /// The page-rounded range accessed. `None` (no RANGE record) and a range with
    /// [`Range::is_whole_file`] both mean: bring back the whole file. Any range is only a
    /// lower bound (a truncate looks like a one-page read, see [`Range`]).
    pub fn range(&self) -> Option<Range> {
        self.range
    }

    /// Lets the access proceed with whatever the file holds now.
    pub fn allow(mut self) -> Result<(), HsmError> {
        self.answer(libc::FAN_ALLOW)
    }

    /// Makes the accessing syscall fail with `errno`.
    pub fn deny(mut self, errno: DenyErrno) -> Result<(), HsmError> {
        self.answer(errno.response())
    }

    /// Writes the response, then closes the descriptor (the kernel matches responses by
    /// descriptor number, so the number must stay ours until answered). If the write fails,
    /// tries `deny(EIO)` so the accessing process is released either way.
    fn answer(&mut self, response: u32) -> Result<(), HsmError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let group = self.group.as_fd();
        let result = match sys::respond(group, file.as_raw_fd(), response) {
            Ok(()) => Ok(()),
            Err(source) => {
                let fallback = DenyErrno::Io.response();
                let fallback_ok =
                    response != fallback && sys::respond(group, file.as_raw_fd(), fallback).is_ok();
                tracing::error!(
                    fd = file.as_raw_fd(),
                    response = format_args!("{response:#010x}"),
                    fallback_ok,
                    error = %source,
                    "fanotify response failed"
                );
                Err(HsmError::Respond { response, fallback_ok, source })
            }
        };
        drop(file);
        result
    }
}

impl AsFd for Event {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file().as_fd()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("fd", &self.file.as_ref().map(AsRawFd::as_raw_fd))
            .field("mask", &format_args!("{:#x}", self.mask))
            .field("tid", &self.pid)
            .field("range", &self.range)
            .finish()
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.file.is_some() {
            tracing::error!(event = ?self, "fanotify event dropped unanswered: denying with EIO");
            // `answer` logs its own failure; nothing more can be done in drop.
            let _ = self.answer(DenyErrno::Io.response());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_can_move_to_worker_threads() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Event>();
        assert_send::<crate::HsmGroup>();
        assert_send::<crate::EventReader>();
    }

    #[test]
    fn deny_errno_responses_match_the_kernel_encoding() {
        assert_eq!(DenyErrno::Perm.response(), 0x0100_0002);
        assert_eq!(DenyErrno::Io.response(), 0x0500_0002);
        assert_eq!(DenyErrno::Again.response(), 0x0b00_0002);
        assert_eq!(DenyErrno::Busy.response(), 0x1000_0002);
        assert_eq!(DenyErrno::TxtBsy.response(), 0x1a00_0002);
        assert_eq!(DenyErrno::NoSpc.response(), 0x1c00_0002);
        assert_eq!(DenyErrno::DQuot.response(), 0x7a00_0002);
        assert_eq!(DenyErrno::from_errno(libc::EIO), Some(DenyErrno::Io));
        assert_eq!(DenyErrno::from_errno(libc::ENOENT), None);
        assert_eq!(DenyErrno::from_errno(libc::ETIMEDOUT), None);
    }
}
