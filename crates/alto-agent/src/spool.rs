//! The local spool: completed scans wait here until the server has acknowledged them, so a
//! server outage or an agent restart loses nothing.
//!
//! Layout: `<state_dir>/spool/<scan_id>/` holds `part-NNNNN.parquet` files and, once the
//! scan is complete, `manifest.json` (`{kind, parts}`); a part the server acknowledged gets
//! a `part-NNNNN.acked` marker. A directory without a manifest is an interrupted scan and is
//! removed. A scan the server refused as malformed moves to `spool/rejected/`.
//!
//! **Invariant:** a spooled scan is deleted only after the server acknowledged its last part.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alto_batch::{BatchWriter, Format};
use alto_client::{Client, ClientError};
use backon::Retryable as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: String,
    pub parts: u32,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("batch: {0}")]
    Batch(#[from] alto_batch::BatchError),
    #[error("server refused scan {scan}: {source}")]
    Rejected { scan: Uuid, source: ClientError },
    #[error("server unavailable: {0}")]
    Unavailable(ClientError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

pub struct Spool {
    dir: PathBuf,
}

fn part_name(n: u32) -> String {
    format!("part-{n:05}.parquet")
}

impl Spool {
    pub fn open(state_dir: &Path) -> Result<Spool, SpoolError> {
        let dir = state_dir.join("spool");
        std::fs::create_dir_all(dir.join("rejected")).map_err(io(&dir))?;
        Ok(Spool { dir })
    }

    /// Splits a scanned batch file into parts of `part_rows` and spools it as a complete scan.
    /// Returns the scan id. The source file is left alone.
    pub fn add_batch(
        &self,
        batch: &Path,
        kind: &str,
        part_rows: usize,
    ) -> Result<Uuid, SpoolError> {
        let format = Format::from_path(batch).ok_or_else(|| {
            alto_batch::BatchError::Malformed(format!("{}: unknown batch format", batch.display()))
        })?;
        let scan = Uuid::now_v7();
        let dir = self.dir.join(scan.to_string());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let input = std::fs::File::open(batch).map_err(io(batch))?;
        let mut part = 0u32;
        let mut in_part = 0usize;
        let mut rows = 0u64;
        let mut writer: Option<BatchWriter<std::fs::File>> = None;
        alto_batch::for_each(input, format, |r| {
            if writer.is_none() {
                writer = Some(BatchWriter::create(&dir.join(part_name(part)))?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&r)?;
            }
            in_part += 1;
            rows += 1;
            if in_part == part_rows {
                if let Some(w) = writer.take() {
                    w.finish()?;
                }
                part += 1;
                in_part = 0;
            }
            Ok(())
        })?;
        match writer.take() {
            Some(w) => {
                w.finish()?;
                part += 1;
            }
            None if part == 0 => {
                // An empty scan still needs one (empty) part to close it.
                BatchWriter::create(&dir.join(part_name(0)))?.finish()?;
                part = 1;
            }
            None => {}
        }
        let manifest = Manifest { kind: kind.to_owned(), parts: part, rows };
        let tmp = dir.join(".manifest.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&manifest).unwrap_or_default())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, dir.join("manifest.json")).map_err(io(&dir))?;
        Ok(scan)
    }

    /// Complete scans waiting for upload, oldest first. Interrupted ones are removed.
    pub fn pending(&self) -> Result<Vec<(Uuid, Manifest)>, SpoolError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let Ok(scan) = e.file_name().to_string_lossy().parse::<Uuid>() else { continue };
            let m = e.path().join("manifest.json");
            match std::fs::read(&m) {
                Ok(bytes) => {
                    if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
                        out.push((scan, manifest));
                    }
                }
                Err(_) => {
                    tracing::warn!(%scan, "removing an interrupted spooled scan");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        out.sort_by_key(|(s, _)| *s);
        Ok(out)
    }

    /// Uploads one spooled scan, skipping parts already acknowledged, and deletes it once
    /// the last part is acknowledged. Retries transient failures with exponential backoff
    /// (3 attempts per part, 1 s then 2 s apart: [`crate::retry`]); a refusal (4xx) moves the scan to `rejected/`.
    pub async fn upload(
        &self,
        client: &Client,
        scan: Uuid,
        m: &Manifest,
        bandwidth: u64,
    ) -> Result<(), SpoolError> {
        let dir = self.dir.join(scan.to_string());
        for n in 0..m.parts {
            let acked = dir.join(format!("part-{n:05}.acked"));
            if acked.exists() {
                continue;
            }
            let path = dir.join(part_name(n));
            let body = std::fs::read(&path).map_err(io(&path))?;
            let len = body.len() as u64;
            let last = n + 1 == m.parts;
            let started = std::time::Instant::now();
            let sent = (|| {
                client.upload_scan_part(
                    scan,
                    n as i32,
                    last,
                    &m.kind,
                    Format::Parquet.content_type(),
                    body.clone(),
                )
            })
            .retry(crate::retry::attempts(Duration::from_secs(1), 3))
            .when(|e| !is_refusal(e))
            .notify(|e, wait| {
                tracing::warn!(%scan, part = n, error = %e, ?wait, "upload failed; retrying");
            })
            .await;
            match sent {
                Ok(_) => {}
                Err(e) if is_refusal(&e) => {
                    let to = self.dir.join("rejected").join(scan.to_string());
                    let _ = std::fs::rename(&dir, &to);
                    return Err(SpoolError::Rejected { scan, source: e });
                }
                Err(e) => return Err(SpoolError::Unavailable(e)),
            }
            std::fs::write(&acked, b"").map_err(io(&acked))?;
            if bandwidth > 0 {
                let should = Duration::from_secs_f64(len as f64 / bandwidth as f64);
                if let Some(rest) = should.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        }
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        Ok(())
    }
}

/// A 4xx other than authentication or throttling: the scan itself is at fault.
fn is_refusal(e: &ClientError) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && s != 401 && s != 408 && s != 429)
}
