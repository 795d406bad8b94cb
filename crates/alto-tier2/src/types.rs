//! Names and records: digests, object keys, reference ids, the sidecar.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use alto_model::{CustomerId, HostId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::Tier2Error;

/// The sidecar format this crate writes and the only one it reads.
pub const REF_FORMAT: u32 = 1;

/// A SHA-256 digest. Text form: 64 lower-case hex digits (strictly; upper case is refused so
/// that one digest has one spelling, in file names too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lower-case hex digits.
    pub fn from_hex(s: &str) -> Option<Sha256Digest> {
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut d = [0u8; 32];
        hex::decode_to_slice(s, &mut d).ok()?;
        Some(Sha256Digest(d))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Digest::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

pub use alto_model::Compression;

/// Names one stored object: the SHA-256 of the *original* bytes plus how they are stored.
///
/// Text form (in sidecars, stub attributes and file names): `<sha256 hex>` for a plain object,
/// `<sha256 hex>.zst` for a zstd one. The compression is part of the name so that an object is
/// self-describing without its sidecars: a reader knows how to decode it from its name alone,
/// and never has to guess from magic bytes (an uncompressed `.zst` file starts with them too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub sha256: Sha256Digest,
    pub compression: Compression,
}

impl ObjectKey {
    pub fn new(sha256: Sha256Digest, compression: Compression) -> ObjectKey {
        ObjectKey { sha256, compression }
    }

    /// The same content stored the other way.
    pub fn other_variant(&self) -> ObjectKey {
        let compression = match self.compression {
            Compression::None => Compression::Zstd,
            Compression::Zstd => Compression::None,
        };
        ObjectKey { sha256: self.sha256, compression }
    }

    /// The object's path relative to the customer location: `objects/<first 2 hex>/<key>`.
    pub fn rel_path(&self) -> PathBuf {
        let hex = self.sha256.to_hex();
        PathBuf::from("objects").join(&hex[..2]).join(self.to_string())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.compression {
            Compression::None => write!(f, "{}", self.sha256),
            Compression::Zstd => write!(f, "{}.zst", self.sha256),
        }
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({self})")
    }
}

impl FromStr for ObjectKey {
    type Err = Tier2Error;

    fn from_str(s: &str) -> Result<ObjectKey, Tier2Error> {
        let (hex, compression) = match s.strip_suffix(".zst") {
            Some(h) => (h, Compression::Zstd),
            None => (s, Compression::None),
        };
        let sha256 = Sha256Digest::from_hex(hex).ok_or_else(|| Tier2Error::InvalidKey(s.into()))?;
        Ok(ObjectKey { sha256, compression })
    }
}

impl Serialize for ObjectKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Identifies one sidecar: `refs/<host_id>/<sha256 hex>.<path hash>.json`, where the path
/// hash is the first 8 bytes (16 hex digits) of the SHA-256 of the original path's bytes
/// (decoded, see [`PutMeta::path`]). One sidecar per (host, path, content): storing a new
/// version of a file adds a sidecar, storing the same version again replaces its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RefId {
    pub host_id: HostId,
    pub sha256: Sha256Digest,
    pub path_hash: [u8; 8],
}

impl RefId {
    /// The id for content `sha256` of the file at `path` (its raw bytes) on `host_id`.
    pub fn new(host_id: HostId, sha256: Sha256Digest, path: &[u8]) -> RefId {
        let full = Sha256Digest::of(path).0;
        let mut path_hash = [0u8; 8];
        path_hash.copy_from_slice(&full[..8]);
        RefId { host_id, sha256, path_hash }
    }

    /// `<sha256 hex>.<16 hex>.json`
    pub fn file_name(&self) -> String {
        format!("{}.{}.json", self.sha256, hex::encode(self.path_hash))
    }

    /// The sidecar's path relative to the customer location.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from("refs").join(self.host_id.to_string()).join(self.file_name())
    }

    /// Parses a sidecar file name in the directory of `host_id`.
    pub fn from_file_name(host_id: HostId, name: &str) -> Option<RefId> {
        let rest = name.strip_suffix(".json")?;
        let (sha, ph) = rest.split_once('.')?;
        let sha256 = Sha256Digest::from_hex(sha)?;
        if ph.len() != 16 || !ph.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut path_hash = [0u8; 8];
        hex::decode_to_slice(ph, &mut path_hash).ok()?;
        Some(RefId { host_id, sha256, path_hash })
    }
}

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.host_id, self.sha256, hex::encode(self.path_hash))
    }
}

