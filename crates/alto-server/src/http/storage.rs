//! Storage targets: the named tier-2 locations rules tier to (directory, S3, Azure Blob,
//! SMB), their validated settings, and checks that reach the target from the server.
//!
//! **Secrets never leave the server:** every response and audit entry shows `config`
//! through [`TargetSpec::redacted_config`]; check errors are fixed texts per code (never what
//! the target sent back) with any secret value scrubbed again. `config` is stored as given
//! (not encrypted at rest).
//!
//! **The server's own network and disks are off limits** (`[storage]`): endpoints must pass
//! the outbound policy ([`crate::egress`]) when saved and again, by resolved address, when
//! checked; directory locations must lie under `storage.directory_base`, the only place the
//! server ever probes.
//!
//! Changes are refused while something depends on them: the kind while rules, unfinished
//! tiering jobs or live stubs use the target; the location while unfinished jobs or live
//! stubs do (their objects are at the old one); deletion while any of them does. Credentials
//! and other config can always change. The name never changes (rules and the stub registry
//! refer to it).

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alto_api_types::{
    CreateStorageTarget, ErrorCode, ReplaceStorageTarget, StorageCheckCode, StorageCheckError,
    StorageCheckStatus, StorageHealth, StorageTarget, StorageTestResult, StorageUsage,
    UpdateStorageTarget, REDACTED,
};
use alto_db::storage::{self, CheckRecord, TargetRow};
use alto_model::{CustomerId, Permission};
use alto_tier2::validate::{is_secret_field as is_secret, redact_config, validate_spec};
use alto_tier2::{FailureClass, OpenOptions, Target, TargetKind, TargetSpec, Tier2Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use crate::audit;
use crate::auth::User;
use crate::egress::{parse_authority, Host};
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

/// Longest check (connect, probe, count usage); capped below the HTTP request timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

// --- Settings -------------------------------------------------------------------------------

/// `config` as answers and audit entries show it (secrets redacted, whatever the kind).
fn redact(config: &Value) -> Value {
    redact_config(config)
}

fn parse_kind(kind: &str) -> Option<TargetKind> {
    kind.parse().ok()
}

/// Checks kind, location and config without connecting (`alto_tier2::validate`);
/// `validation_failed` names the field at fault.
fn validate(kind: &str, location: &str, config: &Value) -> Result<TargetSpec, ApiError> {
    validate_spec(kind, location, config).map_err(|e| ApiError::validation(e.to_string()))
}

/// The network endpoints the server connects to when it checks a target: the request
/// field that names each, its host and port. S3 without an endpoint (AWS) names public hosts
/// only: those are checked when connecting.
fn endpoints(spec: &TargetSpec) -> Result<Vec<(&'static str, Host, u16)>, String> {
    let config = &spec.config;
    let url = |field: &'static str, u: &str| {
        let port = if u.starts_with("https://") { 443 } else { 80 };
        parse_authority(u, port).map(|(h, p, _)| (field, h, p)).map_err(|e| format!("{field}: {e}"))
    };
    let mut out = Vec::new();
    match spec.kind {
        TargetKind::Directory => {}
        TargetKind::S3 | TargetKind::Azure => {
            if let Some(ep) = config.get("endpoint").and_then(Value::as_str) {
                out.push(url("config.endpoint", ep)?);
            } else if spec.kind == TargetKind::Azure {
                if config.get("use_emulator").and_then(Value::as_bool) == Some(true) {
                    let ep = std::env::var("AZURITE_BLOB_STORAGE_URL")
                        .unwrap_or_else(|_| "http://127.0.0.1:10000".into());
                    out.push(url("config.use_emulator", &ep)?);
                } else if let Some(a) = config.get("account").and_then(Value::as_str) {
                    if !(3..=24).contains(&a.len())
                        || !a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    {
                        return Err(
                            "config.account must be 3–24 lower-case letters and digits".into()
                        );
                    }
                    out.push((
                        "config.account",
                        Host::Name(format!("{a}.blob.core.windows.net")),
                        443,
                    ));
                }
            }
        }
        TargetKind::Smb => {
            let (h, p, _) =
                parse_authority(&spec.location, 445).map_err(|e| format!("location: {e}"))?;
            out.push(("location", h, p));
        }
    }
    Ok(out)
}

