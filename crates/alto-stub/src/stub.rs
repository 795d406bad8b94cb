//! Converting a file to a stub, recalling it, and cleaning up after a crash.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FallocateFlags, FileType, Mode, OFlags, SeekFrom, Statx, StatxFlags, Timespec,
    Timestamps, XattrFlags, CWD,
};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::attr::{AttrError, StubAttr, StubState, MAX_ATTR_LEN, STUB_XATTR};
use crate::lease::{self, WriteLease};

/// Bytes at the start of a stub that keep their real content. Tools that skip holes
/// (`SEEK_DATA`, FIEMAP: `cp`, `tar --sparse`) then still read offset 0, which triggers the
/// recall, instead of copying zeros without reading (`research/fanotify-hsm-lab.md` §9).
pub const STUB_HEAD: u64 = 4096;

const CHUNK: usize = 1 << 20;

/// What a stub's identity check compares. `dev` is `makedev(major, minor)` as `alto-agent`'s
/// scanner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub dev: u64,
}

/// Errors of this crate. None of them leaves a file that claims to be whole but is not; the
/// ones that leave a file in `stubbing` or `recalling` say so.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// A symlink, directory, device, FIFO or socket: only regular files become stubs.
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
    /// Another open file description exists (in any process), or the file is being executed,
    /// or someone else holds a lease. Nothing was changed; try again later.
    #[error("the file is open elsewhere")]
    InUse,
    /// The file is not the one that was copied to tier-2. Nothing was changed.
    #[error("the file changed since it was copied (expected {expected:?}, found {actual:?})")]
    Changed { expected: FileIdentity, actual: FileIdentity },
    /// The attribute passed to [`convert_to_stub`] does not describe the expected file.
    #[error("the stub attribute does not describe this file: {0}")]
    AttrMismatch(&'static str),
    /// The file has no stub attribute.
    #[error("not a stub")]
    NotAStub,
    /// The file is already a stub of another object, or in a state this operation refuses.
    #[error("cannot {op} a file in state {state}")]
    BadState { state: StubState, op: &'static str },
    /// A stub whose size or mtime differ from its attribute: it was truncated (`O_TRUNC`
    /// generates no pre-content event) or written without a recall. Nothing was changed.
    #[error("stale stub: the attribute says {attr_size} bytes, mtime {attr_mtime_ns} ns; the file has {size} bytes, mtime {mtime_ns} ns")]
    StaleStub { attr_size: u64, attr_mtime_ns: i64, size: u64, mtime_ns: i64 },
    /// An interrupted conversion whose content no longer matches the attribute although no
    /// hole was punched: someone wrote to the file after the crash. Nothing was changed.
    #[error("the file was modified while its conversion was interrupted")]
    Conflict,
    /// The recalled bytes do not hash to the attribute's SHA-256 (or have the wrong length).
    /// The file is a stub again (`stubbed`), exactly as before the recall.
    #[error("recalled content does not match: expected sha256 {expected}, got {actual} over {bytes} bytes")]
    HashMismatch { expected: String, actual: String, bytes: u64 },
    /// The stub attribute is not one this crate wrote.
    #[error(transparent)]
    Attr(#[from] AttrError),
    /// Leases are refused for a reason other than another open (not the owner and no
    /// `CAP_LEASE`, `fs.leases-enable = 0`, a file system without leases).
    #[error("cannot take a write lease: {0}")]
    Lease(#[source] io::Error),
    /// The file system cannot punch holes. The conversion was undone.
    #[error("the file system cannot punch holes: {0}")]
    PunchUnsupported(#[source] io::Error),
    /// The recall source failed. The file is a stub again (`stubbed`).
    #[error("reading the recall source failed: {0}")]
    Source(#[source] io::Error),
    /// A timestamp outside ±292 years of 1970 (nanoseconds do not fit in `i64`).
    #[error("timestamp out of range")]
    TimeOutOfRange,
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(Errno) -> StubError {
    move |e| StubError::Io { op, source: e.into() }
}

fn std_err(op: &'static str) -> impl FnOnce(io::Error) -> StubError {
    move |source| StubError::Io { op, source }
}

/// What [`convert_to_stub`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StubOutcome {
    /// The file already was a stub of this object; nothing was done.
    pub already_stubbed: bool,
    /// Whether a hole was punched (false for files of at most [`STUB_HEAD`] bytes).
    pub punched: bool,
    /// `st_blocks` (512-byte units) before and after.
    pub blocks_before: u64,
    pub blocks_after: u64,
}

/// What [`reconcile`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// No stub attribute.
    NotAStub,
    /// A consistent stub; nothing to do.
    Stubbed,
    /// A `stubbed` attribute whose size or mtime no longer match the file (see
    /// [`StubError::StaleStub`]). Nothing was done: the caller decides (the lab's advice is to
    /// drop the attribute and queue the object for garbage collection).
    Stale { attr: StubAttr, size: u64, mtime_ns: i64 },
    /// `stubbing` with the content intact: the attribute was removed, the file is whole.
    AbortedStubbing,
    /// `stubbing` with (part of) the hole punched: finished to `stubbed`.
    FinishedStubbing,
    /// `recalling` with the whole content present and verified: the attribute was removed.
    FinishedRecall,
    /// `recalling` with incomplete content: back to `stubbed`.
    RolledBackRecall,
}

struct Meta {
    size: u64,
    blocks: u64,
    blksize: u64,
    ino: u64,
    dev: u64,
    regular: bool,
    atime: Timespec,
    mtime: Timespec,
    mtime_ns: i64,
}

fn ts(t: &rustix::fs::StatxTimestamp) -> Timespec {
    Timespec { tv_sec: t.tv_sec, tv_nsec: i64::from(t.tv_nsec) }
}

fn ns_of(t: &Timespec) -> Result<i64, StubError> {
    t.tv_sec
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(t.tv_nsec))
        .ok_or(StubError::TimeOutOfRange)
}

fn timespec_of(ns: i64) -> Timespec {
    Timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) }
}

fn meta(st: &Statx) -> Result<Meta, StubError> {
    let mtime = ts(&st.stx_mtime);
    Ok(Meta {
        size: st.stx_size,
        blocks: st.stx_blocks,
        blksize: u64::from(st.stx_blksize),
        ino: st.stx_ino,
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        regular: FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile,
        atime: ts(&st.stx_atime),
        mtime_ns: ns_of(&mtime)?,
        mtime,
    })
}

impl Meta {
    fn identity(&self) -> FileIdentity {
        FileIdentity { size: self.size, mtime_ns: self.mtime_ns, inode: self.ino, dev: self.dev }
    }
}

const STAT_MASK: StatxFlags = StatxFlags::BASIC_STATS;

fn lstat(path: &Path) -> Result<Meta, StubError> {
    let st = rustix::fs::statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, STAT_MASK)
        .map_err(io_err("statx"))?;
    meta(&st)
}

