//! The parallel directory walk.
//!
//! Walker threads share one LIFO stack of directories to read (depth-first-ish, so few
//! directory descriptors are open at once). Each directory is opened relative to its parent's
//! descriptor (`openat(…, O_NOFOLLOW | O_DIRECTORY)`), read with `getdents64`, and every entry
//! that is not obviously a symlink gets exactly one `statx(…, AT_SYMLINK_NOFOLLOW)` relative to
//! the directory's descriptor, so no long path is ever resolved again. Records travel in
//! batches through a bounded channel to one writer thread, so memory stays flat however large
//! the tree is.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use alto_batch::{BatchError, BatchWriter, ScanRecord};
use alto_rules::pattern::{Pattern, PatternError};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags, CWD};
use rustix::io::Errno;
use serde::Serialize;

use crate::owners::Owners;

/// The extended attribute that marks a stub; its value names the object in tier 2.
pub const STUB_XATTR: &str = "trusted.alto.stub";

/// The longest path a batch row may carry (see `alto_batch`).
pub const MAX_PATH: usize = 4096;

const BATCH: usize = 1024;
const CHANNEL_BATCHES: usize = 32;
const DIRENT_BUF: usize = 64 * 1024;
const MAX_SAMPLES: usize = 20;

/// What to scan and how.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Directories to scan. Each root is resolved once; nothing below it is followed.
    pub roots: Vec<PathBuf>,
    /// Globs in the rules' dialect ([`alto_rules::pattern::Pattern::glob`]: `*` never crosses
    /// `/`, a glob without `/` matches the name at any depth), matched against absolute paths
    /// (names that are not UTF-8 in `alto_batch`'s escaped form, as rules see them); a matching
    /// directory is not descended.
    pub excludes: Vec<String>,
    /// Descend into directories on other file systems than their root's.
    pub cross_filesystems: bool,
    /// Walker threads; 0 means one per available core.
    pub threads: usize,
}

/// Why a scan could not run at all. Per-entry problems are counted in [`ScanSummary`] instead.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("no root to scan")]
    NoRoot,
    #[error("cannot open root {}: {source}", path.display())]
    Root { path: PathBuf, source: std::io::Error },
    #[error("invalid exclude pattern {pattern:?}: {source}")]
    Exclude { pattern: String, source: PatternError },
    #[error("cannot write the batch: {0}")]
    Output(#[from] BatchError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// The kinds of per-entry problems a scan counts and carries on after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// `EACCES`/`EPERM`: a directory or entry we may not read.
    PermissionDenied,
    /// `ENOENT`/`ENOTDIR`/`ELOOP`: the entry vanished or changed type between listing and use.
    Vanished,
    /// The absolute path is longer than a batch row may be ([`MAX_PATH`]).
    PathTooLong,
    /// Anything else (I/O errors, descriptor exhaustion, …).
    Other,
}

impl ErrorKind {
    /// Classifies an `errno` value.
    pub fn classify(errno: i32) -> ErrorKind {
        match errno {
            libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
            libc::ENOENT | libc::ENOTDIR | libc::ELOOP => ErrorKind::Vanished,
            libc::ENAMETOOLONG => ErrorKind::PathTooLong,
            _ => ErrorKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Vanished => "vanished",
            ErrorKind::PathTooLong => "path_too_long",
            ErrorKind::Other => "other",
        }
    }
}

/// One reported problem (the first few of a scan are kept).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSample {
    pub kind: ErrorKind,
    /// The path, lossily decoded for display.
    pub path: String,
    pub message: String,
}

/// What a scan saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanSummary {
    /// Regular files recorded.
    pub files: u64,
    /// Directories read.
    pub directories: u64,
    pub symlinks: u64,
    /// Devices, FIFOs, sockets.
    pub other: u64,
    /// Sum of the recorded files' sizes.
    pub bytes: u64,
    /// Recorded files that are stubs.
    pub stubs: u64,
    /// Entries matched by an exclude (excluded directories count once).
    pub excluded: u64,
    /// Directories skipped because they are on another file system.
    pub other_filesystems: u64,
    /// Counted problems by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first few problems, for the report.
    pub error_samples: Vec<ErrorSample>,
    /// Rows in the batch.
    pub rows: u64,
    pub seconds: f64,
}