/// Whether absolute `location` lies under `base` (no `..`).
fn under_base(base: &Path, location: &Path) -> bool {
    !location.components().any(|c| matches!(c, Component::ParentDir)) && location.starts_with(base)
}

/// The platform's limits on targets (`[storage]`): a `directory` location under
/// `storage.directory_base` when that is set, and network endpoints the server may reach
/// (`storage.allowed_endpoints`; names are checked by address when the target is tested).
async fn confine(state: &AppState, spec: &TargetSpec) -> Result<(), ApiError> {
    let cfg = &state.config.storage;
    if spec.kind == TargetKind::Directory {
        let loc = Path::new(&spec.location);
        if let (Some(base), true) = (&cfg.directory_base, loc.is_absolute()) {
            if !under_base(base, loc) {
                return Err(ApiError::validation(format!(
                    "location: an absolute directory must be under {} (storage.directory_base)",
                    base.display()
                )));
            }
        }
        return Ok(());
    }
    let policy = cfg.egress_policy().map_err(|_| ApiError::internal())?;
    for (field, host, port) in endpoints(spec).map_err(ApiError::validation)? {
        policy
            .check(&host, port, false)
            .await
            .map_err(|e| ApiError::validation(format!("{field}: {e}")))?;
    }
    Ok(())
}

/// The config to store for an update: secrets that are absent or `"***"` keep the stored
/// value when the kind stays the same.
fn keep_secrets(new: &mut Value, old: &TargetRow, same_kind: bool) {
    let (Some(new), Some(old)) = (new.as_object_mut(), old.config.as_object()) else {
        return;
    };
    if !same_kind {
        return;
    }
    for (key, stored) in old {
        if !is_secret(key) {
            continue;
        }
        match new.get(key) {
            None => {
                new.insert(key.clone(), stored.clone());
            }
            Some(Value::String(s)) if s == REDACTED => {
                new.insert(key.clone(), stored.clone());
            }
            Some(_) => {}
        }
    }
}

