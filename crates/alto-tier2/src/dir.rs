//! The directory backend: a local or mounted directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alto_model::{CustomerId, HostId};
use chrono::{DateTime, Utc};
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use crate::chunks::ChunkManifest;
use crate::types::{
    Compression, DeleteOutcome, InvalidRef, ObjectKey, PutMeta, PutOutcome, RefId, RefListing,
    RefRecord, Sha256Digest, Usage, REF_FORMAT,
};
use crate::Tier2Error;

pub(crate) const CHUNK: usize = 1 << 20;

/// Largest range [`DirTarget::read_range`] reads at once.
const MAX_RANGE: usize = 1 << 30;

/// zstd level for new compressed objects (zstd's default: fast, about 3:1 on text).
pub const ZSTD_LEVEL: i32 = 3;

/// One customer's location on a directory target: `<base>/customer-<customer_id>-tiered/`.
/// Cheap to clone; every method is safe to call from several threads and processes at once.
#[derive(Debug, Clone)]
pub struct DirTarget {
    customer_id: CustomerId,
    location: PathBuf,
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Tier2Error + 'a {
    move |source| Tier2Error::Io { op, path: path.to_owned(), source }
}

fn errno_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> Tier2Error + 'a {
    move |e| Tier2Error::Io { op, path: path.to_owned(), source: e.into() }
}

/// `fsync` of a directory, so that a rename or create in it is durable.
fn sync_dir(dir: &Path) -> Result<(), Tier2Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at("fsync directory", dir))
}

/// Creates `dir` if missing (and makes the new entry durable in its parent).
fn ensure_dir(dir: &Path) -> Result<(), Tier2Error> {
    match fs::create_dir(dir) {
        Ok(()) => match dir.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_at("create directory", dir)(e)),
    }
}

/// A file under `tmp/`, held under an exclusive `flock` for as long as it lives (so
/// [`DirTarget::cleanup_tmp`] leaves it alone) and removed on drop unless it was renamed.
struct TmpFile {
    path: PathBuf,
    file: File,
    armed: bool,
}

