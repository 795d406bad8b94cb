//! Rules and their version history, and the tenant's planner settings (which carry the
//! ruleset revision every rule change bumps).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DbError, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub priority: i32,
    pub version: i32,
    pub spec: serde_json::Value,
    pub schedule: Option<String>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, customer_id, name, enabled, priority, version, spec, schedule,
    last_fired_at, created_at, updated_at";

/// Live rules of the tenant in priority order.
pub async fn list(tx: &mut Tx, customer_id: Uuid) -> Result<Vec<RuleRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rules WHERE customer_id = $1 AND deleted_at IS NULL
          ORDER BY priority, id"
    ))
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get(tx: &mut Tx, id: Uuid) -> Result<RuleRow, DbError> {
    sqlx::query_as(&format!("SELECT {COLS} FROM rules WHERE id = $1 AND deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("rule"))
}

/// Locks the tenant's rule set so concurrent edits serialise (priority and name checks,
/// reorders, revision bumps).
pub async fn lock_ruleset(tx: &mut Tx, customer_id: Uuid) -> Result<(), DbError> {
    sqlx::query("SELECT pg_advisory_xact_lock(73010010, hashtext($1::text))")
        .bind(customer_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct RuleWrite<'a> {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub spec: &'a alto_rules::RuleSpec,
    pub by: Option<Uuid>,
    pub now: DateTime<Utc>,
}

fn spec_json(spec: &alto_rules::RuleSpec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or_default()
}

async fn write_version(
    tx: &mut Tx,
    w: &RuleWrite<'_>,
    version: i32,
    change: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO rule_versions (rule_id, customer_id, version, change, spec, changed_by, changed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(w.id)
    .bind(w.customer_id)
    .bind(version)
    .bind(change)
    .bind(spec_json(w.spec))
    .bind(w.by)
    .bind(w.now)
    .execute(&mut **tx)
    .await?;
    bump_revision(tx, w.customer_id, w.now).await?;
    Ok(())
}

pub async fn create(tx: &mut Tx, w: &RuleWrite<'_>) -> Result<RuleRow, DbError> {
    let row: RuleRow = sqlx::query_as(&format!(
        "INSERT INTO rules (id, customer_id, name, enabled, priority, version, spec, schedule,
                            created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $9) RETURNING {COLS}"
    ))
    .bind(w.id)
    .bind(w.customer_id)
    .bind(&w.spec.name)
    .bind(w.spec.enabled)
    .bind(w.spec.priority)
    .bind(spec_json(w.spec))
    .bind(&w.spec.schedule)
    .bind(w.by)
    .bind(w.now)
    .fetch_one(&mut **tx)
    .await?;
    write_version(tx, w, 1, "created").await?;
    Ok(row)
}

/// Replaces the rule's definition with a new version.
pub async fn update(tx: &mut Tx, w: &RuleWrite<'_>) -> Result<RuleRow, DbError> {
    let row: RuleRow = sqlx::query_as(&format!(
        "UPDATE rules SET name = $2, enabled = $3, priority = $4, version = version + 1,
                spec = $5, schedule = $6,
                last_fired_at = CASE WHEN schedule IS DISTINCT FROM $6 THEN NULL ELSE last_fired_at END,
                updated_at = $7
          WHERE id = $1 AND deleted_at IS NULL RETURNING {COLS}"
    ))
    .bind(w.id)
    .bind(&w.spec.name)
    .bind(w.spec.enabled)
    .bind(w.spec.priority)
    .bind(spec_json(w.spec))
    .bind(&w.spec.schedule)
    .bind(w.now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("rule"))?;
    write_version(tx, w, row.version, "updated").await?;
    Ok(row)
}

/// Deletes a rule (its history stays).
pub async fn delete(tx: &mut Tx, w: &RuleWrite<'_>) -> Result<RuleRow, DbError> {
    let row: RuleRow = sqlx::query_as(&format!(
        "UPDATE rules SET deleted_at = $2, version = version + 1, updated_at = $2
          WHERE id = $1 AND deleted_at IS NULL RETURNING {COLS}"
    ))
    .bind(w.id)
    .bind(w.now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DbError::NotFound("rule"))?;
    write_version(tx, w, row.version, "deleted").await?;
    Ok(row)
}

/// Moves the given rules to temporary negative priorities so a reorder can assign final ones
/// without tripping the unique index.
pub async fn park_priorities(tx: &mut Tx, customer_id: Uuid, ids: &[Uuid]) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE rules SET priority = -1 - priority
          WHERE customer_id = $1 AND deleted_at IS NULL AND id = ANY($2)",
    )
    .bind(customer_id)
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub rule_id: Uuid,
    pub version: i32,
    pub change: String,
    pub spec: serde_json::Value,
    pub changed_by: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

pub async fn versions(tx: &mut Tx, rule_id: Uuid) -> Result<Vec<VersionRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT rule_id, version, change, spec, changed_by, changed_at FROM rule_versions
          WHERE rule_id = $1 ORDER BY version",
    )
    .bind(rule_id)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn set_last_fired(tx: &mut Tx, id: Uuid, at: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query("UPDATE rules SET last_fired_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Enabled rules with a schedule, across tenants (platform scope), for the scheduler.
pub async fn scheduled(tx: &mut Tx) -> Result<Vec<RuleRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rules r
          WHERE deleted_at IS NULL AND enabled AND schedule IS NOT NULL
            AND EXISTS (SELECT 1 FROM customers c WHERE c.id = r.customer_id AND c.status = 'active')
          ORDER BY customer_id, priority"
    ))
    .fetch_all(&mut **tx)
    .await?)
}

