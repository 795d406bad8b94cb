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
    alto_stub::recall(path, reader)?;
    Ok(Recalled { path: path.to_owned(), size: attr.size, sha256: attr.sha256_hex() })
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
