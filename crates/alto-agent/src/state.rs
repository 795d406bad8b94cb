//! The agent's identity on disk: `<state_dir>/credential.json`, written atomically with mode
//! 0600. It holds the host credential (a bearer secret) and the server it belongs to.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub server_url: String,
    pub host_id: Uuid,
    pub tenant_id: Uuid,
    pub credential_id: Uuid,
    pub credential: String,
    /// The agent link the server announced (URL and the CA its certificate is issued by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<alto_api_types::AgentLinkInfo>,
}

pub fn identity_path(state_dir: &Path) -> PathBuf {
    state_dir.join("credential.json")
}

impl Identity {
    /// Writes the identity (temporary file, fsync, rename), creating the directory 0700.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))?;
        let tmp = state_dir.join(".credential.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, identity_path(state_dir))?;
        Ok(())
    }

    /// Reads the identity; a clear error if the agent is not enrolled.
    pub fn load(state_dir: &Path) -> std::io::Result<Identity> {
        let p = identity_path(state_dir);
        let bytes = std::fs::read(&p).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: {e} (run `alto-agent enroll` first)", p.display()),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
        })
    }
}
