//! Users, role memberships, sessions and the failed-login throttle.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub username: String,
    pub display_name: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub roles: Vec<String>,
}

const COLS: &str = "u.id, u.customer_id, u.username, u.display_name, u.disabled, u.created_at,
    u.updated_at, coalesce((SELECT array_agg(r.role ORDER BY r.role) FROM role_memberships r
                            WHERE r.user_id = u.id), '{}') AS roles";

pub struct NewUser<'a> {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub password_hash: &'a str,
}

pub async fn create(
    tx: &mut Tx,
    u: &NewUser<'_>,
    roles: &[String],
    granted_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<UserRow, DbError> {
    sqlx::query(
        "INSERT INTO users (id, customer_id, username, display_name, password_hash, disabled,
                            created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, false, $6, $6)",
    )
    .bind(u.id)
    .bind(u.customer_id)
    .bind(u.username)
    .bind(u.display_name)
    .bind(u.password_hash)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    set_roles(tx, u.id, u.customer_id, roles, granted_by, now).await?;
    get(tx, u.id).await
}

pub async fn get(tx: &mut Tx, id: Uuid) -> Result<UserRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM users u WHERE u.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("user"))
}

/// Users of one tenant, or platform users when `customer_id` is `None`, oldest first, after
/// the cursor: `limit` rows at most.
pub async fn list(
    tx: &mut Tx,
    customer_id: Option<Uuid>,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Vec<UserRow>, DbError> {
    let (ts, id) = Cursor::binds(after);
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM users u
          WHERE u.customer_id IS NOT DISTINCT FROM $1
            AND ($2::timestamptz IS NULL OR (u.created_at, u.id) > ($2, $3))
          ORDER BY u.created_at, u.id LIMIT $4"
    ))
    .bind(customer_id)
    .bind(ts)
    .bind(id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Replaces the user's roles.
pub async fn set_roles(
    tx: &mut Tx,
    user_id: Uuid,
    customer_id: Option<Uuid>,
    roles: &[String],
    granted_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM role_memberships WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO role_memberships (user_id, customer_id, role, granted_by, granted_at)
         SELECT $1, $2, r, $4, $5 FROM unnest($3::text[]) AS r",
    )
    .bind(user_id)
    .bind(customer_id)
    .bind(roles)
    .bind(granted_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn update(
    tx: &mut Tx,
    id: Uuid,
    display_name: Option<&str>,
    disabled: Option<bool>,
    password_hash: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let n = sqlx::query(
        "UPDATE users SET display_name = coalesce($2, display_name),
                disabled = coalesce($3, disabled), password_hash = coalesce($4, password_hash),
                updated_at = $5
          WHERE id = $1",
    )
    .bind(id)
    .bind(display_name)
    .bind(disabled)
    .bind(password_hash)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(DbError::NotFound("user"));
    }
    Ok(())
}

/// Counts enabled platform administrators (to refuse removing the last one).
pub async fn count_active_platform_admins(tx: &mut Tx) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM users u JOIN role_memberships r ON r.user_id = u.id
          WHERE r.role = 'platform_admin' AND NOT u.disabled",
    )
    .fetch_one(&mut **tx)
    .await?)
}

// --- Authentication -------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserAuth {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub password_hash: String,
    pub disabled: bool,
}