/// `patch` merged into `base` key by key; `null` removes a key.
fn merge(base: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Some(p) = patch.as_object() else {
        return Err(ApiError::validation("config must be a JSON object"));
    };
    let mut out = base.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

// --- Responses ------------------------------------------------------------------------------

fn check_error(v: &Value) -> Option<StorageCheckError> {
    serde_json::from_value(v.clone()).ok().or_else(|| {
        Some(StorageCheckError {
            code: StorageCheckCode::StorageError,
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        })
    })
}

fn usage_of(v: Option<&Value>, at: Option<DateTime<Utc>>) -> Option<StorageUsage> {
    let (v, at) = (v?, at?);
    Some(StorageUsage {
        objects: v["objects"].as_i64()?,
        bytes: v["bytes"].as_i64()?,
        measured_at: at,
    })
}

fn health_of(t: &TargetRow) -> Option<StorageHealth> {
    let status = match t.last_check_status.as_deref()? {
        "ok" => StorageCheckStatus::Ok,
        "unchecked" => StorageCheckStatus::Unchecked,
        _ => StorageCheckStatus::Failed,
    };
    Some(StorageHealth {
        status,
        ok: status == StorageCheckStatus::Ok,
        checked_at: t.last_check_at?,
        latency_ms: t.last_check_latency_ms,
        error: t.last_check_error.as_ref().and_then(check_error),
        usage: usage_of(t.last_usage.as_ref(), t.last_usage_at),
    })
}

fn target_api(t: TargetRow) -> StorageTarget {
    let health = health_of(&t);
    StorageTarget {
        id: t.id,
        tenant_id: t.customer_id,
        config: redact(&t.config),
        name: t.name,
        kind: t.kind,
        location: t.location,
        created_at: t.created_at,
        updated_at: Some(t.updated_at),
        health,
    }
}

/// What an audit entry says about settings (secrets redacted).
fn settings_json(kind: &str, location: &str, config: &Value) -> Value {
    serde_json::json!({ "kind": kind, "location": location,
                        "config": redact(config) })
}

fn users_message(name: &str, what: &str, u: &storage::TargetUsers) -> String {
    let mut parts = Vec::new();
    if !u.rules.is_empty() {
        parts.push(format!("rules {}", u.rules.join(", ")));
    }
    if u.open_jobs > 0 {
        parts.push(format!("{} unfinished tiering job(s)", u.open_jobs));
    }
    if u.live_stubs > 0 {
        parts.push(format!("{} live stub(s) whose objects are on it", u.live_stubs));
    }
    format!("cannot {what} `{name}` while {} use it", parts.join(", "))
}

fn conflict_db(e: alto_db::DbError) -> ApiError {
    match e {
        alto_db::DbError::Conflict { .. } => {
            ApiError::new(ErrorCode::Conflict, "a storage target with this name already exists")
        }
        other => other.into(),
    }
}

// --- Handlers -------------------------------------------------------------------------------

/// The tenant's storage targets (every tenant has `default`, its local tier-2 directory),
/// with secrets redacted and the last check as `health`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/storage-targets", tag = "storage",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<StorageTarget>), (status = 404, body = Err)))]
pub(super) async fn targets_list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<StorageTarget>>> {
    let ctx = by.authorize(&state, Permission::StorageRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = storage::list_targets(&mut tx, t).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(target_api).collect()))
}

/// Creates a storage target. `kind`, `location` and `config` are validated without
/// connecting (`POST …/test` connects); unknown kinds and config fields are refused.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/storage-targets", tag = "storage",
    params(("tenant_id" = Uuid, Path)), request_body = CreateStorageTarget,
    responses((status = 201, body = StorageTarget), (status = 400, body = Err),
        (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn targets_create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CreateStorageTarget>,
) -> ApiResult<(StatusCode, Json<StorageTarget>)> {
    let ctx = by.authorize(&state, Permission::StorageManage, CustomerId(t)).await?;
    alto_model::validate::hostname(&req.name)
        .map_err(|_| ApiError::validation("name must be 1–63 letters, digits, `.`, `-`, `_`"))?;
    let spec = validate(&req.kind, &req.location, &req.config)?;
    confine(&state, &spec).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    alto_db::tenants::get(&mut tx, t).await?;
    let row = storage::create_target(
        &mut tx,
        Uuid::now_v7(),
        t,
        &req.name,
        &req.kind,
        &req.location,
        &req.config,
        now,
    )
    .await
    .map_err(conflict_db)?;
    let mut details = settings_json(&row.kind, &row.location, &row.config);
    details["name"] = Value::String(row.name.clone());
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "storage_target.create",
        Some(("storage_target", row.id.to_string())),
        "success",
        details,
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(target_api(row))))
}

/// One storage target, with secrets redacted and the last check as `health`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/storage-targets/{target_id}", tag = "storage",
    params(("tenant_id" = Uuid, Path), ("target_id" = Uuid, Path)),
    responses((status = 200, body = StorageTarget), (status = 404, body = Err)))]
