//! Recall jobs and scheduled restoration rules: selecting a host's stubs by path (a file or a
//! tree, one index range per path on `stub_registry_host_stubbed`) and optionally by the rule
//! that tiered them, writing the recall jobs and their `job_files` set-based, the bandwidth
//! limits of recall and tiering, and the schedules.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DbError, Tx};

/// Which stubs of a host a recall selects. `paths` are absolute, without a trailing `/`
/// (the root is `/`), and none lies under another (the caller normalises them).
#[derive(Debug, Clone)]
pub struct Selection<'a> {
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub paths: &'a [String],
    pub rule_id: Option<Uuid>,
}

/// The index ranges of the selection's paths: `(exact, from, below)`: a stub is selected when
/// its path is `exact` or lies in `[from, below)` byte-wise (`p/` up to `p0`, `0` being the
/// byte after `/`).
fn ranges(paths: &[String]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut exact = Vec::new();
    let mut from = Vec::new();
    let mut below = Vec::new();
    for p in paths {
        let base = if p == "/" { "" } else { p.as_str() };
        exact.push(p.clone());
        from.push(format!("{base}/"));
        below.push(format!("{base}0"));
    }
    (exact, from, below)
}

/// The selection as SQL over `stub_registry s` (parameters $1 customer, $2 host, $3–$5 the
/// ranges, $6 rule): live stubs with a known inventory row, not already in a live job.
const SELECTED: &str = "
    FROM unnest($3::text[], $4::text[], $5::text[]) AS p(exact, from_, below)
    JOIN stub_registry s
      ON s.customer_id = $1 AND s.host_id = $2 AND s.state = 'stubbed'
     AND (s.file_path = p.exact OR (s.file_path ~>=~ p.from_ AND s.file_path ~<~ p.below))
    JOIN file_inventory f ON f.id = s.file_id AND f.customer_id = $1
   WHERE s.file_id IS NOT NULL
     AND ($6::uuid IS NULL
          OR s.job_id IN (SELECT j.id FROM jobs j WHERE j.customer_id = $1 AND j.rule_id = $6))
     AND NOT EXISTS (SELECT 1 FROM job_files jf
                      WHERE jf.file_id = s.file_id AND jf.state = 'pending')";

/// How many stubs (and bytes) a selection holds, counting at most `limit + 1` files (so a
/// caller can tell "more than `limit`" without counting a million rows).
pub async fn count(tx: &mut Tx, sel: &Selection<'_>, limit: i64) -> Result<(i64, i64), DbError> {
    let (exact, from, below) = ranges(sel.paths);
    Ok(sqlx::query_as(&format!(
        "SELECT count(*), coalesce(sum(size), 0)::bigint
           FROM (SELECT f.file_size AS size {SELECTED} LIMIT $7) AS c"
    ))
    .bind(sel.customer_id)
    .bind(sel.host_id)
    .bind(&exact)
    .bind(&from)
    .bind(&below)
    .bind(sel.rule_id)
    .bind(limit.saturating_add(1))
    .fetch_one(&mut **tx)
    .await?)
}

/// A recall job to write: its id and its payload (the caller builds the payload; the files
/// are the selection's, `files_per_job` to a job in path order).
#[derive(Debug, Clone)]
pub struct NewRecallJobs<'a> {
    pub job_ids: &'a [Uuid],
    pub payloads: &'a [serde_json::Value],
    pub priority: i32,
    pub files_per_job: i64,
    pub now: DateTime<Utc>,
}

