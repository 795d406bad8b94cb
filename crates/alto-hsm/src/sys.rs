//! The raw fanotify system calls and the constants `libc` lacks (lab report §10). This module
//! is the crate's only `unsafe` code: each function wraps exactly one system call and turns
//! its result into `io::Result`; nothing here knows about events' meaning.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The pre-content access event (kernel 6.14+); `libc` does not define it yet. Reads, writes,
/// `mmap`, `truncate`, `fallocate`, `sendfile`/`splice`/`copy_file_range` (source) and
/// `FICLONE` all raise it (6.18 has no separate `FAN_PRE_MODIFY`).
pub const FAN_PRE_ACCESS: u64 = 0x0010_0000;
/// Info record type carrying the accessed byte range of a pre-content event.
pub(crate) const FAN_EVENT_INFO_TYPE_RANGE: u8 = 6;
/// Where the errno sits in a `FAN_DENY_ERRNO` response.
const FAN_ERRNO_SHIFT: u32 = 24;
const FAN_ERRNO_MASK: u32 = 0xff;

/// `FAN_DENY_ERRNO(e)`: deny the access and make the accessing syscall fail with `e`.
pub(crate) const fn fan_deny_errno(errno: i32) -> u32 {
    libc::FAN_DENY | (((errno as u32) & FAN_ERRNO_MASK) << FAN_ERRNO_SHIFT)
}

/// `fanotify_init(2)`.
pub(crate) fn init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(2)`: on `dirfd` (or `AT_FDCWD` when `None`) and an optional `path`.
pub(crate) fn mark(
    group: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    dirfd: Option<BorrowedFd<'_>>,
    path: Option<&CStr>,
) -> io::Result<()> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let path = path.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: `group` and `dirfd` are live descriptors (borrowed for the call), `path` is
    // either null (allowed: the mark goes on `dirfd` itself) or a NUL-terminated string.
    let r = unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, dirfd, path) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `read(2)` of queued events into an 8-byte aligned buffer; retries on `EINTR`.
pub(crate) fn read(group: BorrowedFd<'_>, buf: &mut [u64]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `buf`, which is writable for its whole size.
        let n = unsafe {
            libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), std::mem::size_of_val(buf))
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The first `len` bytes of an event buffer as bytes (the buffer is `u64` for alignment).
pub(crate) fn bytes(buf: &[u64], len: usize) -> &[u8] {
    let len = len.min(std::mem::size_of_val(buf));
    // SAFETY: `u8` has no alignment or validity requirement and `len` is within `buf`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) }
}

/// `poll(2)` for readability; `Ok(false)` on timeout. `None` waits forever.
pub(crate) fn poll_in(group: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    let mut pfd = libc::pollfd { fd: group.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid `pollfd` for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes one `struct fanotify_response`; retries on `EINTR`. A short write is an error.
pub(crate) fn respond(group: BorrowedFd<'_>, event_fd: RawFd, response: u32) -> io::Result<()> {
    let r = libc::fanotify_response { fd: event_fd, response };
    let size = std::mem::size_of::<libc::fanotify_response>();
    loop {
        // SAFETY: `r` is a plain C struct of `size` bytes, alive for the call.
        let n = unsafe {
            libc::write(group.as_raw_fd(), (&r as *const libc::fanotify_response).cast(), size)
        };
        if n == size as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short fanotify response write"));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Takes ownership of an event descriptor the kernel installed during `read`.
///
/// Only called by the event reader for a non-negative `fd` field of an event record it just
/// read from the group: such a descriptor is new and owned by nobody else.
pub(crate) fn own_event_fd(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: see above; the kernel opened it for this process during the `read` that
    // returned the record, and each record is turned into an owner exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `pidfd_open(pid, 0)` then `pidfd_getfd(pidfd, fd, 0)`: a duplicate of another process's
/// descriptor (needs `PTRACE_MODE_ATTACH` over it: root, or `CAP_SYS_PTRACE`).
pub(crate) fn take_fd_of(pid: i32, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: plain syscall with integer arguments; `pidfd` is live for the call.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, a new descriptor of this process.
    Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
}

/// Bytes of the largest file handle (`MAX_HANDLE_SZ`).
pub(crate) const MAX_HANDLE_BYTES: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_BYTES],
}

/// `name_to_handle_at(fd, "", AT_EMPTY_PATH)`: `(handle_type, handle bytes, mount id)`.
pub(crate) fn handle_of(fd: BorrowedFd<'_>) -> io::Result<(i32, Vec<u8>, i32)> {
    let mut h =
        RawHandle { handle_bytes: MAX_HANDLE_BYTES as u32, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `h` is a `file_handle` with `handle_bytes` of room after its header, `mount_id`
    // is a writable int, the path is an empty NUL-terminated string, `fd` is live.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut h as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (h.handle_bytes as usize).min(MAX_HANDLE_BYTES);
    Ok((h.handle_type, h.f_handle[..n].to_vec(), mount_id))
}

/// `open_by_handle_at(mount_fd, handle, flags)` (needs `CAP_DAC_READ_SEARCH`).
pub(crate) fn open_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    bytes: &[u8],
    flags: i32,
) -> io::Result<OwnedFd> {
    if bytes.len() > MAX_HANDLE_BYTES {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut h = RawHandle { handle_bytes: bytes.len() as u32, handle_type, f_handle: [0; 128] };
    h.f_handle[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `h` is a valid `file_handle`, `mount_fd` is live for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut h as *mut RawHandle,
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `unshare(CLONE_NEWNS)` then `mount(NULL, "/", NULL, MS_REC|MS_SLAVE)`: this process gets
/// its own copies of every mount (mounts made on the host still propagate in, nothing made
/// here propagates out).
pub(crate) fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain syscall with an integer argument.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: NUL-terminated strings, null source/type/data are allowed for a propagation change.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
