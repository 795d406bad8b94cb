//! The agent's identity on disk: `<state_dir>/credential.json`, written atomically with mode
//! 0600. It holds the host credential (a bearer secret) and the server it belongs to.
//! `<state_dir>/credential.pending.json` (same format and mode) exists only while a credential
//! rotation is in flight (see [`crate::rotation`]).
//!
//! [`SharedCredential`] is the credential in memory, shared by every task that talks to the
//! server, so that a rotation reaches them all at once; [`HostClient`] is an API client that
//! reads it for each request.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
    /// When this credential was issued (enrollment or rotation); the next scheduled rotation
    /// is due `credential_rotation_interval` later. Absent in identities written before
    /// rotation existed: the file's modification time stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn identity_path(state_dir: &Path) -> PathBuf {
    state_dir.join("credential.json")
}

/// Where a rotation in flight keeps the identity it is about to switch to.
pub fn pending_path(state_dir: &Path) -> PathBuf {
    state_dir.join("credential.pending.json")
}

/// Writes `bytes` to `path` atomically: a temporary file (0600) in the same directory,
/// fsynced, renamed over `path`, and the directory fsynced so the rename is durable.
fn write_atomic(state_dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("credential");
    let tmp = state_dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(state_dir)?.sync_all()
}

fn read_identity(p: &Path) -> std::io::Result<Identity> {
    let bytes = std::fs::read(p)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
    })
}

impl Identity {
    /// Writes the identity (temporary file, fsync, rename), creating the directory 0700.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(state_dir, &identity_path(state_dir), &bytes)
    }

    /// Writes the identity as the pending one (a rotation in flight), durably.
    pub fn save_pending(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(state_dir, &pending_path(state_dir), &bytes)
    }

    /// The pending identity, if a rotation was in flight. An unreadable one is `None` (it was
    /// never sent: it is written completely before the server is asked).
    pub fn load_pending(state_dir: &Path) -> Option<Identity> {
        let p = pending_path(state_dir);
        match read_identity(&p) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "unreadable pending credential ignored");
                None
            }
        }
    }

    /// Makes the pending identity the current one (one rename, then the directory fsynced).
    pub fn promote_pending(state_dir: &Path) -> std::io::Result<()> {
        std::fs::rename(pending_path(state_dir), identity_path(state_dir))?;
        std::fs::File::open(state_dir)?.sync_all()
    }

    /// Forgets the pending identity (the server never accepted it).
    pub fn drop_pending(state_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(pending_path(state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::File::open(state_dir)?.sync_all(),
        }
    }

    /// Reads the identity; a clear error if the agent is not enrolled.
    pub fn load(state_dir: &Path) -> std::io::Result<Identity> {
        let p = identity_path(state_dir);
        read_identity(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                std::io::Error::new(
                    e.kind(),
                    format!("{}: {e} (run `alto-agent enroll` first)", p.display()),
                )
            } else {
                e
            }
        })
    }
}

/// The host credential in memory, shared by every task that talks to the server. Cheap to
/// clone; a rotation [`SharedCredential::set`]s it once for all of them.
#[derive(Clone)]
pub struct SharedCredential(Arc<RwLock<String>>);

impl SharedCredential {
    pub fn new(credential: impl Into<String>) -> SharedCredential {
        SharedCredential(Arc::new(RwLock::new(credential.into())))
    }

    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, credential: impl Into<String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = credential.into();
    }
}

impl std::fmt::Debug for SharedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCredential(<redacted>)")
    }
}

/// An API client whose bearer token is read from a [`SharedCredential`] for each request
/// (or a fixed client, for one-shot commands).
#[derive(Debug, Clone)]
pub struct HostClient {
    base: alto_client::Client,
    credential: Option<SharedCredential>,
}

impl HostClient {
    /// Requests carry the current value of `credential`.
    pub fn shared(base: alto_client::Client, credential: SharedCredential) -> HostClient {
        HostClient { base, credential: Some(credential) }
    }

    /// Requests carry whatever token `client` has.
    pub fn fixed(client: alto_client::Client) -> HostClient {
        HostClient { base: client, credential: None }
    }

    /// A client with the current credential.
    pub fn get(&self) -> alto_client::Client {
        match &self.credential {
            Some(c) => self.base.clone().with_token(c.get()),
            None => self.base.clone(),
        }
    }
}