/// Writes the recall jobs of a selection, queued, with their files (the selection's stubs in
/// path order, `files_per_job` per job, at most `job_ids.len() * files_per_job`), and wakes
/// the dispatchers. Returns `(job id, files, bytes)` of each job written (a job whose files
/// were all taken meanwhile is not written).
pub async fn insert_jobs(
    tx: &mut Tx,
    sel: &Selection<'_>,
    jobs: &NewRecallJobs<'_>,
) -> Result<Vec<(Uuid, i32, i64)>, DbError> {
    let (exact, from, below) = ranges(sel.paths);
    let limit = (jobs.job_ids.len() as i64).saturating_mul(jobs.files_per_job);
    // One statement: number the selection, insert the files, then the jobs with their totals.
    let rows: Vec<(Uuid, i32, i64)> = sqlx::query_as(&format!(
        "WITH sel AS (
             SELECT s.file_id, f.file_size, f.last_modified, s.sha256,
                    row_number() OVER (ORDER BY s.file_path) - 1 AS rn
               {SELECTED}
              ORDER BY s.file_path LIMIT $7),
         ids AS (SELECT id, payload, ord - 1 AS g
                   FROM unnest($8::uuid[], $9::jsonb[]) WITH ORDINALITY AS u(id, payload, ord)),
         files AS (
             INSERT INTO job_files (job_id, customer_id, seq, file_id, file_size, last_modified,
                                    file_hash, state)
             SELECT ids.id, $1, (sel.rn % $10)::int, sel.file_id, sel.file_size,
                    sel.last_modified, sel.sha256, 'pending'
               FROM sel JOIN ids ON ids.g = sel.rn / $10
             RETURNING job_id, file_size),
         totals AS (SELECT job_id, count(*)::int AS n, sum(file_size)::bigint AS bytes
                      FROM files GROUP BY job_id)
         INSERT INTO jobs (id, customer_id, host_id, kind, state, priority, payload, run_after,
                           created_at, updated_at, file_count, total_bytes)
         SELECT ids.id, $1, $2, 'recall', 'queued', $11, ids.payload, $12, $12, $12,
                totals.n, totals.bytes
           FROM ids JOIN totals ON totals.job_id = ids.id
         RETURNING id, file_count, total_bytes"
    ))
    .bind(sel.customer_id)
    .bind(sel.host_id)
    .bind(&exact)
    .bind(&from)
    .bind(&below)
    .bind(sel.rule_id)
    .bind(limit)
    .bind(jobs.job_ids)
    .bind(jobs.payloads)
    .bind(jobs.files_per_job)
    .bind(jobs.priority)
    .bind(jobs.now)
    .fetch_all(&mut **tx)
    .await?;
    if !rows.is_empty() {
        crate::notify(tx, crate::jobs::CHANNEL, "recall").await?;
    }
    Ok(rows)
}