pub(super) async fn targets_get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<StorageTarget>> {
    let ctx = by.authorize(&state, Permission::StorageRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = storage::get_target_of(&mut tx, t, id, false).await?;
    tx.commit().await?;
    Ok(Json(target_api(row)))
}

/// Replaces a target's settings (`kind`, `location`, `config`). A secret left out of
/// `config` or sent as `"***"` keeps the stored one (same kind only). The kind cannot change
/// while rules, unfinished jobs or live stubs use the target, nor the location while
/// unfinished jobs or live stubs do (`409`). Clears `health` when the settings change.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/storage-targets/{target_id}", tag = "storage",
    params(("tenant_id" = Uuid, Path), ("target_id" = Uuid, Path)), request_body = ReplaceStorageTarget,
    responses((status = 200, body = StorageTarget), (status = 400, body = Err),
        (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn targets_replace(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<ReplaceStorageTarget>,
) -> ApiResult<Json<StorageTarget>> {
    let ctx = by.authorize(&state, Permission::StorageManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let old = storage::get_target_of(&mut tx, t, id, true).await?;
    let mut config = req.config;
    if !config.is_object() {
        return Err(ApiError::validation("config must be a JSON object"));
    }
    keep_secrets(&mut config, &old, req.kind == old.kind);
    let row = apply_update(&state, &by, tx, old, req.kind, req.location, config).await?;
    Ok(Json(target_api(row)))
}

/// Changes some of a target's settings: only the fields given; `config` is merged key by
/// key (`null` removes a key, `"***"` keeps a stored secret). Same refusals as `PUT`.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/storage-targets/{target_id}", tag = "storage",
    params(("tenant_id" = Uuid, Path), ("target_id" = Uuid, Path)), request_body = UpdateStorageTarget,
    responses((status = 200, body = StorageTarget), (status = 400, body = Err),
        (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn targets_update(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(req): ApiJson<UpdateStorageTarget>,
) -> ApiResult<Json<StorageTarget>> {
    let ctx = by.authorize(&state, Permission::StorageManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let old = storage::get_target_of(&mut tx, t, id, true).await?;
    let kind = req.kind.unwrap_or_else(|| old.kind.clone());
    let location = req.location.unwrap_or_else(|| old.location.clone());
    let same_kind = kind == old.kind;
    // Another kind starts from an empty config: the old fields mean nothing there.
    let base = if same_kind { old.config.clone() } else { Value::Object(Map::new()) };
    let mut config = match &req.config {
        Some(p) => merge(&base, p)?,
        None => base,
    };
    keep_secrets(&mut config, &old, same_kind);
    let row = apply_update(&state, &by, tx, old, kind, location, config).await?;
    Ok(Json(target_api(row)))
}

async fn apply_update(
    state: &AppState,
    by: &User,
    mut tx: alto_db::Tx,
    old: TargetRow,
    kind: String,
    location: String,
    config: Value,
) -> ApiResult<TargetRow> {
    let spec = validate(&kind, &location, &config)?;
    confine(state, &spec).await?;
    let kind_changed = kind != old.kind;
    let location_changed = location != old.location;
    if kind_changed || location_changed {
        let users = storage::target_users(&mut tx, &old).await?;
        if kind_changed && !users.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                users_message(&old.name, "change the kind of", &users),
            ));
        }
        if location_changed && (users.open_jobs > 0 || users.live_stubs > 0) {
            let users = storage::TargetUsers { rules: Vec::new(), ..users };
            return Err(ApiError::new(
                ErrorCode::Conflict,
                users_message(&old.name, "change the location of", &users),
            ));
        }
    }
    let secrets_changed: Vec<&String> = config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| is_secret(k) && old.config.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k)
        .chain(
            old.config
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| is_secret(k) && config.get(k.as_str()).is_none())
                .map(|(k, _)| k),
        )
        .collect();
    let details = serde_json::json!({
        "name": old.name,
        "before": settings_json(&old.kind, &old.location, &old.config),
        "after": settings_json(&kind, &location, &config),
        "secrets_changed": secrets_changed,
    });
    let now = state.now();
    let row = storage::update_target(&mut tx, old.id, &kind, &location, &config, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(old.customer_id)),
        &by.actor(),
        "storage_target.update",
        Some(("storage_target", old.id.to_string())),
        "success",
        details,
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes a storage target; refused (`409`) while rules, unfinished tiering jobs or live
/// stubs use it.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/storage-targets/{target_id}", tag = "storage",
    params(("tenant_id" = Uuid, Path), ("target_id" = Uuid, Path)),
    responses((status = 200, body = StorageTarget), (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn targets_delete(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<StorageTarget>> {
    let ctx = by.authorize(&state, Permission::StorageManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = storage::get_target_of(&mut tx, t, id, true).await?;
    let users = storage::target_users(&mut tx, &row).await?;
    if !users.is_empty() {
        return Err(ApiError::new(ErrorCode::Conflict, users_message(&row.name, "delete", &users)));
    }
    storage::delete_target(&mut tx, id).await?;
    let mut details = settings_json(&row.kind, &row.location, &row.config);
    details["name"] = Value::String(row.name.clone());
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "storage_target.delete",
        Some(("storage_target", id.to_string())),
        "success",
        details,
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(target_api(row)))
}

/// Checks the target from the server: opens it for this tenant, writes and deletes a probe
/// object (`health`), then counts the tenant's objects (`usage`), within a time limit. A
/// `directory` location the server does not see (relative, or not mounted here) answers
/// `unchecked`: agents check it when they run jobs. The answer is `200` whatever the
/// outcome (`ok`, `status`, `error`); it is stored as the target's `health` unless the
/// settings changed meanwhile. The server must be able to reach the target's network
/// address.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/storage-targets/{target_id}/test", tag = "storage",
    params(("tenant_id" = Uuid, Path), ("target_id" = Uuid, Path)),
    responses((status = 200, body = StorageTestResult), (status = 404, body = Err)))]
pub(super) async fn targets_test(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<StorageTestResult>> {
    let ctx = by.authorize(&state, Permission::StorageManage, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = storage::get_target_of(&mut tx, t, id, false).await?;
    tx.commit().await?;

    let limit = CHECK_TIMEOUT
        .min(state.config.http.request_timeout.saturating_sub(Duration::from_secs(5)))
        .max(Duration::from_secs(1));
    let checked_at = state.now();
    let outcome = check(&row, CustomerId(t), limit, &state.config.storage).await;
    let usage = outcome.usage.map(|(objects, bytes)| StorageUsage {
        objects: i64::try_from(objects).unwrap_or(i64::MAX),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        measured_at: checked_at,
    });
    let error = outcome
        .error
        .map(|(code, message)| StorageCheckError { code, message: scrub(&message, &row.config) });
    let record = CheckRecord {
        at: checked_at,
        status: outcome.status.as_str().to_owned(),
        latency_ms: outcome.latency_ms,
        error: error.as_ref().map(|e| serde_json::to_value(e).unwrap_or(Value::Null)),
        usage: usage.map(|u| serde_json::json!({ "objects": u.objects, "bytes": u.bytes })),
    };
    let mut tx = state.db.begin(ctx).await?;
    let recorded = storage::record_check(&mut tx, &row, &record).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "storage_target.test",
        Some(("storage_target", id.to_string())),
        if outcome.status == StorageCheckStatus::Failed { "failure" } else { "success" },
        serde_json::json!({
            "name": row.name,
            "kind": row.kind,
            "location": row.location,
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
            "error": error,
            "usage": usage,
        }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(StorageTestResult {
        target_id: row.id,
        name: row.name,
        status: outcome.status,
        ok: outcome.status == StorageCheckStatus::Ok,
        checked_at,
        latency_ms: outcome.latency_ms,
        error,
        usage,
        recorded,
    }))
}

// --- The check ------------------------------------------------------------------------------

struct Outcome {
    status: StorageCheckStatus,
    latency_ms: Option<i64>,
    error: Option<(StorageCheckCode, String)>,
    usage: Option<(u64, u64)>,
}

impl Outcome {
    fn failed(code: StorageCheckCode, message: impl Into<String>, latency: Option<i64>) -> Self {
        Outcome {
            status: StorageCheckStatus::Failed,
            latency_ms: latency,
            error: Some((code, message.into())),
            usage: None,
        }
    }
}

enum Probe {
    Unchecked(String),
    Opened(Target),
}

const NOT_ALLOWED: &str =
    "the target's network address is not one the server may connect to (storage.allowed_endpoints)";

/// Opens the target and probes it, then counts usage, on blocking threads within `limit`.
///
/// Only endpoints the outbound policy allows are contacted: every host is checked before
/// (names by what they resolve to now), and every connection by name checks its addresses
/// again (an SMB name is resolved once and the check connects to that address). A
/// `directory` is looked at only under `storage.directory_base`.
async fn check(
    row: &TargetRow,
    customer: CustomerId,
    limit: Duration,
    storage_cfg: &crate::config::StorageConfig,
) -> Outcome {
    let mut spec = match (parse_kind(&row.kind), row.config.is_object()) {
        (Some(kind), true) => TargetSpec::new(kind, row.location.clone(), row.config.clone()),
        _ => {
            return Outcome::failed(
                StorageCheckCode::InvalidConfig,
                "the stored kind or config is not usable",
                None,
            )
        }
    };
    let deadline = tokio::time::Instant::now() + limit;
    let start = Instant::now();
    let policy = match storage_cfg.egress_policy() {
        Ok(p) => Arc::new(p),
        Err(_) => return Outcome::failed(StorageCheckCode::NotAllowed, NOT_ALLOWED, None),
    };
    let ends = match endpoints(&spec) {
        Ok(e) => e,
        Err(m) => return Outcome::failed(StorageCheckCode::InvalidConfig, m, None),
    };
    for (_, host, port) in &ends {
        if policy.check(host, *port, true).await.is_err() {
            return Outcome::failed(StorageCheckCode::NotAllowed, NOT_ALLOWED, None);
        }
    }
    if spec.kind == TargetKind::Smb {
        if let Some((_, Host::Name(name), port)) = ends.first() {
            // libsmbclient resolves names itself: connect to the address checked here.
            let addr = tokio::time::timeout(
                Duration::from_secs(3),
                tokio::net::lookup_host((name.as_str(), *port)),
            )
            .await;
            let Some(ip) =
                addr.ok().and_then(Result::ok).and_then(|mut a| a.next()).map(|a| a.ip())
            else {
                return Outcome::failed(
                    StorageCheckCode::Unreachable,
                    "the target's host name does not resolve",
                    None,
                );
            };
            if !policy.allows(Some(name), ip, *port) {
                return Outcome::failed(StorageCheckCode::NotAllowed, NOT_ALLOWED, None);
            }
            let tail = parse_authority(&spec.location, 445).map(|(_, _, t)| t).unwrap_or("");
            spec.location = format!("smb://{}:{port}{tail}", Host::Ip(ip));
        }
    }
    let port = ends.first().map_or(443, |e| e.2);
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let classify = |e: &Tier2Error| {
        if refused.load(std::sync::atomic::Ordering::Relaxed) {
            (StorageCheckCode::NotAllowed, NOT_ALLOWED.to_owned())
        } else {
            classify(e)
        }
    };
    let directory_base = storage_cfg.directory_base.clone();
    let opts = OpenOptions {
        // Nothing the check starts outlives it by much, even if we stop waiting.
        request_timeout: limit,
        connect_timeout: limit.min(Duration::from_secs(10)),
        address_filter: Some(policy.filter(port, refused.clone())),
        ..OpenOptions::default()
    };
    let probe = tokio::task::spawn_blocking(move || -> Result<Probe, Tier2Error> {
        if spec.kind == TargetKind::Directory {
            let p = std::path::Path::new(&spec.location);
            if !p.is_absolute() {
                return Ok(Probe::Unchecked(format!(
                    "{:?} is relative to each agent's tier-2 base directory; the server cannot \
                     check it, agents check it when they run jobs",
                    spec.location
                )));
            }
            let outside = Probe::Unchecked(
                "the server checks directory targets only under its storage.directory_base; \
                 agents check this one when they run jobs"
                    .into(),
            );
            let Some(base) = directory_base else { return Ok(outside) };
            if !under_base(&base, p) {
                return Ok(outside);
            }
            // A symbolic link inside the base must not lead the check out of it.
            if let (Ok(real), Ok(real_base)) = (p.canonicalize(), base.canonicalize()) {
                if !real.starts_with(&real_base) {
                    return Ok(outside);
                }
            }
            if !p.is_dir() {
                return Ok(Probe::Unchecked(format!(
                    "{:?} is not a directory on the server (it may exist only on the hosts); \
                     agents check it when they run jobs",
                    spec.location
                )));
            }
        }
        let target = Target::open(&spec, customer, &opts)?;
        target.health()?;
        Ok(Probe::Opened(target))
    });
    let probe = tokio::time::timeout_at(deadline, probe).await;
    let latency = Some(i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX));
    let target = match probe {
        Err(_) => {
            return Outcome::failed(
                StorageCheckCode::Timeout,
                format!("no answer within {} s", limit.as_secs()),
                latency,
            )
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "storage check panicked");
            return Outcome::failed(StorageCheckCode::StorageError, "the check failed", latency);
        }
        Ok(Ok(Err(e))) => {
            let (code, msg) = classify(&e);
            return Outcome::failed(code, msg, latency);
        }
        Ok(Ok(Ok(Probe::Unchecked(msg)))) => {
            return Outcome {
                status: StorageCheckStatus::Unchecked,
                latency_ms: None,
                error: Some((StorageCheckCode::NotCheckable, msg)),
                usage: None,
            }
        }
        Ok(Ok(Ok(Probe::Opened(t)))) => t,
    };
    let usage = tokio::task::spawn_blocking(move || target.usage());
    let usage = match tokio::time::timeout_at(deadline, usage).await {
        Ok(Ok(Ok(u))) => Some((u.objects, u.bytes)),
        // Counting a large target may take longer than the check: health is still good.
        Err(_) => None,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "storage usage panicked");
            None
        }
        Ok(Ok(Err(e))) => {
            let (code, msg) = classify(&e);
            return Outcome::failed(code, format!("counting objects: {msg}"), latency);
        }
    };
    Outcome { status: StorageCheckStatus::Ok, latency_ms: latency, error: None, usage }
}

/// A stable code for a tier-2 error (`alto_tier2::classify`), and a fixed message for it:
/// never text a remote end sent (a target could be any server that answers HTTP or SMB), only
/// the HTTP status if there is one, or the local configuration problem.
fn classify(e: &Tier2Error) -> (StorageCheckCode, String) {
    let failure = alto_tier2::classify(e);
    let code = check_code(failure.class);
    let msg = match code {
        StorageCheckCode::InvalidConfig => match e {
            Tier2Error::Config(m) => format!("invalid settings: {m}"),
            _ => "invalid settings".to_owned(),
        },
        StorageCheckCode::AccessDenied => {
            "access denied: the credentials were refused or lack a permission".to_owned()
        }
        StorageCheckCode::NotFound => {
            "not found: the bucket, container, share, base path or directory does not exist"
                .to_owned()
        }
        StorageCheckCode::Unreachable => "cannot connect to the target".to_owned(),
        StorageCheckCode::Timeout => "the target did not answer in time".to_owned(),
        StorageCheckCode::NotAllowed => NOT_ALLOWED.to_owned(),
        StorageCheckCode::NotCheckable | StorageCheckCode::StorageError => match e {
            Tier2Error::Unavailable { .. } => match failure.http_status {
                Some(st) => format!("the target answered with an error (HTTP {st})"),
                None => "the target answered with an error".to_owned(),
            },
            Tier2Error::Io { .. } => "the directory cannot be used (I/O error)".to_owned(),
            _ => "the target failed the check".to_owned(),
        },
    };
    (code, msg)
}

/// The API's code for a failure class.
fn check_code(class: FailureClass) -> StorageCheckCode {
    match class {
        FailureClass::InvalidConfig => StorageCheckCode::InvalidConfig,
        FailureClass::AuthRejected | FailureClass::PermissionDenied => {
            StorageCheckCode::AccessDenied
        }
        FailureClass::NotFound => StorageCheckCode::NotFound,
        FailureClass::Unreachable => StorageCheckCode::Unreachable,
        FailureClass::Timeout => StorageCheckCode::Timeout,
        FailureClass::AddressRefused => StorageCheckCode::NotAllowed,
        FailureClass::Other => StorageCheckCode::StorageError,
    }
}

/// `message` with every secret value of `config` replaced by `***` (tier-2 errors contain
/// none; this holds even if a server echoes one).
fn scrub(message: &str, config: &Value) -> String {
    let mut out = message.to_owned();
    for (k, v) in config.as_object().into_iter().flatten() {
        if let Some(s) = v.as_str().filter(|s| is_secret(k) && s.len() >= 3) {
            out = out.replace(s, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_secrets_and_merges() {
        let old = TargetRow {
            id: Uuid::nil(),
            customer_id: Uuid::nil(),
            name: "t".into(),
            kind: "s3".into(),
            location: "s3://b".into(),
            config: json!({"access_key_id": "a", "secret_access_key": "s3cr3t"}),
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
            last_check_at: None,
            last_check_status: None,
            last_check_latency_ms: None,
            last_check_error: None,
            last_usage: None,
            last_usage_at: None,
        };
        let mut c = json!({"access_key_id": "b"});
        keep_secrets(&mut c, &old, true);
        assert_eq!(c["secret_access_key"], "s3cr3t");
        let mut c = json!({"access_key_id": "b", "secret_access_key": "***"});
        keep_secrets(&mut c, &old, true);
        assert_eq!(c["secret_access_key"], "s3cr3t");
        let mut c = json!({"username": "u"});
        keep_secrets(&mut c, &old, false);
        assert!(c.get("secret_access_key").is_none());
        let m = merge(&old.config, &json!({"region": "eu", "access_key_id": null})).unwrap();
        assert_eq!(m, json!({"secret_access_key": "s3cr3t", "region": "eu"}));
        assert_eq!(scrub("bad s3cr3t here", &old.config), "bad *** here");
    }

    #[test]
    fn classes_map_to_the_api_codes() {
        assert_eq!(check_code(FailureClass::AuthRejected), StorageCheckCode::AccessDenied);
        assert_eq!(check_code(FailureClass::PermissionDenied), StorageCheckCode::AccessDenied);
        assert_eq!(check_code(FailureClass::AddressRefused), StorageCheckCode::NotAllowed);
        assert_eq!(check_code(FailureClass::Other), StorageCheckCode::StorageError);
        let e = Tier2Error::Unavailable {
            backend: "s3",
            op: "head",
            location: "s3://b".into(),
            reason: "non-2xx status code: 503 <Error>secret body</Error>".into(),
            class: None,
            http_status: None,
        };
        let (code, msg) = classify(&e);
        assert_eq!(code, StorageCheckCode::StorageError);
        assert_eq!(msg, "the target answered with an error (HTTP 503)");
    }

    #[test]
    fn validation_is_rendered_as_validation_failed() {
        let e = validate("tape", "x", &json!({})).unwrap_err();
        assert_eq!(e.message, "kind must be directory, smb, s3 or azure");
        assert!(validate("directory", "/mnt/t2", &json!({})).is_ok());
    }
}
