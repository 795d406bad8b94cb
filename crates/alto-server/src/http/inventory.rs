//! Browsing the inventory: summaries (counts and bytes by extension, age band, directory)
//! and filtered, paginated file listings.

use alto_api_types::{ErrorCode, InventoryBucket, InventoryFile, InventorySummary, Page};
use alto_db::inventory::{self, FileFilter};
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use super::page::{self, HostPath, Pager};
use crate::auth::User;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SummaryQuery {
    /// Only this host.
    host_id: Option<Uuid>,
    /// Entries per breakdown, 1–200 (default 25).
    top: Option<i64>,
}

fn buckets(v: Vec<inventory::Bucket>) -> Vec<InventoryBucket> {
    v.into_iter().map(|b| InventoryBucket { key: b.key, files: b.files, bytes: b.bytes }).collect()
}

/// Live files and bytes of a tenant or host, by extension, access and modification age,
/// and the largest directories.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/inventory/summary", tag = "inventory",
    params(("tenant_id" = Uuid, Path), SummaryQuery),
    responses((status = 200, body = InventorySummary), (status = 404, body = Err)))]
pub(super) async fn summary(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> ApiResult<Json<InventorySummary>> {
    let ctx = by.authorize(&state, Permission::InventoryRead, CustomerId(t)).await?;
    let top = q.top.unwrap_or(25);
    if !(1..=200).contains(&top) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "top must be 1 to 200"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let s = inventory::summary(&mut tx, t, q.host_id, state.now(), top).await?;
    tx.commit().await?;
    Ok(Json(InventorySummary {
        files: s.files,
        bytes: s.bytes,
        by_extension: buckets(s.by_extension),
        accessed_age: buckets(s.accessed_age),
        modified_age: buckets(s.modified_age),
        largest_directories: buckets(s.largest_directories),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct FilesQuery {
    host_id: Option<Uuid>,
    /// Paths starting with this text.
    path_prefix: Option<String>,
    /// Extension with its dot, e.g. `.pdf`.
    extension: Option<String>,
    min_size: Option<i64>,
    max_size: Option<i64>,
    /// Last accessed before this time (RFC 3339).
    accessed_before: Option<DateTime<Utc>>,
    modified_before: Option<DateTime<Utc>>,
    /// Include files marked deleted by a later full scan.
    #[serde(default)]
    include_deleted: bool,
    /// Items per page, 1–1000 (default 100).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Files of the inventory, filtered, ordered by host and path.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/inventory/files", tag = "inventory",
    params(("tenant_id" = Uuid, Path), FilesQuery),
    responses((status = 200, body = Page<InventoryFile>), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn files(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> ApiResult<Json<Page<InventoryFile>>> {
    let ctx = by.authorize(&state, Permission::InventoryRead, CustomerId(t)).await?;
    let p = Pager::<page::InventoryFiles>::new(q.limit, q.cursor.as_deref())?;
    if q.min_size.is_some_and(|v| v < 0) || q.max_size.is_some_and(|v| v < 0) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "sizes must not be negative"));
    }
    if q.path_prefix.as_ref().is_some_and(|p| p.len() > 4096 || p.contains('\0')) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "path_prefix is too long or has a NUL byte",
        ));
    }
    let filter = FileFilter {
        host_id: q.host_id,
        path_prefix: q.path_prefix,
        extension: q.extension.map(|e| e.to_lowercase()),
        min_size: q.min_size,
        max_size: q.max_size,
        accessed_before: q.accessed_before,
        modified_before: q.modified_before,
        include_deleted: q.include_deleted,
    };
    let mut tx = state.db.begin(ctx).await?;
    let after = p.after.as_ref().map(|k| (k.host, k.path.clone()));
    let rows = inventory::files(&mut tx, t, &filter, after, p.fetch()).await?;
    tx.commit().await?;
    let key = |r: &inventory::FileRow| HostPath { host: r.host_id, path: r.file_path.clone() };
    Ok(Json(p.page(rows, key, |r| InventoryFile {
        id: r.id,
        host_id: r.host_id,
        file_path: r.file_path,
        path_escaped: r.path_escaped,
        file_size: r.file_size,
        last_modified: r.last_modified,
        last_accessed: r.last_accessed,
        file_extension: r.file_extension,
        permissions: r.permissions,
        owner: r.owner,
        is_stubbed: r.is_stubbed,
        scan_is_stub: r.scan_is_stub,
        deleted_at: r.deleted_at,
        last_scan_time: r.last_scan_time,
    })))
}