fn fstat(file: &File) -> Result<Meta, StubError> {
    let st =
        rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, STAT_MASK).map_err(io_err("fstatx"))?;
    meta(&st)
}

/// The identity of the regular file at `path` (not following a symlink).
pub fn identity(path: &Path) -> Result<FileIdentity, StubError> {
    let m = lstat(path)?;
    if !m.regular {
        return Err(StubError::NotRegular { path: path.to_owned() });
    }
    Ok(m.identity())
}

/// Reads the stub attribute of `path` without following a symlink and without opening the
/// file (so it triggers no recall). `None` if there is none or the file system has no
/// extended attributes.
pub fn read_attr(path: &Path) -> Result<Option<StubAttr>, StubError> {
    let mut buf = vec![0u8; MAX_ATTR_LEN + 1];
    match rustix::fs::lgetxattr(path, STUB_XATTR, &mut buf[..]) {
        Ok(n) => Ok(Some(StubAttr::parse(&buf[..n])?)),
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(Errno::RANGE) => Err(AttrError::TooLong(MAX_ATTR_LEN + 1).into()),
        Err(e) => Err(io_err("lgetxattr")(e)),
    }
}

fn get_attr(file: &File) -> Result<Option<StubAttr>, StubError> {
    let mut buf = vec![0u8; MAX_ATTR_LEN + 1];
    match rustix::fs::fgetxattr(file, STUB_XATTR, &mut buf[..]) {
        Ok(n) => Ok(Some(StubAttr::parse(&buf[..n])?)),
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(Errno::RANGE) => Err(AttrError::TooLong(MAX_ATTR_LEN + 1).into()),
        Err(e) => Err(io_err("fgetxattr")(e)),
    }
}

