//! Tiering execution as agents drive it: claiming a host's jobs, per-file outcomes, job
//! completion, and the stub registry.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::jobs::JobDetail;
use crate::{DbError, Tx};

const DETAIL_COLS: &str = "id, customer_id, host_id, kind, state, priority, payload, attempts,
    max_attempts, last_error, result, plan_id, rule_id, rule_version, target_name, file_count,
    total_bytes, estimates, cancel_requested_at, created_at, updated_at, dispatched_at,
    started_at, finished_at";

/// Leases up to `max` of the host's queued jobs of agent work (tier and recall, highest
/// priority first: recall jobs before tiering) (and its running ones whose lease
/// expired, or with `resume` all of its running ones: an agent that restarted takes its work
/// back) to the host until `now + lease`.
pub async fn claim_for_host(
    tx: &mut Tx,
    host_id: Uuid,
    max: i64,
    lease: Duration,
    resume: bool,
    now: DateTime<Utc>,
) -> Result<Vec<JobDetail>, DbError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                lease_owner = 'host:' || host_id::text, lease_expires_at = $3 + $4,
                dispatched_at = coalesce(dispatched_at, $3), started_at = coalesce(started_at, $3),
                updated_at = $3
          WHERE id IN (SELECT id FROM jobs
                        WHERE host_id = $1 AND kind IN ('tier', 'recall')
                          AND ((state = 'queued' AND run_after <= $3)
                               OR (state IN ('dispatched', 'running')
                                   AND (lease_expires_at < $3 OR $5)))
                        ORDER BY state = 'running' DESC, priority DESC, created_at, id
                        FOR UPDATE SKIP LOCKED LIMIT $2)
          RETURNING {DETAIL_COLS}"
    ))
    .bind(host_id)
    .bind(max)
    .bind(now)
    .bind(lease)
    .bind(resume)
    .fetch_all(&mut **tx)
    .await?)
}

/// The host's job, locked, if it is leased to the host.
pub async fn leased_job(tx: &mut Tx, job_id: Uuid, host_id: Uuid) -> Result<JobDetail, DbError> {
    sqlx::query_as(&format!(
        "SELECT {DETAIL_COLS} FROM jobs WHERE id = $1 AND host_id = $2 AND kind IN ('tier', 'recall')
            FOR UPDATE"
    ))
    .bind(job_id)
    .bind(host_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("job"))
}

pub async fn extend_lease(
    tx: &mut Tx,
    job_id: Uuid,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE jobs SET lease_expires_at = $2, updated_at = $3 WHERE id = $1")
        .bind(job_id)
        .bind(until)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Extends the leases of those of `jobs` that are running and leased to the host (an agent
/// link heartbeat). Returns how many were extended.
pub async fn extend_host_leases(
    tx: &mut Tx,
    host_id: Uuid,
    jobs: &[Uuid],
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE jobs SET lease_expires_at = greatest(lease_expires_at, $3), updated_at = $4
          WHERE id = ANY($2) AND host_id = $1 AND kind IN ('tier', 'recall')
            AND state IN ('dispatched', 'running') AND lease_owner = 'host:' || $1::text",
    )
    .bind(host_id)
    .bind(jobs)
    .bind(until)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// A job whose lease ran out and that went back to its host's queue.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Requeued {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Option<Uuid>,
}

/// Puts running tiering jobs whose lease expired back into their host's queue (their agent
/// vanished); their pending files stay pending. Needs the platform context.
pub async fn requeue_expired(tx: &mut Tx, now: DateTime<Utc>) -> Result<Vec<Requeued>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                updated_at = $1
          WHERE kind IN ('tier', 'recall') AND state IN ('dispatched', 'running')
            AND lease_expires_at < $1
          RETURNING id, customer_id, host_id",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecFile {
    pub seq: i32,
    pub file_id: Uuid,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub inode: Option<i64>,
    pub state: String,
}