impl TmpFile {
    fn create(dir: &Path, suffix: &str) -> Result<TmpFile, Tier2Error> {
        let name = format!("{:032x}.{suffix}", rand::random::<u128>());
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at("create", &path))?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(errno_at("flock", &path))?;
        Ok(TmpFile { path, file, armed: true })
    }

    /// Atomically moves the (synced) file to `dest`, replacing what is there, and makes the
    /// rename durable.
    fn commit(mut self, dest: &Path) -> Result<(), Tier2Error> {
        fs::rename(&self.path, dest).map_err(io_at("rename", dest))?;
        self.armed = false;
        match dest.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The customer-wide lock: puts hold it shared from the dedupe check until their sidecar is
/// written, [`DirTarget::delete_object_if_unreferenced`] holds it exclusively, so an object is
/// never deleted between a put deciding to reuse it and the sidecar that references it.
struct LocationLock {
    _file: File,
}

/// A reader that remembers whether the *underlying file* failed, so a decoder error can be
/// told apart from an I/O error.
struct TrackedRead<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for TrackedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// Where an [`ObjectReader`]'s bytes come from, for its errors.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    Path(PathBuf),
    Remote { backend: &'static str, url: String },
}

impl Origin {
    fn read_error(&self, e: io::Error) -> Tier2Error {
        match self {
            Origin::Path(p) => io_at("read", p)(e),
            Origin::Remote { backend, url } => {
                crate::remote::unavailable(backend, "read", url.clone(), e)
            }
        }
    }

    fn zstd_error(&self, e: io::Error) -> Tier2Error {
        match self {
            Origin::Path(p) => io_at("zstd", p)(e),
            Origin::Remote { .. } => self.read_error(e),
        }
    }
}

/// The verified content of one object, see [`DirTarget::reader`] and
/// [`crate::Target::reader`].
pub struct ObjectReader {
    key: ObjectKey,
    origin: Origin,
    source: Box<dyn Read + Send>,
    failed: Arc<AtomicBool>,
    hasher: Sha256,
    total: u64,
    done: bool,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// Bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    fn read_checked(&mut self, buf: &mut [u8]) -> Result<usize, Tier2Error> {
        if self.done {
            return Ok(0);
        }
        let corrupt =
            |actual| Tier2Error::Corrupt { key: self.key, expected: self.key.sha256, actual };
        loop {
            return match self.source.read(buf) {
                Ok(0) => {
                    let actual = Sha256Digest(self.hasher.clone().finalize().into());
                    if actual != self.key.sha256 {
                        return Err(corrupt(Some(actual)));
                    }
                    self.done = true;
                    Ok(0)
                }
                Ok(n) => {
                    self.hasher.update(&buf[..n]);
                    self.total += n as u64;
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if self.failed.load(Ordering::Relaxed) => Err(self.origin.read_error(e)),
                // The file read fine, so the decoder refused the bytes.
                Err(_) => Err(corrupt(None)),
            };
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_checked(buf).map_err(|e| match e {
            Tier2Error::Io { source, .. } => source,
            e @ Tier2Error::Unavailable { .. } => io::Error::other(e),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        })
    }
}

impl ObjectReader {
    /// Wraps the stored bytes of `key` (`raw`, still compressed for a `.zst` key).
    pub(crate) fn new(
        key: ObjectKey,
        origin: Origin,
        raw: Box<dyn Read + Send>,
    ) -> Result<ObjectReader, Tier2Error> {
        let failed = Arc::new(AtomicBool::new(false));
        let tracked = TrackedRead { inner: raw, failed: failed.clone() };
        let source: Box<dyn Read + Send> = match key.compression {
            Compression::None => Box::new(tracked),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(tracked).map_err(|e| origin.zstd_error(e))?,
            ),
        };
        Ok(ObjectReader {
            key,
            origin,
            source,
            failed,
            hasher: Sha256::new(),
            total: 0,
            done: false,
        })
    }

    /// Streams everything into `writer`; see [`DirTarget::get`].
    pub(crate) fn drain<W: Write>(mut self, mut writer: W) -> Result<u64, Tier2Error> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = self.read_checked(&mut buf)?;
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n]).map_err(Tier2Error::Sink)?;
        }
        writer.flush().map_err(Tier2Error::Sink)?;
        Ok(self.total)
    }
}

/// Streams `reader` into `file` (compressing for [`Compression::Zstd`]) and checks the
/// length and hash against `meta`: the common first step of every backend's put. `path`
/// names `file` in errors.
pub(crate) fn spool_into<R: Read>(
    reader: &mut R,
    file: &File,
    path: &Path,
    meta: &PutMeta,
) -> Result<Sha256Digest, Tier2Error> {
    let (sha256, size) = match meta.compression {
        Compression::None => {
            let mut out = file;
            copy_hashing(reader, &mut out, meta.size, path)?
        }
        Compression::Zstd => {
            let mut enc =
                zstd::stream::write::Encoder::new(file, ZSTD_LEVEL).map_err(io_at("zstd", path))?;
            let r = copy_hashing(reader, &mut enc, meta.size, path)?;
            enc.finish().map_err(io_at("write", path))?;
            r
        }
    };
    if size != meta.size {
        return Err(Tier2Error::SizeMismatch { expected: meta.size, actual: size });
    }
    if let Some(expected) = meta.expected_sha256 {
        if expected != sha256 {
            return Err(Tier2Error::HashMismatch { expected, actual: sha256 });
        }
    }
    Ok(sha256)
}

/// The original path's bytes of `meta`, refusing malformed and empty ones.
pub(crate) fn put_path_bytes(meta: &PutMeta) -> Result<Vec<u8>, Tier2Error> {
    let path_bytes = alto_batch::decode_path(&meta.path, meta.path_escaped)
        .ok_or(Tier2Error::InvalidPath("malformed escape in path"))?;
    if path_bytes.is_empty() {
        return Err(Tier2Error::InvalidPath("empty path"));
    }
    Ok(path_bytes)
}

