//! Explicit recall (`alto-agent recall PATH…`): brings stubs back from tier-2.
//!
//! For each path: read the stub attribute without opening the file; open the target it names
//! (a remote target with the settings remembered from its jobs, see [`crate::targets`], else
//! the directory target under `tier2.directory_base`); stream the object through the
//! verifying `reader` into [`alto_stub::recall`], which writes the content
//! back and removes the attribute only after the whole content hashed to the attribute's
//! SHA-256 (a corrupt object leaves the stub exactly as it was). Then tell the server
//! (`POST /agent/recalled`), best effort: the file is whole either way.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use alto_model::CustomerId;
use alto_stub::StubError;
use alto_tier2::{ObjectKey, Tier2Error};
use serde::Serialize;

/// Why one path was not recalled.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("not a stub")]
    NotAStub,
    #[error("unknown object key {0:?} in the stub attribute")]
    BadKey(String),
    #[error("tier-2: {0}")]
    Tier2(#[from] Tier2Error),
    #[error("{0}")]
    Stub(#[from] StubError),
}

/// One recalled file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Recalled {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Recalls the stub at `path` from the target its attribute names (`state_dir` holds the
/// remembered remote targets; `base` is `tier2.directory_base`).
pub fn recall_path(
    state_dir: &Path,
    base: &Path,
    customer: CustomerId,
    path: &Path,
) -> Result<Recalled, RecallError> {
    recall(state_dir, base, customer, path, None)
}

/// [`recall_path`] for a recall job: the download is paid for in `throttles` (the job's
/// host and job buckets) and steps aside for on-access fills.
pub fn recall_path_throttled(
    state_dir: &Path,
    base: &Path,
    customer: CustomerId,
    path: &Path,
    throttles: Vec<std::sync::Arc<crate::throttle::Throttle>>,
) -> Result<Recalled, RecallError> {
    recall(state_dir, base, customer, path, Some(throttles))
}

/// Recalls one path; `job`: the throttles of a recall job (a background copy).
fn recall(
    state_dir: &Path,
    base: &Path,
    customer: CustomerId,
    path: &Path,
    job: Option<Vec<std::sync::Arc<crate::throttle::Throttle>>>,
) -> Result<Recalled, RecallError> {
    alto_stub::read_attr(path)?.ok_or(RecallError::NotAStub)?;
    // One recall of a file at a time (the on-access handler takes the same lock).
    let id = alto_stub::identity(path)?;
    let _lock = crate::onaccess::recall_lock(state_dir, id.dev, id.inode)
        .map_err(|source| StubError::Io { op: "recall lock", source })?;
    let attr = alto_stub::read_attr(path)?.ok_or(RecallError::NotAStub)?;
    let key: ObjectKey =
        attr.object_key.parse().map_err(|_| RecallError::BadKey(attr.object_key.clone()))?;
    let target = crate::targets::open_for_read(state_dir, base, &attr.target, customer)?;
    let reader = target.reader(&key)?;
    match job {
        Some(t) => alto_stub::recall(path, crate::throttle::Throttled::background(reader, t))?,
        None => alto_stub::recall(path, reader)?,
    }
    Ok(Recalled { path: path.to_owned(), size: attr.size, sha256: attr.sha256_hex() })
}

/// The paths to recall for an argument: the path itself when it is not a directory, else
/// every stub in its tree (symbolic links are not followed, other file systems not
/// entered), in path order. Unreadable directories are reported in the second list.
pub fn stubs_under(p: &Path) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => m,
        _ => return (vec![p.to_owned()], Vec::new()),
    };
    let dev = meta.dev();
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let mut dirs = vec![p.to_owned()];
    while let Some(d) = dirs.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                errors.push((d, e));
                continue;
            }
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
            if m.is_dir() && m.dev() == dev {
                dirs.push(path);
            } else if m.is_file() && matches!(alto_stub::read_attr(&path), Ok(Some(_))) {
                found.push(path);
            }
        }
    }
    found.sort();
    (found, errors)
}

/// The absolute path of `p` as the scanner reports it (its directory resolved, the name
/// kept), in the scan batch's spelling: `(text, escaped)`.
pub fn inventory_path(p: &Path) -> (String, bool) {
    let abs = match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            dir.canonicalize().map(|d| d.join(name)).unwrap_or_else(|_| p.to_owned())
        }
        _ => p.to_owned(),
    };
    alto_batch::encode_path(abs.as_os_str().as_bytes())
}
