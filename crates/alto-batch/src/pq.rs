//! Parquet batches, written column by column with zstd, row groups of 64 Ki rows.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::{Field, Row};
use parquet::schema::parser::parse_message_type;

use crate::{decode_path, encode_path, validate, BatchError, ScanRecord};

const SCHEMA: &str = "message alto_scan {
  REQUIRED BYTE_ARRAY file_path (UTF8);
  REQUIRED INT64 file_size;
  REQUIRED INT64 last_modified (TIMESTAMP(MICROS,true));
  REQUIRED INT64 last_accessed (TIMESTAMP(MICROS,true));
  REQUIRED BYTE_ARRAY file_extension (UTF8);
  REQUIRED BYTE_ARRAY permissions (UTF8);
  REQUIRED BYTE_ARRAY owner (UTF8);
  REQUIRED BYTE_ARRAY hash (UTF8);
  REQUIRED BOOLEAN path_escaped;
  REQUIRED INT64 last_changed (TIMESTAMP(MICROS,true));
  REQUIRED INT64 mode;
  REQUIRED INT64 uid;
  REQUIRED INT64 gid;
  REQUIRED INT64 inode;
  REQUIRED INT64 device;
  REQUIRED INT64 nlink;
  REQUIRED BOOLEAN is_stub;
  OPTIONAL BYTE_ARRAY stub_object (UTF8);
}";

const ROW_GROUP: usize = 64 * 1024;

#[derive(Default)]
struct Columns {
    path: Vec<ByteArray>,
    size: Vec<i64>,
    mtime: Vec<i64>,
    atime: Vec<i64>,
    ext: Vec<ByteArray>,
    perms: Vec<ByteArray>,
    owner: Vec<ByteArray>,
    hash: Vec<ByteArray>,
    escaped: Vec<bool>,
    ctime: Vec<i64>,
    mode: Vec<i64>,
    uid: Vec<i64>,
    gid: Vec<i64>,
    inode: Vec<i64>,
    device: Vec<i64>,
    nlink: Vec<i64>,
    is_stub: Vec<bool>,
    stub: Vec<ByteArray>,
    stub_def: Vec<i16>,
}

/// Writes records to a Parquet file.
pub struct ParquetWriter<W: Write + Send> {
    w: SerializedFileWriter<W>,
    buf: Columns,
    rows: u64,
}

