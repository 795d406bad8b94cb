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
        let rows = parquet::record::reader::RowIter::from_file_into(Box::new(reader));
        Ok(Self { rows: Box::new(rows), n: 0, idx, declared })
    }

    /// The uncompressed size of the column data, as the file declares it (checked against a
    /// limit before any page is decompressed).
    pub fn declared_uncompressed_bytes(&self) -> u64 {
        self.declared
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
