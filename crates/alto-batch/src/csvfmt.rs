//! CSV batches: a header row, then one row per record (RFC 4180 quoting, so commas, quotes
//! and newlines in paths survive). The seed's eight columns alone are accepted on input.

use std::io::{Read, Write};

use chrono::{DateTime, SecondsFormat};

use crate::{decode_path, encode_path, validate, BatchError, ScanRecord};

pub(crate) const COLUMNS: [&str; 18] = [
    "file_path",
    "file_size",
    "last_modified",
    "last_accessed",
    "file_extension",
    "permissions",
    "owner",
    "hash",
    "path_escaped",
    "last_changed",
    "mode",
    "uid",
    "gid",
    "inode",
    "device",
    "nlink",
    "is_stub",
    "stub_object",
];

fn ts(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Writes records as CSV with the full header.
pub struct CsvWriter<W: Write> {
    w: csv::Writer<W>,
    rows: u64,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Result<Self, BatchError> {
        let mut w = csv::WriterBuilder::new().from_writer(out);
        w.write_record(COLUMNS)?;
        Ok(Self { w, rows: 0 })
    }

    pub fn write(&mut self, r: &ScanRecord) -> Result<(), BatchError> {
        let (path, escaped) = encode_path(&r.path);
        self.w.write_record([
            path.as_str(),
            &r.size.to_string(),
            &ts(r.mtime_us),
            &ts(r.atime_us),
            &r.extension(),
            &r.permissions(),
            &r.owner,
            &r.hash,
            if escaped { "true" } else { "false" },
            &ts(r.ctime_us),
            &r.mode.to_string(),
            &r.uid.to_string(),
            &r.gid.to_string(),
            &r.inode.to_string(),
            &r.device.to_string(),
            &r.nlink.to_string(),
            if r.stub.is_some() { "true" } else { "false" },
            r.stub.as_deref().unwrap_or(""),
        ])?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<u64, BatchError> {
        let mut inner = self
            .w
            .into_inner()
            .map_err(|e| BatchError::Io(std::io::Error::other(e.to_string())))?;
        inner.flush()?;
        drop(inner);
        Ok(self.rows)
    }
}

/// Reads and validates CSV records.
pub struct CsvReader<R: Read> {
    rows: csv::StringRecordsIntoIter<R>,
    full: bool,
    n: u64,
}

impl<R: Read> CsvReader<R> {
    pub fn new(input: R) -> Result<Self, BatchError> {
        let mut rd = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input);
        let header: Vec<String> = rd.headers()?.iter().map(str::to_owned).collect();
        let full = header == COLUMNS;
        if !full && header != COLUMNS[..8] {
            return Err(BatchError::Malformed(format!(
                "CSV header must be `{}` (or its first eight columns); got `{}`",
                COLUMNS.join(","),
                header.join(",")
            )));
        }
        Ok(Self { rows: rd.into_records(), full, n: 0 })
    }
}

fn parse_ts(row: u64, name: &str, s: &str) -> Result<i64, BatchError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros()).map_err(|_| BatchError::Row {
        row,
        message: format!(
            "{name} `{}` is not an RFC 3339 time",
            s.chars().take(40).collect::<String>()
        ),
    })
}

fn parse_num<T: std::str::FromStr>(row: u64, name: &str, s: &str) -> Result<T, BatchError> {
    s.parse().map_err(|_| BatchError::Row {
        row,
        message: format!(
            "{name} `{}` is not a valid non-negative integer",
            s.chars().take(40).collect::<String>()
        ),
    })
}

fn parse_bool(row: u64, name: &str, s: &str) -> Result<bool, BatchError> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(BatchError::Row { row, message: format!("{name} must be true or false") }),
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<ScanRecord, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rec = self.rows.next()?;
        self.n += 1;
        let row = self.n;
        Some((|| {
            let rec = rec?;
            let f = |i: usize| rec.get(i).unwrap_or("");
            let escaped = if self.full { parse_bool(row, "path_escaped", f(8))? } else { false };
            let path = decode_path(f(0), escaped).ok_or_else(|| BatchError::Row {
                row,
                message: "file_path has a malformed escape".into(),
            })?;
            let owner = f(6).to_owned();
            let mut r = ScanRecord {
                path,
                size: parse_num(row, "file_size", f(1))?,
                mtime_us: parse_ts(row, "last_modified", f(2))?,
                atime_us: parse_ts(row, "last_accessed", f(3))?,
                owner,
                hash: f(7).to_owned(),
                ..Default::default()
            };
            r.ctime_us = r.mtime_us;
            if self.full {
                r.ctime_us = parse_ts(row, "last_changed", f(9))?;
                r.mode = parse_num(row, "mode", f(10))?;
                r.uid = parse_num(row, "uid", f(11))?;
                r.gid = parse_num(row, "gid", f(12))?;
                r.inode = parse_num(row, "inode", f(13))?;
                r.device = parse_num(row, "device", f(14))?;
                r.nlink = parse_num(row, "nlink", f(15))?;
                if parse_bool(row, "is_stub", f(16))? {
                    r.stub = Some(f(17).to_owned());
                }
            }
            validate(row, &r)?;
            Ok(r)
        })())
    }
}
