//! The scan batch: the file format in which `alto-agent` reports a file system scan and
//! `alto-server` ingests it.
//!
//! One row per file system entry. Parquet with zstd is the default; CSV (plain, gzip or zstd)
//! is accepted too, with the seed's first eight columns in the seed's order. The columns:
//!
//! | column | Parquet type | CSV | meaning |
//! |---|---|---|---|
//! | `file_path` | UTF8 | text | absolute path, see *Path encoding* |
//! | `file_size` | INT64 | integer | bytes (`st_size`) |
//! | `last_modified` | INT64 µs UTC | RFC 3339 | `st_mtime` |
//! | `last_accessed` | INT64 µs UTC | RFC 3339 | `st_atime` |
//! | `file_extension` | UTF8 | text | lower-case, with the dot (`.pdf`), empty if none or longer than 16 bytes |
//! | `permissions` | UTF8 | text | `rw-r--r--` |
//! | `owner` | UTF8 | text | user name, or the numeric uid if it has none |
//! | `hash` | UTF8 | text | `sha256:<hex>` or empty (metadata scans leave it empty) |
//! | `path_escaped` | BOOLEAN | `true`/`false` | whether `file_path` uses the escape below |
//! | `last_changed` | INT64 µs UTC | RFC 3339 | `st_ctime` |
//! | `mode` | INT64 | integer | full `st_mode` (type and permission bits) |
//! | `uid`, `gid` | INT64 | integer | numeric owner and group |
//! | `inode`, `device`, `nlink` | INT64 | integer | identity of the inode |
//! | `is_stub` | BOOLEAN | `true`/`false` | the file carries the `trusted.alto.stub` attribute |
//! | `stub_object` | UTF8, optional | text | the stub attribute's value (object identity) |
//!
//! **Path encoding.** Linux paths are bytes. A path that is valid UTF-8 is written as is with
//! `path_escaped = false`. Otherwise every byte that is not part of a valid UTF-8 sequence is
//! written as `\xHH` (two lower-case hex digits), every literal backslash as `\\`, and
//! `path_escaped = true`. The pair `(file_path, path_escaped)` maps back to exactly the original
//! bytes ([`decode_path`]), and distinct byte strings never share a pair.
//!
//! **Must never:** touch the network or a database, or interpret paths relative to the
//! current directory.

mod csvfmt;
mod pq;

use std::io::{Read, Write};
use std::path::Path;

pub use csvfmt::{CsvReader, CsvWriter};
pub use pq::{ParquetReader, ParquetWriter};

/// One scanned file system entry, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanRecord {
    /// Absolute path, raw bytes.
    pub path: Vec<u8>,
    pub size: u64,
    /// Times in microseconds since the Unix epoch (UTC).
    pub mtime_us: i64,
    pub atime_us: i64,
    pub ctime_us: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub inode: u64,
    pub device: u64,
    pub nlink: u64,
    /// User name, or the uid as text when the uid has no name.
    pub owner: String,
    /// `sha256:<hex>` when known; empty in metadata scans.
    pub hash: String,
    /// The `trusted.alto.stub` attribute's value when the file is a stub.
    pub stub: Option<String>,
}

impl ScanRecord {
    /// Lower-case extension with its dot, or empty (no extension, a dot-file, or longer than
    /// 16 bytes).
    pub fn extension(&self) -> String {
        extension_of(&self.path)
    }

    /// `rwxr-x---` style permission string of `mode`.
    pub fn permissions(&self) -> String {
        permissions_of(self.mode)
    }
}

/// Lower-case extension with its dot from a path's last component.
pub fn extension_of(path: &[u8]) -> String {
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    match name.iter().rposition(|b| *b == b'.') {
        Some(0) | None => String::new(),
        Some(i) => {
            let ext = &name[i..];
            if ext.len() > 17 || ext.len() < 2 {
                return String::new();
            }
            match std::str::from_utf8(ext) {
                Ok(s) if !s.contains(|c: char| c.is_whitespace() || c.is_control()) => {
                    s.to_lowercase()
                }
                _ => String::new(),
            }
        }
    }
}

