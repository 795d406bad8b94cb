//! Storage targets (named tier-2 locations) and path tags.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub name: String,
    pub kind: String,
    pub location: String,
    /// The backend's settings and credentials, as given (not encrypted at rest): show it
    /// only redacted.
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_check_at: Option<DateTime<Utc>>,
    /// `ok`, `failed` or `unchecked`.
    pub last_check_status: Option<String>,
    pub last_check_latency_ms: Option<i64>,
    pub last_check_error: Option<serde_json::Value>,
    pub last_usage: Option<serde_json::Value>,
    pub last_usage_at: Option<DateTime<Utc>>,
}

const COLS: &str = "id, customer_id, name, kind, location, config, created_at, updated_at,
    last_check_at, last_check_status, last_check_latency_ms, last_check_error, last_usage,
    last_usage_at";

pub async fn list_targets(tx: &mut Tx, customer_id: Uuid) -> Result<Vec<TargetRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM storage_targets WHERE customer_id = $1 ORDER BY name"
    ))
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get_target(tx: &mut Tx, id: Uuid) -> Result<TargetRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM storage_targets WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("storage target"))
}

/// The target `id` of `customer_id` (`NotFound` for another tenant's, whatever RLS allows);
/// `for_update` locks the row for the rest of the transaction.
pub async fn get_target_of(
    tx: &mut Tx,
    customer_id: Uuid,
    id: Uuid,
    for_update: bool,
) -> Result<TargetRow, DbError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM storage_targets WHERE id = $1 AND customer_id = $2{lock}"
    ))
    .bind(id)
    .bind(customer_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("storage target"))
}

pub async fn get_target_by_name(
    tx: &mut Tx,
    customer_id: Uuid,
    name: &str,
) -> Result<TargetRow, DbError> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM storage_targets WHERE customer_id = $1 AND name = $2"
    ))
    .bind(customer_id)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("storage target"))
}

#[allow(clippy::too_many_arguments)]
pub async fn create_target(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    name: &str,
    kind: &str,
    location: &str,
    config: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<TargetRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO storage_targets (id, customer_id, name, kind, location, config, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLS}"
    ))
    .bind(id)
    .bind(customer_id)
    .bind(name)
    .bind(kind)
    .bind(location)
    .bind(config)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Replaces kind, location and config. The last check and usage were about the old settings
/// and are cleared when any of them changes.
pub async fn update_target(
    tx: &mut Tx,
    id: Uuid,
    kind: &str,
    location: &str,
    config: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<TargetRow, DbError> {
    // Every SET expression sees the row as it was, so `changed` compares the old settings.
    let changed = "(kind, location, config) IS DISTINCT FROM ($2::text, $3::text, $4::jsonb)";
    let keep = |col: &str| format!("{col} = CASE WHEN {changed} THEN NULL ELSE {col} END");
    let resets = [
        "last_check_at",
        "last_check_status",
        "last_check_latency_ms",
        "last_check_error",
        "last_usage",
        "last_usage_at",
    ]
    .map(keep)
    .join(", ");
    sqlx::query_as(&format!(
        "UPDATE storage_targets SET {resets}, kind = $2, location = $3, config = $4, updated_at = $5
          WHERE id = $1 RETURNING {COLS}"
    ))
    .bind(id)
    .bind(kind)
    .bind(location)
    .bind(config)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("storage target"))
}

/// What still uses a target: live rules naming it, unfinished tiering jobs going to it, and
/// live (pending or stubbed) entries of the stub registry whose objects are on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetUsers {
    pub rules: Vec<String>,
    pub open_jobs: i64,
    pub live_stubs: i64,
}

impl TargetUsers {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.open_jobs == 0 && self.live_stubs == 0
    }
}

pub async fn target_users(tx: &mut Tx, t: &TargetRow) -> Result<TargetUsers, DbError> {
    let rules: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM rules WHERE customer_id = $1 AND deleted_at IS NULL
            AND spec->'action'->>'target' = $2 ORDER BY priority, name",
    )
    .bind(t.customer_id)
    .bind(&t.name)
    .fetch_all(&mut **tx)
    .await?;
    let open_jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE customer_id = $1 AND kind = 'tier'
            AND state IN ('planned', 'queued', 'dispatched', 'running')
            AND (target_name = $2 OR payload->'storage_target'->>'id' = $3)",
    )
    .bind(t.customer_id)
    .bind(&t.name)
    .bind(t.id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    let live_stubs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stub_registry WHERE customer_id = $1 AND target_name = $2
            AND state IN ('pending', 'stubbed')",
    )
    .bind(t.customer_id)
    .bind(&t.name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(TargetUsers { rules, open_jobs, live_stubs })
}

/// Deletes the target (the caller checked [`target_users`] in the same transaction, with the
/// row locked).
pub async fn delete_target(tx: &mut Tx, id: Uuid) -> Result<(), DbError> {
    sqlx::query("DELETE FROM storage_targets WHERE id = $1").bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// The outcome of a check, as stored.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    pub at: DateTime<Utc>,
    pub status: String,
    pub latency_ms: Option<i64>,
    pub error: Option<serde_json::Value>,
    /// Usage measured by this check (`None` keeps the last one).
    pub usage: Option<serde_json::Value>,
}

/// Stores a check of `checked` (the row as read before checking); does nothing (returns
/// `false`) when the target's kind, location or config changed or it disappeared meanwhile
/// (the result is then about settings that are no longer there).
pub async fn record_check(
    tx: &mut Tx,
    checked: &TargetRow,
    c: &CheckRecord,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE storage_targets SET last_check_at = $5, last_check_status = $6,
                last_check_latency_ms = $7, last_check_error = $8,
                last_usage = COALESCE($9, last_usage),
                last_usage_at = CASE WHEN $9::jsonb IS NULL THEN last_usage_at ELSE $5 END
          WHERE id = $1 AND kind = $2 AND location = $3 AND config = $4",
    )
    .bind(checked.id)
    .bind(&checked.kind)
    .bind(&checked.location)
    .bind(&checked.config)
    .bind(c.at)
    .bind(&c.status)
    .bind(c.latency_ms)
    .bind(&c.error)
    .bind(&c.usage)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    pub id: Uuid,
    pub host_id: Option<Uuid>,
    pub path: String,
    pub key: String,
    pub value: String,
    pub created_at: DateTime<Utc>,
}

pub async fn list_tags(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Option<Uuid>,
) -> Result<Vec<TagRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, host_id, path, key, value, created_at FROM path_tags
          WHERE customer_id = $1 AND ($2::uuid IS NULL OR host_id IS NULL OR host_id = $2)
          ORDER BY path, key",
    )
    .bind(customer_id)
    .bind(host_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Sets a tag (replacing the value of the same key on the same path and host).
#[allow(clippy::too_many_arguments)]
pub async fn put_tag(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    host_id: Option<Uuid>,
    path: &str,
    key: &str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<TagRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO path_tags (id, customer_id, host_id, path, key, value, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (customer_id, host_id, path, key) DO UPDATE SET value = EXCLUDED.value
         RETURNING id, host_id, path, key, value, created_at",
    )
    .bind(id)
    .bind(customer_id)
    .bind(host_id)
    .bind(path)
    .bind(key)
    .bind(value)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn delete_tag(tx: &mut Tx, id: Uuid) -> Result<TagRow, DbError> {
    sqlx::query_as(
        "DELETE FROM path_tags WHERE id = $1 RETURNING id, host_id, path, key, value, created_at",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("tag"))
}
