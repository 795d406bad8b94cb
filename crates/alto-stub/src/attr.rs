//! The `trusted.alto.stub` attribute: what it says and how it is written.
//!
//! The value is one line of ASCII, fields in a fixed order, each `name=value`, separated by `;`:
//!
//! ```text
//! v=1;st=stubbed;obj=<key>;tgt=<target>;size=<bytes>;mtime=<ns>;sha256=<64 hex>
//! v=2;st=stubbed;obj=<key>;tgt=<target>;size=<bytes>;mtime=<ns>;sha256=<64 hex>;chunks=<chunk size>:<64 hex>
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `v` | format version: `1` (no `chunks`) or `2` (with `chunks`, and only then); every other is rejected |
//! | `st` | [`StubState`]: `stubbing`, `stubbed` or `recalling` |
//! | `obj` | the tier-2 object key that holds the content, percent-encoded (see below) |
//! | `tgt` | the name of the tier-2 target that holds the object, percent-encoded |
//! | `size` | `st_size` of the original, decimal |
//! | `mtime` | `st_mtime` of the original in nanoseconds since the epoch, decimal, may be negative |
//! | `sha256` | SHA-256 of the original content, 64 lower-case hex digits |
//! | `chunks` | version 2 only: the chunk size of the content's chunk manifest in tier-2 (a power of two, 64 KiB to 1 GiB, decimal) and the SHA-256 of the manifest's bytes ([`ChunkRef`]); a manifest that hashes otherwise is refused, so range-first recall never trusts tier-2 more than the attribute |
//!
//! Text rather than binary so that `getfattr -n trusted.alto.stub` is readable and the scanner
//! can report the value as a string. The price is size: a typical value is about 230 bytes,
//! too large for the ~60 bytes of in-inode attribute space of a 256-byte ext4 inode, so ext4
//! gives each stub one external 4 KiB attribute block (`st_blocks` counts it).
//!
//! **Percent-encoding** of `obj` and `tgt`: every byte outside `A-Z a-z 0-9 - . _ ~ / + : @`
//! is written as `%HH` with upper-case hex. Decoding accepts only the canonical form (a byte
//! that need not be escaped must not be, hex must be upper case), so one attribute has exactly
//! one encoding and `parse(encode(a)) == a`.
//!
//! **Strictness.** [`StubAttr::parse`] rejects anything else: another version, a missing,
//! extra, repeated or reordered field, leading zeros or a `+` in numbers, `-0`, upper-case
//! hex in `sha256`, an empty or over-long key or target, trailing bytes. A stub attribute is
//! the only thing standing between a reader and zeros, so a value that is not exactly what
//! this code writes is an error ([`AttrError`]), never a guess.

use std::fmt;

/// The extended attribute that marks a stub. `trusted.*` so that only root (more exactly
/// `CAP_SYS_ADMIN`) can read or set it: a `user.*` attribute could be forged by the file's
/// owner to point at someone else's tier-2 object (`research/fanotify-hsm-lab.md` §9).
pub const STUB_XATTR: &str = "trusted.alto.stub";

/// The attribute format of a stub without a chunk manifest.
pub const STUB_ATTR_VERSION: u32 = 1;
/// The attribute format of a stub with a chunk manifest ([`StubAttr::chunks`]).
pub const STUB_ATTR_VERSION_CHUNKS: u32 = 2;
/// Smallest chunk size a `chunks` field may name.
pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
/// Largest chunk size a `chunks` field may name.
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

/// Where a stub's chunk manifest is and how to recognise it: the manifest of the content
/// at `chunk_size` in tier-2 must hash to `manifest_sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub chunk_size: u64,
    pub manifest_sha256: [u8; 32],
}

/// Longest accepted object key, in bytes after decoding.
pub const MAX_KEY_LEN: usize = 512;
/// Longest accepted target name, in bytes after decoding.
pub const MAX_TARGET_LEN: usize = 128;
/// Longest accepted attribute value, in bytes.
pub const MAX_ATTR_LEN: usize = 4000;

/// Where a file is in its life as a stub. The crate documentation lists what each state
/// promises and what a restarted agent does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StubState {
    /// Conversion started: the object is verified in tier-2, the content may or may not have
    /// been punched yet.
    Stubbing,
    /// A stub: bytes after the first 4 KiB are a hole; the object holds the content.
    Stubbed,
    /// A recall is writing the content back; the file does not yet claim to be whole.
    Recalling,
}