fn set_attr(file: &File, attr: &StubAttr, flags: XattrFlags) -> Result<(), StubError> {
    let value = attr.encode()?;
    rustix::fs::fsetxattr(file, STUB_XATTR, &value, flags).map_err(io_err("fsetxattr"))
}

fn remove_attr(file: &File) -> Result<(), StubError> {
    rustix::fs::fremovexattr(file, STUB_XATTR).map_err(io_err("fremovexattr"))
}

fn fsync(file: &File) -> Result<(), StubError> {
    rustix::fs::fsync(file).map_err(io_err("fsync"))
}

fn set_times(file: &File, atime: Timespec, mtime: Timespec) -> Result<(), StubError> {
    let times = Timestamps { last_access: atime, last_modification: mtime };
    rustix::fs::futimens(file, &times).map_err(io_err("futimens"))
}

fn punch_tail(file: &File, size: u64) -> Result<bool, Errno> {
    if size <= STUB_HEAD {
        return Ok(false);
    }
    rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        STUB_HEAD,
        size - STUB_HEAD,
    )?;
    Ok(true)
}

/// Opens a regular file read-write without following a symlink, without blocking on a
/// lease held by someone else, and without opening anything that is not a regular file
/// (opening a device or FIFO can have side effects, so the type is checked first and again
/// on the descriptor).
fn open_regular_rw(path: &Path) -> Result<(File, Meta), StubError> {
    let before = lstat(path)?;
    if !before.regular {
        return Err(StubError::NotRegular { path: path.to_owned() });
    }
    let flags =
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) | Err(Errno::ISDIR) | Err(Errno::NXIO) => {
            return Err(StubError::NotRegular { path: path.to_owned() })
        }
        Err(Errno::TXTBSY) | Err(Errno::AGAIN) => return Err(StubError::InUse),
        Err(e) => return Err(io_err("open")(e)),
    };
    let file = File::from(fd);
    let m = fstat(&file)?;
    if !m.regular {
        return Err(StubError::NotRegular { path: path.to_owned() });
    }
    Ok((file, m))
}

/// Replaces the content of the file at `path` after its first [`STUB_HEAD`] bytes by a hole,
/// leaving size, owner, mode, ACLs, other attributes, atime and mtime as they were, and marks
/// it with `attr` (whose `state` is ignored: the states are this function's business).
///
/// **The caller guarantees** that the object named by `attr` holds exactly this file's
/// content and has been verified in tier-2 (re-read and hashed) and made durable *before*
/// calling this: from the first step on, the attribute is the only record of where the data
/// is. `expected` is the identity the file had when it was copied; `attr.size` and
/// `attr.mtime_ns` must equal it. The caller must have closed its own descriptors of the
/// file (the one the upload read from included): the lease counts them too.
///
/// Steps (the crate documentation says what a crash between any two of them leaves):
/// 1. open read-write, `O_NOFOLLOW`, `O_NONBLOCK`; refuse anything but a regular file;
/// 2. take a write lease -- refused while any other descriptor of the file is open
///    anywhere: [`StubError::InUse`], nothing changed;
/// 3. `fstat` and compare with `expected`: [`StubError::Changed`], nothing changed;
/// 4. set the attribute with state `stubbing` and `fsync` (the intent is durable before any
///    data goes);
/// 5. if someone tried to open the file meanwhile (the lease shows a pending break), remove
///    the attribute again and return [`StubError::InUse`];
/// 6. punch a hole from byte 4096 to the end (`FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE`),
///    unless the file has at most 4096 bytes;
/// 7. restore atime and mtime (`futimens`; the punch changed mtime; ctime cannot be kept);
/// 8. set the attribute to `stubbed`, `fsync`, release the lease.
///
/// A file that already carries a `stubbed` attribute for the same object is left alone
/// (`already_stubbed`); one in `stubbing` for the same object is finished if its identity
/// still matches (after a crash, the punch may have moved mtime: use [`reconcile`]); any
/// other stub attribute is refused with [`StubError::BadState`].
pub fn convert_to_stub(
    path: &Path,
    expected: &FileIdentity,
    attr: &StubAttr,
) -> Result<StubOutcome, StubError> {
    convert_to_stub_with(path, expected, attr, &mut |_| Ok(()))
}