/// A job's files still to do (pending), with their paths.
pub async fn pending_files(tx: &mut Tx, job_id: Uuid) -> Result<Vec<ExecFile>, DbError> {
    Ok(sqlx::query_as(
        "SELECT jf.seq, jf.file_id, f.file_path, f.path_escaped, jf.file_size, jf.last_modified,
                jf.inode, jf.state
           FROM job_files jf JOIN file_inventory f ON f.id = jf.file_id
          WHERE jf.job_id = $1 AND jf.state = 'pending' ORDER BY jf.seq",
    )
    .bind(job_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// One file of a job, locked.
pub async fn job_file(tx: &mut Tx, job_id: Uuid, seq: i32) -> Result<ExecFile, DbError> {
    sqlx::query_as(
        "SELECT jf.seq, jf.file_id, f.file_path, f.path_escaped, jf.file_size, jf.last_modified,
                jf.inode, jf.state
           FROM job_files jf JOIN file_inventory f ON f.id = jf.file_id
          WHERE jf.job_id = $1 AND jf.seq = $2 FOR UPDATE OF jf",
    )
    .bind(job_id)
    .bind(seq)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("job file"))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StubRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub file_id: Option<Uuid>,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub sha256: String,
    pub object_key: String,
    pub tiered_location: String,
    pub target_name: Option<String>,
    pub stored_size: Option<i64>,
    pub state: String,
    pub job_id: Option<Uuid>,
    pub tiered_at: Option<DateTime<Utc>>,
    pub rehydrated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `replaced` entries: their object is kept (reconciliation answers `live`) until then.
    pub retain_until: Option<DateTime<Utc>>,
}

const STUB_COLS: &str = "id, customer_id, host_id, file_id, file_path, path_escaped, file_size,
    sha256, object_key, tiered_location, target_name, stored_size, state, job_id, tiered_at,
    rehydrated_at, created_at, updated_at, retain_until";

/// The live (pending or stubbed) registry entry of a file.
///
/// Every registry lookup names the tenant: under row-level security the policy's `OR` keeps
/// PostgreSQL from deriving `customer_id` itself, and without it the `(customer_id, host_id,
/// file_path, …)` index cannot be used (a sequential scan of the whole registry per file).
pub async fn live_stub(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    path: &str,
    escaped: bool,
) -> Result<Option<StubRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {STUB_COLS} FROM stub_registry
          WHERE customer_id = $4 AND host_id = $1 AND file_path = $2 AND path_escaped = $3
            AND state IN ('pending', 'stubbed') FOR UPDATE"
    ))
    .bind(host_id)
    .bind(path)
    .bind(escaped)
    .bind(customer_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// The registry entry a recall report is about: the file's entry for this content (SHA-256)
/// in whatever state — a live one (`pending`, `stubbed`) first, else the newest. An agent
/// killed between stubbing and reporting leaves `pending`; a job that ended first leaves
/// `failed`; either may be a stub on disk all the same.
///
/// Uses the `(customer_id, host_id, file_path)` index; a file has few entries.
pub async fn recall_entry(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    path: &str,
    escaped: bool,
    sha256: &str,
) -> Result<Option<StubRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {STUB_COLS} FROM stub_registry
          WHERE customer_id = $1 AND host_id = $2 AND file_path = $3 AND path_escaped = $4
            AND sha256 = $5
          ORDER BY state IN ('pending', 'stubbed') DESC, created_at DESC, id DESC
          LIMIT 1 FOR UPDATE"
    ))
    .bind(customer_id)
    .bind(host_id)
    .bind(path)
    .bind(escaped)
    .bind(sha256)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Marks an entry `replaced` (the stub was truncated or overwritten): the file is ordinary
