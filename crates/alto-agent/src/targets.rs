//! The tier-2 targets this agent writes to and reads from.
//!
//! `directory` targets are reached under `tier2.directory_base` (this agent's mount). The
//! others (S3, Azure Blob, SMB) come with their settings and credentials in each job; the
//! agent remembers the last settings of every target it used in
//! `<state_dir>/targets/<name>.json` (0600, like the host credential), so that `recall` can
//! reach the objects of a stub without the server.
//!
//! **Must never:** log a target's config (it holds credentials); write the remembered settings
//! readable by anyone but the agent's user.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use alto_model::CustomerId;
use alto_tier2::{DirTarget, OpenOptions, Target, TargetSpec, Tier2Error};

use crate::job::ExecTarget;

fn targets_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("targets")
}

/// Where remote puts spool their hashed (and compressed) copy before the upload.
pub fn spool_dir(state_dir: &Path) -> PathBuf {
    let d = state_dir.join("tier-spool");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The spec of a job's (non-directory) target.
pub fn spec_of(t: &ExecTarget) -> Result<TargetSpec, Tier2Error> {
    let v = serde_json::json!({
        "kind": t.kind,
        "location": t.location,
        "config": if t.config.is_null() { serde_json::json!({}) } else { t.config.clone() },
    });
    serde_json::from_value(v)
        .map_err(|e| Tier2Error::Config(format!("storage target {:?}: {e}", t.name)))
}

/// A file name for the target `name` (any bytes in the name are hex-escaped).
fn file_for(state_dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect();
    targets_dir(state_dir).join(format!("{safe}.json"))
}

/// Remembers the settings of target `name` (best effort; a failure is logged).
pub fn remember(state_dir: &Path, name: &str, spec: &TargetSpec) {
    let res = (|| -> std::io::Result<()> {
        let dir = targets_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = file_for(state_dir, name);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(spec).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        tracing::warn!(target = %name, error = %e, "could not remember the target's settings");
    }
}

/// Opens the target named `name` for reading: a remembered remote target, else the directory
/// target under `directory_base`.
pub fn open_for_read(
    state_dir: &Path,
    directory_base: &Path,
    name: &str,
    customer: CustomerId,
) -> Result<Target, Tier2Error> {
    let path = file_for(state_dir, name);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let spec: TargetSpec = serde_json::from_slice(&bytes)
                .map_err(|e| Tier2Error::Config(format!("{}: {e}", path.display())))?;
            let opts = OpenOptions {
                spool_dir: Some(spool_dir(state_dir)),
                directory_base: Some(directory_base.to_owned()),
                ..OpenOptions::default()
            };
            Target::open(&spec, customer, &opts)
        }
        Err(_) => Ok(Target::from(DirTarget::open(directory_base, customer)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn remembered_settings_are_private_and_names_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let t = ExecTarget {
            id: uuid::Uuid::nil(),
            name: "../s3 main".into(),
            kind: crate::job::TargetKind::S3,
            location: "s3://tier/a".into(),
            config: serde_json::json!({ "endpoint": "http://127.0.0.1:9", "access_key_id": "AK",
                "secret_access_key": "SECRET-XYZ", "allow_http": true, "path_style": true }),
        };
        let spec = spec_of(&t).unwrap();
        remember(dir.path(), &t.name, &spec);
        let f = file_for(dir.path(), &t.name);
        assert!(f.starts_with(dir.path().join("targets")), "{}", f.display());
        assert_eq!(f.file_name().unwrap(), "%2e%2e%2fs3%20main.json");
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!format!("{t:?}").contains("SECRET-XYZ"));
        let back = open_for_read(dir.path(), dir.path(), &t.name, CustomerId(uuid::Uuid::nil()));
        assert!(back.is_ok(), "{:?}", back.err());
    }
}
