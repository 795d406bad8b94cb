//! The layout and rules of a customer location on a remote store (S3, Azure Blob, SMB): the
//! same objects, sidecars and guarantees as [`crate::DirTarget`], over a small key/value
//! interface ([`Store`]) that each backend implements.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use alto_model::CustomerId;
use chrono::{DateTime, Utc};

use crate::chunks::ChunkManifest;
use crate::dir::{host_id_of, parse_sidecar, put_path_bytes, spool_into, ObjectReader, Origin};
use crate::types::{
    Compression, DeleteOutcome, InvalidRef, ObjectKey, PutMeta, PutOutcome, RefId, RefListing,
    RefRecord, Sha256Digest, Usage,
};
use crate::Tier2Error;

/// One stored key under a customer location.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative to the customer location, `/`-separated (`objects/ab/<key>`).
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) modified: Option<DateTime<Utc>>,
}

/// What an upload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Uploaded {
    Created,
    /// `create_only` and the key existed: nothing was written.
    Existed,
}

/// The operations a remote backend offers, on keys relative to the customer location
/// (`objects/ab/<key>`, `refs/<host>/<name>.json`, `tmp/<name>`, `trash/<name>`). Every
/// method is blocking and safe to call from several threads.
pub(crate) trait Store: Send + Sync {
    /// `s3`, `azure` or `smb`.
    fn backend(&self) -> &'static str;
    /// The customer location, without secrets (`s3://bucket/prefix/customer-…-tiered`).
    fn display(&self) -> &str;
    /// Makes `len` bytes of `src` (positioned at its start) appear under `key` at once,
    /// complete or not at all. With `create_only`, an existing key is left alone (reported
    /// as [`Uploaded::Existed`]).
    fn upload(
        &self,
        key: &str,
        src: &mut File,
        len: u64,
        create_only: bool,
    ) -> Result<Uploaded, Tier2Error>;
    /// Atomically replaces `key` by `body`.
    fn put_small(&self, key: &str, body: Vec<u8>) -> Result<(), Tier2Error>;
    /// The stored bytes of `key`, streamed; `None` if it does not exist.
    fn open(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, Tier2Error>;
    /// `len` bytes of `key` from `offset` (fewer only at its end); `None` if it does not
    /// exist.
    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, Tier2Error>;
    /// The whole (small) content of `key`; `None` if it does not exist.
    fn read_small(&self, key: &str) -> Result<Option<Vec<u8>>, Tier2Error>;
    /// [`Store::read_small`] of many keys (backends may run them concurrently).
    fn read_many(&self, keys: Vec<String>) -> Vec<Result<Option<Vec<u8>>, Tier2Error>> {
        keys.iter().map(|k| self.read_small(k)).collect()
    }
    /// The stored size of `key`; `None` if it does not exist.
    fn head(&self, key: &str) -> Result<Option<u64>, Tier2Error>;
    /// Every key under the directory `dir` (`refs`, `objects`, `tmp`), recursively.
    fn list(&self, dir: &str) -> Result<Vec<Entry>, Tier2Error>;
    /// Deletes `key`; `false` if it did not exist.
    fn delete(&self, key: &str) -> Result<bool, Tier2Error>;
    /// Moves `from` to `to` (replacing it); `false` if `from` did not exist. Object stores
    /// copy on the server and then delete.
    fn rename(&self, from: &str, to: &str) -> Result<bool, Tier2Error>;
    /// A real round trip that fails on wrong credentials, a missing bucket, container or
    /// share, or an unreachable server.
    fn health(&self) -> Result<(), Tier2Error>;
}

/// Sidecar keys with their ids, and the entries under `refs/` that are not sidecars.
type RefEntries = (Vec<(String, RefId)>, Vec<InvalidRef>);

/// One customer's location on a remote store.
pub(crate) struct RemoteTarget {
    pub(crate) customer_id: CustomerId,
    pub(crate) store: Box<dyn Store>,
    /// Where puts spool (hash and compress) before uploading.
    pub(crate) spool_dir: PathBuf,
}

impl fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTarget")
            .field("backend", &self.store.backend())
            .field("location", &self.store.display())
            .field("customer_id", &self.customer_id)
            .finish()
    }
}