/// What the caller knows about the file it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMeta {
    pub host_id: HostId,
    /// The original path exactly as the scan batch spells it: UTF-8 as is, or with
    /// `alto-batch`'s escape (`\xHH`, `\\`) when `path_escaped`. Stored unchanged.
    pub path: String,
    pub path_escaped: bool,
    /// The size the caller expects; any other length is refused.
    pub size: u64,
    pub mtime_ns: i64,
    pub atime_ns: i64,
    /// If given, any other content is refused.
    pub expected_sha256: Option<Sha256Digest>,
    /// How to store a *new* object. A put that dedupes onto an existing object keeps that
    /// object's compression, and its sidecar says so.
    pub compression: Compression,
    /// When the reference was made (the caller's clock).
    pub created_at: DateTime<Utc>,
}

/// The sidecar: one stored file reference, self-describing, so the registry can be rebuilt
/// from tier-2 alone ([`crate::DirTarget::list_refs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefRecord {
    /// [`REF_FORMAT`].
    pub format: u32,
    pub customer_id: CustomerId,
    pub host_id: HostId,
    /// As given in [`PutMeta::path`].
    pub path: String,
    pub path_escaped: bool,
    pub size: u64,
    pub mtime_ns: i64,
    pub atime_ns: i64,
    pub sha256: Sha256Digest,
    /// How the referenced object is stored (the object key says the same).
    pub compression: Compression,
    /// Bytes the object occupies in tier-2.
    pub stored_size: u64,
    pub object: ObjectKey,
    pub created_at: DateTime<Utc>,
}

impl RefRecord {
    /// The sidecar of a put of `meta` for `customer_id`: `size` bytes hashing to `sha256`,
    /// stored as `object` in `stored_size` bytes (with the object's compression). The one
    /// place every backend makes its sidecar.
    pub fn for_put(
        customer_id: CustomerId,
        meta: &PutMeta,
        size: u64,
        sha256: Sha256Digest,
        object: ObjectKey,
        stored_size: u64,
    ) -> Self {
        RefRecord {
            format: REF_FORMAT,
            customer_id,
            host_id: meta.host_id,
            path: meta.path.clone(),
            path_escaped: meta.path_escaped,
            size,
            mtime_ns: meta.mtime_ns,
            atime_ns: meta.atime_ns,
            sha256,
            compression: object.compression,
            stored_size,
            object,
            created_at: meta.created_at,
        }
    }

    /// The original path's bytes, `None` if the escape is malformed.
    pub fn path_bytes(&self) -> Option<Vec<u8>> {
        alto_batch::decode_path(&self.path, self.path_escaped)
    }

    /// The id of this record's sidecar, `None` if the path escape is malformed.
    pub fn id(&self) -> Option<RefId> {
        Some(RefId::new(self.host_id, self.sha256, &self.path_bytes()?))
    }
}

/// What [`crate::DirTarget::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The sidecar as written.
    pub record: RefRecord,
    pub ref_id: RefId,
    /// An object with this content existed and verified; the new bytes were dropped.
    pub deduplicated: bool,
    /// An object of this name existed but failed verification; the new bytes replaced it.
    pub repaired: bool,
}

impl PutOutcome {
    pub fn key(&self) -> ObjectKey {
        self.record.object
    }
}

/// Space used by objects (temporary files and sidecars excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
}

/// What [`crate::DirTarget::delete_object_if_unreferenced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Still referenced by this many sidecars (an unreadable sidecar whose name matches
    /// counts as a reference); nothing was deleted.
    Referenced(usize),
    NotFound,
}

/// A sidecar (or stray file under `refs/`) that [`crate::DirTarget::list_refs`] could not
/// accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRef {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything under `refs/`.
#[derive(Debug, Clone, Default)]
pub struct RefListing {
    /// Valid sidecars, ordered by host, content hash and path hash.
    pub refs: Vec<RefRecord>,
    pub invalid: Vec<InvalidRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_round_trip() {
        let d = Sha256Digest::of(b"hello");
        assert_eq!(d.to_hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        for c in [Compression::None, Compression::Zstd] {
            let k = ObjectKey::new(d, c);
            assert_eq!(k.to_string().parse::<ObjectKey>().unwrap(), k);
        }
        assert_eq!(
            ObjectKey::new(d, Compression::Zstd).rel_path(),
            PathBuf::from(format!("objects/2c/{d}.zst"))
        );
        for bad in
            ["", "2cf2", &d.to_hex().to_uppercase(), &format!("{d}.gz"), &format!("{d}.zst.zst")]
        {
            assert!(bad.parse::<ObjectKey>().is_err(), "{bad}");
        }
        let host = HostId::new();
        let id = RefId::new(host, d, b"/srv/a");
        assert_eq!(RefId::from_file_name(host, &id.file_name()), Some(id));
        assert!(RefId::from_file_name(host, "x.json").is_none());
        assert_eq!(id.file_name().len(), 64 + 1 + 16 + 5);
    }
}
