//! What the tier-2 test binaries share: object metadata and test content.

#![allow(dead_code, clippy::unwrap_used)]

use alto_model::HostId;
use alto_tier2::{Compression, PutMeta, Sha256Digest};
use chrono::{DateTime, TimeZone, Utc};

pub(crate) const MIB: usize = 1 << 20;

/// The creation time every test object claims.
pub(crate) fn created_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// The metadata of a put of `content` from `host` at `path`, with fixed times.
pub(crate) fn meta(host: HostId, path: &str, content: &[u8], compression: Compression) -> PutMeta {
    PutMeta {
        host_id: host,
        path: path.into(),
        path_escaped: false,
        size: content.len() as u64,
        mtime_ns: 1_500_000_000_987_654_321,
        atime_ns: 1_600_000_000_123_456_789,
        expected_sha256: Some(Sha256Digest::of(content)),
        compression,
        created_at: created_at(),
    }
}

/// Half random, half repetitive text: compressible, and not one repeated block.
pub(crate) fn content(n: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0u8; n / 2];
    rand::fill(&mut v[..]);
    if let Some(b) = v.first_mut() {
        *b = seed;
    }
    let text = format!("line {seed} of a rather repetitive log file\n");
    while v.len() < n {
        v.extend_from_slice(text.as_bytes());
    }
    v.truncate(n);
    v
}