impl ScanSummary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, o: ScanSummary) {
        self.files += o.files;
        self.directories += o.directories;
        self.symlinks += o.symlinks;
        self.other += o.other;
        self.bytes += o.bytes;
        self.stubs += o.stubs;
        self.excluded += o.excluded;
        self.other_filesystems += o.other_filesystems;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in o.error_samples {
            if self.error_samples.len() < MAX_SAMPLES {
                self.error_samples.push(s);
            }
        }
    }

    fn error(&mut self, kind: ErrorKind, path: &[u8], message: &dyn std::fmt::Display) {
        *self.errors.entry(kind).or_default() += 1;
        tracing::debug!(kind = kind.as_str(), path = %String::from_utf8_lossy(path), "{message}");
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples.push(ErrorSample {
                kind,
                path: String::from_utf8_lossy(path).into_owned(),
                message: message.to_string(),
            });
        }
    }
}

/// Live counters for a progress display, updated once per directory.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub directories: AtomicU64,
    pub errors: AtomicU64,
}

/// A directory waiting to be read.
struct DirJob {
    source: DirSource,
    /// Absolute path, raw bytes, no trailing slash (except `/` itself).
    path: Vec<u8>,
    /// Device of the root this directory belongs to.
    root_dev: u64,
}

enum DirSource {
    Root(OwnedFd),
    Child { parent: Arc<OwnedFd>, name: CString },
}

impl DirJob {
    /// The opened directory, its path and root device; or the path and why it failed.
    #[allow(clippy::type_complexity)]
    fn open(self) -> Result<(OwnedFd, Vec<u8>, u64), (Vec<u8>, Errno)> {
        match self.source {
            DirSource::Root(fd) => Ok((fd, self.path, self.root_dev)),
            DirSource::Child { parent, name } => match open_dir(&*parent, &name) {
                Ok(fd) => Ok((fd, self.path, self.root_dev)),
                Err(e) => Err((self.path, e)),
            },
        }
    }
}

fn open_dir(parent: impl AsFd, name: &CString) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // O_NOATIME keeps the scan from touching directory access times where we may use it.
    match rustix::fs::openat(&parent, name.as_c_str(), flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(&parent, name.as_c_str(), flags, Mode::empty()),
        r => r,
    }
}

/// The shared stack of directories.
struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
    stop: AtomicBool,
}

struct QueueState {
    jobs: Vec<DirJob>,
    /// Directories being read right now (they may push more).
    active: usize,
}

impl Queue {
    fn pop(&self) -> Option<DirJob> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(j) = st.jobs.pop() {
                st.active += 1;
                return Some(j);
            }
            if st.active == 0 {
                self.cv.notify_all();
                return None;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self, new: &mut Vec<DirJob>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.active -= 1;
        let n = new.len();
        st.jobs.append(new);
        let finished = st.active == 0 && st.jobs.is_empty();
        drop(st);
        if finished || n > 1 {
            self.cv.notify_all();
        } else if n == 1 {
            self.cv.notify_one();
        }
    }

    fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}

/// A scan with its roots opened and excludes compiled, ready to [`run`](Scanner::run).
pub struct Scanner {
    roots: Vec<DirJob>,
    excludes: Excludes,
    cross_filesystems: bool,
    threads: usize,
    owners: Owners,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("roots", &self.roots.len()).finish_non_exhaustive()
    }
}

