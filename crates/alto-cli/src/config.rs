//! The stored login: `credentials.json` in the configuration directory.
//!
//! The directory is `$ALTO_CONFIG_DIR`, else `$XDG_CONFIG_HOME/alto`, else `~/.config/alto`.
//! It is created with mode 0700 and the file is written with mode 0600 (atomically, via a
//! temporary file and a rename), because it holds a bearer token.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "credentials.json";

/// What `altoctl login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) server: String,
    pub(crate) token: String,
    pub(crate) username: String,
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The configuration directory.
pub(crate) fn dir() -> Result<PathBuf> {
    if let Some(d) = non_empty_env("ALTO_CONFIG_DIR") {
        return Ok(d);
    }
    if let Some(d) = non_empty_env("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
        return Ok(d.join("alto"));
    }
    let home = non_empty_env("HOME").ok_or_else(|| {
        anyhow!("cannot find the configuration directory: set ALTO_CONFIG_DIR or HOME")
    })?;
    Ok(home.join(".config").join("alto"))
}

/// The credentials file path.
pub(crate) fn path() -> Result<PathBuf> {
    Ok(dir()?.join(FILE_NAME))
}

/// Reads the stored login, if there is one.
pub(crate) fn load() -> Result<Option<Stored>> {
    let path = path()?;
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Ok(meta) = fs::metadata(&path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} is readable by other users; run `chmod 600` on it or log in again",
                path.display()
            );
        }
    }
    let stored = serde_json::from_slice(&bytes).with_context(|| {
        format!("{} is not a valid credentials file; run `altoctl login` again", path.display())
    })?;
    Ok(Some(stored))
}

/// Writes the login: directory 0700, file 0600, replaced atomically.
pub(crate) fn save(stored: &Stored) -> Result<PathBuf> {
    let dir = dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` only applies when the file is created; make sure of it either way.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        let mut body = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
        body.push(b'\n');
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", path.display())
    })?;
    Ok(path)
}

/// Deletes the stored login; `Ok(false)` if there was none.
pub(crate) fn remove() -> Result<bool> {
    let path = path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}