fn object_key(key: &ObjectKey) -> String {
    let hex = key.sha256.to_hex();
    format!("objects/{}/{key}", &hex[..2])
}

fn ref_key(id: &RefId) -> String {
    format!("refs/{}/{}", id.host_id, id.file_name())
}

fn random_name(suffix: &str) -> String {
    format!("{:032x}.{suffix}", rand::random::<u128>())
}

impl RemoteTarget {
    pub(crate) fn location(&self) -> &str {
        self.store.display()
    }

    fn url(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.store.display()))
    }

    /// See [`crate::DirTarget::put`]; the steps here:
    ///
    /// 1. Stream `reader` into an anonymous local spool file (hashing, compressing), refuse
    ///    a wrong size or hash. Nothing remote has been touched.
    /// 2. Dedupe: an existing object of either compression that re-reads with the right
    ///    hash is reused; one of our name that is corrupt is replaced (repair).
    /// 3. Else upload the spool under the final object name, create-only (one PUT or a
    ///    multipart upload that appears only on completion; SMB: `tmp/` then rename).
    /// 4. Write the sidecar (one PUT / `tmp/` then rename).
    /// 5. Check that the object still exists (a concurrent
    ///    [`RemoteTarget::delete_object_if_unreferenced`] may have removed it just before
    ///    our sidecar appeared) and upload it again if not.
    pub(crate) fn put<R: Read>(
        &self,
        mut reader: R,
        meta: &PutMeta,
    ) -> Result<PutOutcome, Tier2Error> {
        let path_bytes = put_path_bytes(meta)?;
        let mut spool = tempfile::tempfile_in(&self.spool_dir).map_err(|source| {
            Tier2Error::Io { op: "create spool file", path: self.spool_dir.clone(), source }
        })?;
        let sha256 = spool_into(&mut reader, &spool, &self.spool_dir, meta)?;
        let spooled = spool
            .metadata()
            .map_err(|source| Tier2Error::Io {
                op: "stat spool file",
                path: self.spool_dir.clone(),
                source,
            })?
            .len();

        let ours = ObjectKey::new(sha256, meta.compression);
        let (key, deduplicated, repaired) = match self.verify(&ours) {
            Ok(()) => (ours, true, false),
            Err(Tier2Error::Corrupt { .. }) => {
                self.upload_spool(&mut spool, spooled, &ours, false)?;
                (ours, false, true)
            }
            Err(Tier2Error::NotFound(_)) => {
                let other = ours.other_variant();
                match self.verify(&other) {
                    Ok(()) => (other, true, false),
                    Err(Tier2Error::NotFound(_)) | Err(Tier2Error::Corrupt { .. }) => {
                        match self.upload_spool(&mut spool, spooled, &ours, true)? {
                            Uploaded::Created => (ours, false, false),
                            // Someone else stored the same content meanwhile.
                            Uploaded::Existed => match self.verify(&ours) {
                                Ok(()) => (ours, true, false),
                                Err(Tier2Error::Corrupt { .. }) => {
                                    self.upload_spool(&mut spool, spooled, &ours, false)?;
                                    (ours, false, true)
                                }
                                Err(e) => return Err(e),
                            },
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let stored_size = if key == ours && !deduplicated {
            spooled
        } else {
            self.store.head(&object_key(&key))?.ok_or(Tier2Error::NotFound(key))?
        };
        let mut record =
            RefRecord::for_put(self.customer_id, meta, meta.size, sha256, key, stored_size);
        let ref_id = RefId::new(meta.host_id, sha256, &path_bytes);
        self.write_sidecar(&ref_id, &record)?;

        if self.store.head(&object_key(&key))?.is_none() {
            // Deleted between our dedupe check and our sidecar: store our bytes again.
            self.upload_spool(&mut spool, spooled, &ours, false)?;
            if key != ours {
                record.compression = ours.compression;
                record.object = ours;
                record.stored_size = spooled;
                self.write_sidecar(&ref_id, &record)?;
            }
            return Ok(PutOutcome { record, ref_id, deduplicated: false, repaired: false });
        }
        Ok(PutOutcome { record, ref_id, deduplicated, repaired })
    }

    fn upload_spool(
        &self,
        spool: &mut File,
        len: u64,
        key: &ObjectKey,
        create_only: bool,
    ) -> Result<Uploaded, Tier2Error> {
        spool.seek(SeekFrom::Start(0)).map_err(|source| Tier2Error::Io {
            op: "seek spool file",
            path: self.spool_dir.clone(),
            source,
        })?;
        self.store.upload(&object_key(key), spool, len, create_only)
    }

    fn write_sidecar(&self, id: &RefId, record: &RefRecord) -> Result<(), Tier2Error> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| Tier2Error::Io {
            op: "encode sidecar",
            path: id.rel_path(),
            source: io::Error::other(e),
        })?;
        self.store.put_small(&ref_key(id), body)
    }

    pub(crate) fn verify(&self, key: &ObjectKey) -> Result<(), Tier2Error> {
        self.reader(key)?.drain(io::sink()).map(drop)
    }

    pub(crate) fn reader(&self, key: &ObjectKey) -> Result<ObjectReader, Tier2Error> {
        let k = object_key(key);
        let raw = self.store.open(&k)?.ok_or(Tier2Error::NotFound(*key))?;
        let origin = Origin::Remote {
            backend: self.store.backend(),
            url: format!("{}/{k}", self.store.display()),
        };
        ObjectReader::new(*key, origin, raw)
    }

    /// See [`crate::Target::read_range`].
    pub(crate) fn read_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Tier2Error> {
        if key.compression != Compression::None {
            return Err(Tier2Error::Config(format!("object {key} is compressed: no range reads")));
        }
        self.store.read_range(&object_key(key), offset, len)?.ok_or(Tier2Error::NotFound(*key))
    }

    pub(crate) fn put_chunk_manifest(&self, m: &ChunkManifest) -> Result<(), Tier2Error> {
        self.store.put_small(&ChunkManifest::rel_key(&m.sha256, m.chunk_size), m.encode())
    }

    pub(crate) fn read_chunk_manifest(
        &self,
        sha256: &Sha256Digest,
        chunk_size: u64,
    ) -> Result<Option<Vec<u8>>, Tier2Error> {
        self.store.read_small(&ChunkManifest::rel_key(sha256, chunk_size))
    }

    /// Deletes the chunk manifests of content `sha256` (all chunk sizes).
    fn delete_chunk_manifests(&self, sha256: &Sha256Digest) -> Result<(), Tier2Error> {
        let hex = sha256.to_hex();
        for e in self.store.list(&format!("chunks/{}", &hex[..2]))? {
            let name = e.key.rsplit('/').next().unwrap_or_default();
            if ChunkManifest::sha_of_name(name) == Some(*sha256) {
                self.store.delete(&e.key)?;
            }
        }
        Ok(())
    }

    pub(crate) fn find_object(
        &self,
        sha256: &Sha256Digest,
    ) -> Result<Option<ObjectKey>, Tier2Error> {
        for c in [Compression::None, Compression::Zstd] {
            let k = ObjectKey::new(*sha256, c);
            if self.store.head(&object_key(&k))?.is_some() {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    pub(crate) fn read_ref(&self, id: &RefId) -> Result<Option<RefRecord>, Tier2Error> {
        let key = ref_key(id);
        match self.store.read_small(&key)? {
            Some(body) => parse_sidecar(self.customer_id, &self.url(&key), &body, id).map(Some),
            None => Ok(None),
        }
    }

    /// Every sidecar key under `refs/` with its id, and the entries that are not sidecars.
    fn ref_entries(&self) -> Result<RefEntries, Tier2Error> {
        let mut ids = Vec::new();
        let mut invalid = Vec::new();
        for e in self.store.list("refs")? {
            let parsed = e.key.strip_prefix("refs/").and_then(|rest| {
                let (host, name) = rest.split_once('/')?;
                RefId::from_file_name(host_id_of(host)?, name)
            });
            match parsed {
                Some(id) => ids.push((e.key, id)),
                None => invalid.push(InvalidRef {
                    path: self.url(&e.key),
                    reason: "not a sidecar name".into(),
                }),
            }
        }
        Ok((ids, invalid))
    }

    pub(crate) fn list_refs(&self) -> Result<RefListing, Tier2Error> {
        let (ids, invalid) = self.ref_entries()?;
        let mut listing = RefListing { refs: Vec::new(), invalid };
        let bodies = self.store.read_many(ids.iter().map(|(k, _)| k.clone()).collect());
        for ((key, id), body) in ids.into_iter().zip(bodies) {
            let Some(body) = body? else { continue }; // deleted meanwhile
            match parse_sidecar(self.customer_id, &self.url(&key), &body, &id) {
                Ok(r) => listing.refs.push(r),
                Err(Tier2Error::InvalidRef { path, reason }) => {
                    listing.invalid.push(InvalidRef { path, reason })
                }
                Err(e) => return Err(e),
            }
        }
        listing.refs.sort_by_cached_key(|r| r.id());
        Ok(listing)
    }

    pub(crate) fn delete_ref(&self, id: &RefId) -> Result<bool, Tier2Error> {
        self.store.delete(&ref_key(id))
    }

    /// Sidecars naming content `key.sha256` that reference `key` (one that does not parse
    /// counts).
    fn references(&self, key: &ObjectKey) -> Result<usize, Tier2Error> {
        let (ids, _) = self.ref_entries()?;
        let ids: Vec<_> = ids.into_iter().filter(|(_, id)| id.sha256 == key.sha256).collect();
        let bodies = self.store.read_many(ids.iter().map(|(k, _)| k.clone()).collect());
        let mut referenced = 0;
        for ((k, id), body) in ids.into_iter().zip(bodies) {
            let Some(body) = body? else { continue };
            match parse_sidecar(self.customer_id, &self.url(&k), &body, &id) {
                Ok(r) if r.object != *key => {}
                _ => referenced += 1,
            }
        }
        Ok(referenced)
    }

    /// Remote stores have no lock that puts and this could share, so deletion is
    /// optimistic and checked on both sides:
    ///
    /// 1. no sidecar may reference the object (else [`DeleteOutcome::Referenced`]);
    /// 2. the object is moved to `trash/<key>.<random>` (SMB: rename; object stores: copy on
    ///    the server, then delete);
    /// 3. the sidecars are checked again: if one appeared meanwhile (a put deduplicated onto
    ///    the object), the object is moved back and the outcome is `Referenced`;
    /// 4. the trash copy is deleted.
    ///
    /// A put checks, after writing its sidecar, that its object still exists and uploads
    /// it again from its spool otherwise, which covers a sidecar that appears after step 3.
    /// A deletion killed between steps 2 and 4 leaves the object in `trash/`, from where
    /// [`RemoteTarget::cleanup_tmp`] restores it if a sidecar references it.
    pub(crate) fn delete_object_if_unreferenced(
        &self,
        key: &ObjectKey,
    ) -> Result<DeleteOutcome, Tier2Error> {
        let referenced = self.references(key)?;
        if referenced > 0 {
            return Ok(DeleteOutcome::Referenced(referenced));
        }
        let obj = object_key(key);
        let trash = format!("trash/{}", random_name(&key.to_string()));
        if !self.store.rename(&obj, &trash)? {
            return Ok(DeleteOutcome::NotFound);
        }
        let referenced = match self.references(key) {
            Ok(n) => n,
            Err(e) => {
                // Unknown: put it back rather than risk it.
                self.restore(&trash, &obj)?;
                return Err(e);
            }
        };
        if referenced > 0 {
            self.restore(&trash, &obj)?;
            return Ok(DeleteOutcome::Referenced(referenced));
        }
        self.store.delete(&trash)?;
        if key.compression == Compression::None {
            self.delete_chunk_manifests(&key.sha256)?;
        }
        Ok(DeleteOutcome::Deleted)
    }

    fn restore(&self, trash: &str, obj: &str) -> Result<(), Tier2Error> {
        if self.store.head(obj)?.is_some() {
            // A put stored it again meanwhile.
            self.store.delete(trash)?;
            return Ok(());
        }
        self.store.rename(trash, obj).map(drop)
    }

    pub(crate) fn usage(&self) -> Result<Usage, Tier2Error> {
        let mut usage = Usage::default();
        for e in self.store.list("objects")? {
            let is_key = e
                .key
                .rsplit('/')
                .next()
                .is_some_and(|n| n.parse::<ObjectKey>().is_ok_and(|k| object_key(&k) == e.key));
            if is_key {
                usage.objects += 1;
                usage.bytes += e.size;
            }
        }
        Ok(usage)
    }

    pub(crate) fn health(&self) -> Result<(), Tier2Error> {
        self.store.health()
    }

    /// Deletes entries of `tmp/` (temporaries of killed SMB puts, health probes) last
    /// modified before `older_than`, and finishes deletions killed halfway: an object left
    /// in `trash/` before `older_than` goes back under its name if a sidecar references it
    /// and the object is missing, else it is deleted. Returns how many entries were removed
    /// or restored. (Puts to object stores spool locally, in an anonymous file that the
    /// kernel removes when the process dies, so they leave nothing remote.)
    pub(crate) fn cleanup_tmp(&self, older_than: DateTime<Utc>) -> Result<usize, Tier2Error> {
        let old = |e: &Entry| e.modified.is_some_and(|m| m < older_than);
        let mut removed = 0;
        for e in self.store.list("tmp")? {
            if old(&e) && self.store.delete(&e.key)? {
                removed += 1;
            }
        }
        for e in self.store.list("trash")? {
            if !old(&e) {
                continue;
            }
            let name = e.key.rsplit('/').next().unwrap_or_default();
            // `<32 hex>.<object key>`: the key is what follows the random part.
            let key = name.split_once('.').and_then(|(_, k)| k.parse::<ObjectKey>().ok());
            let Some(key) = key else { continue };
            if self.references(&key)? > 0 {
                self.restore(&e.key, &object_key(&key))?;
            } else {
                self.store.delete(&e.key)?;
            }
            removed += 1;
        }
        // Chunk manifests whose plain object is gone (a deletion killed between the object
        // and its manifests).
        for e in self.store.list("chunks")? {
            let name = e.key.rsplit('/').next().unwrap_or_default();
            let Some(sha) = ChunkManifest::sha_of_name(name) else { continue };
            let plain = object_key(&ObjectKey::new(sha, Compression::None));
            if old(&e) && self.store.head(&plain)?.is_none() && self.store.delete(&e.key)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `true` for a location prefix that is safe in every backend's key syntax.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    })
}

/// `<prefix>/customer-<id>-tiered` (or without the prefix).
pub(crate) fn customer_root(prefix: &str, customer_id: CustomerId) -> String {
    if prefix.is_empty() {
        format!("customer-{customer_id}-tiered")
    } else {
        format!("{prefix}/customer-{customer_id}-tiered")
    }
}

/// Shorthand for a remote failure; the class and HTTP status are what the backend's typed
/// error says ([`crate::classify::Cause`]).
#[allow(clippy::needless_pass_by_value)] // callers hand their error over
pub(crate) fn unavailable(
    backend: &'static str,
    op: &'static str,
    location: impl Into<String>,
    reason: impl crate::classify::Cause,
) -> Tier2Error {
    Tier2Error::Unavailable {
        backend,
        op,
        location: location.into(),
        class: reason.class(),
        http_status: reason.http_status(),
        reason: reason.to_string(),
    }
}