/// The names of the storage targets the stubs of a job's pending files were tiered to.
pub async fn job_target_names(
    tx: &mut Tx,
    customer_id: Uuid,
    job_id: Uuid,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT s.target_name
           FROM job_files jf
           JOIN stub_registry s ON s.file_id = jf.file_id AND s.customer_id = $1
                               AND s.state = 'stubbed'
          WHERE jf.job_id = $2 AND jf.customer_id = $1 AND jf.state = 'pending'
            AND s.target_name IS NOT NULL",
    )
    .bind(customer_id)
    .bind(job_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// The bandwidth limits that apply to a job of `kind` (`tier` or `recall`) of the host:
/// `(host limit, tenant limit, running jobs of that kind in the tenant)`.
pub async fn bandwidth(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    kind: &str,
) -> Result<(Option<i64>, Option<i64>, i64), DbError> {
    Ok(sqlx::query_as(
        "SELECT CASE WHEN $3 = 'recall' THEN h.recall_bandwidth_limit_bytes_per_second
                     ELSE h.bandwidth_limit_bytes_per_second END,
                (SELECT CASE WHEN $3 = 'recall' THEN s.recall_bandwidth_limit_bytes_per_second
                             ELSE s.tier_bandwidth_limit_bytes_per_second END
                   FROM planner_settings s WHERE s.customer_id = $1),
                (SELECT count(*) FROM jobs j
                  WHERE j.customer_id = $1 AND j.kind = $3 AND j.state IN ('dispatched', 'running'))
           FROM hosts h WHERE h.customer_id = $1 AND h.id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or((None, None, 0)))
}

/// Sets a host's recall bandwidth limit (`0`: none).
pub async fn set_host_recall_bandwidth(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Uuid,
    bytes_per_second: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE hosts SET recall_bandwidth_limit_bytes_per_second = nullif($3, 0)
          WHERE customer_id = $1 AND id = $2",
    )
    .bind(customer_id)
    .bind(host_id)
    .bind(bytes_per_second)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// --- Scheduled restoration rules ---------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub name: String,
    pub paths: Vec<String>,
    pub rule_id: Option<Uuid>,
    pub cron: String,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_request_id: Option<Uuid>,
    pub last_files: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SCHEDULE_COLS: &str = "id, customer_id, host_id, name, paths, rule_id, cron, enabled,
    next_run_at, last_run_at, last_request_id, last_files, created_at, updated_at";

pub async fn create_schedule(tx: &mut Tx, s: &ScheduleRow) -> Result<ScheduleRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO recall_schedules (id, customer_id, host_id, name, paths, rule_id, cron,
                                       enabled, next_run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         RETURNING {SCHEDULE_COLS}"
    ))
    .bind(s.id)
    .bind(s.customer_id)
    .bind(s.host_id)
    .bind(&s.name)
    .bind(&s.paths)
    .bind(s.rule_id)
    .bind(&s.cron)
    .bind(s.enabled)
    .bind(s.next_run_at)
    .bind(s.created_at)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list_schedules(tx: &mut Tx, customer_id: Uuid) -> Result<Vec<ScheduleRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLS} FROM recall_schedules WHERE customer_id = $1 ORDER BY name"
    ))
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get_schedule(
    tx: &mut Tx,
    customer_id: Uuid,
    id: Uuid,
) -> Result<ScheduleRow, DbError> {
    sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLS} FROM recall_schedules WHERE customer_id = $1 AND id = $2
            FOR UPDATE"
    ))
    .bind(customer_id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("recall schedule"))
}

pub async fn update_schedule(tx: &mut Tx, s: &ScheduleRow) -> Result<ScheduleRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE recall_schedules SET paths = $3, cron = $4, enabled = $5, next_run_at = $6,
                last_run_at = $7, last_request_id = $8, last_files = $9, updated_at = $10
          WHERE customer_id = $1 AND id = $2
         RETURNING {SCHEDULE_COLS}"
    ))
    .bind(s.customer_id)
    .bind(s.id)
    .bind(&s.paths)
    .bind(&s.cron)
    .bind(s.enabled)
    .bind(s.next_run_at)
    .bind(s.last_run_at)
    .bind(s.last_request_id)
    .bind(s.last_files)
    .bind(s.updated_at)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn delete_schedule(tx: &mut Tx, customer_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query("DELETE FROM recall_schedules WHERE customer_id = $1 AND id = $2")
        .bind(customer_id)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0)
}

/// Schedules due at `now` (any tenant; needs the platform context), locked so that one
/// replica runs each.
pub async fn due_schedules(
    tx: &mut Tx,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ScheduleRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLS} FROM recall_schedules
          WHERE enabled AND next_run_at <= $1
          ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_selects_itself_and_its_tree_only() {
        let (e, f, b) = ranges(&["/data/x".to_owned(), "/".to_owned()]);
        assert_eq!(e, ["/data/x", "/"]);
        assert_eq!(f, ["/data/x/", "/"]);
        assert_eq!(b, ["/data/x0", "0"]);
        // `/data/x-other` and `/data/x.txt` sort before `/data/x/` or at/after `/data/x0`
        // byte-wise: '-' and '.' are below '/', and `/data/xy` is above '0'.
        for other in ["/data/x-other", "/data/x.txt", "/data/xy"] {
            let inside = other >= f[0].as_str() && other < b[0].as_str();
            assert!(!inside, "{other}");
        }
        assert!("/data/x/a/b" >= f[0].as_str() && "/data/x/a/b" < b[0].as_str());
    }
}
