//! The PostgreSQL job queue: enqueue in the caller's transaction (so a job exists exactly
//! when the change that needs it commits), claim with `FOR UPDATE SKIP LOCKED` and a lease,
//! complete or fail with bounded retries. Delivery is at-least-once: handlers are idempotent.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

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

// --- Tiering jobs as the API sees them ------------------------------------------------------

/// A job with its planner columns.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobDetail {
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
    pub result: Option<serde_json::Value>,
    pub plan_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    pub rule_version: Option<i32>,
    pub target_name: Option<String>,
    pub file_count: i32,
    pub total_bytes: i64,
    pub estimates: Option<serde_json::Value>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const DETAIL_COLS: &str = "id, customer_id, host_id, kind, state, priority, payload, attempts,
    max_attempts, last_error, result, plan_id, rule_id, rule_version, target_name, file_count,
    total_bytes, estimates, cancel_requested_at, created_at, updated_at, dispatched_at,
    started_at, finished_at";

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub host_id: Option<Uuid>,
    pub plan_id: Option<Uuid>,
}

/// Jobs newest first, before the `(created_at, id)` cursor.
pub async fn list(
    tx: &mut Tx,
    customer_id: Uuid,
    f: &JobFilter,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<JobDetail>, DbError> {
    let (bt, bi) = Cursor::binds(before);
    Ok(sqlx::query_as(&format!(
        "SELECT {DETAIL_COLS} FROM jobs
          WHERE customer_id = $1 AND ($2::text IS NULL OR kind = $2)
            AND ($3::text IS NULL OR state = $3) AND ($4::uuid IS NULL OR host_id = $4)
            AND ($5::uuid IS NULL OR plan_id = $5)
            AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
          ORDER BY created_at DESC, id DESC LIMIT $8"
    ))
    .bind(customer_id)
    .bind(&f.kind)
    .bind(&f.state)
    .bind(f.host_id)
    .bind(f.plan_id)
    .bind(bt)
    .bind(bi)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get(tx: &mut Tx, id: Uuid) -> Result<JobDetail, DbError> {
    sqlx::query_as(&format!("SELECT {DETAIL_COLS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("job"))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobFileRow {
    pub seq: i32,
    pub file_id: Uuid,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub inode: Option<i64>,
    pub file_hash: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
}

pub async fn files(
    tx: &mut Tx,
    job_id: Uuid,
    after_seq: i32,
    limit: i64,
) -> Result<Vec<JobFileRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT jf.seq, jf.file_id, f.file_path, f.path_escaped, jf.file_size, jf.last_modified,
                jf.inode, jf.file_hash, jf.state, jf.attempts, jf.error
           FROM job_files jf JOIN file_inventory f ON f.id = jf.file_id
          WHERE jf.job_id = $1 AND jf.seq > $2 ORDER BY jf.seq LIMIT $3",
    )
    .bind(job_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Per-state file counts and bytes of a job.
pub async fn file_counts(tx: &mut Tx, job_id: Uuid) -> Result<Vec<(String, i64, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT state, count(*), least(coalesce(sum(file_size), 0), 9223372036854775807)::bigint FROM job_files
          WHERE job_id = $1 GROUP BY state ORDER BY state",
    )
    .bind(job_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Cancels a job. Planned or queued jobs end at once (their pending files become
/// `cancelled`); dispatched or running ones get `cancel_requested_at` and end when the agent
/// acknowledges. Returns the job afterwards, or `Conflict` if it had already finished.
pub async fn cancel(tx: &mut Tx, id: Uuid, now: DateTime<Utc>) -> Result<JobDetail, DbError> {
    let job: JobDetail =
        sqlx::query_as(&format!("SELECT {DETAIL_COLS} FROM jobs WHERE id = $1 FOR UPDATE"))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(DbError::NotFound("job"))?;
    match job.state.as_str() {
        "planned" | "queued" => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested_at = $2, finished_at = $2,
                        updated_at = $2, lease_owner = NULL, lease_expires_at = NULL
                  WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE job_files SET state = 'cancelled', updated_at = $2
                  WHERE job_id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        "dispatched" | "running" => {
            sqlx::query(
                "UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, $2),
                        updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        _ => return Err(DbError::Conflict { constraint: "job_finished".into() }),
    }
    get(tx, id).await
}

/// Re-queues a failed or cancelled job: its failed, cancelled and skipped files become
/// pending again, except files another live job has taken since. Returns the job, or
/// `Conflict` when it is not failed or cancelled.
pub async fn retry(tx: &mut Tx, id: Uuid, now: DateTime<Utc>) -> Result<JobDetail, DbError> {
    let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("job"))?;
    if !matches!(state.as_str(), "failed" | "cancelled") {
        return Err(DbError::Conflict { constraint: "job_not_retryable".into() });
    }
    sqlx::query(
        "UPDATE job_files jf SET state = 'pending', error = NULL, updated_at = $2
          WHERE jf.job_id = $1 AND jf.state IN ('failed', 'cancelled', 'skipped')
            AND NOT EXISTS (SELECT 1 FROM job_files o WHERE o.file_id = jf.file_id
                              AND o.state = 'pending' AND o.job_id <> jf.job_id)",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL, run_after = $2,
                cancel_requested_at = NULL, finished_at = NULL, updated_at = $2
          WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    crate::notify(tx, CHANNEL, "tier").await?;
    get(tx, id).await
}