/// [`convert_to_stub`] with a step of the caller's run under the lease, after the attribute
/// says `stubbing` and before the hole is punched: the agent removes the file's on-access
/// ignore mark there (no other descriptor can exist, and the event handler never ignores a
/// file that has an attribute, so nothing can put the mark back before the punch). An error
/// from `before_punch` undoes the attribute and changes nothing else.
pub fn convert_to_stub_with(
    path: &Path,
    expected: &FileIdentity,
    attr: &StubAttr,
    before_punch: &mut dyn FnMut(&File) -> io::Result<()>,
) -> Result<StubOutcome, StubError> {
    attr.validate()?;
    if attr.size != expected.size {
        return Err(StubError::AttrMismatch("size differs from the expected identity"));
    }
    if attr.mtime_ns != expected.mtime_ns {
        return Err(StubError::AttrMismatch("mtime differs from the expected identity"));
    }
    let (file, _) = open_regular_rw(path)?;
    let lease = match WriteLease::acquire(file.as_fd()) {
        Ok(l) => l,
        Err(e) if lease::is_in_use(&e) => return Err(StubError::InUse),
        Err(e) => return Err(StubError::Lease(e)),
    };
    let m = fstat(&file)?;
    let actual = m.identity();
    if actual != *expected {
        return Err(StubError::Changed { expected: *expected, actual });
    }
    let stubbing = attr.with_state(StubState::Stubbing);
    let resuming = match get_attr(&file)? {
        None => false,
        Some(a) if a.same_object(attr) && a.state == StubState::Stubbed => {
            lease.release().map_err(std_err("release lease"))?;
            return Ok(StubOutcome {
                already_stubbed: true,
                punched: false,
                blocks_before: m.blocks,
                blocks_after: m.blocks,
            });
        }
        Some(a) if a.same_object(attr) && a.state == StubState::Stubbing => true,
        Some(a) => return Err(StubError::BadState { state: a.state, op: "convert" }),
    };
    if !resuming {
        set_attr(&file, &stubbing, XattrFlags::CREATE)?;
        fsync(&file)?;
        if !lease.undisturbed().map_err(std_err("F_GETLEASE"))? {
            // Someone wants the file now. Nothing was punched: undo and let them have it.
            remove_attr(&file)?;
            return Err(StubError::InUse);
        }
    }
    if let Err(e) = before_punch(&file) {
        if !resuming {
            remove_attr(&file)?;
        }
        return Err(StubError::Io { op: "before punch", source: e });
    }
    let punched = match punch_tail(&file, m.size) {
        Ok(p) => p,
        Err(e @ Errno::OPNOTSUPP) if !resuming => {
            remove_attr(&file)?;
            return Err(StubError::PunchUnsupported(e.into()));
        }
        // The attribute stays `stubbing`; `reconcile` finishes or undoes it.
        Err(e) => return Err(io_err("fallocate(PUNCH_HOLE)")(e)),
    };
    set_times(&file, m.atime, m.mtime)?;
    set_attr(&file, &attr.with_state(StubState::Stubbed), XattrFlags::REPLACE)?;
    fsync(&file)?;
    let after = fstat(&file)?;
    lease.release().map_err(std_err("release lease"))?;
    Ok(StubOutcome {
        already_stubbed: false,
        punched,
        blocks_before: m.blocks,
        blocks_after: after.blocks,
    })
}

