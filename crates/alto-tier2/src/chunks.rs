//! Chunk manifests: the SHA-256 of every fixed-size chunk of an object's original bytes, so
//! that a range of an uncompressed object can be read from tier-2 and verified on its own
//! (range-first recall of large stubs).
//!
//! A manifest is stored beside the objects, under `chunks/ab/<sha256 hex>.<chunk size>.json`
//! (`ab`: the first two hex digits, as for objects). Its name depends only on the content and
//! the chunk size, so every file with that content and chunk size shares one manifest, and
//! writing it again writes the same bytes. It is JSON with strict fields:
//!
//! ```json
//! {"format":1,"size":1073741824,"chunk_size":1048576,"sha256":"…64 hex…","chunks":"…64 hex per chunk…"}
//! ```
//!
//! A manifest alone proves nothing (tier-2 is not trusted more than the object): the stub
//! attribute records the SHA-256 of the manifest's exact bytes, and a reader refuses a
//! manifest whose bytes hash otherwise ([`ChunkManifest::parse_bound`]).
//!
//! Manifests are not objects: [`crate::Target::usage`] does not count them (like sidecars),
//! reconciliation never sees them (it lists `objects/` and `refs/`), the deletion of the
//! plain object deletes them, and [`crate::Target::cleanup_tmp`] deletes any whose plain
//! object no longer exists.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::types::Sha256Digest;

/// The manifest format this crate writes and reads.
pub const CHUNK_MANIFEST_FORMAT: u32 = 1;
/// Smallest accepted chunk size (64 KiB).
pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
/// Largest accepted chunk size (1 GiB).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
/// Most chunks one manifest may list (the chunk size grows for larger files, see
/// [`chunk_size_for`]).
pub const MAX_CHUNKS: u64 = 16_384;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("chunk manifest does not hash to the value the stub records")]
    NotBound,
    #[error("malformed chunk manifest: {0}")]
    Malformed(String),
    #[error("chunk manifest describes other content (size or sha256 differ from the stub)")]
    OtherContent,
}

/// The chunk size for a file of `size` bytes: `preferred` (a power of two, clamped to
/// [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]), doubled until the file has at most
/// [`MAX_CHUNKS`] chunks.
pub fn chunk_size_for(size: u64, preferred: u64) -> u64 {
    let mut c = preferred.clamp(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE).next_power_of_two();
    while c < MAX_CHUNK_SIZE && size.div_ceil(c) > MAX_CHUNKS {
        c *= 2;
    }
    c
}

/// The chunk hashes of one content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkManifest {
    /// Size of the original in bytes.
    pub size: u64,
    /// Bytes per chunk (a power of two); the last chunk may be shorter.
    pub chunk_size: u64,
    /// SHA-256 of the whole original.
    pub sha256: Sha256Digest,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    size: u64,
    chunk_size: u64,
    sha256: String,
    chunks: String,
}

impl ChunkManifest {
    /// Number of chunks.
    pub fn count(&self) -> usize {
        self.chunks.len()
    }

    /// Offset and length of chunk `i`.
    pub fn chunk(&self, i: usize) -> (u64, u64) {
        let off = i as u64 * self.chunk_size;
        (off, self.chunk_size.min(self.size.saturating_sub(off)))
    }

    /// Whether `bytes` are chunk `i`'s content.
    pub fn verify_chunk(&self, i: usize, bytes: &[u8]) -> bool {
        let (_, len) = self.chunk(i);
        bytes.len() as u64 == len
            && self.chunks.get(i).is_some_and(|h| <[u8; 32]>::from(Sha256::digest(bytes)) == *h)
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let w = Wire {
            format: CHUNK_MANIFEST_FORMAT,
            size: self.size,
            chunk_size: self.chunk_size,
            sha256: self.sha256.to_hex(),
            chunks: self.chunks.iter().map(hex::encode).collect(),
        };
        serde_json::to_vec(&w).expect("a manifest always serialises")
    }