fn ba(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(out: W) -> Result<Self, BatchError> {
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(concat!("alto ", env!("CARGO_PKG_VERSION")).to_owned())
            .build();
        let w = SerializedFileWriter::new(out, schema, Arc::new(props))?;
        Ok(Self { w, buf: Columns::default(), rows: 0 })
    }

    pub fn write(&mut self, r: &ScanRecord) -> Result<(), BatchError> {
        let (path, escaped) = encode_path(&r.path);
        let b = &mut self.buf;
        b.path.push(ba(&path));
        b.size.push(r.size.min(i64::MAX as u64) as i64);
        b.mtime.push(r.mtime_us);
        b.atime.push(r.atime_us);
        b.ext.push(ba(&r.extension()));
        b.perms.push(ba(&r.permissions()));
        b.owner.push(ba(&r.owner));
        b.hash.push(ba(&r.hash));
        b.escaped.push(escaped);
        b.ctime.push(r.ctime_us);
        b.mode.push(i64::from(r.mode));
        b.uid.push(i64::from(r.uid));
        b.gid.push(i64::from(r.gid));
        b.inode.push(r.inode as i64);
        b.device.push(r.device as i64);
        b.nlink.push(r.nlink as i64);
        b.is_stub.push(r.stub.is_some());
        match &r.stub {
            Some(s) => {
                b.stub.push(ba(s));
                b.stub_def.push(1);
            }
            None => b.stub_def.push(0),
        }
        self.rows += 1;
        if self.buf.path.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BatchError> {
        if self.buf.path.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.buf);
        let mut rg = self.w.next_row_group()?;
        let mut i = 0;
        while let Some(mut col) = rg.next_column()? {
            match i {
                0 => col.typed::<ByteArrayType>().write_batch(&b.path, None, None)?,
                1 => col.typed::<Int64Type>().write_batch(&b.size, None, None)?,
                2 => col.typed::<Int64Type>().write_batch(&b.mtime, None, None)?,
                3 => col.typed::<Int64Type>().write_batch(&b.atime, None, None)?,
                4 => col.typed::<ByteArrayType>().write_batch(&b.ext, None, None)?,
                5 => col.typed::<ByteArrayType>().write_batch(&b.perms, None, None)?,
                6 => col.typed::<ByteArrayType>().write_batch(&b.owner, None, None)?,
                7 => col.typed::<ByteArrayType>().write_batch(&b.hash, None, None)?,
                8 => col.typed::<BoolType>().write_batch(&b.escaped, None, None)?,
                9 => col.typed::<Int64Type>().write_batch(&b.ctime, None, None)?,
                10 => col.typed::<Int64Type>().write_batch(&b.mode, None, None)?,
                11 => col.typed::<Int64Type>().write_batch(&b.uid, None, None)?,
                12 => col.typed::<Int64Type>().write_batch(&b.gid, None, None)?,
                13 => col.typed::<Int64Type>().write_batch(&b.inode, None, None)?,
                14 => col.typed::<Int64Type>().write_batch(&b.device, None, None)?,
                15 => col.typed::<Int64Type>().write_batch(&b.nlink, None, None)?,
                16 => col.typed::<BoolType>().write_batch(&b.is_stub, None, None)?,
                17 => col.typed::<ByteArrayType>().write_batch(&b.stub, Some(&b.stub_def), None)?,
                _ => {
                    return Err(BatchError::Malformed(
                        "schema has more columns than written".into(),
                    ))
                }
            };
            col.close()?;
            i += 1;
        }
        rg.close()?;
        Ok(())
    }

    /// Writes the last row group and the footer.
    pub fn finish(mut self) -> Result<u64, BatchError> {
        self.flush()?;
        self.w.close()?;
        Ok(self.rows)
    }
}

/// Reads and validates records from Parquet bytes.
pub struct ParquetReader {
    rows: Box<dyn Iterator<Item = Result<Row, parquet::errors::ParquetError>> + Send>,
    n: u64,
    idx: [usize; 18],
    /// The uncompressed size of every column chunk, as the file's footer declares it.
    declared: u64,
}

const NAMES: [&str; 18] = crate::csvfmt::COLUMNS;

impl ParquetReader {
    pub fn new(bytes: bytes::Bytes) -> Result<Self, BatchError> {
        let file = bytes.clone();
        let reader = SerializedFileReader::new(bytes)?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let mut idx = [usize::MAX; 18];
        for (i, name) in NAMES.iter().enumerate() {
            idx[i] =
                (0..schema.num_columns()).find(|c| schema.column(*c).name() == *name).ok_or_else(
                    || BatchError::Malformed(format!("Parquet batch lacks column `{name}`")),
                )?;
        }
        let declared = reader
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| u64::try_from(c.uncompressed_size()).unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add);
        // What the pages themselves say counts too: a page is decompressed into as much as
        // its own header declares, whatever the footer claims.
        let mut pages = 0u64;
        for c in reader.metadata().row_groups().iter().flat_map(|rg| rg.columns()) {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            pages = pages.saturating_add(page_bytes(&file, start, c.compressed_size())?);
        }
        let declared = declared.max(pages);
        let rows = parquet::record::reader::RowIter::from_file_into(Box::new(reader));
        Ok(Self { rows: Box::new(rows), n: 0, idx, declared })
    }

    /// The uncompressed size of the column data, as the file declares it in its footer and
    /// in its page headers, whichever is more (checked against a limit before any page is
    /// decompressed).
    pub fn declared_uncompressed_bytes(&self) -> u64 {
        self.declared
    }
}

