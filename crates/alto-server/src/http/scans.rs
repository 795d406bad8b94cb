//! Scan uploads from agents (`POST /api/v1/scan-results`) and scan status for people.
//!
//! A scan is uploaded as parts `0..n`; each part is a whole batch file (Parquet or CSV) with
//! its SHA-256 in `X-Alto-Sha256`. Each part is validated completely before anything is
//! stored; a part re-sent with the same content is acknowledged without change. The part
//! sent with `last=true` closes the scan: every earlier part must be there, no path may
//! repeat, and then the ingest job is queued in the same transaction. Nothing of a scan
//! reaches `file_inventory` before that.

use std::collections::HashSet;
use std::io::Write as _;

use alto_api_types::{ErrorCode, Page, Scan, ScanPartAccepted};
use alto_batch::{BatchError, Format};
use alto_db::{jobs, scans};
use alto_model::{CustomerId, Permission};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use super::page::{self, Created, Pager};
use crate::audit;
use crate::auth::{Host, User};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

/// The raw body, with `payload_too_large` instead of axum's plain-text rejection.
pub(super) struct ApiBytes(Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the scan part is larger than ingest.max_part_bytes; split it into more parts",
            )),
            Err(_) => Err(ApiError::new(
                ErrorCode::InvalidBatch,
                "the upload was interrupted or unreadable",
            )),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// Chosen by the agent (a UUID) and reused for every part and retry of one scan.
    scan_id: Uuid,
    /// Part number, from 0.
    part: i32,
    /// True on the final part: closes the scan and queues its ingest.
    #[serde(default)]
    last: bool,
    /// `full` (default: files not in the scan are marked deleted) or `partial`.
    kind: Option<String>,
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Parses and validates a part, producing PostgreSQL COPY CSV in staging column order.
///
/// The decompressed content is limited to `max_decoded` bytes (decompression streams and stops
/// there), and so is the COPY text built from it (twice that: it adds ids and dates per row).
fn to_copy(
    body: Bytes,
    format: Format,
    scan: Uuid,
    part: i32,
    staged_on: chrono::NaiveDate,
    max_decoded: u64,
) -> Result<(Vec<u8>, u64), ApiError> {
    let max_copy = usize::try_from(max_decoded.saturating_mul(2)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity((body.len() * 2).min(max_copy));
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut row_no: u64 = 0;
    let head = format!("{scan},{part},");
    let day = staged_on.to_string();
    let res = alto_batch::for_each_max(std::io::Cursor::new(body), format, max_decoded, |r| {
        if out.len() > max_copy {
            return Err(BatchError::TooLarge { limit: max_decoded });
        }
        row_no += 1;
        let bad = |m: &str| BatchError::Row { row: row_no, message: m.to_owned() };
        if !seen.insert(r.path.clone()) {
            return Err(bad("file_path appears twice in this part"));
        }
        for (name, v) in
            [("owner", r.owner.as_str()), ("stub_object", r.stub.as_deref().unwrap_or(""))]
        {
            if v.contains('\0') || v.len() > 4096 {
                return Err(bad(&format!("{name} contains a NUL byte or is too long")));
            }
        }
        let (path, escaped) = alto_batch::encode_path(&r.path);
        let hash = if r.hash.is_empty() { String::new() } else { q(&r.hash) };
        let stub = r.stub.as_deref().map(q).unwrap_or_default();
        let _ = writeln!(
            out,
            "{head}{row_no},{day},{},{},{},{},{},{},{},{},{},{},{hash},{},{},{},{},{},{},{},{stub}",
            Uuid::now_v7(),
            q(&path),
            if escaped { "t" } else { "f" },
            r.size,
            r.mtime_us,
            r.atime_us,
            r.ctime_us,
            q(&r.extension()),
            q(&r.permissions()),
            q(&r.owner),
            r.mode,
            r.uid,
            r.gid,
            r.inode as i64,
            r.device as i64,
            r.nlink as i64,
            if r.stub.is_some() { "t" } else { "f" },
        );
        Ok(())
    });
    match res {
        Ok(_) if out.len() > max_copy => Err(too_large(part, max_decoded)),
        Ok(n) => Ok((out, n)),
        Err(BatchError::TooLarge { .. }) => Err(too_large(part, max_decoded)),
        Err(BatchError::Row { row, message }) => {
            Err(ApiError::new(ErrorCode::InvalidBatch, format!("part {part} row {row}: {message}")))
        }
        Err(e) => Err(ApiError::new(ErrorCode::InvalidBatch, format!("part {part}: {e}"))),
    }
}

fn too_large(part: i32, limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "part {part} decompresses to more than ingest.max_decoded_part_bytes ({limit} bytes); \
             split the scan into smaller parts"
        ),
    )
}