/// Brings the content of the stub at `path` back from `source` (the original bytes, e.g. a
/// tier-2 `get` streamed through a pipe, or a verified temporary copy). See [`recall_file`].
///
/// Under a fanotify pre-content mark, `path` must be reached through the agent's private bind
/// mount that carries an ignore mark, or the open deadlocks on the agent's own event
/// (`research/fanotify-hsm-lab.md` §3); inside an event handler use [`recall_file`] on the
/// event's descriptor instead.
pub fn recall(path: &Path, source: impl Read) -> Result<(), StubError> {
    let (file, _) = open_regular_rw(path)?;
    recall_file(&file, source)
}

/// The checks every recall starts with (a regular file with a `stubbed` or `recalling`
/// attribute whose size — and, unless `recalling`, mtime — still match), then the state
/// `recalling`. Returns the attribute as it was and the file's metadata.
fn start_recall(file: &File) -> Result<(StubAttr, Meta), StubError> {
    let m = fstat(file)?;
    if !m.regular {
        return Err(StubError::NotRegular { path: PathBuf::from("(descriptor)") });
    }
    let attr = get_attr(file)?.ok_or(StubError::NotAStub)?;
    if attr.state == StubState::Stubbing {
        return Err(StubError::BadState { state: attr.state, op: "recall" });
    }
    // An interrupted recall (`recalling`) wrote part of the tail, which moved mtime; its
    // size still says whether someone else changed the file.
    let mtime_ok = m.mtime_ns == attr.mtime_ns || attr.state == StubState::Recalling;
    if m.size != attr.size || !mtime_ok {
        return Err(StubError::StaleStub {
            attr_size: attr.size,
            attr_mtime_ns: attr.mtime_ns,
            size: m.size,
            mtime_ns: m.mtime_ns,
        });
    }
    if attr.state != StubState::Recalling {
        set_attr(file, &attr.with_state(StubState::Recalling), XattrFlags::REPLACE)?;
    }
    Ok((attr, m))
}

/// Recall into an already open, writable descriptor of the stub (for example a fanotify
/// event's descriptor, which produces no events of its own).
///
/// 1. The attribute must be `stubbed` (or `recalling`: a recall that was interrupted), and
///    size and mtime must equal the attribute's, else [`StubError::StaleStub`] and nothing
///    changes.
/// 2. Set the state `recalling`.
/// 3. Stream `source`: hash every byte; write everything after the first 4096 bytes in place
///    (`pwrite`), hold the first 4096 in memory. More or fewer than `size` bytes is a
///    mismatch.
/// 4. If the hash differs from the attribute's, or the source fails: punch the tail again,
///    restore the times, set the state back to `stubbed` and return
///    [`StubError::HashMismatch`] (or [`StubError::Source`]). The first 4096 bytes were never
///    touched, so the file is exactly the stub it was.
/// 5. Otherwise write the first 4096 bytes, `fdatasync`, restore atime and mtime, remove the
///    attribute, `fsync`. Only now does the file claim to be whole.
///
/// No write lease is taken: a recall usually runs while the reader that triggered it holds
/// the file open.
pub fn recall_file(file: &File, mut source: impl Read) -> Result<(), StubError> {
    let (attr, m) = start_recall(file)?;
    let streamed = stream_tail(file, &mut source, attr.size);
    let (head, digest, bytes) = match streamed {
        Ok(s) => s,
        Err(e) => {
            rollback_to_stub(file, &attr, &m)?;
            return Err(e);
        }
    };
    if digest != attr.sha256 || bytes != attr.size {
        rollback_to_stub(file, &attr, &m)?;
        return Err(StubError::HashMismatch {
            expected: attr.sha256_hex(),
            actual: hex::encode(digest),
            bytes,
        });
    }
    file.write_all_at(&head, 0).map_err(std_err("pwrite"))?;
    rustix::fs::fdatasync(file).map_err(io_err("fdatasync"))?;
    set_times(file, m.atime, timespec_of(attr.mtime_ns))?;
    remove_attr(file)?;
    fsync(file)
}