/// again, and the object stays referenced until `retain_until`.
pub async fn replace_stub(
    tx: &mut Tx,
    id: Uuid,
    retain_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE stub_registry SET state = 'replaced', retain_until = $2, updated_at = $3,
                error = 'the stub was truncated or replaced'
          WHERE id = $1",
    )
    .bind(id)
    .bind(retain_until)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the inventory row an ordinary file again after a recall (`recalled`: its content
/// came back from tier-2 now, which the planner's retention after recall reads) or a
/// replacement (`recalled` false).
pub async fn mark_resident(
    tx: &mut Tx,
    customer_id: Uuid,
    file_id: Uuid,
    recalled: bool,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE file_inventory SET is_stubbed = false, stub_created_at = NULL,
                tiered_location = NULL, updated_at = $3,
                recalled_at = CASE WHEN $4 THEN $3 ELSE recalled_at END
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(file_id)
    .bind(now)
    .bind(recalled)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One recall counted for a storm subject of a host: adds it to the current window's counter
/// and returns (recalls in the current window, recalls in the previous window, when an alert
/// was last raised for the subject in either). Primary-key accesses only.
#[allow(clippy::too_many_arguments)]
pub async fn count_recall(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    kind: &str,
    subject: &str,
    window_start: DateTime<Utc>,
    previous_start: DateTime<Utc>,
) -> Result<(i64, i64, Option<DateTime<Utc>>), DbError> {
    let (cur, cur_flag): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "INSERT INTO recall_rate (customer_id, host_id, subject_kind, subject, window_start, recalls)
         VALUES ($1, $2, $3, $4, $5, 1)
         ON CONFLICT (customer_id, host_id, subject_kind, subject, window_start)
         DO UPDATE SET recalls = recall_rate.recalls + 1
         RETURNING recalls, flagged_at",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .bind(subject)
    .bind(window_start)
    .fetch_one(&mut **tx)
    .await?;
    let prev: Option<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT recalls, flagged_at FROM recall_rate
          WHERE customer_id = $1 AND host_id = $2 AND subject_kind = $3 AND subject = $4
            AND window_start = $5",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .bind(subject)
    .bind(previous_start)
    .fetch_optional(&mut **tx)
    .await?;
    let (prev_n, prev_flag) = prev.unwrap_or((0, None));
    Ok((cur, prev_n, cur_flag.max(prev_flag)))
}

/// Records that a storm alert was raised for the subject in the window.
pub async fn flag_storm(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    kind: &str,
    subject: &str,
    window_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE recall_rate SET flagged_at = $6
          WHERE customer_id = $1 AND host_id = $2 AND subject_kind = $3 AND subject = $4
            AND window_start = $5",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .bind(subject)
    .bind(window_start)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drops storm-detector windows that started before `before` (every tenant: needs the
/// platform context). Returns how many.
pub async fn expire_recall_rate(tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM recall_rate WHERE window_start < $1")
        .bind(before)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

#[derive(Debug, Clone)]
pub struct NewStub<'a> {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub file: &'a ExecFile,
    pub sha256: &'a str,
    pub object_key: &'a str,
    pub tiered_location: &'a str,
    pub target_name: &'a str,
    pub stored_size: i64,
    pub job_id: Uuid,
    pub now: DateTime<Utc>,
}

/// Records an object as pending for its file (before the agent touches the file).
pub async fn insert_pending(tx: &mut Tx, s: &NewStub<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO stub_registry (id, customer_id, host_id, file_id, file_path, path_escaped,
                file_size, sha256, object_key, tiered_location, target_name, stored_size, state,
                job_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14, $14)",
    )
    .bind(s.id)
    .bind(s.customer_id)
    .bind(s.host_id)
    .bind(s.file.file_id)
    .bind(&s.file.file_path)
    .bind(s.file.path_escaped)
    .bind(s.file.file_size)
    .bind(s.sha256)
    .bind(s.object_key)
    .bind(s.tiered_location)
    .bind(s.target_name)
    .bind(s.stored_size)
    .bind(s.job_id)
    .bind(s.now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_stub_state(
    tx: &mut Tx,
    id: Uuid,
    state: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE stub_registry SET state = $2, error = $3, updated_at = $4,
                tiered_at = CASE WHEN $2 = 'stubbed' THEN $4 ELSE tiered_at END,
                rehydrated_at = CASE WHEN $2 = 'rehydrated' THEN $4 ELSE rehydrated_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the inventory row stubbed (or not) as the registry says.
pub async fn mark_inventory(
    tx: &mut Tx,
    file_id: Uuid,
    stubbed: bool,
    location: Option<&str>,
    sha256: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE file_inventory SET is_stubbed = $2,
                stub_created_at = CASE WHEN $2 THEN $5 ELSE NULL END,
                tiered_location = CASE WHEN $2 THEN $3 ELSE NULL END,
                file_hash = coalesce($4, file_hash), updated_at = $5
          WHERE id = $1",
    )
    .bind(file_id)
    .bind(stubbed)
    .bind(location)
    .bind(sha256)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_file_state(
    tx: &mut Tx,
    job_id: Uuid,
    seq: i32,
    state: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE job_files SET state = $3, error = $4, attempts = attempts + 1, updated_at = $5
          WHERE job_id = $1 AND seq = $2",
    )
    .bind(job_id)
    .bind(seq)
    .bind(state)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends a job. Files still pending become `skipped` (succeeded), `failed` (failed) or
/// `cancelled`, so they can be planned again; pending registry entries of those files are
/// marked failed. Returns the job.
pub async fn finish(
    tx: &mut Tx,
    job_id: Uuid,
    state: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<JobDetail, DbError> {
    let leftover = match state {
        "succeeded" => "skipped",
        "cancelled" => "cancelled",
        _ => "failed",
    };
    sqlx::query(
        "UPDATE stub_registry s SET state = 'failed', error = 'job ended before the stub', updated_at = $2
          WHERE s.job_id = $1 AND s.state = 'pending'
            AND EXISTS (SELECT 1 FROM job_files jf WHERE jf.job_id = $1 AND jf.file_id = s.file_id
                          AND jf.state = 'pending')",
    )
    .bind(job_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE job_files SET state = $2, error = coalesce(error, 'not processed by the job'),
                updated_at = $3
          WHERE job_id = $1 AND state = 'pending'",
    )
    .bind(job_id)
    .bind(leftover)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query_as(&format!(
        "UPDATE jobs SET state = $2, last_error = $3, finished_at = $4, updated_at = $4,
                lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1 RETURNING {DETAIL_COLS}"
    ))
    .bind(job_id)
    .bind(state)
    .bind(error)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Records a host's observed tiering throughput (bytes per second), smoothed.
pub async fn observe_throughput(tx: &mut Tx, host_id: Uuid, bps: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE hosts SET observed_bytes_per_second =
                CASE WHEN observed_bytes_per_second IS NULL THEN $2
                     ELSE (observed_bytes_per_second * 3 + $2) / 4 END
          WHERE id = $1",
    )
    .bind(host_id)
    .bind(bps.max(1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct StubFilter {
    pub host_id: Option<Uuid>,
    pub path_prefix: Option<String>,
    pub state: Option<String>,
}

/// Registry entries, newest first.
pub async fn list_stubs(
    tx: &mut Tx,
    customer_id: Uuid,
    f: &StubFilter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<StubRow>, DbError> {
    let (bt, bi) = before.map(|(t, i)| (Some(t), Some(i))).unwrap_or_default();
    Ok(sqlx::query_as(&format!(
        "SELECT {STUB_COLS} FROM stub_registry
          WHERE customer_id = $1 AND ($2::uuid IS NULL OR host_id = $2)
            AND ($3::text IS NULL OR starts_with(file_path, $3))
            AND ($4::text IS NULL OR state = $4)
            AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
          ORDER BY created_at DESC, id DESC LIMIT $7"
    ))
    .bind(customer_id)
    .bind(f.host_id)
    .bind(&f.path_prefix)
    .bind(&f.state)
    .bind(bt)
    .bind(bi)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StubSummaryRow {
    pub host_id: Uuid,
    pub state: String,
    pub files: i64,
    pub bytes: i64,
    pub saved: i64,
    pub stored_bytes: i64,
}

/// Counts and bytes per host and state.
pub async fn stub_summary(tx: &mut Tx, customer_id: Uuid) -> Result<Vec<StubSummaryRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT host_id, state, count(*) AS files, least(coalesce(sum(file_size), 0), 9223372036854775807)::bigint AS bytes,
                least(coalesce(sum(greatest(file_size - 4096, 0)), 0), 9223372036854775807)::bigint AS saved,
                least(coalesce(sum(stored_size), 0), 9223372036854775807)::bigint AS stored_bytes
           FROM stub_registry WHERE customer_id = $1 GROUP BY host_id, state ORDER BY host_id, state",
    )
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// For each (path, escaped, sha256) of a host: whether a registry entry still holds it — a
/// live one (`pending`, `stubbed`), or a `replaced` one within its retention (`retain_until`
/// after `now`). Everything else is garbage to reconciliation.
#[allow(clippy::too_many_arguments)]
pub async fn live_refs(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    paths: &[String],
    escaped: &[bool],
    shas: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM stub_registry s
                         WHERE s.customer_id = $5 AND s.host_id = $1 AND s.file_path = u.path AND s.path_escaped = u.esc
                           AND s.sha256 = u.sha
                           AND (s.state IN ('pending', 'stubbed')
                                OR (s.state = 'replaced' AND s.retain_until > $6)))
           FROM unnest($2::text[], $3::bool[], $4::text[]) WITH ORDINALITY AS u(path, esc, sha, n)
          ORDER BY u.n",
    )
    .bind(host_id)
    .bind(paths)
    .bind(escaped)
    .bind(shas)
    .bind(customer_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}