/// `rwxr-xr-x` from the low nine bits of a mode (with `s`/`t` for setuid, setgid, sticky).
pub fn permissions_of(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        let sp = mode & special != 0;
        s.push(match (x, sp) {
            (true, true) => ch,
            (false, true) => ch.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Encodes path bytes as `(text, escaped)`; see the crate docs.
pub fn encode_path(bytes: &[u8]) -> (String, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_owned(), false);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped_str(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction.
                push_escaped_str(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    (out, true)
}

fn push_escaped_str(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
}

/// Decodes `(text, escaped)` back to the original bytes. `None` if the escape is malformed.
pub fn decode_path(text: &str, escaped: bool) -> Option<Vec<u8>> {
    if !escaped {
        return Some(text.as_bytes().to_vec());
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                    if !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                        return None;
                    }
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Batch file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Parquet, zstd-compressed column chunks (the default).
    Parquet,
    Csv,
    CsvGzip,
    CsvZstd,
}

impl Format {
    /// From a file name: `.parquet`, `.csv`, `.csv.gz`, `.csv.zst`.
    pub fn from_path(p: &Path) -> Option<Format> {
        let name = p.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".parquet") {
            Some(Format::Parquet)
        } else if name.ends_with(".csv.gz") {
            Some(Format::CsvGzip)
        } else if name.ends_with(".csv.zst") {
            Some(Format::CsvZstd)
        } else if name.ends_with(".csv") {
            Some(Format::Csv)
        } else {
            None
        }
    }

    /// The HTTP content type used when uploading.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Csv => "text/csv",
            Format::CsvGzip => "text/csv+gzip",
            Format::CsvZstd => "text/csv+zstd",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Format> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        [Format::Parquet, Format::Csv, Format::CsvGzip, Format::CsvZstd]
            .into_iter()
            .find(|f| f.content_type() == ct)
    }
}

/// What reading or writing a batch can fail with. Row numbers count data rows from 1.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("row {row}: {message}")]
    Row { row: u64, message: String },
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The batch decompresses to more than the limit given to [`for_each_max`]; reading
    /// stopped there.
    #[error("the batch decompresses to more than {limit} bytes")]
    TooLarge { limit: u64 },
}

impl From<csv::Error> for BatchError {
    fn from(e: csv::Error) -> Self {
        let row = e.position().map(|p| p.record().saturating_sub(0));
        match (e.kind(), row) {
            (csv::ErrorKind::Io(_), _) => BatchError::Malformed(format!("cannot read CSV: {e}")),
            (_, Some(r)) => BatchError::Row { row: r, message: e.to_string() },
            _ => BatchError::Malformed(e.to_string()),
        }
    }
}

impl From<parquet::errors::ParquetError> for BatchError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        BatchError::Malformed(format!("invalid Parquet: {e}"))
    }
}

/// Writes records in any [`Format`].
pub enum BatchWriter<W: Write + Send> {
    Parquet(Box<ParquetWriter<W>>),
    Csv(Box<CsvWriter<Box<dyn Write + Send>>>),
}

impl BatchWriter<std::fs::File> {
    /// Creates `path` and writes in the format its name implies (`.parquet`, `.csv[.gz|.zst]`).
    pub fn create(path: &Path) -> Result<BatchWriter<std::fs::File>, BatchError> {
        let format = Format::from_path(path).ok_or_else(|| {
            BatchError::Malformed(format!(
                "{}: name must end in .parquet, .csv, .csv.gz or .csv.zst",
                path.display()
            ))
        })?;
        BatchWriter::new(std::fs::File::create(path)?, format)
    }
}

impl<W: Write + Send + 'static> BatchWriter<W> {
    pub fn new(out: W, format: Format) -> Result<BatchWriter<W>, BatchError> {
        Ok(match format {
            Format::Parquet => BatchWriter::Parquet(Box::new(ParquetWriter::new(out)?)),
            Format::Csv => {
                let w: Box<dyn Write + Send> = Box::new(out);
                BatchWriter::Csv(Box::new(CsvWriter::new(w)?))
            }
            Format::CsvGzip => {
                let w: Box<dyn Write + Send> =
                    Box::new(flate2::write::GzEncoder::new(out, flate2::Compression::fast()));
                BatchWriter::Csv(Box::new(CsvWriter::new(w)?))
            }
            Format::CsvZstd => {
                let w: Box<dyn Write + Send> = Box::new(zstd::Encoder::new(out, 3)?.auto_finish());
                BatchWriter::Csv(Box::new(CsvWriter::new(w)?))
            }
        })
    }

    pub fn write(&mut self, r: &ScanRecord) -> Result<(), BatchError> {
        match self {
            BatchWriter::Parquet(w) => w.write(r),
            BatchWriter::Csv(w) => w.write(r),
        }
    }

    /// Flushes and closes the batch; returns the number of rows written.
    pub fn finish(self) -> Result<u64, BatchError> {
        match self {
            BatchWriter::Parquet(w) => w.finish(),
            BatchWriter::Csv(w) => w.finish(),
        }
    }
}