impl Scanner {
    /// Opens every root (an error if one cannot be opened) and compiles the excludes.
    pub fn new(opts: &ScanOptions) -> Result<Scanner, ScanError> {
        if opts.roots.is_empty() {
            return Err(ScanError::NoRoot);
        }
        let mut roots = Vec::new();
        for root in &opts.roots {
            let err = |source| ScanError::Root { path: root.clone(), source };
            let abs = std::fs::canonicalize(root).map_err(err)?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd =
                rustix::fs::openat(CWD, &abs, flags, Mode::empty()).map_err(|e| err(e.into()))?;
            let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
                .map_err(|e| err(e.into()))?;
            roots.push(DirJob {
                source: DirSource::Root(fd),
                path: abs.as_os_str().as_bytes().to_vec(),
                root_dev: dev_of(&st),
            });
        }
        let excludes = Excludes::new(&opts.excludes)?;
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            opts.threads
        };
        Ok(Scanner {
            roots,
            excludes,
            cross_filesystems: opts.cross_filesystems,
            threads,
            owners: Owners::from_system(),
        })
    }

    /// Replaces the uid → name table (tests).
    pub fn with_owners(mut self, owners: Owners) -> Scanner {
        self.owners = owners;
        self
    }

    /// Scans into a batch file whose format follows its name.
    pub fn run_to_file(self, output: &Path, progress: &Progress) -> Result<ScanSummary, ScanError> {
        let writer = BatchWriter::create(output)?;
        self.run(writer, progress)
    }

    /// Walks every root and writes one row per regular file. Only a failing writer is an
    /// error; everything else is counted in the summary.
    pub fn run<W>(
        self,
        writer: BatchWriter<W>,
        progress: &Progress,
    ) -> Result<ScanSummary, ScanError>
    where
        W: std::io::Write + Send + 'static,
    {
        let started = Instant::now();
        let Scanner { roots, excludes, cross_filesystems, threads, owners } = self;
        let queue = Queue {
            state: Mutex::new(QueueState { jobs: roots, active: 0 }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        };
        // Reverse so the first root is read first.
        queue.state.lock().unwrap_or_else(|e| e.into_inner()).jobs.reverse();
        let (tx, rx) = sync_channel::<Vec<ScanRecord>>(CHANNEL_BATCHES);
        let shared = Walk { queue, excludes, cross_filesystems, owners, progress };

        let (summaries, written) = std::thread::scope(|s| {
            let writer_thread = std::thread::Builder::new()
                .name("alto-scan-writer".into())
                .spawn_scoped(s, || write_all(writer, rx))
                .map_err(ScanError::Thread)?;
            let mut walkers = Vec::new();
            for i in 0..threads.max(1) {
                let tx = tx.clone();
                let shared = &shared;
                let h = std::thread::Builder::new()
                    .name(format!("alto-scan-{i}"))
                    .spawn_scoped(s, move || shared.walker(&tx));
                match h {
                    Ok(h) => walkers.push(h),
                    Err(e) if walkers.is_empty() => {
                        shared.queue.abort();
                        return Err(ScanError::Thread(e));
                    }
                    Err(_) => break,
                }
            }
            drop(tx);
            let summaries: Vec<ScanSummary> = walkers
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect();
            let written = writer_thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            Ok((summaries, written))
        })?;
        let rows = written?;
        let mut total = ScanSummary::default();
        for s in summaries {
            total.merge(s);
        }
        total.rows = rows;
        total.seconds = started.elapsed().as_secs_f64();
        Ok(total)
    }
}

fn write_all<W: std::io::Write + Send + 'static>(
    mut writer: BatchWriter<W>,
    rx: Receiver<Vec<ScanRecord>>,
) -> Result<u64, ScanError> {
    for batch in rx {
        for r in &batch {
            writer.write(r)?;
        }
    }
    Ok(writer.finish()?)
}

/// Scan excludes: globs compiled by the rules' compiler, so an exclude and a rule with the same
/// glob agree on every path (see `docs/rules.md`, "Path globs").
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