/// A range-first recall in progress ([`begin_range_recall`]): the stub is `recalling`, and
/// its caller writes verified chunks into it (`pwrite` through a descriptor that raises no
/// events) in any order, then calls [`finish_range_recall`].
#[derive(Debug, Clone)]
pub struct RangeRecall {
    pub attr: StubAttr,
    atime: Timespec,
}

/// How [`finish_range_recall`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFinish {
    /// The whole content hashes to the attribute's SHA-256: times restored, attribute
    /// removed, synced. The file is whole.
    Recalled,
    /// Every chunk was written (and verified by the caller), there is no hole left, but the
    /// file no longer hashes (or measures) as the original: a program wrote to it during
    /// the fill, on content that was already in place. Its bytes are the program's: the
    /// attribute was removed and nothing else changed (report it as replaced).
    Modified,
}

/// Starts a range-first recall of the stub open as `file`: the same checks as
/// [`recall_file`] (a `stubbed` or `recalling` attribute; size and mtime match), then the
/// state `recalling` (which tells a restarted agent or [`reconcile`] that content may be
/// partly in place). Nothing is written and nothing is punched: chunks already in place
/// from an earlier attempt stay (they were verified when written).
pub fn begin_range_recall(file: &File) -> Result<RangeRecall, StubError> {
    let (attr, m) = start_recall(file)?;
    Ok(RangeRecall { attr, atime: m.atime })
}

/// Ends a range-first recall once every chunk is in place: `fdatasync`, hash the whole
/// file, and only if it is the original restore the times, remove the attribute and
/// `fsync` ([`RangeFinish::Recalled`]). See [`RangeFinish::Modified`] for a file written
/// during the fill. A file with a hole left in its tail is an error
/// ([`StubError::HashMismatch`]) and stays a stub: never is a file with missing content
/// released.
pub fn finish_range_recall(file: &File, r: &RangeRecall) -> Result<RangeFinish, StubError> {
    rustix::fs::fdatasync(file).map_err(io_err("fdatasync"))?;
    let m = fstat(file)?;
    let whole = m.size == r.attr.size && hash_file(file, m.size).ok() == Some(r.attr.sha256);
    if whole {
        set_times(file, r.atime, timespec_of(r.attr.mtime_ns))?;
        remove_attr(file)?;
        fsync(file)?;
        return Ok(RangeFinish::Recalled);
    }
    if m.size < r.attr.size || tail_has_hole(file, m.size.min(r.attr.size))? {
        return Err(StubError::HashMismatch {
            expected: r.attr.sha256_hex(),
            actual: "(content missing: the file has a hole or was truncated during the fill)"
                .into(),
            bytes: m.size,
        });
    }
    remove_attr(file)?;
    fsync(file)?;
    Ok(RangeFinish::Modified)
}