/// The sum of the uncompressed sizes the page headers of one column chunk declare
/// (`compressed` bytes from `start`). Page headers are Thrift compact structs whose first
/// fields are the page type, the uncompressed and the compressed size.
fn page_bytes(file: &[u8], start: i64, compressed: i64) -> Result<u64, BatchError> {
    let bad = || BatchError::Malformed("invalid Parquet: unreadable page header".into());
    let start = usize::try_from(start).map_err(|_| bad())?;
    let end = start.checked_add(usize::try_from(compressed).map_err(|_| bad())?).ok_or_else(bad)?;
    if end > file.len() {
        return Err(bad());
    }
    let (mut pos, mut total) = (start, 0u64);
    while pos < end {
        let mut t = Thrift { buf: &file[..end], pos };
        let (uncompressed, size) = t.page_header().ok_or_else(bad)?;
        total = total.saturating_add(uncompressed);
        pos = t.pos.checked_add(usize::try_from(size).map_err(|_| bad())?).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Just enough of the Thrift compact protocol to read page headers and skip what they hold.
struct Thrift<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Thrift<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n).filter(|p| *p <= self.buf.len())?;
        Some(())
    }

    /// Skips one value of compact type `ty`.
    fn value(&mut self, ty: u8, depth: u32) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match ty {
            1 | 2 => Some(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let n = usize::try_from(self.varint()?).ok()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = if h >> 4 == 15 { self.varint()? } else { u64::from(h >> 4) };
                for _ in 0..n {
                    match h & 0x0f {
                        1 | 2 => self.skip(1)?,
                        et => self.value(et, depth + 1)?,
                    }
                }
                Some(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Some(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.value(kv >> 4, depth + 1)?;
                    self.value(kv & 0x0f, depth + 1)?;
                }
                Some(())
            }
            12 => self.fields(depth + 1, |_, _, _| None).map(drop),
            _ => None,
        }
    }

    /// Reads a struct's fields to its end; `f(id, type, self)` may read a field (returning
    /// `Some`), otherwise it is skipped.
    fn fields(
        &mut self,
        depth: u32,
        mut f: impl FnMut(i16, u8, &mut Self) -> Option<()>,
    ) -> Option<()> {
        let mut id = 0i16;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Some(());
            }
            let ty = h & 0x0f;
            id = match h >> 4 {
                0 => i16::try_from(self.zigzag()?).ok()?,
                d => id.checked_add(i16::from(d))?,
            };
            let at = self.pos;
            if f(id, ty, self).is_none() {
                self.pos = at;
                self.value(ty, depth)?;
            }
        }
    }

    /// `(uncompressed_page_size, compressed_page_size)` of the page header here.
    fn page_header(&mut self) -> Option<(u64, u64)> {
        let (mut un, mut co) = (None, None);
        self.fields(0, |id, ty, t| match (id, ty) {
            (2, 5) => {
                un = u64::try_from(t.zigzag()?).ok();
                Some(())
            }
            (3, 5) => {
                co = u64::try_from(t.zigzag()?).ok();
                Some(())
            }
            _ => None,
        })?;
        Some((un?, co?))
    }
}

fn get(row: &Row, i: usize) -> &Field {
    row.get_column_iter().nth(i).map(|(_, f)| f).unwrap_or(&Field::Null)
}

