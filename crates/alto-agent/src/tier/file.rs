//! The per-file steps of a tier job: check a file against the job's snapshot, copy it to
//! tier-2 and verify the copy ([`prepare`], steps 1–2), convert it to a stub ([`convert`],
//! step 4), and find out what a file in flight became after a restart ([`recover_file`]).
//! Each runs on the blocking pool and decides one file's [`FileResult`]; talking to the
//! server and the journal is the executor's ([`super::exec`]). See [`crate::tier`] for the
//! rules these steps keep.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alto_model::{Clock as _, HostId, SystemClock};
use alto_stub::{ChunkRef, FileIdentity, Reconciled, StubAttr, StubError, StubState};
use alto_tier2::chunks::chunk_size_for;
use alto_tier2::{ChunkHasher, ChunkManifest, Compression, ObjectKey, PutMeta, Target, Tier2Error};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use tokio_util::sync::CancellationToken;

use crate::job::{
    ExecFile, FileOutcome, FileResult, ALREADY_STUB, CHANGED, OPEN_ELSEWHERE, STORAGE_UNAVAILABLE,
};
use crate::journal::SeqState;

/// Flags shared by a running job, its ticker and its blocking workers.
#[derive(Debug)]
pub(super) struct Signals {
    pub(super) cancel: AtomicBool,
    pub(super) lost: AtomicBool,
    storage_down: std::sync::Mutex<Option<String>>,
    shutdown: CancellationToken,
}

impl Signals {
    pub(super) fn new(shutdown: CancellationToken) -> Signals {
        Signals {
            cancel: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            storage_down: std::sync::Mutex::new(None),
            shutdown,
        }
    }

    /// No new file may start.
    pub(super) fn halt(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || self.lost.load(Ordering::Relaxed)
            || self.shutdown.is_cancelled()
            || self.storage_down().is_some()
    }