/// Checks a sidecar read from `path` (a file or a remote key) under the name `id`.
pub(crate) fn parse_sidecar(
    customer_id: CustomerId,
    path: &Path,
    body: &[u8],
    id: &RefId,
) -> Result<RefRecord, Tier2Error> {
    let invalid = |reason: String| Tier2Error::InvalidRef { path: path.to_owned(), reason };
    let record: RefRecord =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not a sidecar: {e}")))?;
    if record.format != REF_FORMAT {
        return Err(invalid(format!("unsupported format {}", record.format)));
    }
    if record.customer_id != customer_id {
        return Err(invalid(format!("belongs to customer {}", record.customer_id)));
    }
    if record.object.sha256 != record.sha256 || record.object.compression != record.compression {
        return Err(invalid("object key does not match sha256 and compression".into()));
    }
    match record.id() {
        Some(rid) if rid == *id => Ok(record),
        Some(rid) => Err(invalid(format!("content says it is {rid}, file name says {id}"))),
        None => Err(invalid("malformed path escape".into())),
    }
}

impl DirTarget {
    /// Opens (creating if needed) the location of `customer_id` under `base`. `base` itself
    /// must exist: it is the mount point or directory the administrator configured, and it
    /// is never created, so a missing mount is an error rather than a silent local copy.
    /// (An *empty* mount point of an unmounted file system cannot be told apart from a
    /// directory; the agent should check the mount.)
    pub fn open(base: &Path, customer_id: CustomerId) -> Result<DirTarget, Tier2Error> {
        let meta = fs::metadata(base).map_err(io_at("open target", base))?;
        if !meta.is_dir() {
            return Err(Tier2Error::Io {
                op: "open target",
                path: base.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let location = base.join(format!("customer-{customer_id}-tiered"));
        ensure_dir(&location)?;
        for sub in ["objects", "refs", "tmp"] {
            ensure_dir(&location.join(sub))?;
        }
        Ok(DirTarget { customer_id, location })
    }

    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }

    /// `<base>/customer-<customer_id>-tiered`
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Where the object named `key` lives (whether or not it exists).
    pub fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.location.join(key.rel_path())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.location.join("tmp")
    }

    fn refs_dir(&self) -> PathBuf {
        self.location.join("refs")
    }

    fn lock(&self, exclusive: bool) -> Result<LocationLock, Tier2Error> {
        let path = self.location.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_at("open lock", &path))?;
        let op = if exclusive { FlockOperation::LockExclusive } else { FlockOperation::LockShared };
        rustix::fs::flock(&file, op).map_err(errno_at("flock", &path))?;
        Ok(LocationLock { _file: file })
    }