impl StubState {
    pub fn as_str(self) -> &'static str {
        match self {
            StubState::Stubbing => "stubbing",
            StubState::Stubbed => "stubbed",
            StubState::Recalling => "recalling",
        }
    }

    fn parse(s: &str) -> Option<StubState> {
        match s {
            "stubbing" => Some(StubState::Stubbing),
            "stubbed" => Some(StubState::Stubbed),
            "recalling" => Some(StubState::Recalling),
            _ => None,
        }
    }
}

impl fmt::Display for StubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content of the stub attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StubAttr {
    pub state: StubState,
    /// The tier-2 object key (for the directory backend `<sha256 hex>` or `<sha256 hex>.zst`).
    pub object_key: String,
    /// The name of the tier-2 target holding the object.
    pub target: String,
    /// Size of the original file in bytes.
    pub size: u64,
    /// Modification time of the original in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// SHA-256 of the original content.
    pub sha256: [u8; 32],
    /// The chunk manifest that allows range-first recall (attribute version 2); `None` for
    /// stubs recalled whole.
    pub chunks: Option<ChunkRef>,
}

/// Why an attribute value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("stub attribute version {0} is not supported (this build reads versions {STUB_ATTR_VERSION} and {STUB_ATTR_VERSION_CHUNKS})")]
    UnsupportedVersion(u32),
    #[error("malformed stub attribute: {0}")]
    Malformed(&'static str),
    #[error("stub attribute of {0} bytes is longer than {MAX_ATTR_LEN}")]
    TooLong(usize),
    #[error("stub attribute is not ASCII text")]
    NotText,
}

impl StubAttr {
    /// The same attribute in another state.
    pub fn with_state(&self, state: StubState) -> StubAttr {
        StubAttr { state, ..self.clone() }
    }

