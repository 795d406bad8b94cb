//! Tier-2 object storage: where the content of tiered files lives, and the record of which
//! file each object belongs to.
//!
//! Four backends keep the same layout and rules: [`DirTarget`], a local or mounted
//! directory (NFS, a USB disk, a second volume); S3-compatible object storage; Azure Blob
//! storage; and SMB shares. [`Target`] is any of them, opened from a [`TargetSpec`] (the
//! `kind`, `location` and `config` of a storage target) and a customer id; its methods are
//! the directory target's, blocking, callable from plain threads and from tokio's
//! `spawn_blocking` threads.
//!
//! **Must never:** expose a partial object or sidecar under its final name; keep bytes that
//! failed the caller's expected size or hash; delete an object that a sidecar references;
//! hand out content without checking its hash; read the clock (times are parameters); talk
//! to a database, or to any network but the configured target's; create the target's base
//! (directory, bucket, container, share or base path: a missing one must be an error, not a
//! silent copy elsewhere); print a secret (`Debug` of specs, configs and targets redacts
//! them, errors never contain them).
//!
//! # Layout
//!
//! ```text
//! <base>/customer-<customer_id>-tiered/
//!   objects/ab/<sha256 hex>          plain copy of the original bytes
//!   objects/ab/<sha256 hex>.zst      zstd-compressed copy
//!   refs/<host_id>/<sha256 hex>.<16 hex of sha256(original path)>.json   one sidecar per stored file
//!   tmp/<random>.*                   in-flight puts (and garbage of killed ones); health probes
//!   chunks/ab/<sha256 hex>.<chunk size>.json   chunk manifests of large plain objects ([`chunks`])
//!   lock                             directory only — flock: puts shared, object deletion exclusive
//!   trash/<random>.<object key>      object stores and SMB only — objects being deleted
//! ```
//!
//! `<base>` per backend:
//!
//! | kind | `<base>` | the customer location, e.g. |
//! |---|---|---|
//! | `directory` | the directory `location` | `/mnt/tier2/customer-…-tiered/` |
//! | `s3` | bucket and optional key prefix of `s3://<bucket>[/<prefix>]` | keys `site-a/customer-…-tiered/objects/…` in bucket `tier` |
//! | `azure` | container and optional prefix of `azure://<container>[/<prefix>]` | blobs `customer-…-tiered/objects/…` in container `tier` |
//! | `smb` | share and optional base path of `smb://<server>[:<port>]/<share>[/<base>]` | `\\fs1\tier2\alto\customer-…-tiered\objects\…` |
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
//! time. [`Target::list_refs`] reads them all back, so the stub registry can be rebuilt
//! from tier-2 alone. On every backend the sidecar is a JSON object (file or blob) of the
//! same format (`format` is [`REF_FORMAT`]; unknown fields are refused):
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
//! # Target specs
//!
//! A [`TargetSpec`] is `{"kind", "location", "config"}`, deserialisable from the storage
//! target row. Config fields are checked strictly (unknown ones are refused);
//! [`TargetSpec::validate`] checks without connecting, [`TargetSpec::redacted_config`]
//! hides the secrets (`secret_access_key`, `access_key`, `password`). [`OpenOptions`] holds
//! the local settings (spool directory, multipart sizes, timeouts).
//!
//! ```json
//! {"kind": "directory", "location": "/mnt/tier2", "config": {}}
//!
//! {"kind": "s3", "location": "s3://tier/site-a",
//!  "config": {"endpoint": "http://127.0.0.1:9000", "region": "us-east-1",
//!             "access_key_id": "AK…", "secret_access_key": "…",
//!             "allow_http": true, "path_style": true}}
//!
//! {"kind": "azure", "location": "azure://tier",
//!  "config": {"account": "acme", "access_key": "<base64 shared key>"}}
//! {"kind": "azure", "location": "azure://tier",
//!  "config": {"account": "devstoreaccount1", "access_key": "<Azurite's key>",
//!             "endpoint": "http://127.0.0.1:10000/devstoreaccount1", "allow_http": true}}
//! {"kind": "azure", "location": "azure://tier", "config": {"use_emulator": true}}
//!
//! {"kind": "smb", "location": "smb://fs1.example.com:445/tier2/alto",
//!  "config": {"username": "alto", "password": "…", "workgroup": "WORKGROUP"}}
//! ```
//!
//! * `s3` ([`S3Config`]): `endpoint` absent means AWS; `region` defaults to `us-east-1`;
//!   `allow_http` permits a plain-HTTP endpoint; `path_style` sends `endpoint/bucket/key`
//!   (most S3-compatible servers) instead of `bucket.endpoint/key`. Credentials are
//!   required (no environment or instance-metadata lookup).
//! * `azure` ([`AzureConfig`]): `account` and `access_key` (the shared key) are required
//!   unless `use_emulator`, which means Azurite at `$AZURITE_BLOB_STORAGE_URL` (default
//!   `http://127.0.0.1:10000`) with its well-known account and key; `endpoint` overrides the
//!   account URL (`https://<account>.blob.core.windows.net`).
//! * `smb` ([`SmbConfig`]): `username` and `password` are required, `workgroup` defaults to
//!   `WORKGROUP`; the port in the location defaults to 445. The share and base path must
//!   exist; `customer-…-tiered` and its directories are created.
//!
//! # Guarantees
//!
//! * **Atomic names.** A reader sees a complete object or sidecar or none:
//!   * directory: written to `tmp/`, `fsync`ed, renamed into place, directory `fsync`ed;
//!   * S3 and Azure: one PUT for objects up to [`OpenOptions::multipart_threshold`] stored
//!     bytes (default 32 MiB), else a multipart upload (S3) or block list (Azure), which
//!     the store makes visible only on completion (an aborted one is discarded); sidecars
//!     are one PUT;
//!   * SMB: written to `tmp/<random>.part`, closed, renamed into place. (Replacing an
//!     existing name, which only repairs and re-puts of a sidecar do, may be done by
//!     libsmbclient as delete-then-rename; SMB offers no `fsync`: durability is the
//!     server's, e.g. Samba's `strict sync`.)
//! * **Verified puts.** `put` hashes while it streams and refuses a length or hash other
//!   than the caller's ([`Tier2Error::SizeMismatch`], [`Tier2Error::HashMismatch`]) before
//!   anything exists under a final name. Remote backends (S3, Azure, SMB) first spool the
//!   (compressed) bytes into an anonymous local file in [`OpenOptions::spool_dir`] while
//!   hashing, so nothing remote is touched until the content is known good, and the object
//!   is uploaded directly under its final, content-addressed name. New objects are
//!   uploaded create-only (`If-None-Match: *` on S3 and Azure; on SMB and for multipart
//!   uploads a check just before: what appears meanwhile has the same name, so the same
//!   content). Deduplication re-reads and re-hashes the existing object first; an existing
//!   object of the same name that fails is replaced (`repaired`).
//! * **Verified reads.** `get`, `reader` and `verify` hash everything they read (after
//!   decompression) and fail with [`Tier2Error::Corrupt`] on a mismatch, on every backend.
//!   `get` can only know at the end: write into a temporary and commit only on `Ok`.
//! * **Crash safety.** A killed put leaves at most a temporary (directory: in `tmp/`,
//!   removed by `cleanup_tmp`, which skips temporaries still locked by a live put; SMB: in
//!   `tmp/`, removed by `cleanup_tmp` once older than its cut-off; S3 and Azure: only the
//!   local spool, which the kernel removes with the process, and an incomplete multipart
//!   upload, which never becomes visible and which a bucket lifecycle rule should expire)
//!   and possibly an object without a sidecar, which the next put of that content reuses.
//!   The agent must not punch a file before `put` returned `Ok` *and* it verified the
//!   object.
//! * **Safe deletion.** `delete_object_if_unreferenced` deletes an object only when no
//!   sidecar references it.
//!   * Directory: under an exclusive `flock` that puts take shared from their dedupe check
//!     until their sidecar is written. `flock` works across processes on a local file
//!     system and over NFSv4; on file systems without working locks, run one agent per
//!     location.
//!   * S3, Azure, SMB have no such lock, so both sides check: the deleter checks the
//!     sidecars, moves the object to `trash/` (SMB: rename; object stores: server-side copy,
//!     then delete), checks the sidecars **again** and moves the object back if one
//!     appeared; a put checks after writing its sidecar that its object still exists and
//!     uploads it again from its spool if not. Every interleaving ends with the object
//!     present while a sidecar names it; what remains is a short window in which a
//!     concurrent put's own `verify` can find the object missing (the agent then does not
//!     stub and retries). A deletion killed halfway leaves the object in `trash/`;
//!     `cleanup_tmp` puts it back if a sidecar references it and deletes it otherwise. The
//!     reference check lists every sidecar of the customer (object stores cannot list by
//!     partial name), so deletions should be batched by a garbage collector. Server-side
//!     copy limits the deletable size on S3 to 5 GiB (larger ones fail and stay).
//! * **Blocking API over async clients.** S3 and Azure go through `object_store` on one
//!   small process-wide tokio runtime (two threads); calls hand their futures to it and
//!   wait on a channel, so they work from plain threads and from `spawn_blocking` (never a
//!   nested `block_on`). SMB goes through libsmbclient (`pavao`), whose calls are
//!   serialised process-wide.
//!
//! # Tests
//!
//! `tests/backends.rs` runs one body against every backend through [`Target`], each with a
//! real server on a free 127.0.0.1 port in a temporary directory: Samba's `smbd`, Azurite,
//! moto (S3; keeps data in memory and accepts any credentials) and s3s-fs (S3 with SigV4
//! checks, for credentials and missing buckets: it cannot store keys as long as a
//! sidecar's). `scripts/test-services.sh install` installs them into `.tools/` and via apt;
//! a missing one skips its test, or fails it when `ALTO_REQUIRE_TEST_SERVICES=1`.
//!
//! # Errors
//!
//! A directory target's storage failures are [`Tier2Error::Io`]; a remote target's are
//! [`Tier2Error::Unavailable`] (backend, operation, key or URL without secrets, reason);
//! [`Tier2Error::is_storage_failure`] covers both. A missing object is
//! [`Tier2Error::NotFound`] everywhere. [`classify()`] says what kind of failure an error is
//! ([`FailureClass`], with a stable code), from the backends' typed errors where they give
//! them ([`classify`] module).
//!
//! # Validation
//!
//! The [`validate`] module describes each kind's config fields (name, type, required,
//! secret) and checks a target's `kind`, `location` and `config` as an API receives them,
//! with a typed error naming the field at fault ([`validate::SpecError`]).