    pub(super) fn storage_down(&self) -> Option<String> {
        self.storage_down.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(super) fn set_storage_down(&self, why: String) {
        let mut g = self.storage_down.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(why);
    }
}

/// What the blocking workers need about the job.
pub(super) struct FileCtx {
    pub(super) target: Target,
    /// The host's bandwidth bucket (shared by every job) and the job's own, if it has a limit.
    pub(super) throttles: Vec<Arc<crate::throttle::Throttle>>,
    pub(super) target_name: String,
    pub(super) host_id: HostId,
    pub(super) compression: Compression,
    pub(super) signals: Arc<Signals>,
    /// See [`super::TierOptions::range_fill_min_size`].
    pub(super) range_fill_min_size: u64,
    pub(super) range_fill_chunk_size: u64,
}

/// A file copied and verified, ready to be staged and converted.
#[derive(Debug, Clone)]
pub(super) struct Ready {
    pub(super) seq: i32,
    path: PathBuf,
    identity: FileIdentity,
    pub(super) key: ObjectKey,
    pub(super) stored_size: u64,
    /// The chunk manifest stored beside the object, for the stub attribute.
    chunks: Option<ChunkRef>,
}

impl Ready {
    pub(super) fn result(&self, outcome: FileOutcome) -> FileResult {
        FileResult::stored(
            self.seq,
            outcome,
            self.key.sha256.to_hex(),
            self.key.to_string(),
            self.stored_size,
        )
    }
}

pub(super) enum Prepared {
    Ready(Box<Ready>),
    Final(FileResult),
    /// The storage failed; the file stays pending.
    StorageDown,
    /// Not started (the job is stopping); the file stays pending.
    NotStarted,
}

pub(super) enum Recovered {
    Final(FileResult),
    Intact,
    Busy(String),
}

fn path_of(f: &ExecFile) -> Option<PathBuf> {
    let bytes = alto_batch::decode_path(&f.file_path, f.path_escaped)?;
    if bytes.is_empty() {
        return None;
    }
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

fn is_not_found(e: &StubError) -> bool {
    match e {
        StubError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        StubError::NotRegular { .. } => true,
        _ => false,
    }
}

/// Whether the live file is the one the job planned (the inventory keeps mtime in
/// microseconds and the inode as a signed 64-bit number).
fn matches_snapshot(id: &FileIdentity, f: &ExecFile) -> bool {
    i64::try_from(id.size).is_ok_and(|s| s == f.file_size)
        && f.last_modified.is_some_and(|m| id.mtime_ns.div_euclid(1000) == m.timestamp_micros())
        && f.inode.is_none_or(|i| i as u64 == id.inode)
}

/// Identity and atime of an open descriptor.
fn fd_identity(file: &std::fs::File) -> std::io::Result<(FileIdentity, i64)> {
    let st = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)?;
    let ns = |t: &rustix::fs::StatxTimestamp| t.tv_sec * 1_000_000_000 + i64::from(t.tv_nsec);
    Ok((
        FileIdentity {
            size: st.stx_size,
            mtime_ns: ns(&st.stx_mtime),
            inode: st.stx_ino,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        },
        ns(&st.stx_atime),
    ))
}

/// Opens the file to copy it: read-only, no symlink, no atime update (where permitted), no
/// blocking on someone's lease.
fn open_source(path: &Path) -> std::io::Result<std::fs::File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        Ok(fd) => Ok(fd.into()),
        Err(Errno::PERM) => Ok(rustix::fs::open(path, flags, Mode::empty())?.into()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a tier-2 error means the storage itself is unavailable (the job must stop).
fn storage_down(target: &Target, e: &Tier2Error) -> Option<String> {
    if !e.is_storage_failure() {
        return None;
    }
    let full = matches!(e, Tier2Error::Io { source, .. } if matches!(
        source.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS)
    ));
    if full {
        return Some(format!("{STORAGE_UNAVAILABLE}: {e}"));
    }
    match target.health() {
        Ok(()) => None,
        Err(h) => Some(format!("{STORAGE_UNAVAILABLE}: {h}")),
    }
}

/// Steps 1–2 of a file: check it against the snapshot, copy and verify.
pub(super) fn prepare(ctx: &FileCtx, f: &ExecFile) -> Prepared {
    if ctx.signals.halt() {
        return Prepared::NotStarted;
    }
    let seq = f.seq;
    let Some(path) = path_of(f) else {
        return Prepared::Final(FileResult::failed(seq, "malformed path escape"));
    };
    // A stub attribute first: reading a stub without a recall would copy zeros. One left
    // half way by a crash the journal does not know of (`stubbing`, `recalling`) is
    // reconciled; if that leaves the file whole it is tiered like any other.
    match alto_stub::read_attr(&path) {
        Ok(None) => {}
        Ok(Some(a)) if a.state == StubState::Stubbed => {
            return Prepared::Final(FileResult::skipped(seq, ALREADY_STUB))
        }
        Ok(Some(_)) => match alto_stub::reconcile(&path) {
            Ok(Reconciled::NotAStub | Reconciled::AbortedStubbing | Reconciled::FinishedRecall) => {
            }
            Ok(_) => return Prepared::Final(FileResult::skipped(seq, ALREADY_STUB)),
            Err(StubError::InUse) => {
                return Prepared::Final(FileResult::skipped(seq, OPEN_ELSEWHERE))
            }
            Err(e) if is_not_found(&e) => {
                return Prepared::Final(FileResult::skipped(seq, CHANGED))
            }
            Err(e) => return Prepared::Final(FileResult::failed(seq, format!("reconcile: {e}"))),
        },
        Err(e) if is_not_found(&e) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("stub attribute: {e}"))),
    }
    let id = match alto_stub::identity(&path) {
        Ok(id) => id,
        Err(e) if is_not_found(&e) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("stat: {e}"))),
    };
    if !matches_snapshot(&id, f) {
        return Prepared::Final(FileResult::skipped(seq, CHANGED));
    }
    let file = match open_source(&path) {
        Ok(file) => file,
        Err(e) => {
            return Prepared::Final(match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENXIO) => {
                    FileResult::skipped(seq, CHANGED)
                }
                Some(libc::EWOULDBLOCK) | Some(libc::ETXTBSY) => {
                    FileResult::skipped(seq, OPEN_ELSEWHERE)
                }
                _ => FileResult::failed(seq, format!("open: {e}")),
            })
        }
    };
    let atime_ns = match fd_identity(&file) {
        Ok((fid, atime)) if fid == id => atime,
        Ok(_) => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Prepared::Final(FileResult::failed(seq, format!("fstat: {e}"))),
    };
    let meta = PutMeta {
        host_id: ctx.host_id,
        path: f.file_path.clone(),
        path_escaped: f.path_escaped,
        size: id.size,
        mtime_ns: id.mtime_ns,
        atime_ns,
        expected_sha256: None,
        compression: ctx.compression,
        created_at: SystemClock.now(),
    };
    // Large files stored uncompressed also get their chunk hashes, from the same pass.
    let chunked = ctx.range_fill_min_size > 0
        && id.size >= ctx.range_fill_min_size
        && ctx.compression == Compression::None;
    // `put` consumes (and closes) the descriptor, or the hasher holding it is consumed
    // just after: none of ours is open at the conversion.
    let src = crate::throttle::Throttled::background(file, ctx.throttles.clone());
    let (put, manifest) = if chunked {
        let mut h = ChunkHasher::new(src, chunk_size_for(id.size, ctx.range_fill_chunk_size));
        let put = ctx.target.put(&mut h, &meta);
        (put, Some(h.finish()))
    } else {
        (ctx.target.put(src, &meta), None)
    };
    let out = match put {
        Ok(o) => o,
        Err(Tier2Error::SizeMismatch { .. }) => {
            return Prepared::Final(FileResult::skipped(seq, CHANGED))
        }
        Err(Tier2Error::Source(e)) => {
            return Prepared::Final(FileResult::failed(seq, format!("reading the file: {e}")))
        }
        Err(e) => {
            if let Some(why) = storage_down(&ctx.target, &e) {
                tracing::error!(seq, error = %e, "tier-2 unavailable");
                ctx.signals.set_storage_down(why);
                return Prepared::StorageDown;
            }
            return Prepared::Final(FileResult::failed(seq, format!("tier-2: {e}")));
        }
    };
    let key = out.key();
    if !out.deduplicated {
        if let Err(e) = ctx.target.verify(&key) {
            if let Some(why) = storage_down(&ctx.target, &e) {
                ctx.signals.set_storage_down(why);
                return Prepared::StorageDown;
            }
            return Prepared::Final(FileResult::failed(
                seq,
                format!("the tier-2 copy failed verification: {e}"),
            ));
        }
    }
    // Changed while it was copied (same length, new content)?
    match alto_stub::identity(&path) {
        Ok(now) if now == id => {}
        _ => return Prepared::Final(FileResult::skipped(seq, CHANGED)),
    }
    let chunks = manifest.and_then(|m| store_manifest(ctx, &key, &m));
    Prepared::Ready(Box::new(Ready {
        seq,
        path,
        identity: id,
        key,
        stored_size: out.record.stored_size,
        chunks,
    }))
}

