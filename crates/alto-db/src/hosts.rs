//! Hosts, enrollment tokens, agent credentials and heartbeats.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HostRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub reported_hostname: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_seen_ip: Option<String>,
    pub volumes: serde_json::Value,
    pub last_scan_at: Option<DateTime<Utc>>,
    pub file_count: i64,
    pub total_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub groups: Vec<String>,
    pub bandwidth_limit_bytes_per_second: Option<i64>,
    pub recall_bandwidth_limit_bytes_per_second: Option<i64>,
    /// The agent's last on-access recall report (`OnAccessStatus` as JSON), if any.
    pub on_access: Option<serde_json::Value>,
    pub on_access_reported_at: Option<DateTime<Utc>>,
}

const COLS: &str = "id, customer_id, name, description, status, agent_version, os,
    reported_hostname, last_seen_at, last_seen_ip, volumes, last_scan_at, file_count,
    total_bytes, created_at, updated_at, groups, bandwidth_limit_bytes_per_second, on_access,
    on_access_reported_at, recall_bandwidth_limit_bytes_per_second";

pub async fn create(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    name: &str,
    description: Option<&str>,
    now: DateTime<Utc>,
) -> Result<HostRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO hosts (id, customer_id, name, description, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLS}"
    ))
    .bind(id)
    .bind(customer_id)
    .bind(name)
    .bind(description)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// One host of `customer_id` (the explicit tenant filter doubles the RLS policy).
pub async fn get(tx: &mut Tx, customer_id: Uuid, id: Uuid) -> Result<HostRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM hosts WHERE customer_id = $1 AND id = $2"))
        .bind(customer_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("host"))
}

/// A tenant's hosts oldest first, after the cursor: `limit` rows at most.
pub async fn list(
    tx: &mut Tx,
    customer_id: Uuid,
    status: Option<&str>,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Vec<HostRow>, DbError> {
    let (ts, id) = Cursor::binds(after);
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM hosts
          WHERE customer_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
          ORDER BY created_at, id LIMIT $5"
    ))
    .bind(customer_id)
    .bind(status)
    .bind(ts)
    .bind(id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn update(
    tx: &mut Tx,
    customer_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
    bandwidth_limit: Option<i64>,
    now: DateTime<Utc>,
) -> Result<HostRow, DbError> {
    sqlx::query_as(&format!(
        "UPDATE hosts SET name = coalesce($3, name), description = coalesce($4, description),
                bandwidth_limit_bytes_per_second = CASE WHEN $6::bigint IS NULL
                    THEN bandwidth_limit_bytes_per_second ELSE nullif($6, 0) END,
                updated_at = $5
          WHERE customer_id = $1 AND id = $2 RETURNING {COLS}"
    ))
    .bind(customer_id)
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(now)
    .bind(bandwidth_limit)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("host"))
}

/// Marks a host decommissioned and revokes all its credentials and unused tokens.
pub async fn decommission(
    tx: &mut Tx,
    customer_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<HostRow, DbError> {
    let row: HostRow = sqlx::query_as(&format!(
        "UPDATE hosts SET status = 'decommissioned', updated_at = $3
          WHERE customer_id = $1 AND id = $2 RETURNING {COLS}"
    ))
    .bind(customer_id)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("host"))?;
    sqlx::query(
        "UPDATE host_credentials SET revoked_at = $3
          WHERE customer_id = $1 AND host_id = $2 AND revoked_at IS NULL",
    )
    .bind(customer_id)
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE host_enrollment_tokens SET expires_at = least(expires_at, $3)
          WHERE customer_id = $1 AND host_id = $2 AND used_at IS NULL",
    )
    .bind(customer_id)
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(row)
}

// --- Enrollment -----------------------------------------------------------------------------

