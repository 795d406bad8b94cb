//! Unit tests of the batch formats: round trips through every format, the path encoding, and
//! the readers' refusal of malformed rows (with their row numbers) and of input that
//! decompresses past the limit.

use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn rec(path: &[u8]) -> ScanRecord {
    ScanRecord {
        path: path.to_vec(),
        size: 5_242_880,
        mtime_us: 1_736_937_000_123_456,
        atime_us: 1_760_970_120_000_001,
        ctime_us: 1_736_937_000_000_000,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        inode: 42,
        device: 2049,
        nlink: 1,
        owner: "alice".into(),
        hash: String::new(),
        stub: None,
    }
}

fn hostile() -> Vec<ScanRecord> {
    let mut long = b"/srv/".to_vec();
    while long.len() < 4090 {
        long.extend_from_slice(b"d/");
    }
    long.extend_from_slice(b"f.txt");
    let mut v = vec![
        rec(b"/srv/docs/report.PDF"),
        rec(b"/srv/with,comma and \"quotes\"/new\nline\r.txt"),
        rec(b"/srv/latin1-\xe9t\xe9.doc"),
        rec(b"/srv/back\\slash\\x41\xff"),
        rec(b"/srv/back\\slash\\x41"),
        rec("/srv/unicode-✓-日本.txt".as_bytes()),
        rec(&long),
    ];
    v[2].stub = Some("obj-1;sha256=ab".into());
    v[3].hash = format!("sha256:{}", "a".repeat(64));
    v
}

fn write_to_vec(format: Format, recs: &[ScanRecord]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.bin");
    let mut w = BatchWriter::new(std::fs::File::create(&path).unwrap(), format).unwrap();
    for r in recs {
        w.write(r).unwrap();
    }
    assert_eq!(w.finish().unwrap(), recs.len() as u64);
    std::fs::read(&path).unwrap()
}

fn round_trip(format: Format, recs: &[ScanRecord]) -> Vec<ScanRecord> {
    read_all(Cursor::new(write_to_vec(format, recs)), format).unwrap()
}

#[test]
fn hostile_names_survive_every_format() {
    let recs = hostile();
    for f in [Format::Parquet, Format::Csv, Format::CsvGzip, Format::CsvZstd] {
        assert_eq!(round_trip(f, &recs), recs, "{f:?}");
    }
}

#[test]
fn derived_columns() {
    assert_eq!(extension_of(b"/a/b/Report.PDF"), ".pdf");
    assert_eq!(extension_of(b"/a/b/.bashrc"), "");
    assert_eq!(extension_of(b"/a/b.d/noext"), "");
    assert_eq!(extension_of(b"/a/x.tar.gz"), ".gz");
    assert_eq!(permissions_of(0o100644), "rw-r--r--");
    assert_eq!(permissions_of(0o104755), "rwsr-xr-x");
    assert_eq!(permissions_of(0o041777), "rwxrwxrwt");
}

#[test]
fn escaping_is_unambiguous() {
    let a = encode_path(b"/x\\x41");
    let b = encode_path(b"/x\\x41\xff");
    let c = encode_path(b"/xA\xff");
    assert_eq!(a, ("/x\\x41".to_owned(), false));
    assert_eq!(b, ("/x\\\\x41\\xff".to_owned(), true));
    assert_eq!(c, ("/xA\\xff".to_owned(), true));
    assert_eq!(decode_path("/x\\q", true), None);
    assert_eq!(decode_path("/x\\xzz", true), None);
}

proptest! {
    #[test]
    fn any_path_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (text, escaped) = encode_path(&bytes);
        prop_assert_eq!(decode_path(&text, escaped), Some(bytes));
    }
}

fn csv_with(rows: &str) -> String {
    format!("{}\n{rows}", crate::csvfmt::COLUMNS.join(","))
}

#[test]
fn bad_rows_are_named() {
    let good = "/a,1,2025-01-15T10:30:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n";
    let cases = [
        ("/a,-5,2025-01-15T10:30:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n", "file_size"),
        ("/a,1,yesterday,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n", "last_modified"),
        ("/a,1,0001-01-01T00:00:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n", "1900"),
        ("relative,1,2025-01-15T10:30:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n", "absolute"),
        ("/a,1,2025-01-15T10:30:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,u,md5:x,false,2025-01-15T10:30:00Z,33188,0,0,1,1,1,false,\n", "hash"),
        ("/a,1,2025-01-15T10:30:00Z\n", "field"),
    ];
    for (bad, needle) in cases {
        let text = csv_with(&format!("{good}{good}{bad}"));
        let err = read_all(Cursor::new(text.into_bytes()), Format::Csv).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
        assert!(matches!(err, BatchError::Row { row: 3, .. }) || msg.contains("3"), "{msg}");
    }
    let err = read_all(Cursor::new(b"a,b\n1,2\n".to_vec()), Format::Csv).unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
}