impl Iterator for ParquetReader {
    type Item = Result<ScanRecord, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = self.rows.next()?;
        self.n += 1;
        let n = self.n;
        let idx = self.idx;
        Some((move || {
            let row = row?;
            let bad = |name: &str| BatchError::Row {
                row: n,
                message: format!("column {name} has a wrong type or value"),
            };
            let text = |c: usize| match get(&row, idx[c]) {
                Field::Str(s) => Ok(s.clone()),
                _ => Err(bad(NAMES[c])),
            };
            let int = |c: usize| match get(&row, idx[c]) {
                Field::Long(v) => Ok(*v),
                Field::TimestampMicros(v) => Ok(*v),
                Field::Int(v) => Ok(i64::from(*v)),
                _ => Err(bad(NAMES[c])),
            };
            let uint = |c: usize| {
                int(c).and_then(|v| {
                    u64::try_from(v).map_err(|_| BatchError::Row {
                        row: n,
                        message: format!("{} must not be negative", NAMES[c]),
                    })
                })
            };
            let boolean = |c: usize| match get(&row, idx[c]) {
                Field::Bool(v) => Ok(*v),
                _ => Err(bad(NAMES[c])),
            };
            let escaped = boolean(8)?;
            let path = decode_path(&text(0)?, escaped).ok_or_else(|| BatchError::Row {
                row: n,
                message: "file_path has a malformed escape".into(),
            })?;
            let stub = if boolean(16)? {
                Some(match get(&row, idx[17]) {
                    Field::Str(s) => s.clone(),
                    _ => String::new(),
                })
            } else {
                None
            };
            let r = ScanRecord {
                path,
                size: uint(1)?,
                mtime_us: int(2)?,
                atime_us: int(3)?,
                owner: text(6)?,
                hash: text(7)?,
                ctime_us: int(9)?,
                mode: u32::try_from(uint(10)?).map_err(|_| bad("mode"))?,
                uid: u32::try_from(uint(11)?).map_err(|_| bad("uid"))?,
                gid: u32::try_from(uint(12)?).map_err(|_| bad("gid"))?,
                inode: uint(13)?,
                device: uint(14)?,
                nlink: uint(15)?,
                stub,
            };
            validate(n, &r)?;
            Ok(r)
        })())
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A data page header (type, sizes, a nested struct with a list and a binary) and its
    /// payload, as Thrift compact bytes.
    fn page(uncompressed: i64, payload: &[u8]) -> Vec<u8> {
        let z = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
        let mut b = vec![0x15];
        varint(z(0), &mut b);
        b.push(0x15);
        varint(z(uncompressed), &mut b);
        b.push(0x15);
        varint(z(payload.len() as i64), &mut b);
        // field 5: struct { 1: i32, 2: list<binary> [b"ab"], 3: bool true }
        b.extend_from_slice(&[0x2c, 0x15, 0x02, 0x19, 0x18, 0x02, b'a', b'b', 0x11, 0x00]);
        b.push(0x00);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn page_headers_are_read_whatever_the_footer_says() {
        let mut file = page(1 << 30, b"xxxx");
        file.extend(page(10, b"yy"));
        assert_eq!(page_bytes(&file, 0, file.len() as i64).unwrap(), (1 << 30) + 10);
        for bad in [&file[..5], &[0x15u8, 0x00, 0x1c][..]] {
            assert!(page_bytes(bad, 0, bad.len() as i64).is_err());
        }
        assert!(page_bytes(&file, 0, file.len() as i64 + 1).is_err());
    }

    #[test]
    fn written_batches_declare_what_their_pages_hold() {
        let mut buf = Vec::new();
        {
            let mut w = ParquetWriter::new(&mut buf).unwrap();
            for i in 0..70_000u64 {
                let mut r = ScanRecord {
                    path: format!("/srv/p/{i:09}.dat").into_bytes(),
                    size: i,
                    owner: "alice".into(),
                    stub: (i % 3 == 0).then(|| format!("obj-{i}")),
                    ..Default::default()
                };
                r.mode = 0o100644;
                w.write(&r).unwrap();
            }
            w.finish().unwrap();
        }
        let r = ParquetReader::new(bytes::Bytes::from(buf)).unwrap();
        assert!(
            r.declared_uncompressed_bytes() > 70_000 * 8,
            "{}",
            r.declared_uncompressed_bytes()
        );
        assert_eq!(r.count(), 70_000);
    }
}
