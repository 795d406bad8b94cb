//! First start: create the platform administrator if there is none.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use alto_db::{users, Db, DbError, TenantCtx};
use alto_model::Clock;
use base64::Engine as _;
use rand::RngCore as _;
use uuid::Uuid;

use crate::config::BootstrapConfig;
use crate::secrets;

/// The credentials of an administrator created by this start, to show once.
#[derive(Debug, Clone)]
pub struct InitialAdmin {
    pub username: String,
    pub password: String,
    /// Where the generated password was written, if it was generated.
    pub password_file: Option<std::path::PathBuf>,
}

/// Name of the file holding a generated initial password (mode 0600).
pub const PASSWORD_FILE: &str = "initial-admin-password";

/// Creates the bootstrap admin when no platform user exists. Safe under concurrent replicas:
/// a unique-name conflict means another replica won.
pub async fn ensure_admin(
    db: &Db,
    cfg: &BootstrapConfig,
    data_dir: &Path,
    clock: &dyn Clock,
) -> Result<Option<InitialAdmin>, DbError> {
    let mut tx = db.begin(TenantCtx::Platform).await?;
    let platform_users = users::count_platform_users(&mut tx).await?;
    if platform_users > 0 {
        return Ok(None);
    }
    let generated = cfg.admin_password.is_none();
    let password = cfg.admin_password.clone().unwrap_or_else(|| {
        let mut b = [0u8; 18];
        rand::rng().fill_bytes(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    });
    let hash = secrets::hash_password_async(password.clone()).await;
    let now = clock.now();
    let id = Uuid::now_v7();
    let res = users::create(
        &mut tx,
        &users::NewUser {
            id,
            customer_id: None,
            username: &cfg.admin_username,
            display_name: Some("Platform administrator"),
            password_hash: &hash,
        },
        &["platform_admin".to_owned()],
        None,
        now,
    )
    .await;
    match res {
        Ok(_) => {}
        Err(DbError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    alto_db::audit::append(
        &mut tx,
        &alto_db::audit::NewEntry {
            customer_id: None,
            at: now,
            actor_kind: "system".into(),
            actor_id: None,
            actor_name: Some("alto-server".into()),
            action: "user.create".into(),
            target_kind: Some("user".into()),
            target_id: Some(id.to_string()),
            outcome: "success".into(),
            source_ip: None,
            details: serde_json::json!({ "username": cfg.admin_username, "roles": ["platform_admin"], "bootstrap": true }),
        },
    )
    .await?;
    tx.commit().await?;
    let password_file = if generated {
        let path = data_dir.join(PASSWORD_FILE);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{password}"));
        match written {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "could not write the initial admin password file");
                None
            }
        }
    } else {
        None
    };
    Ok(Some(InitialAdmin { username: cfg.admin_username.clone(), password, password_file }))
}
