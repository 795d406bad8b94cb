//! Customers (tenants).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub tier2_location: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, name, status, tier2_location, created_at, updated_at";

/// The seed's tier-2 naming: one isolated location per customer.
pub fn tier2_location(id: Uuid) -> String {
    format!("customer-{id}-tiered")
}

pub async fn create(
    tx: &mut Tx,
    id: Uuid,
    name: &str,
    now: DateTime<Utc>,
) -> Result<CustomerRow, DbError> {
    let row = sqlx::query_as(&format!(
        "INSERT INTO customers (id, name, status, tier2_location, created_at, updated_at)
         VALUES ($1, $2, 'active', $3, $4, $4) RETURNING {COLS}"
    ))
    .bind(id)
    .bind(name)
    .bind(tier2_location(id))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    // Every tenant starts with its isolated local tier-2 location as the `default` target.
    sqlx::query(
        "INSERT INTO storage_targets (id, customer_id, name, kind, location, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, 'default', 'directory', $2, $3, $3)",
    )
    .bind(id)
    .bind(tier2_location(id))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(row)
}

pub async fn get(tx: &mut Tx, id: Uuid) -> Result<CustomerRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM customers WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("tenant"))
}

/// Tenants oldest first, after the cursor: `limit` rows at most.
pub async fn list(
    tx: &mut Tx,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Vec<CustomerRow>, DbError> {
    let (ts, id) = Cursor::binds(after);
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM customers
          WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
          ORDER BY created_at, id LIMIT $3"
    ))
    .bind(ts)
    .bind(id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn update(
    tx: &mut Tx,
    id: Uuid,
    name: Option<&str>,
    status: Option<&str>,
    now: DateTime<Utc>,
) -> Result<CustomerRow, DbError> {
    sqlx::query_as(&format!(
        "UPDATE customers SET name = coalesce($2, name), status = coalesce($3, status),
                updated_at = $4
          WHERE id = $1 RETURNING {COLS}"
    ))
    .bind(id)
    .bind(name)
    .bind(status)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("tenant"))
}