// --- Planner settings ------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub safety_window_seconds: i32,
    pub high_watermark_pct: f64,
    pub low_watermark_pct: f64,
    pub watermark_order: String,
    pub max_files_per_run: Option<i64>,
    pub max_bytes_per_run: Option<i64>,
    pub host_max_files_per_hour: Option<i64>,
    pub host_max_bytes_per_hour: Option<i64>,
    pub link_bytes_per_second: i64,
    pub per_file_overhead_ms: i32,
    pub plan_after_ingest: bool,
    pub ruleset_revision: i64,
    /// Days after a recall during which a file is not tiered again (rules may override).
    #[serde(default = "default_recall_retention_days")]
    pub recall_retention_days: i32,
    #[serde(default)]
    pub tier_bandwidth_limit_bytes_per_second: Option<i64>,
    #[serde(default)]
    pub recall_bandwidth_limit_bytes_per_second: Option<i64>,
}

fn default_recall_retention_days() -> i32 {
    30
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            safety_window_seconds: 3600,
            high_watermark_pct: 90.0,
            low_watermark_pct: 80.0,
            watermark_order: "oldest_access".into(),
            max_files_per_run: None,
            max_bytes_per_run: None,
            host_max_files_per_hour: None,
            host_max_bytes_per_hour: None,
            link_bytes_per_second: 125_000_000,
            per_file_overhead_ms: 5,
            plan_after_ingest: true,
            ruleset_revision: 0,
            recall_retention_days: 30,
            tier_bandwidth_limit_bytes_per_second: None,
            recall_bandwidth_limit_bytes_per_second: None,
        }
    }
}

const SETTINGS_COLS: &str = "safety_window_seconds, high_watermark_pct, low_watermark_pct,
    watermark_order, max_files_per_run, max_bytes_per_run, host_max_files_per_hour,
    host_max_bytes_per_hour, link_bytes_per_second, per_file_overhead_ms, plan_after_ingest,
    ruleset_revision, recall_retention_days, tier_bandwidth_limit_bytes_per_second,
    recall_bandwidth_limit_bytes_per_second";

pub async fn settings(tx: &mut Tx, customer_id: Uuid) -> Result<Settings, DbError> {
    let row: Option<Settings> = sqlx::query_as(&format!(
        "SELECT {SETTINGS_COLS} FROM planner_settings WHERE customer_id = $1"
    ))
    .bind(customer_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn save_settings(
    tx: &mut Tx,
    customer_id: Uuid,
    s: &Settings,
    now: DateTime<Utc>,
) -> Result<Settings, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO planner_settings (customer_id, safety_window_seconds, high_watermark_pct,
            low_watermark_pct, watermark_order, max_files_per_run, max_bytes_per_run,
            host_max_files_per_hour, host_max_bytes_per_hour, link_bytes_per_second,
            per_file_overhead_ms, plan_after_ingest, updated_at, recall_retention_days,
            tier_bandwidth_limit_bytes_per_second, recall_bandwidth_limit_bytes_per_second)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (customer_id) DO UPDATE SET
            safety_window_seconds = EXCLUDED.safety_window_seconds,
            high_watermark_pct = EXCLUDED.high_watermark_pct,
            low_watermark_pct = EXCLUDED.low_watermark_pct,
            watermark_order = EXCLUDED.watermark_order,
            max_files_per_run = EXCLUDED.max_files_per_run,
            max_bytes_per_run = EXCLUDED.max_bytes_per_run,
            host_max_files_per_hour = EXCLUDED.host_max_files_per_hour,
            host_max_bytes_per_hour = EXCLUDED.host_max_bytes_per_hour,
            link_bytes_per_second = EXCLUDED.link_bytes_per_second,
            per_file_overhead_ms = EXCLUDED.per_file_overhead_ms,
            plan_after_ingest = EXCLUDED.plan_after_ingest,
            recall_retention_days = EXCLUDED.recall_retention_days,
            tier_bandwidth_limit_bytes_per_second = EXCLUDED.tier_bandwidth_limit_bytes_per_second,
            recall_bandwidth_limit_bytes_per_second = EXCLUDED.recall_bandwidth_limit_bytes_per_second,
            updated_at = EXCLUDED.updated_at
         RETURNING {SETTINGS_COLS}"
    ))
    .bind(customer_id)
    .bind(s.safety_window_seconds)
    .bind(s.high_watermark_pct)
    .bind(s.low_watermark_pct)
    .bind(&s.watermark_order)
    .bind(s.max_files_per_run)
    .bind(s.max_bytes_per_run)
    .bind(s.host_max_files_per_hour)
    .bind(s.host_max_bytes_per_hour)
    .bind(s.link_bytes_per_second)
    .bind(s.per_file_overhead_ms)
    .bind(s.plan_after_ingest)
    .bind(now)
    .bind(s.recall_retention_days)
    .bind(s.tier_bandwidth_limit_bytes_per_second)
    .bind(s.recall_bandwidth_limit_bytes_per_second)
    .fetch_one(&mut **tx)
    .await?)
}

/// Bumps and returns the tenant's ruleset revision.
pub async fn bump_revision(
    tx: &mut Tx,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO planner_settings (customer_id, ruleset_revision, updated_at) VALUES ($1, 1, $2)
         ON CONFLICT (customer_id) DO UPDATE
           SET ruleset_revision = planner_settings.ruleset_revision + 1
         RETURNING ruleset_revision",
    )
    .bind(customer_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}
