//! Scan uploads and ingest: scans and parts, staging with `COPY`, the atomic merge into
//! `file_inventory`, and inventory queries.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScanRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub host_id: Uuid,
    pub kind: String,
    pub status: String,
    pub parts_expected: Option<i32>,
    pub rows_staged: i64,
    pub bytes_received: i64,
    pub staged_on: NaiveDate,
    pub error: Option<String>,
    pub stats: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

const COLS: &str = "id, customer_id, host_id, kind, status, parts_expected, rows_staged,
    bytes_received, staged_on, error, stats, created_at, completed_at";

/// Locks the scan row if it exists (visible in the caller's tenant).
pub async fn get_for_update(tx: &mut Tx, id: Uuid) -> Result<Option<ScanRow>, DbError> {
    Ok(sqlx::query_as(&format!("SELECT {COLS} FROM scans WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

pub async fn get(tx: &mut Tx, customer_id: Uuid, id: Uuid) -> Result<ScanRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM scans WHERE customer_id = $1 AND id = $2"))
        .bind(customer_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("scan"))
}

/// Scans newest first, before the `(created_at, id)` cursor: `limit` rows at most.
pub async fn list(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Option<Uuid>,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<ScanRow>, DbError> {
    let (bt, bi) = Cursor::binds(before);
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM scans WHERE customer_id = $1 AND ($2::uuid IS NULL OR host_id = $2)
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(customer_id)
    .bind(host_id)
    .bind(bt)
    .bind(bi)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn create(
    tx: &mut Tx,
    id: Uuid,
    customer_id: Uuid,
    host_id: Uuid,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<ScanRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO scans (id, customer_id, host_id, kind, status, staged_on, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'receiving', $5, $6, $6) RETURNING {COLS}"
    ))
    .bind(id)
    .bind(customer_id)
    .bind(host_id)
    .bind(kind)
    .bind(now.date_naive())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// The stored SHA-256 of a part, if that part was received.
pub async fn part_sha(tx: &mut Tx, scan: Uuid, part: i32) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar("SELECT sha256 FROM scan_parts WHERE scan_id = $1 AND part_no = $2")
        .bind(scan)
        .bind(part)
        .fetch_optional(&mut **tx)
        .await?)
}

/// COPYs one part's rows (in PostgreSQL CSV, columns as [`STAGING_COLUMNS`]) into staging
/// and records the part.
#[allow(clippy::too_many_arguments)]
pub async fn stage_part(
    tx: &mut Tx,
    scan: &ScanRow,
    part: i32,
    sha256: &str,
    rows: i64,
    bytes: i64,
    copy_csv: &[u8],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query("SELECT scan_staging.ensure_partition($1)")
        .bind(scan.staged_on)
        .execute(&mut **tx)
        .await?;
    let mut copy = tx
        .copy_in_raw(&format!("COPY scan_staging.rows ({STAGING_COLUMNS}) FROM STDIN (FORMAT csv)"))
        .await?;
    for chunk in copy_csv.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    sqlx::query(
        "INSERT INTO scan_parts (scan_id, customer_id, part_no, sha256, rows, bytes, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(scan.id)
    .bind(scan.customer_id)
    .bind(part)
    .bind(sha256)
    .bind(rows)
    .bind(bytes)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE scans SET rows_staged = rows_staged + $2, bytes_received = bytes_received + $3,
                updated_at = $4 WHERE id = $1",
    )
    .bind(scan.id)
    .bind(rows)
    .bind(bytes)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Column order of the COPY text built by the server.
pub const STAGING_COLUMNS: &str = "scan_id, part_no, row_no, staged_on, row_id, file_path,
    path_escaped, file_size, mtime_us, atime_us, ctime_us, file_extension, permissions, owner,
    file_hash, mode, uid, gid, inode, device, nlink, is_stub, stub_object";

/// Part numbers received so far.
pub async fn parts(tx: &mut Tx, scan: Uuid) -> Result<Vec<i32>, DbError> {
    Ok(sqlx::query_scalar("SELECT part_no FROM scan_parts WHERE scan_id = $1 ORDER BY part_no")
        .bind(scan)
        .fetch_all(&mut **tx)
        .await?)
}

/// A path staged twice in one scan: `(path, part, row)` of the second occurrence.
pub async fn first_duplicate(
    tx: &mut Tx,
    scan: &ScanRow,
) -> Result<Option<(String, i32, i32)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT file_path, max(part_no), max(row_no) FROM scan_staging.rows
          WHERE scan_id = $1 AND staged_on = $2
          GROUP BY file_path, path_escaped HAVING count(*) > 1 LIMIT 1",
    )
    .bind(scan.id)
    .bind(scan.staged_on)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn set_status(
    tx: &mut Tx,
    id: Uuid,
    status: &str,
    parts_expected: Option<i32>,
    error: Option<&str>,
    stats: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE scans SET status = $2, parts_expected = coalesce($3, parts_expected),
                error = $4, stats = coalesce($5, stats), updated_at = $6,
                completed_at = CASE WHEN $2 IN ('completed', 'failed') THEN $6 ELSE completed_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(parts_expected)
    .bind(error)
    .bind(stats)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a merge changed.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MergeStats {
    pub rows: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
}

/// Merges a staged scan into `file_inventory`: new files inserted, changed files updated,
/// unchanged files not written at all, and — for a full scan — live files missing from the
/// scan marked deleted. Stub state owned by the stub registry (`is_stubbed`,
/// `stub_created_at`, `tiered_location`) is never touched. Runs in the caller's transaction.
pub async fn merge(tx: &mut Tx, scan: &ScanRow, now: DateTime<Utc>) -> Result<MergeStats, DbError> {
    // One ingest per host at a time.
    sqlx::query("SELECT 1 FROM hosts WHERE customer_id = $1 AND id = $2 FOR UPDATE")
        .bind(scan.customer_id)
        .bind(scan.host_id)
        .execute(&mut **tx)
        .await?;
    let t0 = std::time::Instant::now();
    // Statistics first: a fresh partition (and, after a big first scan, the inventory) would
    // otherwise look empty to the planner.
    sqlx::query("SELECT scan_staging.analyze_for_merge($1, $2)")
        .bind(scan.staged_on)
        .bind(scan.rows_staged > 50_000)
        .execute(&mut **tx)
        .await?;
    // Changed files: a hash join of the scan with the host's rows; unchanged rows are not
    // written at all.
    let updated = sqlx::query(
        "UPDATE file_inventory f SET
             file_size = s.file_size, last_modified = alto_us_to_ts(s.mtime_us),
             last_accessed = alto_us_to_ts(s.atime_us), last_changed = alto_us_to_ts(s.ctime_us),
             file_extension = s.file_extension, permissions = s.permissions, owner = s.owner,
             file_hash = coalesce(s.file_hash, f.file_hash), mode = s.mode, uid = s.uid,
             gid = s.gid, inode = s.inode, device = s.device, nlink = s.nlink,
             scan_is_stub = s.is_stub, deleted_at = NULL, last_scan_time = $4,
             last_scan_id = $3, updated_at = $4
           FROM scan_staging.rows s
          WHERE s.scan_id = $3 AND s.staged_on = $5
            AND f.customer_id = $1 AND f.host_id = $2
            AND f.file_path = s.file_path AND f.path_escaped = s.path_escaped
            AND (f.file_size, f.last_modified, f.last_accessed, f.last_changed, f.mode, f.uid,
                 f.gid, f.inode, f.device, f.nlink, f.owner, f.scan_is_stub, f.deleted_at IS NULL)
                IS DISTINCT FROM
                (s.file_size, alto_us_to_ts(s.mtime_us), alto_us_to_ts(s.atime_us),
                 alto_us_to_ts(s.ctime_us), s.mode, s.uid, s.gid, s.inode, s.device, s.nlink,
                 s.owner, s.is_stub, true)",
    )
    .bind(scan.customer_id)
    .bind(scan.host_id)
    .bind(scan.id)
    .bind(now)
    .bind(scan.staged_on)
    .execute(&mut **tx)
    .await?
    .rows_affected() as i64;
    let t_update = t0.elapsed();
    // New files: an anti-join, inserted in path order with ids made at upload (time-ordered).
    let inserted = sqlx::query(
        "INSERT INTO file_inventory (id, customer_id, host_id, file_path, path_escaped,
             file_size, last_modified, last_accessed, last_changed, file_extension, permissions,
             owner, file_hash, mode, uid, gid, inode, device, nlink, scan_is_stub,
             last_scan_time, last_scan_id, created_at, updated_at)
         SELECT s.row_id, $1, $2, s.file_path, s.path_escaped, s.file_size,
                alto_us_to_ts(s.mtime_us), alto_us_to_ts(s.atime_us), alto_us_to_ts(s.ctime_us),
                s.file_extension, s.permissions, s.owner, s.file_hash, s.mode, s.uid, s.gid,
                s.inode, s.device, s.nlink, s.is_stub, $4, $3, $4, $4
           FROM scan_staging.rows s
          WHERE s.scan_id = $3 AND s.staged_on = $5
            AND NOT EXISTS (SELECT 1 FROM file_inventory f
                             WHERE f.customer_id = $1 AND f.host_id = $2
                               AND f.file_path = s.file_path AND f.path_escaped = s.path_escaped)
          ORDER BY s.file_path",
    )
    .bind(scan.customer_id)
    .bind(scan.host_id)
    .bind(scan.id)
    .bind(now)
    .bind(scan.staged_on)
    .execute(&mut **tx)
    .await?
    .rows_affected() as i64;
    let t_insert = t0.elapsed();
    // After many new rows the inventory's statistics are stale: without fresh ones the
    // anti-join below degrades to a nested loop (20,000 new rows took over a minute).
    if inserted > 1_000 {
        sqlx::query("SELECT scan_staging.analyze_for_merge($1, true)")
            .bind(scan.staged_on)
            .execute(&mut **tx)
            .await?;
    }
    let deleted = if scan.kind == "full" {
        sqlx::query(
            "UPDATE file_inventory f SET deleted_at = $4, updated_at = $4
              WHERE f.customer_id = $1 AND f.host_id = $2 AND f.deleted_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM scan_staging.rows s
                                 WHERE s.scan_id = $3 AND s.staged_on = $5
                                   AND s.file_path = f.file_path
                                   AND s.path_escaped = f.path_escaped)",
        )
        .bind(scan.customer_id)
        .bind(scan.host_id)
        .bind(scan.id)
        .bind(now)
        .bind(scan.staged_on)
        .execute(&mut **tx)
        .await?
        .rows_affected() as i64
    } else {
        0
    };
    sqlx::query(
        "UPDATE hosts h SET last_scan_at = $3, updated_at = $3,
                file_count = t.n, total_bytes = t.bytes
           FROM (SELECT count(*) AS n, least(coalesce(sum(file_size), 0), 9223372036854775807)::bigint AS bytes
                   FROM file_inventory
                  WHERE customer_id = $1 AND host_id = $2 AND deleted_at IS NULL) t
          WHERE h.customer_id = $1 AND h.id = $2",
    )
    .bind(scan.customer_id)
    .bind(scan.host_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let rows = scan.rows_staged;
    tracing::info!(
        scan = %scan.id,
        update_ms = t_update.as_millis() as u64,
        insert_ms = (t_insert - t_update).as_millis() as u64,
        delete_and_totals_ms = (t0.elapsed() - t_insert).as_millis() as u64,
        "merge timings"
    );
    Ok(MergeStats { rows, inserted, updated, unchanged: rows - inserted - updated, deleted })
}

/// Drops staging partitions of days before `keep_from`.
pub async fn drop_staging_before(tx: &mut Tx, keep_from: NaiveDate) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar("SELECT scan_staging.drop_older_than($1)")
        .bind(keep_from)
        .fetch_one(&mut **tx)
        .await?)
}