#[test]
fn seed_csv_is_accepted() {
    let text = "file_path,file_size,last_modified,last_accessed,file_extension,permissions,owner,hash\n\
        \"/data/docs/report.pdf\",5242880,2025-01-15T10:30:00Z,2025-10-20T14:22:00Z,.pdf,rw-r--r--,DOMAIN\\user1,\n";
    let r = read_all(Cursor::new(text.as_bytes().to_vec()), Format::Csv).unwrap();
    assert_eq!(r[0].path, b"/data/docs/report.pdf");
    assert_eq!(r[0].owner, "DOMAIN\\user1");
}

#[test]
fn truncated_and_corrupt_parquet_is_refused() {
    let buf = write_to_vec(Format::Parquet, &hostile());
    let truncated = buf[..buf.len() / 2].to_vec();
    assert!(matches!(
        read_all(Cursor::new(truncated), Format::Parquet),
        Err(BatchError::Malformed(_))
    ));
    assert!(read_all(Cursor::new(b"PAR1garbagePAR1".to_vec()), Format::Parquet).is_err());
    // Bit flips inside a page are not detectable by Parquet itself (page CRCs are optional);
    // uploads carry a SHA-256 per part for that.
}

/// Counts the bytes read from the inner reader.
struct Counting<R> {
    inner: R,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.inner.read(buf)?;
        self.n.fetch_add(got as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(got)
    }
}

/// A CSV batch of `rows` valid rows, compressed in `format`, and its decompressed size.
fn bomb(format: Format, rows: usize) -> (Vec<u8>, u64) {
    let mut plain = Vec::new();
    {
        let mut w = CsvWriter::new(&mut plain).unwrap();
        for i in 0..rows {
            w.write(&rec(format!("/srv/bomb/{i:09}.dat").as_bytes())).unwrap();
        }
        w.finish().unwrap();
    }
    let compressed = match format {
        Format::CsvGzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        }
        Format::CsvZstd => zstd::encode_all(Cursor::new(&plain), 19).unwrap(),
        _ => plain.clone(),
    };
    (compressed, plain.len() as u64)
}

#[test]
fn decompression_stops_at_the_limit() {
    for format in [Format::CsvGzip, Format::CsvZstd, Format::Csv] {
        let (body, plain) = bomb(format, 200_000);
        let limit = 1 << 20;
        assert!(plain > 16 * limit, "{plain}");
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let input = Counting { inner: Cursor::new(body.clone()), n: read.clone() };
        let mut rows = 0u64;
        let err = for_each_max(input, format, limit, |_| {
            rows += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, BatchError::TooLarge { limit: l } if l == limit), "{err}");
        // Streaming: only about the limit's worth was decoded, so no more input was consumed
        // than that (plus the decoder's buffer), not the whole body, and the rows seen fit in
        // the limit.
        let consumed = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            consumed < body.len() as u64 && consumed <= limit + (256 << 10),
            "{format:?}: read {consumed} of {}",
            body.len()
        );
        assert!(rows * 60 <= limit, "{rows} rows");
        // The same batch under a limit it fits in reads completely.
        let n = for_each_max(Cursor::new(body), format, plain, |_| Ok(())).unwrap();
        assert_eq!(n, 200_000);
    }
}

#[test]
fn parquet_declaring_more_than_the_limit_is_refused_before_decoding() {
    let mut buf = Vec::new();
    {
        let mut w = ParquetWriter::new(&mut buf).unwrap();
        for i in 0..20_000 {
            w.write(&rec(format!("/srv/p/{i:09}.dat").as_bytes())).unwrap();
        }
        w.finish().unwrap();
    }
    let err =
        for_each_max(Cursor::new(buf.clone()), Format::Parquet, 64 * 1024, |_| Ok(())).unwrap_err();
    assert!(matches!(err, BatchError::TooLarge { .. }), "{err}");
    assert_eq!(
        for_each_max(Cursor::new(buf), Format::Parquet, u64::MAX, |_| Ok(())).unwrap(),
        20_000
    );
}