impl Excludes {
    /// Compiles `globs`; the first invalid one is the error.
    pub fn new(globs: &[String]) -> Result<Excludes, ScanError> {
        let patterns = globs
            .iter()
            .map(|g| {
                Pattern::glob(g).map_err(|source| ScanError::Exclude { pattern: g.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Excludes { patterns })
    }

    /// Whether any glob matches the absolute path `path`. A path that is not UTF-8 is matched
    /// in `alto_batch`'s escaped form, the text the server stores and rules are evaluated on.
    pub fn is_match(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let escaped;
        let text = match std::str::from_utf8(path) {
            Ok(t) => t,
            Err(_) => {
                escaped = alto_batch::encode_path(path).0;
                escaped.as_str()
            }
        };
        self.patterns.iter().any(|p| p.is_match(text))
    }
}

struct Walk<'a> {
    queue: Queue,
    excludes: Excludes,
    cross_filesystems: bool,
    owners: Owners,
    progress: &'a Progress,
}

/// Per-thread scratch.
struct Worker {
    summary: ScanSummary,
    batch: Vec<ScanRecord>,
    dirent_buf: Vec<MaybeUninit<u8>>,
    new_dirs: Vec<DirJob>,
}

const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS;

impl Walk<'_> {
    fn walker(&self, tx: &SyncSender<Vec<ScanRecord>>) -> ScanSummary {
        let mut w = Worker {
            summary: ScanSummary::default(),
            batch: Vec::with_capacity(BATCH),
            dirent_buf: vec![MaybeUninit::uninit(); DIRENT_BUF],
            new_dirs: Vec::new(),
        };
        while let Some(job) = self.queue.pop() {
            let before = (w.summary.files, w.summary.bytes, w.summary.error_count());
            self.read_dir(job, &mut w, tx);
            let p = self.progress;
            p.files.fetch_add(w.summary.files - before.0, Ordering::Relaxed);
            p.bytes.fetch_add(w.summary.bytes - before.1, Ordering::Relaxed);
            p.errors.fetch_add(w.summary.error_count() - before.2, Ordering::Relaxed);
            p.directories.fetch_add(1, Ordering::Relaxed);
            self.queue.done(&mut w.new_dirs);
        }
        if !w.batch.is_empty() {
            let _ = tx.send(std::mem::take(&mut w.batch));
        }
        w.summary
    }

    fn excluded(&self, path: &[u8]) -> bool {
        self.excludes.is_match(path)
    }

    fn flush(&self, batch: &mut Vec<ScanRecord>, tx: &SyncSender<Vec<ScanRecord>>) {
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
        if tx.send(full).is_err() {
            // The writer failed; its error is reported by `run`.
            self.queue.abort();
        }
    }

    fn read_dir(&self, job: DirJob, w: &mut Worker, tx: &SyncSender<Vec<ScanRecord>>) {
        let (fd, dir_path, root_dev) = match job.open() {
            Ok(x) => x,
            Err((path, e)) => {
                w.summary.error(ErrorKind::classify(e.raw_os_error()), &path, &e);
                return;
            }
        };
        w.summary.directories += 1;
        let fd = Arc::new(fd);
        let mut entries = RawDir::new(&*fd, &mut w.dirent_buf[..]);
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    w.summary.error(ErrorKind::classify(e.raw_os_error()), &dir_path, &e);
                    break;
                }
            };
            let name = entry.file_name();
            let name_bytes = name.to_bytes();
            if name_bytes == b"." || name_bytes == b".." {
                continue;
            }
            let dtype = entry.file_type();
            if dtype == FileType::Symlink {
                w.summary.symlinks += 1;
                continue;
            }
            let mut path = Vec::with_capacity(dir_path.len() + 1 + name_bytes.len());
            path.extend_from_slice(&dir_path);
            if path.last() != Some(&b'/') {
                path.push(b'/');
            }
            path.extend_from_slice(name_bytes);
            if self.excluded(&path) {
                w.summary.excluded += 1;
                continue;
            }
            let st = match rustix::fs::statx(&*fd, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK) {
                Ok(st) => st,
                Err(e) => {
                    w.summary.error(ErrorKind::classify(e.raw_os_error()), &path, &e);
                    continue;
                }
            };
            match FileType::from_raw_mode(u32::from(st.stx_mode)) {
                FileType::RegularFile => {
                    if path.len() > MAX_PATH {
                        w.summary.error(
                            ErrorKind::PathTooLong,
                            &path,
                            &"path longer than 4096 bytes",
                        );
                        continue;
                    }
                    let stub = if st.stx_blocks.saturating_mul(512) < st.stx_size {
                        self.read_stub(&fd, name, &path, &mut w.summary)
                    } else {
                        None
                    };
                    w.summary.files += 1;
                    w.summary.bytes += st.stx_size;
                    w.summary.stubs += u64::from(stub.is_some());
                    w.batch.push(self.record(path, &st, stub));
                    if w.batch.len() >= BATCH {
                        self.flush(&mut w.batch, tx);
                    }
                }
                FileType::Directory => {
                    if !self.cross_filesystems && dev_of(&st) != root_dev {
                        w.summary.other_filesystems += 1;
                        continue;
                    }
                    if path.len() >= MAX_PATH {
                        // Nothing below it could be recorded.
                        w.summary.error(
                            ErrorKind::PathTooLong,
                            &path,
                            &"path longer than 4096 bytes",
                        );
                        continue;
                    }
                    w.new_dirs.push(DirJob {
                        source: DirSource::Child { parent: Arc::clone(&fd), name: name.to_owned() },
                        path,
                        root_dev,
                    });
                }
                FileType::Symlink => w.summary.symlinks += 1,
                _ => w.summary.other += 1,
            }
        }
    }

    /// Reads the stub attribute of `name` in the directory `dir` without following it and
    /// without opening the file (opening a stub could trigger a recall).
    fn read_stub(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::CStr,
        path: &[u8],
        summary: &mut ScanSummary,
    ) -> Option<String> {
        use std::os::fd::AsRawFd;
        let mut via = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        via.extend_from_slice(name.to_bytes());
        let via = OsStr::from_bytes(&via);
        let mut buf = [0u8; 1024];
        match rustix::fs::lgetxattr(via, STUB_XATTR, &mut buf[..]) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => None,
            Err(Errno::RANGE) => {
                let mut big = vec![0u8; 64 * 1024];
                match rustix::fs::lgetxattr(via, STUB_XATTR, &mut big[..]) {
                    Ok(n) => Some(String::from_utf8_lossy(&big[..n]).into_owned()),
                    Err(e) => {
                        summary.error(ErrorKind::classify(e.raw_os_error()), path, &e);
                        None
                    }
                }
            }
            Err(e) => {
                summary.error(ErrorKind::classify(e.raw_os_error()), path, &e);
                None
            }
        }
    }

    fn record(&self, path: Vec<u8>, st: &Statx, stub: Option<String>) -> ScanRecord {
        ScanRecord {
            path,
            size: st.stx_size,
            mtime_us: micros(st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            atime_us: micros(st.stx_atime.tv_sec, st.stx_atime.tv_nsec),
            ctime_us: micros(st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            inode: st.stx_ino,
            device: dev_of(st),
            nlink: u64::from(st.stx_nlink),
            owner: self.owners.name(st.stx_uid),
            hash: String::new(),
            stub,
        }
    }
}

fn micros(sec: i64, nsec: u32) -> i64 {
    sec.saturating_mul(1_000_000).saturating_add(i64::from(nsec / 1000))
}

fn dev_of(st: &Statx) -> u64 {
    rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        assert_eq!(ErrorKind::classify(libc::EACCES), ErrorKind::PermissionDenied);
        assert_eq!(ErrorKind::classify(libc::EPERM), ErrorKind::PermissionDenied);
        assert_eq!(ErrorKind::classify(libc::ENOENT), ErrorKind::Vanished);
        assert_eq!(ErrorKind::classify(libc::ENOTDIR), ErrorKind::Vanished);
        assert_eq!(ErrorKind::classify(libc::ELOOP), ErrorKind::Vanished);
        assert_eq!(ErrorKind::classify(libc::ENAMETOOLONG), ErrorKind::PathTooLong);
        assert_eq!(ErrorKind::classify(libc::EIO), ErrorKind::Other);
    }

    #[test]
    fn a_directory_removed_after_listing_is_counted_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let parent =
            rustix::fs::openat(CWD, tmp.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        std::fs::create_dir(tmp.path().join("gone")).unwrap();
        let job = DirJob {
            source: DirSource::Child {
                parent: Arc::new(parent),
                name: CString::new("gone").unwrap(),
            },
            path: tmp.path().join("gone").as_os_str().as_bytes().to_vec(),
            root_dev: 0,
        };
        // Listed, then removed before the walker opens it.
        std::fs::remove_dir(tmp.path().join("gone")).unwrap();
        let walk = Walk {
            queue: Queue {
                state: Mutex::new(QueueState { jobs: vec![], active: 0 }),
                cv: Condvar::new(),
                stop: AtomicBool::new(false),
            },
            excludes: Excludes::default(),
            cross_filesystems: false,
            owners: Owners::default(),
            progress: &Progress::default(),
        };
        let mut w = Worker {
            summary: ScanSummary::default(),
            batch: vec![],
            dirent_buf: vec![MaybeUninit::uninit(); DIRENT_BUF],
            new_dirs: vec![],
        };
        let (tx, _rx) = sync_channel(1);
        walk.read_dir(job, &mut w, &tx);
        assert_eq!(w.summary.errors.get(&ErrorKind::Vanished), Some(&1));
        assert_eq!(w.summary.directories, 0);
    }

    #[test]
    fn micros_rounds_down() {
        assert_eq!(micros(1, 999_999_999), 1_999_999);
        assert_eq!(micros(-1, 500_000_000), -500_000);
    }
}
