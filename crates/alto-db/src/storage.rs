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
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, customer_id, name, kind, location, config, created_at, updated_at";

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

/// Deletes a target no live rule names; returns the names of rules that still use it
/// (and deletes nothing) otherwise.
pub async fn delete_target(tx: &mut Tx, t: &TargetRow) -> Result<Vec<String>, DbError> {
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM rules WHERE customer_id = $1 AND deleted_at IS NULL
            AND spec->'action'->>'target' = $2 ORDER BY priority",
    )
    .bind(t.customer_id)
    .bind(&t.name)
    .fetch_all(&mut **tx)
    .await?;
    if users.is_empty() {
        sqlx::query("DELETE FROM storage_targets WHERE id = $1")
            .bind(t.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(users)
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