pub mod chunks;
pub mod classify;
mod dir;
mod objstore;
mod remote;
#[cfg(feature = "smb")]
mod smb;
mod target;
mod types;
pub mod validate;

use std::io;
use std::path::PathBuf;

pub use chunks::{ChunkHasher, ChunkManifest, ManifestError};
pub use classify::{classify, Failure, FailureClass};
pub use dir::{DirTarget, ObjectReader, ZSTD_LEVEL};
pub use target::{
    AddressCheck, AddressFilter, AzureConfig, OpenOptions, S3Config, Secret, SmbConfig, Target,
    TargetKind, TargetSpec, ADDRESS_REFUSED,
};
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
    /// A remote target (S3, Azure Blob, SMB) failed: unreachable, wrong credentials, missing
    /// bucket, container or share, a server error, or a connection lost mid-transfer.
    /// `location` is the key or URL without secrets. `class` and `http_status` are what the
    /// backend's typed error said, if anything (see [`classify()`], which falls back to
    /// `reason`).
    #[error("{backend} {op} {location}: {reason}")]
    Unavailable {
        backend: &'static str,
        op: &'static str,
        location: String,
        reason: String,
        class: Option<FailureClass>,
        http_status: Option<u16>,
    },
    /// A target specification that cannot be used (malformed location, unknown or missing
    /// config field). Never contains a secret.
    #[error("invalid target configuration: {0}")]
    Config(String),
}

impl Tier2Error {
    /// Whether the storage itself failed (as opposed to the data, the caller's source or
    /// sink, or a bad argument): [`Tier2Error::Io`] and [`Tier2Error::Unavailable`].
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, Tier2Error::Io { .. } | Tier2Error::Unavailable { .. })
    }
}