/// Streams `source` into `file`: bytes at offsets ≥ [`STUB_HEAD`] are written in place, the
/// head is returned. Stops reading as soon as more than `size` bytes arrived.
fn stream_tail(
    file: &File,
    source: &mut dyn Read,
    size: u64,
) -> Result<(Vec<u8>, [u8; 32], u64), StubError> {
    let head_len = size.min(STUB_HEAD) as usize;
    let mut head = Vec::with_capacity(head_len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos: u64 = 0;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StubError::Source(e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        let end = pos + n as u64;
        if end > size {
            pos = end;
            break; // too long: a mismatch; do not write past the end
        }
        let mut off = 0usize;
        if (pos as usize) < head_len {
            let take = (head_len - pos as usize).min(n);
            head.extend_from_slice(&chunk[..take]);
            off = take;
        }
        if off < n {
            file.write_all_at(&chunk[off..], pos + off as u64).map_err(std_err("pwrite"))?;
        }
        pos = end;
    }
    Ok((head, hasher.finalize().into(), pos))
}

fn rollback_to_stub(file: &File, attr: &StubAttr, m: &Meta) -> Result<(), StubError> {
    punch_tail(file, attr.size).map_err(io_err("fallocate(PUNCH_HOLE)"))?;
    set_times(file, m.atime, timespec_of(attr.mtime_ns))?;
    set_attr(file, &attr.with_state(StubState::Stubbed), XattrFlags::REPLACE)?;
    fsync(file)
}

fn hash_file(file: &File, size: u64) -> Result<[u8; 32], StubError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        let n = file.read_at(&mut buf, pos).map_err(std_err("pread"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    if pos != size {
        return Err(StubError::Io {
            op: "pread",
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "file changed while hashing"),
        });
    }
    Ok(hasher.finalize().into())
}

/// Whether any byte in `[STUB_HEAD, size)` is a hole.
fn tail_has_hole(file: &File, size: u64) -> Result<bool, StubError> {
    if size <= STUB_HEAD {
        return Ok(false);
    }
    match rustix::fs::seek(file, SeekFrom::Hole(STUB_HEAD)) {
        Ok(off) => Ok(off < size),
        Err(Errno::NXIO) => Ok(false),
        Err(e) => Err(io_err("lseek(SEEK_HOLE)")(e)),
    }
}

/// What a restarted agent runs on every file it finds in `stubbing` or `recalling` (and may
/// run on any file): finishes or undoes an interrupted conversion or recall, so that the file
/// ends either whole without an attribute or a `stubbed` stub. See the crate documentation
/// for the decision table. Takes the write lease for anything it changes
/// ([`StubError::InUse`] otherwise) and re-hashes the file's content for `stubbing` and
/// `recalling`.
pub fn reconcile(path: &Path) -> Result<Reconciled, StubError> {
    let (file, _) = open_regular_rw(path)?;
    let Some(attr) = get_attr(&file)? else {
        return Ok(Reconciled::NotAStub);
    };
    let m = fstat(&file)?;
    if attr.state == StubState::Stubbed {
        if m.size == attr.size && m.mtime_ns == attr.mtime_ns {
            return Ok(Reconciled::Stubbed);
        }
        return Ok(Reconciled::Stale { attr, size: m.size, mtime_ns: m.mtime_ns });
    }
    let lease = match WriteLease::acquire(file.as_fd()) {
        Ok(l) => l,
        Err(e) if lease::is_in_use(&e) => return Err(StubError::InUse),
        Err(e) => return Err(StubError::Lease(e)),
    };
    let m = fstat(&file)?;
    if m.size != attr.size {
        return Err(StubError::StaleStub {
            attr_size: attr.size,
            attr_mtime_ns: attr.mtime_ns,
            size: m.size,
            mtime_ns: m.mtime_ns,
        });
    }
    let intact = hash_file(&file, m.size)? == attr.sha256;
    let mtime = timespec_of(attr.mtime_ns);
    let outcome = match (attr.state, intact) {
        (StubState::Stubbing, true) => {
            set_times(&file, m.atime, mtime)?;
            remove_attr(&file)?;
            Reconciled::AbortedStubbing
        }
        (StubState::Stubbing, false) => {
            if !tail_has_hole(&file, m.size)? {
                return Err(StubError::Conflict);
            }
            punch_tail(&file, m.size).map_err(io_err("fallocate(PUNCH_HOLE)"))?;
            set_times(&file, m.atime, mtime)?;
            set_attr(&file, &attr.with_state(StubState::Stubbed), XattrFlags::REPLACE)?;
            Reconciled::FinishedStubbing
        }
        (StubState::Recalling, true) => {
            rustix::fs::fdatasync(&file).map_err(io_err("fdatasync"))?;
            set_times(&file, m.atime, mtime)?;
            remove_attr(&file)?;
            Reconciled::FinishedRecall
        }
        (StubState::Recalling, false) => {
            punch_tail(&file, m.size).map_err(io_err("fallocate(PUNCH_HOLE)"))?;
            set_times(&file, m.atime, mtime)?;
            set_attr(&file, &attr.with_state(StubState::Stubbed), XattrFlags::REPLACE)?;
            Reconciled::RolledBackRecall
        }
        (StubState::Stubbed, _) => Reconciled::Stubbed, // handled above
    };
    fsync(&file)?;
    lease.release().map_err(std_err("release lease"))?;
    Ok(outcome)
}

/// What an open file is, as the on-access handler needs to know before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubStatus {
    /// No stub attribute: an ordinary, whole file.
    NotAStub,
    /// A stub (`stubbed`, or `recalling` after an interrupted recall) whose size and mtime
    /// still match its attribute: its content must be recalled before any access.
    Stub(StubAttr),
    /// A `stubbed` attribute on a file whose size or mtime no longer match: it was truncated
    /// or replaced (`open(O_TRUNC)` raises no event) and now holds other content. Release it
    /// with [`release_replaced`].
    Replaced(StubAttr),
    /// `stubbing`: a conversion was interrupted (the agent crashed); [`reconcile`] decides.
    Converting(StubAttr),
}