/// Stores a new enrollment token hash; earlier unused tokens of the host stop working.
#[allow(clippy::too_many_arguments)]
pub async fn create_enrollment(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    host_id: Uuid,
    token_hash: &[u8],
    created_by: Option<Uuid>,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE host_enrollment_tokens SET expires_at = least(expires_at, $3)
          WHERE customer_id = $1 AND host_id = $2 AND used_at IS NULL",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO host_enrollment_tokens
           (id, customer_id, host_id, token_hash, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(host_id)
    .bind(token_hash)
    .bind(created_by)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentAuth {
    pub token_id: Uuid,
    pub host_id: Uuid,
    pub customer_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub async fn auth_enrollment_token(
    tx: &mut Tx,
    token_hash: &[u8],
) -> Result<Option<EnrollmentAuth>, DbError> {
    Ok(sqlx::query_as("SELECT * FROM auth_enrollment_token($1)")
        .bind(token_hash)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Marks the token used; false if it was used concurrently (exactly one caller wins).
pub async fn consume_enrollment(
    tx: &mut Tx,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE host_enrollment_tokens SET used_at = $2
          WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

// --- Credentials ----------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: Uuid,
    pub host_id: Uuid,
    pub created_via: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Adds a credential. Every other live credential of the host expires at `others_expire_at`
/// (the rotation overlap window), unless it already expires sooner.
#[allow(clippy::too_many_arguments)]
pub async fn add_credential(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    host_id: Uuid,
    secret_hash: &[u8],
    created_via: &str,
    now: DateTime<Utc>,
    others_expire_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE host_credentials SET expires_at = least(coalesce(expires_at, $3), $3)
          WHERE customer_id = $1 AND host_id = $2 AND revoked_at IS NULL",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(others_expire_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO host_credentials (id, customer_id, host_id, secret_hash, created_via, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(host_id)
    .bind(secret_hash)
    .bind(created_via)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks `credential_id` for a rotation and says whether it is the host's current credential
/// (neither superseded by a rotation nor revoked). Only the current credential may rotate: a
/// superseded one, still inside its overlap window, must not be able to issue a successor and
/// so cut the real agent's current credential short. The row lock serialises concurrent
/// rotations, so only the first of two with the same credential succeeds.
pub async fn lock_current_credential(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    credential_id: Uuid,
) -> Result<bool, DbError> {
    type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let row: Option<Times> = sqlx::query_as(
        "SELECT expires_at, revoked_at FROM host_credentials
          WHERE customer_id = $1 AND host_id = $2 AND id = $3
          FOR UPDATE",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(credential_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(matches!(row, Some((None, None))))
}

pub async fn list_credentials(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
) -> Result<Vec<CredentialRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, host_id, created_via, created_at, expires_at, revoked_at, last_used_at
           FROM host_credentials WHERE customer_id = $1 AND host_id = $2
          ORDER BY created_at, id",
    )
    .bind(customer_id)
    .bind(host_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Revokes one credential at once. NotFound if it is not this host's.
pub async fn revoke_credential(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<CredentialRow, DbError> {
    sqlx::query_as(
        "UPDATE host_credentials SET revoked_at = coalesce(revoked_at, $4)
          WHERE customer_id = $1 AND host_id = $2 AND id = $3
          RETURNING id, host_id, created_via, created_at, expires_at, revoked_at, last_used_at",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("credential"))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HostCredentialAuth {
    pub credential_id: Uuid,
    pub host_id: Uuid,
    pub customer_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub host_status: String,
    pub tenant_status: Option<String>,
}

pub async fn auth_host_credential(
    tx: &mut Tx,
    secret_hash: &[u8],
) -> Result<Option<HostCredentialAuth>, DbError> {
    Ok(sqlx::query_as("SELECT * FROM auth_host_credential($1)")
        .bind(secret_hash)
        .fetch_optional(&mut **tx)
        .await?)
}

pub async fn touch_credential(tx: &mut Tx, id: Uuid, now: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query("UPDATE host_credentials SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// --- Heartbeats and status ------------------------------------------------------------------

pub struct Heartbeat<'a> {
    pub agent_version: &'a str,
    pub os: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub volumes: serde_json::Value,
    pub source_ip: Option<&'a str>,
    /// The on-access recall status (`OnAccessStatus` as JSON). A REST heartbeat is the whole
    /// picture: absent means the agent does not say (an older agent), stored as such.
    pub on_access: Option<serde_json::Value>,
}

/// Records a heartbeat; returns the host's status before it (to detect status changes).
pub async fn heartbeat(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    hb: &Heartbeat<'_>,
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    let prev: String = sqlx::query_scalar(
        "SELECT status FROM hosts WHERE customer_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(customer_id)
    .bind(host_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("host"))?;
    sqlx::query(
        "UPDATE hosts SET status = 'online', agent_version = $3, os = coalesce($4, os),
                reported_hostname = coalesce($5, reported_hostname), volumes = $6,
                last_seen_at = $7, last_seen_ip = $8, updated_at = $7,
                on_access = $9, on_access_reported_at = CASE WHEN $9 IS NULL THEN NULL ELSE $7 END
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(hb.agent_version)
    .bind(hb.os)
    .bind(hb.hostname)
    .bind(&hb.volumes)
    .bind(now)
    .bind(hb.source_ip)
    .bind(&hb.on_access)
    .execute(&mut **tx)
    .await?;
    Ok(prev)
}

/// Records that the host's agent is alive without a REST heartbeat (agent link heartbeats
/// and sessions): online, `last_seen_at = now`, and the source address if known. Returns the
/// status before (to detect status changes).
pub async fn seen(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    source_ip: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    let prev: String = sqlx::query_scalar(
        "SELECT status FROM hosts WHERE customer_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(customer_id)
    .bind(host_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("host"))?;
    sqlx::query(
        "UPDATE hosts SET status = 'online', last_seen_at = $3,
                last_seen_ip = coalesce($4, last_seen_ip), updated_at = $3
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(now)
    .bind(source_ip)
    .execute(&mut **tx)
    .await?;
    Ok(prev)
}

/// Stores the on-access recall status an agent reported over the agent link (whose
/// heartbeats carry it only when it changed; an absent status leaves the stored one).
pub async fn set_on_access(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    on_access: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let n = sqlx::query(
        "UPDATE hosts SET on_access = $3, on_access_reported_at = $4
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(on_access)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(DbError::NotFound("host"));
    }
    Ok(())
}

/// The host's name (for alerts and audit details).
pub async fn name(tx: &mut Tx, customer_id: Uuid, id: Uuid) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar("SELECT name FROM hosts WHERE customer_id = $1 AND id = $2")
        .bind(customer_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Marks online hosts not seen since `cutoff` as offline; returns them.
pub async fn mark_stale_offline(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<HostRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE hosts SET status = 'offline', updated_at = $2
          WHERE status = 'online' AND last_seen_at < $1 RETURNING {COLS}"
    ))
    .bind(cutoff)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}

/// Records what an enrolling agent reported about itself (status is left to heartbeats).
pub async fn set_agent_info(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    agent_version: &str,
    os: Option<&str>,
    hostname: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE hosts SET agent_version = $3, os = coalesce($4, os), reported_hostname = $5,
                updated_at = $6
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(agent_version)
    .bind(os)
    .bind(hostname)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