    /// The content hash as 64 lower-case hex digits.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Checks the fields that [`StubAttr::encode`] cannot represent or this crate refuses.
    pub fn validate(&self) -> Result<(), AttrError> {
        if self.object_key.is_empty() || self.object_key.len() > MAX_KEY_LEN {
            return Err(AttrError::Malformed("object key must be 1 to 512 bytes"));
        }
        if self.target.is_empty() || self.target.len() > MAX_TARGET_LEN {
            return Err(AttrError::Malformed("target name must be 1 to 128 bytes"));
        }
        if let Some(c) = &self.chunks {
            if !c.chunk_size.is_power_of_two()
                || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c.chunk_size)
            {
                return Err(AttrError::Malformed(
                    "chunk size must be a power of two, 64 KiB to 1 GiB",
                ));
            }
        }
        Ok(())
    }

    /// The attribute value (see the module documentation for the format).
    pub fn encode(&self) -> Result<Vec<u8>, AttrError> {
        self.validate()?;
        let version =
            if self.chunks.is_some() { STUB_ATTR_VERSION_CHUNKS } else { STUB_ATTR_VERSION };
        let mut s = format!(
            "v={version};st={};obj={};tgt={};size={};mtime={};sha256={}",
            self.state,
            pct_encode(&self.object_key),
            pct_encode(&self.target),
            self.size,
            self.mtime_ns,
            self.sha256_hex(),
        );
        if let Some(c) = &self.chunks {
            s.push_str(&format!(";chunks={}:{}", c.chunk_size, hex::encode(c.manifest_sha256)));
        }
        if s.len() > MAX_ATTR_LEN {
            return Err(AttrError::TooLong(s.len()));
        }
        Ok(s.into_bytes())
    }

    /// Parses an attribute value strictly (see the module documentation).
    pub fn parse(value: &[u8]) -> Result<StubAttr, AttrError> {
        if value.len() > MAX_ATTR_LEN {
            return Err(AttrError::TooLong(value.len()));
        }
        if !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err(AttrError::NotText);
        }
        // Checked above: every byte is printable ASCII.
        let text = std::str::from_utf8(value).map_err(|_| AttrError::NotText)?;
        let mut fields = text.split(';');
        let mut next = |name: &'static str| -> Result<&str, AttrError> {
            let field = fields.next().ok_or(AttrError::Malformed("missing field"))?;
            let (n, v) = field.split_once('=').ok_or(AttrError::Malformed("field without '='"))?;
            if n != name {
                return Err(AttrError::Malformed("unexpected field name or order"));
            }
            Ok(v)
        };
        let version = parse_u64(next("v")?).ok_or(AttrError::Malformed("bad version"))?;
        if version != u64::from(STUB_ATTR_VERSION) && version != u64::from(STUB_ATTR_VERSION_CHUNKS)
        {
            return Err(AttrError::UnsupportedVersion(u32::try_from(version).unwrap_or(u32::MAX)));
        }
        let state = StubState::parse(next("st")?).ok_or(AttrError::Malformed("unknown state"))?;
        let object_key = pct_decode(next("obj")?).ok_or(AttrError::Malformed("bad object key"))?;
        let target = pct_decode(next("tgt")?).ok_or(AttrError::Malformed("bad target name"))?;
        let size = parse_u64(next("size")?).ok_or(AttrError::Malformed("bad size"))?;
        let mtime_ns = parse_i64(next("mtime")?).ok_or(AttrError::Malformed("bad mtime"))?;
        let sha256 = parse_sha256(next("sha256")?)
            .ok_or(AttrError::Malformed("sha256 must be 64 lower-case hex digits"))?;
        let chunks = if version == u64::from(STUB_ATTR_VERSION_CHUNKS) {
            let v = next("chunks")?;
            let (size, sha) = v.split_once(':').ok_or(AttrError::Malformed("bad chunks"))?;
            let chunk_size = parse_u64(size).ok_or(AttrError::Malformed("bad chunk size"))?;
            let manifest_sha256 = parse_sha256(sha)
                .ok_or(AttrError::Malformed("manifest sha256 must be 64 lower-case hex digits"))?;
            Some(ChunkRef { chunk_size, manifest_sha256 })
        } else {
            None
        };
        if fields.next().is_some() {
            return Err(AttrError::Malformed("trailing fields"));
        }
        let attr = StubAttr { state, object_key, target, size, mtime_ns, sha256, chunks };
        attr.validate()?;
        Ok(attr)
    }

    /// Whether `other` describes the same object and original (ignoring the state).
    pub fn same_object(&self, other: &StubAttr) -> bool {
        self.object_key == other.object_key
            && self.target == other.target
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.sha256 == other.sha256
            && self.chunks == other.chunks
    }
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'+' | b':' | b'@')
}

fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')) {
                return None;
            }
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if unreserved(v) {
                return None; // not canonical
            }
            out.push(v);
            i += 3;
        } else if unreserved(b[i]) {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_i64(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(rest) => {
            let _ = parse_u64(rest)?;
            if rest == "0" {
                return None;
            }
            s.parse().ok()
        }
        None => {
            let _ = parse_u64(s)?;
            s.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StubAttr {
        StubAttr {
            state: StubState::Stubbed,
            object_key: "ab".repeat(32) + ".zst",
            target: "Archive NAS (Zürich); 2=".into(),
            size: 1 << 20,
            mtime_ns: -1_234_567_890,
            sha256: [0xab; 32],
            chunks: None,
        }
    }

    fn chunked() -> StubAttr {
        StubAttr {
            chunks: Some(ChunkRef { chunk_size: 1 << 20, manifest_sha256: [0xcd; 32] }),
            ..sample()
        }
    }

    #[test]
    fn chunks_field_round_trip_and_strict() {
        let a = chunked();
        let v = a.encode().unwrap();
        let text = String::from_utf8(v.clone()).unwrap();
        assert!(text.starts_with("v=2;"), "{text}");
        assert!(text.ends_with(&format!(";chunks=1048576:{}", "cd".repeat(32))), "{text}");
        assert_eq!(StubAttr::parse(&v).unwrap(), a);
        assert!(!a.same_object(&sample()));
        // Old attributes (version 1, no field) still read, and write exactly as before.
        let old = sample().encode().unwrap();
        assert!(old.starts_with(b"v=1;"));
        assert_eq!(StubAttr::parse(&old).unwrap().chunks, None);
        let hostile = [
            text.replace("v=2", "v=1"),
            String::from_utf8(old.clone()).unwrap().replace("v=1", "v=2"),
            format!("{}{}", String::from_utf8(old.clone()).unwrap(), ";chunks=1048576:00"),
            text.replace("chunks=1048576", "chunks=1048577"),
            text.replace("chunks=1048576", "chunks=01048576"),
            text.replace("chunks=1048576", "chunks=4096"),
            text.replace("chunks=1048576", "chunks=2147483648"),
            text.replace("chunks=1048576", "chunks=18446744073709551616"),
            text.replace("chunks=1048576:", "chunks=1048576"),
            text.replace("chunks=1048576:", "chunks=1048576::"),
            text.replace(&"cd".repeat(32), &"CD".repeat(32)),
            text.replace(&"cd".repeat(32), &"cd".repeat(31)),
            text.replace(";chunks=", ";chunk="),
            format!("{text};chunks=1048576:{}", "cd".repeat(32)),
            text.replace(";chunks=", ";x=1;chunks="),
        ];
        for b in hostile {
            assert!(StubAttr::parse(b.as_bytes()).is_err(), "accepted {b:?}");
        }
        let mut bad = chunked();
        bad.chunks = Some(ChunkRef { chunk_size: 3 << 20, manifest_sha256: [0; 32] });
        assert!(bad.encode().is_err());
    }

    #[test]
    fn round_trip_and_canonical() {
        let a = sample();
        let v = a.encode().unwrap();
        assert_eq!(StubAttr::parse(&v).unwrap(), a);
        let text = String::from_utf8(v.clone()).unwrap();
        assert!(text.starts_with("v=1;st=stubbed;obj=abab"), "{text}");
        assert!(text.contains("tgt=Archive%20NAS%20%28Z%C3%BCrich%29%3B%202%3D;"), "{text}");
        for s in [StubState::Stubbing, StubState::Recalling] {
            let b = a.with_state(s);
            assert_eq!(StubAttr::parse(&b.encode().unwrap()).unwrap(), b);
        }
        let typical = StubAttr { target: "default".into(), ..a };
        assert!(typical.encode().unwrap().len() < 240);
    }

    #[test]
    fn rejects_garbage() {
        let good = String::from_utf8(sample().encode().unwrap()).unwrap();
        let bad = [
            String::new(),
            "garbage".into(),
            good.replace("v=1", "v=2"),
            good.replace("v=1", "v=01"),
            good.replace("st=stubbed", "st=stub"),
            good.replace("size=1048576", "size=+1048576"),
            good.replace("size=1048576", "size=01048576"),
            good.replace("size=1048576", "size=18446744073709551616"),
            good.replace("mtime=-1234567890", "mtime=-0"),
            good.replace("mtime=-1234567890", "mtime=--1"),
            good.replace(&"ab".repeat(32), &"AB".repeat(32)),
            good.replace("%20", "%2"),
            good.replace("%C3", "%c3"),
            good.replace("NAS", "%4EAS"),
            good.replace(";tgt=", ";target="),
            good.replace("obj=", "obj=;x="),
            format!("{good};extra=1"),
            format!("{good} "),
            good.replacen(";st=stubbed", "", 1),
            good.replace("sha256=abab", "sha256=ab"),
            good.replace("tgt=Archive%20NAS%20%28Z%C3%BCrich%29%3B%202%3D", "tgt="),
            "x".repeat(MAX_ATTR_LEN + 1),
        ];
        for b in bad {
            assert!(StubAttr::parse(b.as_bytes()).is_err(), "accepted {b:?}");
        }
        assert_eq!(
            StubAttr::parse(good.replace("v=1", "v=7").as_bytes()),
            Err(AttrError::UnsupportedVersion(7))
        );
        assert_eq!(StubAttr::parse(b"v=1;st=stubbed\xff"), Err(AttrError::NotText));
        // A non-UTF-8 byte hidden behind an escape is refused too.
        assert!(StubAttr::parse(good.replace("%C3%BC", "%FF").as_bytes()).is_err());
    }

    #[test]
    fn refuses_to_encode_out_of_range() {
        let mut a = sample();
        a.object_key.clear();
        assert!(a.encode().is_err());
        a.object_key = "k".repeat(MAX_KEY_LEN + 1);
        assert!(a.encode().is_err());
        a.object_key = "k".into();
        a.target = "t".repeat(MAX_TARGET_LEN + 1);
        assert!(a.encode().is_err());
    }
}