/// Reads the stub attribute and size/mtime of an open file (e.g. a fanotify event's
/// descriptor) and says what it is. Changes nothing.
pub fn stub_status(file: &File) -> Result<StubStatus, StubError> {
    let Some(attr) = get_attr(file)? else {
        return Ok(StubStatus::NotAStub);
    };
    let m = fstat(file)?;
    Ok(match attr.state {
        StubState::Stubbing => StubStatus::Converting(attr),
        StubState::Recalling if m.size == attr.size => StubStatus::Stub(attr),
        // An interrupted (range-first) recall of a file whose size changed since (a write
        // past the end, a truncate): while any of the content is still missing, it stays a
        // stub, and recalling it fails (`StaleStub`), so readers get an error; releasing it
        // would hand them the holes as zeros.
        StubState::Recalling if tail_has_hole(file, m.size.min(attr.size))? => {
            StubStatus::Stub(attr)
        }
        StubState::Stubbed if m.size == attr.size && m.mtime_ns == attr.mtime_ns => {
            StubStatus::Stub(attr)
        }
        _ => StubStatus::Replaced(attr),
    })
}

/// Removes the stub attribute of a file that [`stub_status`] found [`StubStatus::Replaced`],
/// after checking again that it still is: its content is no longer the object's, so the
/// attribute would only make a later recall overwrite new data. Returns the attribute (the
/// object it names is the caller's to release). Nothing else changes.
pub fn release_replaced(file: &File) -> Result<StubAttr, StubError> {
    match stub_status(file)? {
        StubStatus::Replaced(attr) => {
            remove_attr(file)?;
            fsync(file)?;
            Ok(attr)
        }
        StubStatus::NotAStub => Err(StubError::NotAStub),
        StubStatus::Stub(a) | StubStatus::Converting(a) => {
            Err(StubError::BadState { state: a.state, op: "release as replaced" })
        }
    }
}

/// Whether the blocks allocated to the regular file at `path` are consistent with a stub:
/// `st_blocks × 512 ≤ 4096 + st_blksize` (the kept head plus one block of slack, which is
/// also what ext4's external attribute block costs). A cheap pre-filter for tests and
/// reconciliation; the attribute, not the layout, says what is a stub (a sparse original
/// also passes).
pub fn is_sparse_stub_layout(path: &Path) -> Result<bool, StubError> {
    let m = lstat(path)?;
    if !m.regular {
        return Err(StubError::NotRegular { path: path.to_owned() });
    }
    Ok(m.blocks.saturating_mul(512) <= STUB_HEAD + m.blksize)
}