    /// SHA-256 of [`ChunkManifest::encode`]: what a stub attribute records.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Parses stored bytes strictly: known fields only, format 1, a power-of-two chunk size
    /// in range, exactly one lower-case hash per chunk, and the canonical encoding (the
    /// bytes must be what [`ChunkManifest::encode`] writes).
    pub fn parse(bytes: &[u8]) -> Result<ChunkManifest, ManifestError> {
        let bad = |s: &str| ManifestError::Malformed(s.to_owned());
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        if w.format != CHUNK_MANIFEST_FORMAT {
            return Err(bad("unknown format"));
        }
        if !w.chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&w.chunk_size)
        {
            return Err(bad("chunk size out of range"));
        }
        let count = w.size.div_ceil(w.chunk_size);
        if count > MAX_CHUNKS {
            return Err(bad("too many chunks"));
        }
        let lower_hex = |s: &str| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if w.sha256.len() != 64 || !lower_hex(&w.sha256) {
            return Err(bad("sha256 must be 64 lower-case hex digits"));
        }
        if w.chunks.len() as u64 != count * 64 || !lower_hex(&w.chunks) {
            return Err(bad("chunks must hold one 64-digit lower-case hash per chunk"));
        }
        let sha256 = Sha256Digest::from_hex(&w.sha256).ok_or_else(|| bad("bad sha256"))?;
        let mut chunks = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&w.chunks[i * 64..(i + 1) * 64], &mut h)
                .map_err(|_| bad("bad chunk hash"))?;
            chunks.push(h);
        }
        let m = ChunkManifest { size: w.size, chunk_size: w.chunk_size, sha256, chunks };
        if m.encode() != bytes {
            return Err(bad("not in canonical form"));
        }
        Ok(m)
    }

    /// Parses `bytes` only if they hash to `digest` (the stub's record) and describe the
    /// content of `size` bytes hashing to `sha256`.
    pub fn parse_bound(
        bytes: &[u8],
        digest: &[u8; 32],
        chunk_size: u64,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<ChunkManifest, ManifestError> {
        if <[u8; 32]>::from(Sha256::digest(bytes)) != *digest {
            return Err(ManifestError::NotBound);
        }
        let m = ChunkManifest::parse(bytes)?;
        if m.size != size || m.sha256.0 != *sha256 || m.chunk_size != chunk_size {
            return Err(ManifestError::OtherContent);
        }
        Ok(m)
    }

    /// `chunks/ab/<sha256 hex>.<chunk size>.json`, relative to the customer location.
    pub fn rel_key(sha256: &Sha256Digest, chunk_size: u64) -> String {
        let hex = sha256.to_hex();
        format!("chunks/{}/{hex}.{chunk_size}.json", &hex[..2])
    }

    /// The content hash a manifest name (`<64 hex>.<n>.json`) is for.
    pub(crate) fn sha_of_name(name: &str) -> Option<Sha256Digest> {
        let (hex, rest) = name.split_once('.')?;
        let n = rest.strip_suffix(".json")?;
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Sha256Digest::from_hex(hex)
    }
}

/// A [`Read`] that passes another through and computes the [`ChunkManifest`] of what went
/// by (the tiering of a file reads it once; this adds the chunk hashes to that one pass).
pub struct ChunkHasher<R> {
    inner: R,
    chunk_size: u64,
    whole: Sha256,
    cur: Sha256,
    cur_len: u64,
    total: u64,
    chunks: Vec<[u8; 32]>,
}

impl<R: Read> ChunkHasher<R> {
    pub fn new(inner: R, chunk_size: u64) -> ChunkHasher<R> {
        ChunkHasher {
            inner,
            chunk_size: chunk_size.max(1),
            whole: Sha256::new(),
            cur: Sha256::new(),
            cur_len: 0,
            total: 0,
            chunks: Vec::new(),
        }
    }

