//! Scheduled credential rotation, safe against a crash at any instant.
//!
//! Every `credential_rotation_interval` (from the current credential's `issued_at`) the agent
//! rotates with its **current** credential (the only one the server lets rotate):
//!
//! 1. make the new secret and id, and write the whole new identity to
//!    `credential.pending.json` (0600, fsync, rename, directory fsync);
//! 2. `POST /api/v1/agent/credentials/rotate` with them; the server stores the new credential
//!    and lets the old one work for its overlap window (`agents.credential_overlap`);
//! 3. rename the pending file over `credential.json` and switch every task to the new secret.
//!
//! A crash before 2 commits leaves a pending secret the server never saw; after it, one the
//! server knows. On start (and before every rotation) a pending identity is resolved by
//! authenticating with it: accepted → promoted (3); refused (401) → deleted, the current
//! credential stays; server unreachable → both kept, decided later. The old credential works
//! throughout the overlap window, so the agent authenticates at every point, and it ends with
//! a single current credential.
//!
//! **Must never:** send a secret the agent has not stored durably first; delete the pending
//! identity unless the server refused it; rotate with a superseded credential.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alto_api_types::{IssuedCredential, RotateCredential};
use alto_client::Client;
use alto_model::Clock as _;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::state::{identity_path, Identity, SharedCredential};

/// What became of a pending rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// There was none.
    None,
    /// The server knows it: it is the current credential now.
    Promoted,
    /// The server never accepted it: deleted.
    Dropped,
    /// The server could not say (unreachable): kept for later.
    Undecided,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("credential file: {0}")]
    Io(#[from] std::io::Error),
    #[error("rotation request: {0}")]
    Transport(String),
    #[error("the server refused the rotation: HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the server's answer does not match what was proposed")]
    Mismatch,
}

/// A new secret in the server's token format: `alto_h_` and 256 random bits in base64url.
pub fn new_secret() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("alto_h_{}", base64url(&bytes)))
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Whether `credential` authenticates: `Some(true)` yes, `Some(false)` refused (401), `None`
/// the server could not say.
async fn authenticates(base: &Client, credential: &str) -> Option<bool> {
    let r = base
        .clone()
        .with_token(credential.to_owned())
        .request(Method::GET, "/api/v1/agent/link")
        .send()
        .await
        .ok()?;
    match r.status() {
        // 404: authenticated, the server just has no link.
        s if s.is_success() || s == StatusCode::NOT_FOUND => Some(true),
        StatusCode::UNAUTHORIZED => Some(false),
        _ => None,
    }
}

/// Resolves a rotation a crash (or a lost answer) left pending; see the module docs.
pub async fn resolve_pending(state_dir: &Path, base: &Client) -> Result<Pending, RotationError> {
    let Some(pending) = Identity::load_pending(state_dir) else {
        return Ok(Pending::None);
    };
    match authenticates(base, &pending.credential).await {
        Some(true) => {
            Identity::promote_pending(state_dir)?;
            tracing::info!(credential = %pending.credential_id, "pending credential rotation completed");
            Ok(Pending::Promoted)
        }
        Some(false) => {
            Identity::drop_pending(state_dir)?;
            tracing::info!(credential = %pending.credential_id,
                "pending credential rotation was never accepted; the current credential stays");
            Ok(Pending::Dropped)
        }
        None => Ok(Pending::Undecided),
    }
}

/// Rotates now with `current` (steps 1–3 of the module docs); returns the new identity.
pub async fn rotate(
    state_dir: &Path,
    base: &Client,
    current: &Identity,
    now: DateTime<Utc>,
) -> Result<Identity, RotationError> {
    let next = Identity {
        credential_id: Uuid::now_v7(),
        credential: new_secret()?,
        issued_at: Some(now),
        ..current.clone()
    };
    next.save_pending(state_dir)?;
    let body =
        RotateCredential { credential_id: next.credential_id, credential: next.credential.clone() };
    let resp = base
        .clone()
        .with_token(current.credential.clone())
        .request(Method::POST, "/api/v1/agent/credentials/rotate")
        .json(&body)
        .send()
        .await
        .map_err(|e| RotationError::Transport(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let message = resp.text().await.unwrap_or_default().chars().take(300).collect();
        if status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            // Refused: nothing was stored on the server.
            Identity::drop_pending(state_dir)?;
            return Err(RotationError::Refused { status: status.as_u16(), message });
        }
        return Err(RotationError::Transport(format!("HTTP {status}: {message}")));
    }
    let issued: IssuedCredential =
        resp.json().await.map_err(|e| RotationError::Transport(e.to_string()))?;
    if issued.credential_id != next.credential_id || issued.credential != next.credential {
        // A server that ignores proposals: what it issued is what counts.
        tracing::warn!("the server issued its own credential instead of the proposed one");
        let theirs =
            Identity { credential_id: issued.credential_id, credential: issued.credential, ..next };
        theirs.save_pending(state_dir)?;
        Identity::promote_pending(state_dir)?;
        return Ok(theirs);
    }
    crate::fault::crash("rotate-crash-after-answer");
    Identity::promote_pending(state_dir)?;
    Ok(next)
}

/// When the credential of `id` was issued: `issued_at`, else the file's modification time.
fn issued_at(state_dir: &Path, id: &Identity) -> DateTime<Utc> {
    id.issued_at.unwrap_or_else(|| {
        std::fs::metadata(identity_path(state_dir))
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| alto_model::SystemClock.now())
    })
}

/// The rotation schedule of the daemon: runs until `cancel`. `credential` is switched on
/// every rotation (and when a pending one is promoted).
pub async fn run(
    state_dir: PathBuf,
    interval: Duration,
    base: Client,
    credential: SharedCredential,
    cancel: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    let every = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::days(30));
    // After a failure: 1 s, doubling, at most 5 min and at most the rotation interval.
    let mut backoff = crate::retry::Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(300).min(interval.max(Duration::from_secs(1))),
    );
    loop {
        let wait = match step(&state_dir, &base, &credential, every).await {
            Ok(next) => {
                backoff.reset();
                next
            }
            Err(e) => {
                let retry_in = backoff.failed();
                tracing::warn!(error = %e, ?retry_in, "credential rotation failed");
                retry_in
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One look at the schedule; returns how long to sleep.
async fn step(
    state_dir: &Path,
    base: &Client,
    credential: &SharedCredential,
    every: chrono::Duration,
) -> Result<Duration, RotationError> {
    match resolve_pending(state_dir, base).await? {
        Pending::Promoted => credential.set(Identity::load(state_dir)?.credential),
        Pending::Undecided => {
            return Err(RotationError::Transport(
                "a pending rotation awaits the server; not rotating again".into(),
            ))
        }
        Pending::None | Pending::Dropped => {}
    }
    let id = Identity::load(state_dir)?;
    let now = alto_model::SystemClock.now();
    let due = issued_at(state_dir, &id) + every;
    if now < due {
        return Ok((due - now)
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_millis(200), Duration::from_secs(3600)));
    }
    let next = rotate(state_dir, base, &id, now).await?;
    credential.set(next.credential.clone());
    tracing::info!(credential = %next.credential_id, previous = %id.credential_id,
        "host credential rotated");
    Ok(every
        .to_std()
        .unwrap_or_default()
        .clamp(Duration::from_millis(200), Duration::from_secs(3600)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_server_format() {
        let s = new_secret().unwrap();
        assert_eq!(s.len(), "alto_h_".len() + 43, "{s}");
        assert!(s["alto_h_".len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(s, new_secret().unwrap());
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"Man"), "TWFu");
    }
}
