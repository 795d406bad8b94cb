//! The ingest worker: claims `ingest` jobs and merges each completed scan into the
//! inventory in one transaction; also drops expired staging partitions. Both run as
//! [`Worker`]s ([`worker`], [`staging_expiry_worker`]).

use std::sync::Arc;
use std::time::Duration;

use alto_db::{jobs, scans, DbError, TenantCtx};
use alto_model::CustomerId;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::state::AppState;
use crate::worker::{Mode, Worker};

/// Job kind of a scan merge.
pub const KIND: &str = "ingest";

/// Claims and runs one ingest job. Returns false when there was none.
pub async fn step(state: &AppState, worker: &str) -> Result<bool, DbError> {
    let now = state.now();
    let mut tx = state.db.begin(TenantCtx::Platform).await?;
    let Some(job) =
        jobs::claim(&mut tx, &[KIND], worker, chrono::Duration::minutes(30), now).await?
    else {
        return Ok(false);
    };
    tx.commit().await?;
    let ctx = TenantCtx::Tenant(CustomerId(job.customer_id));
    let scan_id =
        job.payload.get("scan_id").and_then(|v| v.as_str()).and_then(|s| s.parse::<Uuid>().ok());
    let started = std::time::Instant::now();
    let outcome = match scan_id {
        Some(id) => ingest_scan(state, ctx, id).await,
        None => Err(DbError::NotFound("scan")),
    };
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    match outcome {
        Ok(stats) => {
            jobs::complete(&mut tx, job.id, &serde_json::to_value(stats).unwrap_or_default(), now)
                .await?;
            metrics::counter!("alto_ingest_scans_total", "outcome" => "completed").increment(1);
            metrics::counter!("alto_ingest_rows_total").increment(stats.rows.max(0) as u64);
            metrics::histogram!("alto_ingest_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::info!(scan = ?scan_id, rows = stats.rows, inserted = stats.inserted,
                updated = stats.updated, deleted = stats.deleted, "scan ingested");
        }
        Err(e) => {
            let msg = e.to_string();
            let transient =
                matches!(e, DbError::Connect(_) | DbError::Other(sqlx::Error::PoolTimedOut));
            let retry = transient.then(|| {
                now + chrono::Duration::seconds(2i64.pow(job.attempts.clamp(1, 8) as u32))
            });
            let st = jobs::fail(&mut tx, job.id, &msg, retry, now).await?;
            if st == "failed" {
                if let Some(id) = scan_id {
                    // Tenant users see the scan: a stable explanation, never the database's
                    // own text (that goes to the log, with the scan's id).
                    let shown = tenant_message(&e);
                    scans::set_status(&mut tx, id, "failed", None, Some(&shown), None, now).await?;
                }
            }
            metrics::counter!("alto_ingest_scans_total", "outcome" => "failed").increment(1);
            tracing::error!(scan = ?scan_id, error = %msg, state = %st, "ingest failed");
        }
    }
    tx.commit().await?;
    Ok(true)
}

async fn ingest_scan(
    state: &AppState,
    ctx: TenantCtx,
    id: Uuid,
) -> Result<scans::MergeStats, DbError> {
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let scan = scans::get_for_update(&mut tx, id).await?.ok_or(DbError::NotFound("scan"))?;
    if scan.status == "completed" {
        // A retried job after a commit whose acknowledgement was lost: nothing to do.
        return Ok(serde_json::from_value(scan.stats.clone()).unwrap_or_default());
    }
    scans::set_status(&mut tx, id, "ingesting", None, None, None, now).await?;
    let stats = scans::merge(&mut tx, &scan, now).await?;
    let stats_json = serde_json::to_value(stats).unwrap_or_default();
    scans::set_status(&mut tx, id, "completed", None, None, Some(&stats_json), now).await?;
    let tenant = CustomerId(scan.customer_id);
    let e = audit::entry(
        state.now(),
        Some(tenant),
        &Actor::system(),
        "scan.ingest",
        Some(("scan", id.to_string())),
        "success",
        serde_json::json!({ "host_id": scan.host_id, "stats": stats_json }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({
        "type": "scan_completed", "customer_id": scan.customer_id, "host_id": scan.host_id,
        "scan_id": id, "stats": stats_json }),
    )
    .await?;
    // The planner runs for this host after every ingest (queued in this transaction, so a
    // committed scan is never left unplanned).
    if alto_db::rules::settings(&mut tx, scan.customer_id).await?.plan_after_ingest {
        let mut req = crate::services::planner::RunRequest::new(
            scan.customer_id,
            crate::services::planner::Trigger::Ingest,
        );
        req.host_ids = vec![scan.host_id];
        crate::services::planner::enqueue(&mut tx, &req, now).await?;
    }
    tx.commit().await?;
    Ok(stats)
}

/// Drops staging partitions older than the retention.
pub async fn expire_staging(state: &AppState) -> Result<i32, DbError> {
    let keep = state.now()
        - chrono::Duration::from_std(state.config.ingest.staging_retention).unwrap_or_default();
    let mut tx = state.db.begin(TenantCtx::Platform).await?;
    let n = scans::drop_staging_before(&mut tx, keep.date_naive()).await?;
    tx.commit().await?;
    Ok(n)
}

/// The ingest worker: claims and merges scans until none is queued; woken by `alto_jobs`
/// notifications, and looks every 2 s.
pub fn worker(state: &AppState) -> Worker<AppState> {
    Worker::with_triggers(
        "ingest",
        Mode::Drain,
        Duration::from_secs(2),
        vec![state.jobs_wakeup.clone()],
        |state: AppState, instance: Arc<str>| async move {
            Ok(usize::from(step(&state, &instance).await?))
        },
    )
}

/// The staging expiry worker: drops expired staging partitions once an hour.
pub fn staging_expiry_worker() -> Worker<AppState> {
    Worker::new(
        "staging-expiry",
        Mode::Periodic,
        Duration::from_secs(3600),
        |state: AppState, _| async move {
            let n = expire_staging(&state).await?;
            if n > 0 {
                tracing::info!(partitions = n, "dropped expired scan staging");
            }
            Ok(usize::try_from(n).unwrap_or(0))
        },
    )
}

/// What a tenant user is told about a failed merge.
fn tenant_message(e: &DbError) -> String {
    match e {
        DbError::NotFound(what) => format!("the {what} was not found"),
        DbError::Unrepresentable { kind, .. } => format!("the scan holds a value that cannot be stored: {kind}"),
        DbError::Connect(_) | DbError::Other(sqlx::Error::PoolTimedOut) => {
            "the database was unavailable; the merge was retried and gave up".to_owned()
        }
        _ => "internal error while merging the scan; the server log has the details under this scan's id".to_owned(),
    }
}
