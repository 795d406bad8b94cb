//! The PostgreSQL job queue: enqueue in the caller's transaction (so a job exists exactly
//! when the change that needs it commits), claim with `FOR UPDATE SKIP LOCKED` and a lease,
//! complete or fail with bounded retries. Delivery is at-least-once: handlers are idempotent.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{DbError, Tx};

/// Channel notified on enqueue, so idle workers on every replica wake at once.
pub const CHANNEL: &str = "alto_jobs";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Option<Uuid>,
    pub kind: String,
    pub state: String,
    pub priority: i32,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLS: &str =
    "id, customer_id, host_id, kind, state, priority, payload, attempts, max_attempts,
    last_error, created_at";

/// Enqueues a job; it becomes visible to workers when `tx` commits.
#[allow(clippy::too_many_arguments)]
pub async fn enqueue(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    host_id: Option<Uuid>,
    kind: &str,
    priority: i32,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO jobs (id, customer_id, host_id, kind, state, priority, payload, run_after,
                           created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7, $7)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .bind(priority)
    .bind(payload)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    crate::notify(tx, CHANNEL, kind).await
}

/// Claims the next runnable job of `kinds` (or one whose lease expired), leasing it to
/// `worker` until `now + lease`. Run in platform scope.
pub async fn claim(
    tx: &mut Tx,
    kinds: &[&str],
    worker: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Option<JobRow>, DbError> {
    let kinds: Vec<String> = kinds.iter().map(|s| (*s).to_owned()).collect();
    Ok(sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2,
                lease_expires_at = $3 + $4, updated_at = $3
          WHERE id = (SELECT id FROM jobs
                       WHERE kind = ANY($1)
                         AND ((state = 'queued' AND run_after <= $3)
                              OR (state = 'running' AND lease_expires_at < $3))
                       ORDER BY priority DESC, run_after, id
                       FOR UPDATE SKIP LOCKED LIMIT 1)
          RETURNING {COLS}"
    ))
    .bind(&kinds)
    .bind(worker)
    .bind(now)
    .bind(lease)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn complete(
    tx: &mut Tx,
    id: Uuid,
    result: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', result = $2, finished_at = $3, updated_at = $3,
                lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1",
    )
    .bind(id)
    .bind(result)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a failure: requeued at `retry_at` while attempts remain (and `retry_at` is
/// given), otherwise failed for good. Returns the new state.
pub async fn fail(
    tx: &mut Tx,
    id: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    Ok(sqlx::query_scalar(
        "UPDATE jobs SET
            state = CASE WHEN $3::timestamptz IS NOT NULL AND attempts < max_attempts
                         THEN 'queued' ELSE 'failed' END,
            run_after = coalesce($3, run_after),
            last_error = $2, updated_at = $4, lease_owner = NULL, lease_expires_at = NULL,
            finished_at = CASE WHEN $3::timestamptz IS NOT NULL AND attempts < max_attempts
                               THEN NULL ELSE $4 END
          WHERE id = $1 RETURNING state",
    )
    .bind(id)
    .bind(error)
    .bind(retry_at)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}
