//! Tier-2 object storage: where the content of tiered files lives, and the record of which
//! file each object belongs to.
//!
//! The first backend, [`DirTarget`], is a local or mounted directory (NFS, a USB disk, a
//! second volume). SMB, S3 and Azure Blob follow with the same layout and rules.
//!
//! **Must never:** expose a partial object or sidecar under its final name; keep bytes that
//! failed the caller's expected size or hash; delete an object that a sidecar references;
//! hand out content without checking its hash; read the clock (times are parameters); talk
//! to a database or the network (the directory may be a network mount, that is the
//! administrator's business); create the target's base directory (a missing mount must be an
//! error, not a silent copy on the local disk).
//!
//! # Layout
//!
//! ```text
//! <base>/customer-<customer_id>-tiered/
//!   objects/ab/<sha256 hex>          plain copy of the original bytes
//!   objects/ab/<sha256 hex>.zst      zstd-compressed copy
//!   refs/<host_id>/<sha256 hex>.<16 hex of sha256(original path)>.json   one sidecar per stored file
//!   tmp/<random>.obj|.json           in-flight puts (and garbage of killed ones)
//!   lock                             flock: puts shared, object deletion exclusive
//! ```
//!
//! *Objects* are content-addressed by the SHA-256 of the **original** bytes, so identical
//! content of one customer is stored once, whatever path or host it came from, and an
//! object's name is also its checksum. `ab` is the first two hex digits (256 shards). The
//! compression is part of the name ([`ObjectKey`]: `.zst` suffix) so that an object can be
//! decoded from its name alone; the content hash is the same either way, and a put dedupes
//! onto an existing object of either compression (the sidecar then records the existing
//! object's compression, not the requested one).
//!
//! *Sidecars* make tier-2 self-describing: each names the customer, host, original path (as
//! the scan batch spells it, with its escape flag, so non-UTF-8 names survive), size, mtime
//! and atime in nanoseconds, SHA-256, compression, stored size, object key and creation
//! time. [`DirTarget::list_refs`] reads them all back, so the stub registry can be rebuilt
//! from tier-2 alone. Example (`format` is [`REF_FORMAT`]; unknown fields are refused):
//!
//! ```json
//! {
//!   "format": 1,
//!   "customer_id": "0190f5c4-8e9a-7c3e-b1a2-3d4e5f607182",
//!   "host_id": "0190f5c4-9d10-7000-8000-00000000a001",
//!   "path": "/srv/share/Q3 report.pdf",
//!   "path_escaped": false,
//!   "size": 1048576,
//!   "mtime_ns": 1500000000987654321,
//!   "atime_ns": 1600000000123456789,
//!   "sha256": "…64 hex…",
//!   "compression": "zstd",
//!   "stored_size": 312001,
//!   "object": "…64 hex….zst",
//!   "created_at": "2026-06-01T12:00:00Z"
//! }
//! ```
//!
//! # Guarantees
//!
//! * **Atomic names.** Objects and sidecars are written to `tmp/`, `fsync`ed, renamed into
//!   place and the directory is `fsync`ed. A reader sees a complete file or none.
//! * **Verified puts.** [`DirTarget::put`] hashes while it streams and refuses a length or
//!   hash other than the caller's ([`Tier2Error::SizeMismatch`], [`Tier2Error::HashMismatch`])
//!   before anything but its temporary exists. Deduplication re-reads and re-hashes the
//!   existing object first; an existing object of the same name that fails is replaced
//!   (`repaired`).
//! * **Verified reads.** [`DirTarget::get`] and [`DirTarget::verify`] hash everything they
//!   read (after decompression) and fail with [`Tier2Error::Corrupt`] on a mismatch. `get`
//!   can only know at the end: write into a temporary and commit only on `Ok`.
//! * **Crash safety.** A killed put leaves at most a temporary (removed by
//!   [`DirTarget::cleanup_tmp`], which skips temporaries still locked by a live put) and
//!   possibly an object without a sidecar, which the next put of that content reuses. The
//!   agent must not punch a file before `put` returned `Ok` *and* it verified the object.
//! * **Safe deletion.** [`DirTarget::delete_object_if_unreferenced`] deletes an object only
//!   when no sidecar references it, under an exclusive `flock` that puts take shared from
//!   their dedupe check until their sidecar is written. `flock` works across processes on a
//!   local file system and over NFSv4; on file systems without working locks, run one agent
//!   per location.

mod dir;
mod types;

use std::io;
use std::path::PathBuf;

pub use dir::{DirTarget, ObjectReader, ZSTD_LEVEL};
pub use types::{
    Compression, DeleteOutcome, InvalidRef, ObjectKey, PutMeta, PutOutcome, RefId, RefListing,
    RefRecord, Sha256Digest, Usage, REF_FORMAT,
};

/// Errors of tier-2 operations.
#[derive(Debug, thiserror::Error)]
pub enum Tier2Error {
    /// The storage failed (unavailable mount, permissions, disk full, …).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The reader given to `put` failed. Nothing was stored.
    #[error("reading the source failed: {0}")]
    Source(#[source] io::Error),
    /// The writer given to `get` failed.
    #[error("writing the output failed: {0}")]
    Sink(#[source] io::Error),
    /// `put` read another number of bytes than expected (when the source is longer, `actual`
    /// is where reading stopped). Nothing was stored.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    /// `put` read content with another hash than expected. Nothing was stored.
    #[error("hash mismatch: expected sha256 {expected}, content hashes to {actual}")]
    HashMismatch { expected: Sha256Digest, actual: Sha256Digest },
    /// A stored object does not hash to its name (`actual: None`: it does not even
    /// decompress).
    #[error("object {key} is corrupt: expected sha256 {expected}, stored content {}",
        .actual.map(|a| format!("hashes to {a}")).unwrap_or_else(|| "does not decompress".into()))]
    Corrupt { key: ObjectKey, expected: Sha256Digest, actual: Option<Sha256Digest> },
    #[error("object {0} not found")]
    NotFound(ObjectKey),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("invalid original path: {0}")]
    InvalidPath(&'static str),
    /// A sidecar that is not one this crate wrote for this location.
    #[error("invalid sidecar {path}: {reason}")]
    InvalidRef { path: PathBuf, reason: String },
}