    /// Stores the content of `reader` for the file described by `meta`.
    ///
    /// 1. Stream `reader` into `tmp/<random>.obj`, hashing the original bytes and, for
    ///    [`Compression::Zstd`], compressing them; stop reading as soon as more than
    ///    `meta.size` bytes arrived. `fsync`.
    /// 2. Refuse a length other than `meta.size` ([`Tier2Error::SizeMismatch`]) or a hash
    ///    other than `meta.expected_sha256` ([`Tier2Error::HashMismatch`]): the temporary is
    ///    deleted and nothing else changes. A failing `reader` gives [`Tier2Error::Source`],
    ///    likewise.
    /// 3. Under the shared location lock: if an object with this content exists (either
    ///    compression) and re-reads with the right hash, drop the temporary (dedupe). If the
    ///    object of our own name exists but is corrupt, replace it (repair). Else rename the
    ///    temporary to `objects/ab/<key>` and `fsync` the directory.
    /// 4. Write the sidecar the same way (temporary, `fsync`, rename, `fsync` directory).
    ///
    /// A reader of the location never sees a partial object or sidecar under its final name.
    /// A process killed at any point leaves at most garbage in `tmp/` (see
    /// [`DirTarget::cleanup_tmp`]) and, after step 3, an object without a sidecar, which the
    /// next put of the same content reuses.
    pub fn put<R: Read>(&self, mut reader: R, meta: &PutMeta) -> Result<PutOutcome, Tier2Error> {
        let path_bytes = put_path_bytes(meta)?;
        let tmp = TmpFile::create(&self.tmp_dir(), "obj")?;
        let sha256 = spool_into(&mut reader, &tmp.file, &tmp.path, meta)?;
        let size = meta.size;
        tmp.file.sync_all().map_err(io_at("fsync", &tmp.path))?;

        let _lock = self.lock(false)?;
        let ours = ObjectKey::new(sha256, meta.compression);
        let (key, deduplicated, repaired) = match self.verify(&ours) {
            Ok(()) => (ours, true, false),
            Err(Tier2Error::Corrupt { .. }) => {
                self.commit_object(tmp, &ours)?;
                (ours, false, true)
            }
            Err(Tier2Error::NotFound(_)) => {
                let other = ours.other_variant();
                match self.verify(&other) {
                    Ok(()) => (other, true, false),
                    // A corrupt other variant stays (its sidecars keep naming it and verify
                    // keeps flagging it); ours is stored beside it.
                    Err(Tier2Error::NotFound(_)) | Err(Tier2Error::Corrupt { .. }) => {
                        self.commit_object(tmp, &ours)?;
                        (ours, false, false)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let obj_path = self.object_path(&key);
        let stored_size = fs::metadata(&obj_path).map_err(io_at("stat", &obj_path))?.len();
        let record = RefRecord::for_put(self.customer_id, meta, size, sha256, key, stored_size);
        let ref_id = RefId::new(meta.host_id, sha256, &path_bytes);
        self.write_sidecar(&ref_id, &record)?;
        Ok(PutOutcome { record, ref_id, deduplicated, repaired })
    }

    fn commit_object(&self, tmp: TmpFile, key: &ObjectKey) -> Result<(), Tier2Error> {
        let dest = self.object_path(key);
        if let Some(shard) = dest.parent() {
            ensure_dir(shard)?;
        }
        tmp.commit(&dest)
    }

    fn write_sidecar(&self, id: &RefId, record: &RefRecord) -> Result<(), Tier2Error> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| Tier2Error::Io {
            op: "encode sidecar",
            path: id.rel_path(),
            source: io::Error::other(e),
        })?;
        let tmp = TmpFile::create(&self.tmp_dir(), "json")?;
        (&tmp.file).write_all(&body).map_err(io_at("write", &tmp.path))?;
        tmp.file.sync_all().map_err(io_at("fsync", &tmp.path))?;
        let dest = self.location.join(id.rel_path());
        if let Some(host_dir) = dest.parent() {
            ensure_dir(host_dir)?;
        }
        tmp.commit(&dest)
    }

    /// Re-reads the object, decompressing it, and checks that the bytes hash to its name:
    /// [`Tier2Error::Corrupt`] if not (or if it does not decompress), [`Tier2Error::NotFound`]
    /// if it does not exist.
    pub fn verify(&self, key: &ObjectKey) -> Result<(), Tier2Error> {
        self.get(key, io::sink()).map(drop)
    }

    /// Streams the original bytes of object `key` into `writer` and returns their number.
    ///
    /// The bytes are hashed on the way and the hash is checked only at the end, so **on
    /// [`Tier2Error::Corrupt`] the writer has already received bytes that are wrong**; nothing
    /// more is written after the error is detected. Callers must therefore write into a
    /// temporary (a temporary file, a buffer, or a stub through `alto_stub::recall`, which
    /// holds its own verification) and commit only when this returns `Ok`. A failing writer
    /// gives [`Tier2Error::Sink`].
    pub fn get<W: Write>(&self, key: &ObjectKey, writer: W) -> Result<u64, Tier2Error> {
        self.reader(key)?.drain(writer)
    }

    /// The original bytes of object `key` as a [`Read`] (pull instead of [`DirTarget::get`]'s
    /// push), for example as the source of `alto_stub::recall`. The same rule applies: the
    /// hash is known only at the end, so **the read that reaches the end fails** (with
    /// [`io::ErrorKind::InvalidData`] wrapping [`Tier2Error::Corrupt`]) instead of returning
    /// `Ok(0)` when the content is wrong, and every byte returned before must be treated as
    /// unverified until a read returned `Ok(0)`.
    pub fn reader(&self, key: &ObjectKey) -> Result<ObjectReader, Tier2Error> {
        let path = self.object_path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Tier2Error::NotFound(*key))
            }
            Err(e) => return Err(io_at("open", &path)(e)),
        };
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        ObjectReader::new(*key, Origin::Path(path), Box::new(file))
    }

    /// `len` bytes of the uncompressed object `key` from `offset` (`pread`; fewer only at
    /// its end). Unverified: the caller checks them against a [`ChunkManifest`].
    pub fn read_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Tier2Error> {
        use std::os::unix::fs::FileExt as _;
        if key.compression != Compression::None {
            return Err(Tier2Error::Config(format!("object {key} is compressed: no range reads")));
        }
        let path = self.object_path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Tier2Error::NotFound(*key))
            }
            Err(e) => return Err(io_at("open", &path)(e)),
        };
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(MAX_RANGE)];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_at("pread", &path)(e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Stores `m` under `chunks/` (temporary, `fsync`, rename, `fsync` directory).
    pub fn put_chunk_manifest(&self, m: &ChunkManifest) -> Result<(), Tier2Error> {
        let tmp = TmpFile::create(&self.tmp_dir(), "json")?;
        (&tmp.file).write_all(&m.encode()).map_err(io_at("write", &tmp.path))?;
        tmp.file.sync_all().map_err(io_at("fsync", &tmp.path))?;
        let dest = self.location.join(ChunkManifest::rel_key(&m.sha256, m.chunk_size));
        if let Some(shard) = dest.parent() {
            ensure_dir(&self.location.join("chunks"))?;
            ensure_dir(shard)?;
        }
        tmp.commit(&dest)
    }

    /// The stored bytes of the manifest of `sha256` at `chunk_size`; `None` if absent.
    pub fn read_chunk_manifest(
        &self,
        sha256: &Sha256Digest,
        chunk_size: u64,
    ) -> Result<Option<Vec<u8>>, Tier2Error> {
        let path = self.location.join(ChunkManifest::rel_key(sha256, chunk_size));
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at("read", &path)(e)),
        }
    }

    /// Deletes the manifests of `sha256` (every chunk size); returns how many.
    fn delete_chunk_manifests(&self, sha256: &Sha256Digest) -> Result<usize, Tier2Error> {
        let hex = sha256.to_hex();
        let shard = self.location.join("chunks").join(&hex[..2]);
        let entries = match fs::read_dir(&shard) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_at("read directory", &shard)(e)),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(io_at("read directory", &shard))?;
            let name = entry.file_name();
            if name.to_str().and_then(ChunkManifest::sha_of_name) != Some(*sha256) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at("delete", &entry.path())(e)),
            }
        }
        if n > 0 {
            sync_dir(&shard)?;
        }
        Ok(n)
    }

    /// The object holding content `sha256`, in whichever compression it exists (plain
    /// first), without verifying it.
    pub fn find_object(&self, sha256: &Sha256Digest) -> Option<ObjectKey> {
        [Compression::None, Compression::Zstd]
            .into_iter()
            .map(|c| ObjectKey::new(*sha256, c))
            .find(|k| self.object_path(k).is_file())
    }

    /// Reads one sidecar; `None` if it does not exist.
    pub fn read_ref(&self, id: &RefId) -> Result<Option<RefRecord>, Tier2Error> {
        let path = self.location.join(id.rel_path());
        match fs::read(&path) {
            Ok(body) => self.parse_sidecar(&path, &body, id).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at("read", &path)(e)),
        }
    }

    fn parse_sidecar(&self, path: &Path, body: &[u8], id: &RefId) -> Result<RefRecord, Tier2Error> {
        parse_sidecar(self.customer_id, path, body, id)
    }

    /// Walks `refs/` and returns every sidecar: enough to rebuild the stub registry from
    /// tier-2 alone. Sidecars that do not parse, belong elsewhere or sit under the wrong name
    /// are listed in `invalid` instead of failing the walk.
    pub fn list_refs(&self) -> Result<RefListing, Tier2Error> {
        let mut listing = RefListing::default();
        let refs = self.refs_dir();
        for entry in fs::read_dir(&refs).map_err(io_at("read directory", &refs))? {
            let entry = entry.map_err(io_at("read directory", &refs))?;
            let host_path = entry.path();
            let Some(host_id) = host_dir_id(&entry) else {
                listing
                    .invalid
                    .push(InvalidRef { path: host_path, reason: "not a host directory".into() });
                continue;
            };
            for file in fs::read_dir(&host_path).map_err(io_at("read directory", &host_path))? {
                let file = file.map_err(io_at("read directory", &host_path))?;
                let path = file.path();
                let id = file.file_name().to_str().and_then(|n| RefId::from_file_name(host_id, n));
                let Some(id) = id else {
                    listing.invalid.push(InvalidRef { path, reason: "not a sidecar name".into() });
                    continue;
                };
                let body = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
                    Err(e) => return Err(io_at("read", &path)(e)),
                };
                match self.parse_sidecar(&path, &body, &id) {
                    Ok(r) => listing.refs.push(r),
                    Err(Tier2Error::InvalidRef { path, reason }) => {
                        listing.invalid.push(InvalidRef { path, reason })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        listing.refs.sort_by_cached_key(|r| r.id());
        Ok(listing)
    }

    /// Deletes one sidecar; `false` if it did not exist. The object stays (see
    /// [`DirTarget::delete_object_if_unreferenced`]).
    pub fn delete_ref(&self, id: &RefId) -> Result<bool, Tier2Error> {
        let path = self.location.join(id.rel_path());
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at("delete", &path)(e)),
        }
    }

    /// Deletes the object `key` if no sidecar references it. Holds the location lock
    /// exclusively, so no put can be deduplicating onto the object meanwhile. Reads every
    /// host's sidecars whose name starts with the content hash; one that does not parse
    /// counts as a reference.
    pub fn delete_object_if_unreferenced(
        &self,
        key: &ObjectKey,
    ) -> Result<DeleteOutcome, Tier2Error> {
        let _lock = self.lock(true)?;
        let prefix = format!("{}.", key.sha256);
        let refs = self.refs_dir();
        let mut referenced = 0usize;
        for entry in fs::read_dir(&refs).map_err(io_at("read directory", &refs))? {
            let entry = entry.map_err(io_at("read directory", &refs))?;
            let Some(host_id) = host_dir_id(&entry) else { continue };
            let host_path = entry.path();
            for file in fs::read_dir(&host_path).map_err(io_at("read directory", &host_path))? {
                let file = file.map_err(io_at("read directory", &host_path))?;
                let name = file.file_name();
                let Some(name) = name.to_str().filter(|n| n.starts_with(&prefix)) else { continue };
                let path = file.path();
                let record = RefId::from_file_name(host_id, name).and_then(|id| {
                    let body = fs::read(&path).ok()?;
                    self.parse_sidecar(&path, &body, &id).ok()
                });
                match record {
                    Some(r) if r.object != *key => {}
                    _ => referenced += 1,
                }
            }
        }
        if referenced > 0 {
            return Ok(DeleteOutcome::Referenced(referenced));
        }
        let path = self.object_path(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                if key.compression == Compression::None {
                    self.delete_chunk_manifests(&key.sha256)?;
                }
                Ok(DeleteOutcome::Deleted)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(io_at("delete", &path)(e)),
        }
    }

    /// Number and stored bytes of the objects (temporaries and sidecars not counted).
    pub fn usage(&self) -> Result<Usage, Tier2Error> {
        let mut usage = Usage::default();
        let objects = self.location.join("objects");
        for shard in fs::read_dir(&objects).map_err(io_at("read directory", &objects))? {
            let shard = shard.map_err(io_at("read directory", &objects))?;
            let shard_path = shard.path();
            if !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            for obj in fs::read_dir(&shard_path).map_err(io_at("read directory", &shard_path))? {
                let obj = obj.map_err(io_at("read directory", &shard_path))?;
                let is_key =
                    obj.file_name().to_str().is_some_and(|n| n.parse::<ObjectKey>().is_ok());
                if !is_key {
                    continue;
                }
                match obj.metadata() {
                    Ok(m) if m.is_file() => {
                        usage.objects += 1;
                        usage.bytes += m.len();
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at("stat", &obj.path())(e)),
                }
            }
        }
        Ok(usage)
    }

    /// Whether the location is usable: creates, syncs and deletes a probe file in `tmp/`,
    /// and lists `objects/` and `refs/`.
    pub fn health(&self) -> Result<(), Tier2Error> {
        let probe = TmpFile::create(&self.tmp_dir(), "probe")?;
        (&probe.file).write_all(b"alto").map_err(io_at("write", &probe.path))?;
        probe.file.sync_all().map_err(io_at("fsync", &probe.path))?;
        let path = probe.path.clone();
        drop(probe);
        if path.exists() {
            return Err(Tier2Error::Io {
                op: "delete probe",
                path,
                source: io::Error::other("probe file still exists"),
            });
        }
        for sub in ["objects", "refs"] {
            let p = self.location.join(sub);
            fs::read_dir(&p).map_err(io_at("read directory", &p))?;
        }
        Ok(())
    }

    /// Deletes files in `tmp/` last modified before `older_than`, except those an active
    /// put (in any process) still holds locked; returns how many were deleted. What is left
    /// in `tmp/` is only ever garbage of a killed put: nothing under a final name refers to
    /// it.
    pub fn cleanup_tmp(&self, older_than: DateTime<Utc>) -> Result<usize, Tier2Error> {
        let dir = self.tmp_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_at("read directory", &dir))? {
            let entry = entry.map_err(io_at("read directory", &dir))?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at("stat", &path)(e)),
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().map_err(io_at("stat", &path))?;
            if DateTime::<Utc>::from(modified) >= older_than {
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at("open", &path)(e)),
            };
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => continue, // a live put
                Err(e) => return Err(errno_at("flock", &path)(e)),
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at("delete", &path)(e)),
            }
        }
        removed += self.cleanup_chunk_manifests(older_than)?;
        Ok(removed)
    }

    /// Deletes chunk manifests older than `older_than` whose plain object is gone (a
    /// deletion killed between the object and its manifests). A manifest is written after
    /// its object, so one younger than the cut-off may be one being written.
    fn cleanup_chunk_manifests(&self, older_than: DateTime<Utc>) -> Result<usize, Tier2Error> {
        let chunks = self.location.join("chunks");
        let shards = match fs::read_dir(&chunks) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_at("read directory", &chunks)(e)),
        };
        let mut removed = 0;
        for shard in shards {
            let shard = shard.map_err(io_at("read directory", &chunks))?;
            let shard_path = shard.path();
            if !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            for entry in fs::read_dir(&shard_path).map_err(io_at("read directory", &shard_path))? {
                let entry = entry.map_err(io_at("read directory", &shard_path))?;
                let Some(sha) = entry.file_name().to_str().and_then(ChunkManifest::sha_of_name)
                else {
                    continue;
                };
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| DateTime::<Utc>::from(t) < older_than);
                if old && !self.object_path(&ObjectKey::new(sha, Compression::None)).exists() {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_at("delete", &entry.path())(e)),
                    }
                }
            }
        }
        Ok(removed)
    }
}