/// Stores the chunk manifest of a file just put, if the object it landed in is the plain one
/// of the same content (a put may deduplicate onto a compressed object); the reference for
/// the stub attribute. A failure only costs range-first recall of this file (logged).
fn store_manifest(ctx: &FileCtx, key: &ObjectKey, m: &ChunkManifest) -> Option<ChunkRef> {
    if key.compression != Compression::None
        || m.sha256 != key.sha256
        || m.count() as u64 > alto_tier2::chunks::MAX_CHUNKS
    {
        return None;
    }
    match ctx.target.put_chunk_manifest(m) {
        Ok(()) => Some(ChunkRef { chunk_size: m.chunk_size, manifest_sha256: m.digest() }),
        Err(e) => {
            tracing::warn!(error = %e, object = %key, "chunk manifest not stored; the stub will be recalled whole");
            None
        }
    }
}

/// Step 4 of a file (after the server acknowledged `staged`).
pub(super) fn convert(ctx: &FileCtx, r: &Ready) -> FileResult {
    let attr = StubAttr {
        state: StubState::Stubbed,
        object_key: r.key.to_string(),
        target: ctx.target_name.clone(),
        size: r.identity.size,
        mtime_ns: r.identity.mtime_ns,
        sha256: r.key.sha256.0,
        chunks: r.chunks,
    };
    // The file's on-access ignore mark goes under the lease, before the punch: an ignored
    // stub would read as zeros without an event.
    let mut unignore = |f: &std::fs::File| crate::onaccess::unignore(f);
    match alto_stub::convert_to_stub_with(&r.path, &r.identity, &attr, &mut unignore) {
        Ok(_) => r.result(FileOutcome::Stubbed),
        Err(StubError::InUse) => FileResult::skipped(r.seq, OPEN_ELSEWHERE),
        Err(StubError::Changed { .. }) => FileResult::skipped(r.seq, CHANGED),
        Err(e) if is_not_found(&e) => FileResult::skipped(r.seq, CHANGED),
        Err(StubError::BadState { .. }) => FileResult::skipped(r.seq, ALREADY_STUB),
        Err(e) => {
            // The conversion may have stopped half way: finish or undo it, then say which.
            tracing::warn!(path = %r.path.display(), error = %e, "conversion failed; reconciling");
            match alto_stub::reconcile(&r.path) {
                Ok(Reconciled::Stubbed | Reconciled::FinishedStubbing)
                    if is_our_stub(&r.path, &r.key.to_string(), &r.key.sha256.to_hex()) =>
                {
                    r.result(FileOutcome::Stubbed)
                }
                _ => FileResult::failed(r.seq, format!("conversion: {e}")),
            }
        }
    }
}

