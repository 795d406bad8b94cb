//! Inventory queries for the API: summaries and filtered file listings.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Bucket {
    pub key: String,
    pub files: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub files: i64,
    pub bytes: i64,
    pub by_extension: Vec<Bucket>,
    pub accessed_age: Vec<Bucket>,
    pub modified_age: Vec<Bucket>,
    pub largest_directories: Vec<Bucket>,
}

const AGE_BANDS: &str = "CASE
      WHEN {col} >= $3 - interval '30 days' THEN '0-30d'
      WHEN {col} >= $3 - interval '90 days' THEN '30-90d'
      WHEN {col} >= $3 - interval '180 days' THEN '90-180d'
      WHEN {col} >= $3 - interval '365 days' THEN '180d-1y'
      WHEN {col} >= $3 - interval '2 years' THEN '1-2y'
      WHEN {col} >= $3 - interval '5 years' THEN '2-5y'
      ELSE '5y+' END";

/// Live-file summary of a tenant, or of one host.
pub async fn summary(
    tx: &mut Tx,
    customer_id: Uuid,
    host_id: Option<Uuid>,
    now: DateTime<Utc>,
    top: i64,
) -> Result<Summary, DbError> {
    let filter = "customer_id = $1 AND ($2::uuid IS NULL OR host_id = $2) AND deleted_at IS NULL";
    let (files, bytes): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), least(coalesce(sum(file_size), 0), 9223372036854775807)::bigint FROM file_inventory
          WHERE {filter} AND $3::timestamptz IS NOT NULL"
    ))
    .bind(customer_id)
    .bind(host_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let grouped = |key: String, order: &str| {
        format!(
            "SELECT {key} AS key, count(*) AS files, least(coalesce(sum(file_size), 0), 9223372036854775807)::bigint AS bytes
               FROM file_inventory WHERE {filter} AND $3::timestamptz IS NOT NULL
              GROUP BY 1 ORDER BY {order} LIMIT $4"
        )
    };
    let mut out = Summary { files, bytes, ..Default::default() };
    for (target, sql) in [
        (0, grouped("coalesce(nullif(file_extension, ''), '(none)')".into(), "3 DESC, 1")),
        (1, grouped(AGE_BANDS.replace("{col}", "last_accessed"), "1")),
        (2, grouped(AGE_BANDS.replace("{col}", "last_modified"), "1")),
        (3, grouped("regexp_replace(file_path, '/[^/]*$', '')".into(), "3 DESC, 1")),
    ] {
        let rows: Vec<Bucket> = sqlx::query_as(&sql)
            .bind(customer_id)
            .bind(host_id)
            .bind(now)
            .bind(top)
            .fetch_all(&mut **tx)
            .await?;
        match target {
            0 => out.by_extension = rows,
            1 => out.accessed_age = rows,
            2 => out.modified_age = rows,
            _ => out.largest_directories = rows,
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: Uuid,
    pub host_id: Uuid,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub last_accessed: Option<DateTime<Utc>>,
    pub file_extension: Option<String>,
    pub permissions: Option<String>,
    pub owner: Option<String>,
    pub is_stubbed: bool,
    pub scan_is_stub: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_scan_time: Option<DateTime<Utc>>,
}

/// File listing filters.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub host_id: Option<Uuid>,
    pub path_prefix: Option<String>,
    pub extension: Option<String>,
    pub min_size: Option<i64>,
    pub max_size: Option<i64>,
    pub accessed_before: Option<DateTime<Utc>>,
    pub modified_before: Option<DateTime<Utc>>,
    pub include_deleted: bool,
}

/// Files ordered by `(host_id, file_path)`, after the `(host, path)` cursor.
pub async fn files(
    tx: &mut Tx,
    customer_id: Uuid,
    f: &FileFilter,
    after: Option<(Uuid, String)>,
    limit: i64,
) -> Result<Vec<FileRow>, DbError> {
    let (ah, ap) = after.map(|(h, p)| (Some(h), Some(p))).unwrap_or_default();
    Ok(sqlx::query_as(
        "SELECT id, host_id, file_path, path_escaped, file_size, last_modified, last_accessed,
                file_extension, permissions, owner, is_stubbed, scan_is_stub, deleted_at,
                last_scan_time
           FROM file_inventory
          WHERE customer_id = $1
            AND ($2::uuid IS NULL OR host_id = $2)
            AND ($3::text IS NULL OR starts_with(file_path, $3))
            AND ($4::text IS NULL OR file_extension = $4)
            AND ($5::bigint IS NULL OR file_size >= $5)
            AND ($6::bigint IS NULL OR file_size <= $6)
            AND ($7::timestamptz IS NULL OR last_accessed < $7)
            AND ($8::timestamptz IS NULL OR last_modified < $8)
            AND ($9 OR deleted_at IS NULL)
            AND ($10::uuid IS NULL OR (host_id, file_path) > ($10, $11))
          ORDER BY host_id, file_path LIMIT $12",
    )
    .bind(customer_id)
    .bind(f.host_id)
    .bind(&f.path_prefix)
    .bind(&f.extension)
    .bind(f.min_size)
    .bind(f.max_size)
    .bind(f.accessed_before)
    .bind(f.modified_before)
    .bind(f.include_deleted)
    .bind(ah)
    .bind(ap)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}