fn host_dir_id(entry: &fs::DirEntry) -> Option<HostId> {
    if !entry.file_type().ok()?.is_dir() {
        return None;
    }
    host_id_of(entry.file_name().to_str()?)
}

/// The host id a `refs/` directory name spells (canonical form only).
pub(crate) fn host_id_of(name: &str) -> Option<HostId> {
    Some(HostId::from(uuid_parse(name)?))
}

/// Parses the canonical hyphenated lower-case form only (as `HostId` displays it).
fn uuid_parse(s: &str) -> Option<uuid::Uuid> {
    let u = uuid::Uuid::parse_str(s).ok()?;
    (u.hyphenated().to_string() == s).then_some(u)
}

/// Copies `reader` to `writer`, hashing, and stops once more than `limit` bytes arrived.
pub(crate) fn copy_hashing<R: Read, W: Write>(
    reader: &mut R,
    writer: &mut W,
    limit: u64,
    path: &Path,
) -> Result<(Sha256Digest, u64), Tier2Error> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Tier2Error::Source(e)),
        };
        total += n as u64;
        if total > limit {
            return Err(Tier2Error::SizeMismatch { expected: limit, actual: total });
        }
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n]).map_err(io_at("write", path))?;
    }
    Ok((Sha256Digest(hasher.finalize().into()), total))
}