/// Reads every record of a batch in `format`, validating each row.
pub fn read_all(
    input: impl Read + Send + 'static,
    format: Format,
) -> Result<Vec<ScanRecord>, BatchError> {
    let mut out = Vec::new();
    for_each(input, format, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// Streams records to `f`, stopping at the first invalid row or error from `f`.
pub fn for_each(
    input: impl Read + Send + 'static,
    format: Format,
    f: impl FnMut(ScanRecord) -> Result<(), BatchError>,
) -> Result<u64, BatchError> {
    for_each_max(input, format, u64::MAX, f)
}

/// [`for_each`] that refuses a batch whose decompressed content is larger than
/// `max_decoded` bytes ([`BatchError::TooLarge`]): CSV is decompressed as a stream and
/// reading stops at the limit (so a decompression bomb costs at most `max_decoded` bytes of
/// decoding and no more memory than one record); Parquet is refused before any page is
/// decompressed when its footer declares more column data than the limit.
pub fn for_each_max(
    input: impl Read + Send + 'static,
    format: Format,
    max_decoded: u64,
    mut f: impl FnMut(ScanRecord) -> Result<(), BatchError>,
) -> Result<u64, BatchError> {
    let mut n = 0;
    match format {
        Format::Parquet => {
            let mut bytes = Vec::new();
            let mut input = input;
            input.read_to_end(&mut bytes)?;
            let reader = ParquetReader::new(bytes::Bytes::from(bytes))?;
            if reader.declared_uncompressed_bytes() > max_decoded {
                return Err(BatchError::TooLarge { limit: max_decoded });
            }
            for r in reader {
                f(r?)?;
                n += 1;
            }
        }
        Format::Csv | Format::CsvGzip | Format::CsvZstd => {
            let input: Box<dyn Read + Send> = match format {
                Format::CsvGzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
                Format::CsvZstd => Box::new(zstd::Decoder::new(input)?),
                _ => Box::new(input),
            };
            let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let capped = Capped { inner: input, left: max_decoded, over: over.clone() };
            let too_large = |e: BatchError| {
                if over.load(std::sync::atomic::Ordering::Relaxed) {
                    BatchError::TooLarge { limit: max_decoded }
                } else {
                    e
                }
            };
            for r in CsvReader::new(capped).map_err(too_large)? {
                f(r.map_err(too_large)?)?;
                n += 1;
            }
            if over.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(BatchError::TooLarge { limit: max_decoded });
            }
        }
    }
    Ok(n)
}

/// A reader that fails once more than `left` bytes were asked of it, and says so in `over`.
struct Capped<R> {
    inner: R,
    left: u64,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte beyond the limit tells a batch of exactly `left` bytes from a larger one.
        let want =
            buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..want])?;
        if got as u64 > self.left {
            self.over.store(true, std::sync::atomic::Ordering::Relaxed);
            self.left = 0;
            return Err(std::io::Error::other("decompressed batch exceeds the limit"));
        }
        self.left -= got as u64;
        Ok(got)
    }
}

/// Checks one decoded row: sizes and times in range, absolute path.
pub(crate) fn validate(row: u64, r: &ScanRecord) -> Result<(), BatchError> {
    let bad = |m: &str| Err(BatchError::Row { row, message: m.to_owned() });
    if r.path.first() != Some(&b'/') {
        return bad("file_path must be absolute");
    }
    if r.path.len() > 4096 {
        return bad("file_path is longer than 4096 bytes");
    }
    if r.path.contains(&0) {
        return bad("file_path contains a NUL byte");
    }
    if r.size > i64::MAX as u64 {
        return bad("file_size is out of range");
    }
    // Years 1900..=9999 in microseconds.
    const MIN: i64 = -2_208_988_800_000_000;
    const MAX: i64 = 253_402_300_799_999_999;
    for (name, t) in
        [("last_modified", r.mtime_us), ("last_accessed", r.atime_us), ("last_changed", r.ctime_us)]
    {
        if !(MIN..=MAX).contains(&t) {
            return bad(&format!("{name} is outside the years 1900 to 9999"));
        }
    }
    if !(r.hash.is_empty()
        || (r.hash.len() == 71
            && r.hash.starts_with("sha256:")
            && r.hash[7..].bytes().all(|b| b.is_ascii_hexdigit())))
    {
        return bad("hash must be empty or sha256:<64 hex digits>");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