fn is_our_stub(path: &Path, key: &str, sha256: &str) -> bool {
    matches!(alto_stub::read_attr(path), Ok(Some(a))
        if a.state == StubState::Stubbed && a.object_key == key && a.sha256_hex() == sha256)
}

/// What a file in flight is after a restart (see the module docs).
pub(super) fn recover_file(f: &ExecFile, st: &SeqState) -> Recovered {
    if let Some(o) = &st.outcome {
        return Recovered::Final(o.clone());
    }
    let seq = f.seq;
    let Some(path) = path_of(f) else {
        return Recovered::Final(FileResult::failed(seq, "malformed path escape"));
    };
    match alto_stub::read_attr(&path) {
        Ok(None) => return Recovered::Intact,
        Ok(Some(_)) => {}
        Err(e) if is_not_found(&e) => return Recovered::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => return Recovered::Final(FileResult::failed(seq, format!("stub attribute: {e}"))),
    }
    match alto_stub::reconcile(&path) {
        Ok(Reconciled::NotAStub | Reconciled::AbortedStubbing | Reconciled::FinishedRecall) => {
            Recovered::Intact
        }
        Ok(Reconciled::Stubbed | Reconciled::FinishedStubbing | Reconciled::RolledBackRecall) => {
            match &st.staged {
                Some(s) if is_our_stub(&path, &s.object_key, &s.sha256) => {
                    Recovered::Final(FileResult::stored(
                        seq,
                        FileOutcome::Stubbed,
                        s.sha256.clone(),
                        s.object_key.clone(),
                        s.stored_size,
                    ))
                }
                _ => Recovered::Final(FileResult::skipped(seq, ALREADY_STUB)),
            }
        }
        Ok(Reconciled::Stale { .. }) => Recovered::Final(FileResult::failed(
            seq,
            "the stub changed after its conversion (size or mtime differ from its attribute)",
        )),
        Err(StubError::InUse) => Recovered::Busy(OPEN_ELSEWHERE.into()),
        Err(e) if is_not_found(&e) => Recovered::Final(FileResult::skipped(seq, CHANGED)),
        Err(e) => Recovered::Final(FileResult::failed(seq, format!("reconcile: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(seq: i32, size: i64) -> ExecFile {
        ExecFile {
            seq,
            file_id: uuid::Uuid::nil(),
            file_path: format!("/f{seq}"),
            path_escaped: false,
            file_size: size,
            last_modified: Some(chrono::DateTime::UNIX_EPOCH),
            inode: None,
            state: "pending".into(),
        }
    }

    #[test]
    fn snapshot_compares_at_microseconds() {
        let mut f = file(0, 5);
        f.last_modified = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000);
        f.inode = Some(42);
        let id = FileIdentity { size: 5, mtime_ns: 1_700_000_000_123_456_789, inode: 42, dev: 1 };
        assert!(matches_snapshot(&id, &f));
        assert!(!matches_snapshot(&FileIdentity { size: 6, ..id }, &f));
        assert!(!matches_snapshot(&FileIdentity { inode: 43, ..id }, &f));
        assert!(!matches_snapshot(&FileIdentity { mtime_ns: id.mtime_ns + 1000, ..id }, &f));
        f.inode = Some(-1);
        assert!(matches_snapshot(&FileIdentity { inode: u64::MAX, ..id }, &f));
        f.last_modified = None;
        assert!(!matches_snapshot(&FileIdentity { inode: u64::MAX, ..id }, &f));
    }
}
