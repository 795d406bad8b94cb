//! Reading and verifying the audit trail.

use alto_api_types::{AuditEntry, AuditVerifyReport, ChainFault, ChainStatus, ErrorCode, Page};
use alto_db::audit::{self as db_audit, ChainReport, ListFilter};
use alto_model::audit::ChainFault as Fault;
use alto_model::{CustomerId, Permission};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use super::page::{self, Pager, Seq};
use crate::auth::User;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Items per page, 1–1000 (default 100). Newest first.
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only actions starting with this prefix, e.g. `auth.` or `host.credential`.
    action: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

async fn do_list(
    state: AppState,
    chain: Option<Uuid>,
    ctx: alto_db::TenantCtx,
    q: AuditQuery,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let p = Pager::<page::Audit>::new(q.limit, q.cursor.as_deref())?;
    if let Some(o) = q.outcome.as_deref() {
        if !matches!(o, "success" | "failure" | "denied") {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "outcome must be success, failure or denied",
            ));
        }
    }
    let filter =
        ListFilter { action_prefix: q.action, outcome: q.outcome, since: q.since, until: q.until };
    let mut tx = state.db.begin(ctx).await?;
    let before = p.after.map(|s| s.seq);
    let rows = db_audit::list(&mut tx, chain, &filter, before, p.fetch()).await?;
    tx.commit().await?;
    Ok(Json(p.page(rows, |r| Seq { seq: r.seq }, convert::audit_entry)))
}

/// A tenant's audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/audit", tag = "audit",
    params(("tenant_id" = Uuid, Path), AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Err), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let ctx = by.authorize(&state, Permission::AuditRead, CustomerId(t)).await?;
    do_list(state, Some(t), ctx, q).await
}

/// The platform chain (tenant lifecycle, platform logins, unknown-token attempts).
#[utoipa::path(get, path = "/api/v1/platform/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Err)))]
pub(super) async fn list_platform(
    State(state): State<AppState>,
    by: User,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let ctx = by.authorize_platform(&state, Permission::AuditRead).await?;
    do_list(state, None, ctx, q).await
}

fn status(r: ChainReport) -> ChainStatus {
    let fault = r.fault.map(|f| match f {
        Fault::HashMismatch { seq } => ChainFault {
            kind: "hash_mismatch".into(),
            seq,
            message: format!("entry {seq} does not match its hash: it was altered"),
        },
        Fault::BrokenLink { seq } => ChainFault {
            kind: "broken_link".into(),
            seq,
            message: format!("entry {seq} does not link to the entry before it"),
        },
        Fault::Missing { expected, found } => ChainFault {
            kind: "missing".into(),
            seq: expected,
            message: format!("entries {expected}..{} are missing", found - 1),
        },
        Fault::TruncatedTail { last_present, head_seq } => ChainFault {
            kind: "truncated_tail".into(),
            seq: last_present + 1,
            message: format!("entries {}..{head_seq} are missing from the end", last_present + 1),
        },
    });
    ChainStatus {
        tenant_id: r.customer_id,
        entries_checked: r.entries_checked,
        head_seq: r.head_seq,
        ok: fault.is_none(),
        fault,
    }
}

/// Walks the tenant's chain and names the first altered or missing entry.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/audit/verify", tag = "audit",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = AuditVerifyReport), (status = 403, body = Err)))]
pub(super) async fn verify(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<AuditVerifyReport>> {
    let ctx = by.authorize(&state, Permission::AuditVerify, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let report = db_audit::verify_chain(&mut tx, Some(t)).await?;
    tx.commit().await?;
    let s = status(report);
    Ok(Json(AuditVerifyReport { ok: s.ok, chains: vec![s] }))
}

/// Walks every chain: the platform's and each tenant's.
#[utoipa::path(get, path = "/api/v1/platform/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerifyReport), (status = 403, body = Err)))]
pub(super) async fn verify_platform(
    State(state): State<AppState>,
    by: User,
) -> ApiResult<Json<AuditVerifyReport>> {
    let ctx = by.authorize_platform(&state, Permission::AuditVerify).await?;
    let mut tx = state.db.begin(ctx).await?;
    let mut chains: Vec<Option<Uuid>> =
        db_audit::heads(&mut tx).await?.into_iter().map(|(c, _, _)| c).collect();
    chains.sort();
    let mut out = Vec::with_capacity(chains.len());
    for c in chains {
        out.push(status(db_audit::verify_chain(&mut tx, c).await?));
    }
    tx.commit().await?;
    Ok(Json(AuditVerifyReport { ok: out.iter().all(|c| c.ok), chains: out }))
}
