//! Write leases (`fcntl(F_SETLEASE, F_WRLCK)`).
//!
//! `rustix` has no lease API, so this module is the crate's only use of `unsafe`: one call to
//! `libc::fcntl` with integer arguments. Everything else goes through `rustix`.
//!
//! What a write lease gives us (verified on this kernel, see the crate documentation):
//! * it is refused with `EAGAIN` while any other open file description of the inode exists,
//!   in this process or another, read-only or writable, and also while a mapping made from a
//!   since-closed descriptor exists;
//! * while we hold it, another `open()` blocks (an `O_NONBLOCK` open fails with
//!   `EWOULDBLOCK`) until we release it or `/proc/sys/fs/lease-break-time` (default 45 s)
//!   passes, and `F_GETLEASE` tells us that a break is pending.
//!
//! **The signal.** When someone breaks the lease the kernel signals the lease holder, with
//! `SIGIO` by default, whose default action *terminates the process*. So before every
//! `F_SETLEASE` we set `F_SETSIG` to `SIGURG`, whose default action is to ignore it (the
//! kernel resets the lease signal to 0 whenever a lease is released, so this must be repeated
//! for every lease), and after taking the lease we clear the owner (`F_SETOWN 0`) so no signal
//! is sent at all. The agent must not install a `SIGURG` handler that does something else.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::c_int;

/// The signal a lease break would send in the short window before the owner is cleared.
const LEASE_BREAK_SIGNAL: c_int = libc::SIGURG;

/// `F_SETSIG` from `<asm-generic/fcntl.h>` (the same on every Linux architecture); the `libc`
/// crate defines it for only one target.
const F_SETSIG: c_int = 10;

fn fcntl_int(fd: BorrowedFd<'_>, cmd: c_int, arg: c_int) -> io::Result<c_int> {
    // SAFETY: `F_SETSIG`, `F_SETOWN`, `F_SETLEASE` and `F_GETLEASE` take an `int` argument
    // (ignored by `F_GETLEASE`) and never read or write memory of this process; `fd` is a
    // descriptor borrowed for the duration of the call, so it is open.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A write lease held on an open file description; released on drop (and when the
/// descriptor is closed, by the kernel).
#[derive(Debug)]
pub(crate) struct WriteLease<'a> {
    fd: BorrowedFd<'a>,
    held: bool,
}

impl<'a> WriteLease<'a> {
    /// Takes a write lease. `EAGAIN` (or `EBUSY`) means another open exists.
    pub(crate) fn acquire(fd: BorrowedFd<'a>) -> io::Result<WriteLease<'a>> {
        fcntl_int(fd, F_SETSIG, LEASE_BREAK_SIGNAL)?;
        fcntl_int(fd, libc::F_SETLEASE, libc::F_WRLCK)?;
        let lease = WriteLease { fd, held: true };
        // No owner, no signal; the break still waits for us.
        fcntl_int(fd, libc::F_SETOWN, 0)?;
        Ok(lease)
    }

    /// `true` while nobody has tried to open the file since the lease was taken. A pending
    /// break shows as `F_RDLCK` or `F_UNLCK` instead of `F_WRLCK`.
    pub(crate) fn undisturbed(&self) -> io::Result<bool> {
        Ok(fcntl_int(self.fd, libc::F_GETLEASE, 0)? == libc::F_WRLCK)
    }

    /// Releases the lease; a blocked opener proceeds.
    pub(crate) fn release(mut self) -> io::Result<()> {
        self.held = false;
        fcntl_int(self.fd, libc::F_SETLEASE, libc::F_UNLCK).map(drop)
    }
}

impl Drop for WriteLease<'_> {
    fn drop(&mut self) {
        if self.held {
            let _ = fcntl_int(self.fd, libc::F_SETLEASE, libc::F_UNLCK);
        }
    }
}

/// Whether a lease error means "someone else has the file open".
pub(crate) fn is_in_use(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn root(why: &str) -> bool {
        alto_test_services::require_root(why)
    }

    /// A lease break by another process suspends its open until we release, tells us through
    /// `undisturbed`, and does not kill us -- twice in a row, because the kernel resets the
    /// lease signal when a lease is released.
    #[test]
    fn lease_break_waits_and_does_not_kill_us() {
        if !root("leases on files of other owners need CAP_LEASE") {
            return;
        }
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        for round in 0..2 {
            let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            let lease = WriteLease::acquire(f.as_fd()).unwrap();
            assert!(lease.undisturbed().unwrap());
            let started = Instant::now();
            let mut child = Command::new("cat").arg(&path).stdout(Stdio::piped()).spawn().unwrap();
            let mut waited = Duration::ZERO;
            while lease.undisturbed().unwrap() && waited < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
                waited += Duration::from_millis(20);
            }
            assert!(!lease.undisturbed().unwrap(), "round {round}: no break seen");
            std::thread::sleep(Duration::from_millis(200));
            assert!(child.try_wait().unwrap().is_none(), "the opener was not suspended");
            lease.release().unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, b"hello");
            assert!(started.elapsed() < Duration::from_secs(30));
            drop(f);
        }
    }

    #[test]
    fn refused_while_another_descriptor_is_open() {
        if !root("leases") {
            return;
        }
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let other = std::fs::File::open(&path).unwrap();
        let e = WriteLease::acquire(f.as_fd()).unwrap_err();
        assert!(is_in_use(&e), "{e}");
        drop(other);
        WriteLease::acquire(f.as_fd()).unwrap().release().unwrap();
    }
}