/// Uploads one part of a scan (host credential). The host and tenant come from the
/// credential; the body is a Parquet or CSV batch (see the `alto-batch` crate).
#[utoipa::path(post, path = "/api/v1/scan-results", tag = "agent", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/vnd.apache.parquet",
        description = "A scan batch: Parquet, or CSV as text/csv, text/csv+gzip, text/csv+zstd. Header X-Alto-Sha256: hex SHA-256 of the body."),
    responses((status = 202, body = ScanPartAccepted), (status = 200, body = ScanPartAccepted, description = "this part was already received"),
              (status = 400, body = Err), (status = 401, body = Err), (status = 409, body = Err), (status = 413, body = Err)),
    security(("bearer" = [])))]
pub(super) async fn upload(
    State(state): State<AppState>,
    host: Host,
    ApiQuery(uq): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, Json<ScanPartAccepted>)> {
    if !(0..=100_000).contains(&uq.part) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "part must be 0 to 100000"));
    }
    let kind = uq.kind.as_deref().unwrap_or("full");
    if !matches!(kind, "full" | "partial") {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "kind must be full or partial"));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = Format::from_content_type(ct).ok_or_else(|| {
        ApiError::new(ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/vnd.apache.parquet, text/csv, text/csv+gzip or text/csv+zstd")
    })?;
    let declared = headers
        .get("x-alto-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::validation(
            "header X-Alto-Sha256 must be the hex SHA-256 of the body",
        ));
    }
    let actual = hex::encode(Sha256::digest(&body));
    if actual != declared {
        return Err(ApiError::new(
            ErrorCode::ChecksumMismatch,
            format!("part {}: body SHA-256 is {actual}, the header says {declared}", uq.part),
        ));
    }
    let now = state.now();
    let tenant = host.customer_id;
    let mut tx = state.db.begin(host.ctx()).await?;
    let scan = match scans::get_for_update(&mut tx, uq.scan_id).await? {
        Some(s) if s.host_id != host.host_id => return Err(ApiError::not_found("scan")),
        Some(s) => s,
        None => scans::create(&mut tx, uq.scan_id, tenant.0, host.host_id, kind, now).await?,
    };
    if scan.kind != kind {
        return Err(ApiError::validation(format!("scan {} is a {} scan", scan.id, scan.kind)));
    }
    if let Some(prev) = scans::part_sha(&mut tx, scan.id, uq.part).await? {
        if prev == actual {
            return Ok((
                StatusCode::OK,
                Json(ScanPartAccepted {
                    scan_id: scan.id,
                    part: uq.part,
                    rows: 0,
                    status: scan.status,
                    duplicate: true,
                }),
            ));
        }
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "part {} of scan {} was already received with different content",
                uq.part, scan.id
            ),
        ));
    }
    if scan.status != "receiving" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("scan {} is already {}", scan.id, scan.status),
        ));
    }
    let bytes_len = body.len() as i64;
    let (scan_id, part, day) = (scan.id, uq.part, scan.staged_on);
    let max_decoded = state.config.ingest.max_decoded_part_bytes as u64;
    let (copy, rows) =
        tokio::task::spawn_blocking(move || to_copy(body, format, scan_id, part, day, max_decoded))
            .await
            .map_err(|_| ApiError::internal())??;
    scans::stage_part(&mut tx, &scan, uq.part, &actual, rows as i64, bytes_len, &copy, now).await?;
    let mut status = "receiving".to_owned();
    if uq.last {
        let parts = scans::parts(&mut tx, scan.id).await?;
        let missing: Vec<i32> = (0..=uq.part).filter(|p| !parts.contains(p)).collect();
        if !missing.is_empty() || parts.len() as i32 != uq.part + 1 {
            return Err(ApiError::new(ErrorCode::InvalidBatch,
                format!("cannot close scan {}: parts {missing:?} are missing (or parts beyond {} exist)", scan.id, uq.part)));
        }
        if let Some((path, p, row)) = scans::first_duplicate(&mut tx, &scan).await? {
            drop(tx);
            let msg = format!(
                "part {p} row {row}: file_path `{}` appears more than once in the scan",
                path.chars().take(200).collect::<String>()
            );
            let mut tx = state.db.begin(host.ctx()).await?;
            scans::set_status(&mut tx, scan.id, "failed", None, Some(&msg), None, now).await?;
            tx.commit().await?;
            return Err(ApiError::new(ErrorCode::InvalidBatch, msg));
        }
        scans::set_status(&mut tx, scan.id, "queued", Some(uq.part + 1), None, None, now).await?;
        jobs::enqueue(
            &mut tx,
            Uuid::now_v7(),
            tenant.0,
            Some(host.host_id),
            crate::services::ingest::KIND,
            0,
            &serde_json::json!({ "scan_id": scan.id }),
            now,
        )
        .await?;
        let e = audit::entry(
            state.now(),
            Some(tenant),
            &host.actor(),
            "scan.submit",
            Some(("scan", scan.id.to_string())),
            "success",
            serde_json::json!({ "kind": kind, "parts": uq.part + 1, "rows": scan.rows_staged + rows as i64 }),
        );
        audit::record(&mut tx, &e).await?;
        status = "queued".into();
    }
    tx.commit().await?;
    metrics::counter!("alto_scan_parts_received_total").increment(1);
    metrics::counter!("alto_scan_rows_staged_total").increment(rows);
    Ok((
        StatusCode::ACCEPTED,
        Json(ScanPartAccepted { scan_id: scan.id, part: uq.part, rows, status, duplicate: false }),
    ))
}

