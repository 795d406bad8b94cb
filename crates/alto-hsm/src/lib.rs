//! The Linux on-access hook for stubs: fanotify pre-content events (`FAN_PRE_ACCESS`,
//! Linux 6.14+, on file systems that opt in: ext4, xfs, btrfs).
//!
//! A stub keeps its first 4 KiB and a hole for the rest (`alto-stub`); without this hook any
//! program reading it silently gets zeros. With a [`HsmGroup`] marking the file system, every
//! read, write, `mmap`, `truncate`, … of a file opened after the mark blocks the accessing
//! thread and queues an [`Event`]. Whoever owns the group brings the content back *through
//! the event's own descriptor* (which raises no events) and answers: [`Event::allow`] or
//! [`Event::deny`] with one of the errnos the kernel accepts ([`DenyErrno`]).
//!
//! Measured behaviour and the design this follows: `shared/research/fanotify-hsm-lab.md`
//! (§1 event format, §2 marking, §3 the daemon's own I/O, §5 responses, §6 no timeouts).
//!
//! What this crate must never do:
//! - **Never leave an event unanswered.** There is no kernel timeout: the accessing process
//!   stays blocked (killable only) until answered. Every [`Event`] is answered exactly once,
//!   on every path: `allow`/`deny` consume it; a failed response write falls back to
//!   `deny(EIO)`; an event dropped unanswered (a panic, an early `?`) answers `deny(EIO)`
//!   itself and logs; a malformed buffer denies the events read before it. Only errnos the
//!   kernel accepts can be expressed (any other makes the response fail and the reader hang).
//! - **Never put an evictable mark on a stub.** An evicted mark means the next read returns
//!   zeros without any event. Evictable marks are only *ignore* marks on ordinary files
//!   ([`HsmGroup::ignore_inode_evictable`]); such an ignore mark must be removed
//!   ([`HsmGroup::remove_inode_ignore`]) before a file is turned into a stub.
//! - **Never read tier-2 or the network**, and never open marked files by path (that would
//!   raise an event to itself and deadlock). It knows nothing of stubs' attributes either.
//! - **No policy.** It reports events (descriptor, range, thread) and takes answers; what to
//!   fill, whom to deny and with which errno is the caller's decision.
//!
//! Closing the group (dropping it, its readers and its events) makes the kernel allow every
//! pending event and forget all marks: readers would then see stub zeros, so the owner keeps
//! the group alive (see [`HsmGroup`]'s `AsFd` for handing it to a holder).
//!
//! The only `unsafe` code is in `sys.rs`, one system call per function; `libc` lacks
//! `FAN_PRE_ACCESS`, the RANGE info record and `FAN_DENY_ERRNO`, which are defined there.

mod error;
mod event;
mod group;
mod parse;
mod sys;

pub use error::{HsmError, UnsupportedReason};
pub use event::{DenyErrno, Event};
pub use group::{
    enter_private_mount_namespace, EventReader, FileHandle, HsmGroup, EVENT_BUFFER_BYTES,
};
pub use parse::Range;
pub use sys::FAN_PRE_ACCESS;