pub async fn auth_user_by_name(tx: &mut Tx, username: &str) -> Result<Option<UserAuth>, DbError> {
    Ok(sqlx::query_as("SELECT * FROM auth_user_by_name($1)")
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionAuth {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub username: String,
    pub disabled: bool,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub roles: Vec<String>,
    pub tenant_status: Option<String>,
}

pub async fn auth_session(tx: &mut Tx, token_hash: &[u8]) -> Result<Option<SessionAuth>, DbError> {
    Ok(sqlx::query_as("SELECT * FROM auth_session($1)")
        .bind(token_hash)
        .fetch_optional(&mut **tx)
        .await?)
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub kind: &'a str,
    pub expires_at: DateTime<Utc>,
    pub source_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn create_session(
    tx: &mut Tx,
    s: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, customer_id, kind, created_at, expires_at,
                               source_ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(s.id)
    .bind(s.token_hash)
    .bind(s.user_id)
    .bind(s.customer_id)
    .bind(s.kind)
    .bind(now)
    .bind(s.expires_at)
    .bind(s.source_ip)
    .bind(s.user_agent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn revoke_session(tx: &mut Tx, id: Uuid, now: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Revokes every session of a user (disable, password change, role change).
pub async fn revoke_user_sessions(
    tx: &mut Tx,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    Ok(sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

// --- Throttle -------------------------------------------------------------------------------

/// Returns when the name is locked out until, if it is.
pub async fn throttle_locked_until(
    tx: &mut Tx,
    username: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let until: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(until.flatten().filter(|u| *u > now))
}

/// Records a failure for `key` (a username, or a username and source). After
/// `max_failures` within `window`, the key is locked for `lockout`, doubling with each
/// further failure (capped at 24 hours): the count starts again only after a quiet `window`
/// since the window started and since the last lock ended. Returns the lock end.
pub async fn throttle_record_failure(
    tx: &mut Tx,
    username: &str,
    now: DateTime<Utc>,
    max_failures: i32,
    window: chrono::Duration,
    lockout: chrono::Duration,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let (failures,): (i32,) = sqlx::query_as(
        "INSERT INTO login_throttle AS t (username, failures, window_started_at)
         VALUES ($1, 1, $2)
         ON CONFLICT (username) DO UPDATE SET
           failures = CASE WHEN t.window_started_at < $2 - $3
                                AND coalesce(t.locked_until, $2 - $3) <= $2 - $3
                           THEN 1 ELSE t.failures + 1 END,
           window_started_at = CASE WHEN t.window_started_at < $2 - $3
                                     AND coalesce(t.locked_until, $2 - $3) <= $2 - $3
                                    THEN $2 ELSE t.window_started_at END
         RETURNING failures",
    )
    .bind(username)
    .bind(now)
    .bind(window)
    .fetch_one(&mut **tx)
    .await?;
    if failures < max_failures {
        return Ok(None);
    }
    let extra = (failures - max_failures).min(10) as u32;
    let lock = (lockout * 2i32.pow(extra)).min(chrono::Duration::hours(24));
    let until = now + lock;
    sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE username = $1")
        .bind(username)
        .bind(until)
        .execute(&mut **tx)
        .await?;
    Ok(Some(until))
}

pub async fn throttle_reset(tx: &mut Tx, username: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM login_throttle WHERE username = $1")
        .bind(username)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `(revoked_at, expires_at)` of a session, for re-checking long-lived connections.
pub async fn session_state(
    tx: &mut Tx,
    id: Uuid,
) -> Result<Option<(Option<DateTime<Utc>>, DateTime<Utc>)>, DbError> {
    Ok(sqlx::query_as("SELECT revoked_at, expires_at FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// What a long-lived connection re-checks about its session: the session itself, the user
/// and the user's tenant (run with the platform context).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionCheck {
    pub revoked_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub tenant_status: Option<String>,
}

/// The session, user and tenant state of session `id`, for re-checking live connections.
pub async fn session_check(tx: &mut Tx, id: Uuid) -> Result<Option<SessionCheck>, DbError> {
    Ok(sqlx::query_as(
        "SELECT s.revoked_at, s.expires_at, u.disabled,
                coalesce((SELECT array_agg(r.role ORDER BY r.role) FROM role_memberships r
                           WHERE r.user_id = u.id), '{}') AS roles,
                (SELECT c.status FROM customers c WHERE c.id = u.customer_id) AS tenant_status
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Number of platform-scope users (bootstrap runs only when there are none).
pub async fn count_platform_users(tx: &mut Tx) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users WHERE customer_id IS NULL")
        .fetch_one(&mut **tx)
        .await?)
}