fn scan_dto(r: scans::ScanRow) -> Scan {
    Scan {
        id: r.id,
        host_id: r.host_id,
        kind: r.kind,
        status: r.status,
        parts_expected: r.parts_expected,
        rows_staged: r.rows_staged,
        bytes_received: r.bytes_received,
        error: r.error,
        stats: r.stats,
        created_at: r.created_at,
        completed_at: r.completed_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanListQuery {
    host_id: Option<Uuid>,
    /// Items per page, 1–1000 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Recent scans of a tenant (or one host), newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/scans", tag = "inventory",
    params(("tenant_id" = Uuid, Path), ScanListQuery),
    responses((status = 200, body = Page<Scan>), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ScanListQuery>,
) -> ApiResult<Json<Page<Scan>>> {
    let ctx = by.authorize(&state, Permission::InventoryRead, CustomerId(t)).await?;
    let p = Pager::<page::Scans>::new(q.limit, q.cursor.as_deref())?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = scans::list(&mut tx, t, q.host_id, p.after.map(Into::into), p.fetch()).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Created::of(r.created_at, r.id), scan_dto)))
}

/// One scan, with its ingest statistics once completed.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/scans/{scan_id}", tag = "inventory",
    params(("tenant_id" = Uuid, Path), ("scan_id" = Uuid, Path)),
    responses((status = 200, body = Scan), (status = 404, body = Err)))]
pub(super) async fn get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Scan>> {
    let ctx = by.authorize(&state, Permission::InventoryRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = scans::get(&mut tx, t, id).await?;
    tx.commit().await?;
    Ok(Json(scan_dto(row)))
}