    /// Bytes passed through so far.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// The manifest of everything read (the inner reader is dropped).
    pub fn finish(mut self) -> ChunkManifest {
        if self.cur_len > 0 {
            self.chunks.push(std::mem::take(&mut self.cur).finalize().into());
        }
        ChunkManifest {
            size: self.total,
            chunk_size: self.chunk_size,
            sha256: Sha256Digest(self.whole.finalize().into()),
            chunks: self.chunks,
        }
    }
}

impl<R: Read> Read for ChunkHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        self.whole.update(rest);
        while !rest.is_empty() {
            let take = (self.chunk_size - self.cur_len).min(rest.len() as u64) as usize;
            self.cur.update(&rest[..take]);
            self.cur_len += take as u64;
            rest = &rest[take..];
            if self.cur_len == self.chunk_size {
                self.chunks.push(std::mem::take(&mut self.cur).finalize().into());
                self.cur_len = 0;
            }
        }
        self.total += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn hasher_round_trip_and_verify() {
        let data = sample(300_000);
        let mut h = ChunkHasher::new(&data[..], MIN_CHUNK_SIZE);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let m = h.finish();
        assert_eq!(m.size, 300_000);
        assert_eq!(m.count(), 5);
        assert_eq!(m.sha256, Sha256Digest::of(&data));
        for i in 0..m.count() {
            let (off, len) = m.chunk(i);
            assert!(m.verify_chunk(i, &data[off as usize..(off + len) as usize]));
        }
        assert!(!m.verify_chunk(0, &data[1..65_537]));
        assert!(!m.verify_chunk(4, &data[0..10]));
        let bytes = m.encode();
        assert_eq!(ChunkManifest::parse(&bytes).unwrap(), m);
        let d = m.digest();
        assert!(
            ChunkManifest::parse_bound(&bytes, &d, MIN_CHUNK_SIZE, 300_000, &m.sha256.0).is_ok()
        );
        assert_eq!(
            ChunkManifest::parse_bound(&bytes, &[0; 32], MIN_CHUNK_SIZE, 300_000, &m.sha256.0),
            Err(ManifestError::NotBound)
        );
        assert_eq!(
            ChunkManifest::parse_bound(&bytes, &d, MIN_CHUNK_SIZE, 300_001, &m.sha256.0),
            Err(ManifestError::OtherContent)
        );
        let key = ChunkManifest::rel_key(&m.sha256, MIN_CHUNK_SIZE);
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(ChunkManifest::sha_of_name(name), Some(m.sha256));
    }

    #[test]
    fn rejects_hostile_manifests() {
        let data = sample(200_000);
        let mut h = ChunkHasher::new(&data[..], MIN_CHUNK_SIZE);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let good = String::from_utf8(h.finish().encode()).unwrap();
        let bad = [
            good.replace("\"format\":1", "\"format\":2"),
            good.replace("\"chunk_size\":65536", "\"chunk_size\":65537"),
            good.replace("\"chunk_size\":65536", "\"chunk_size\":4096"),
            good.replace("\"size\":200000", "\"size\":300000"),
            good.replace("\"size\":200000", "\"size\":100000"),
            good.replace("{", "{\"extra\":1,"),
            good.replace("\"format\":1,", ""),
            good.replacen("a", "A", 1),
            good.replace("\"format\":1", "\"format\": 1"),
            good.replace("\"chunks\":\"", "\"chunks\":\"00"),
            String::new(),
        ];
        for b in bad {
            assert!(ChunkManifest::parse(b.as_bytes()).is_err(), "accepted {b}");
        }
    }

    #[test]
    fn chunk_size_grows_for_huge_files() {
        assert_eq!(chunk_size_for(1 << 30, 1 << 20), 1 << 20);
        assert_eq!(chunk_size_for(1 << 40, 1 << 20), 1 << 26);
        assert_eq!(chunk_size_for(100, 1000), MIN_CHUNK_SIZE);
        assert_eq!(chunk_size_for(u64::MAX, 1 << 20), MAX_CHUNK_SIZE);
    }
}
