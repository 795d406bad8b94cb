//! Rules: CRUD with versions, reordering, validation, previews and explanations; and the
//! tenant's planner settings.

use std::collections::BTreeMap;

use alto_api_types::{
    CountBytes, ErrorCode, ExplainResponse, PlannerSettings, Preview, PreviewFile, PreviewRequest,
    ReorderRules, Rule, RuleErrorBody, RuleSpec, RuleValidation, RuleVersion,
};
use alto_db::{planner as pdb, rules as rdb, storage, Tx};
use alto_model::{CustomerId, Permission};
use alto_rules::{CompiledRule, HostFacts, OrderBy, RuleError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::audit;
use crate::auth::User;
use crate::services::planner;
use crate::state::AppState;

type Err = alto_api_types::ErrorBody;

fn to_api(r: rdb::RuleRow, now: DateTime<Utc>) -> ApiResult<Rule> {
    let spec: RuleSpec = serde_json::from_value(r.spec).map_err(|e| {
        tracing::error!(rule = %r.id, error = %e, "stored rule does not parse");
        ApiError::internal()
    })?;
    let next_run_at = spec.schedule.as_deref().and_then(|s| {
        let c = alto_rules::schedule::parse(s).ok()?;
        if !spec.enabled {
            return None;
        }
        alto_rules::schedule::next_after(&c, r.last_fired_at.unwrap_or(r.updated_at).max(now))
    });
    Ok(Rule {
        id: r.id,
        tenant_id: r.customer_id,
        version: r.version,
        spec,
        last_fired_at: r.last_fired_at,
        next_run_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Full validation of a rule against the tenant: the rule on its own, unique name and
/// priority among the live rules (other than `replacing`), and every pattern compiled by
/// PostgreSQL too.
async fn check(
    tx: &mut Tx,
    tenant: Uuid,
    id: Uuid,
    spec: &RuleSpec,
    replacing: Option<Uuid>,
) -> Result<Result<CompiledRule, Vec<RuleError>>, alto_db::DbError> {
    let targets: Vec<String> =
        storage::list_targets(tx, tenant).await?.into_iter().map(|t| t.name).collect();
    let compiled = alto_rules::compile(id, 1, spec, &|t| targets.iter().any(|x| x == t));
    let mut errs = match &compiled {
        Ok(_) => Vec::new(),
        Err(e) => e.clone(),
    };
    for other in rdb::list(tx, tenant).await? {
        if Some(other.id) == replacing {
            continue;
        }
        if other.priority == spec.priority {
            errs.push(RuleError {
                field: "priority".into(),
                message: format!(
                    "priority {} is already used by rule `{}`; priorities are unique",
                    spec.priority, other.name
                ),
            });
        }
        if other.name.to_lowercase() == spec.name.trim().to_lowercase() {
            errs.push(RuleError {
                field: "name".into(),
                message: format!("a rule named `{}` already exists", other.name),
            });
        }
    }
    if let Ok(c) = &compiled {
        let patterns = c
            .globs
            .iter()
            .map(|g| ("conditions.path_globs", g))
            .chain(c.regex.iter().map(|r| ("conditions.path_regex", r)));
        for (field, p) in patterns {
            if let Some(msg) = pdb::check_regex(tx, p.sql()).await? {
                errs.push(RuleError {
                    field: field.into(),
                    message: format!("`{}` is refused by the database: {msg}", p.source()),
                });
            }
        }
    }
    Ok(if errs.is_empty() { compiled } else { Err(errs) })
}

fn invalid(errs: &[RuleError]) -> ApiError {
    ApiError::new(ErrorCode::ValidationFailed, alto_rules::describe(errs))
}

/// The tenant's rules in priority order.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/rules", tag = "rules",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<Rule>), (status = 404, body = Err)))]
pub(super) async fn list(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<Rule>>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = rdb::list(&mut tx, t).await?;
    tx.commit().await?;
    let now = state.now();
    Ok(Json(rows.into_iter().map(|r| to_api(r, now)).collect::<ApiResult<Vec<_>>>()?))
}

/// Creates a rule (version 1).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/rules", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = RuleSpec,
    responses((status = 201, body = Rule), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn create(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let now = state.now();
    let id = Uuid::now_v7();
    let mut tx = state.db.begin(ctx).await?;
    rdb::lock_ruleset(&mut tx, t).await?;
    check(&mut tx, t, id, &spec, None).await?.map_err(|e| invalid(&e))?;
    let w = rdb::RuleWrite { id, customer_id: t, spec: &spec, by: Some(by.user_id), now };
    let row = rdb::create(&mut tx, &w).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "rule.create",
        Some(("rule", id.to_string())),
        "success",
        serde_json::json!({ "name": spec.name, "version": 1, "spec": spec }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(to_api(row, now)?)))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/rules/{rule_id}", tag = "rules",
    params(("tenant_id" = Uuid, Path), ("rule_id" = Uuid, Path)),
    responses((status = 200, body = Rule), (status = 404, body = Err)))]
pub(super) async fn get(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Rule>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let row = rdb::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(to_api(row, state.now())?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateQuery {
    /// Refuse (409) unless the rule is still at this version.
    expected_version: Option<i32>,
}

/// Replaces a rule's definition (a new version).
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/rules/{rule_id}", tag = "rules",
    params(("tenant_id" = Uuid, Path), ("rule_id" = Uuid, Path), UpdateQuery), request_body = RuleSpec,
    responses((status = 200, body = Rule), (status = 400, body = Err), (status = 404, body = Err), (status = 409, body = Err)))]
pub(super) async fn update(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(q): ApiQuery<UpdateQuery>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> ApiResult<Json<Rule>> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    rdb::lock_ruleset(&mut tx, t).await?;
    let before = rdb::get(&mut tx, id).await?;
    if q.expected_version.is_some_and(|v| v != before.version) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the rule is at version {}, not {}; reload and retry",
                before.version,
                q.expected_version.unwrap_or_default()
            ),
        ));
    }
    check(&mut tx, t, id, &spec, Some(id)).await?.map_err(|e| invalid(&e))?;
    let w = rdb::RuleWrite { id, customer_id: t, spec: &spec, by: Some(by.user_id), now };
    let row = rdb::update(&mut tx, &w).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "rule.update",
        Some(("rule", id.to_string())),
        "success",
        serde_json::json!({ "version": row.version, "previous": before.spec, "spec": spec }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(to_api(row, now)?))
}

/// Deletes a rule; its version history stays readable.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/rules/{rule_id}", tag = "rules",
    params(("tenant_id" = Uuid, Path), ("rule_id" = Uuid, Path)),
    responses((status = 200, body = Rule), (status = 404, body = Err)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Rule>> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    rdb::lock_ruleset(&mut tx, t).await?;
    let before = rdb::get(&mut tx, id).await?;
    let spec: RuleSpec =
        serde_json::from_value(before.spec.clone()).map_err(|_| ApiError::internal())?;
    let w = rdb::RuleWrite { id, customer_id: t, spec: &spec, by: Some(by.user_id), now };
    let row = rdb::delete(&mut tx, &w).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "rule.delete",
        Some(("rule", id.to_string())),
        "success",
        serde_json::json!({ "name": spec.name, "version": row.version }),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(to_api(row, now)?))
}

/// Every version of a rule, oldest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/rules/{rule_id}/versions", tag = "rules",
    params(("tenant_id" = Uuid, Path), ("rule_id" = Uuid, Path)),
    responses((status = 200, body = Vec<RuleVersion>), (status = 404, body = Err)))]
pub(super) async fn versions(
    State(state): State<AppState>,
    by: User,
    ApiPath((t, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Vec<RuleVersion>>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = rdb::versions(&mut tx, id).await?;
    tx.commit().await?;
    if rows.is_empty() {
        return Err(ApiError::not_found("rule"));
    }
    rows.into_iter()
        .map(|v| {
            Ok(RuleVersion {
                version: v.version,
                change: v.change,
                spec: serde_json::from_value(v.spec).map_err(|_| ApiError::internal())?,
                changed_by: v.changed_by,
                changed_at: v.changed_at,
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

/// Sets the evaluation order: priorities become 10, 20, 30, … in the order given.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/rules/reorder", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = ReorderRules,
    responses((status = 200, body = Vec<Rule>), (status = 400, body = Err)))]
pub(super) async fn reorder(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ReorderRules>,
) -> ApiResult<Json<Vec<Rule>>> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    rdb::lock_ruleset(&mut tx, t).await?;
    let current = rdb::list(&mut tx, t).await?;
    let mut want = req.rule_ids.clone();
    want.sort();
    let mut have: Vec<Uuid> = current.iter().map(|r| r.id).collect();
    have.sort();
    if want != have {
        return Err(ApiError::validation(format!(
            "rule_ids must list each of the tenant's {} rules exactly once",
            current.len()
        )));
    }
    // Only rules whose priority changes get a new version.
    let mut changes = Vec::new();
    for (i, id) in req.rule_ids.iter().enumerate() {
        let row = current.iter().find(|r| r.id == *id).ok_or_else(ApiError::internal)?;
        let new_priority = (i as i32 + 1) * 10;
        if row.priority != new_priority {
            let mut spec: RuleSpec =
                serde_json::from_value(row.spec.clone()).map_err(|_| ApiError::internal())?;
            spec.priority = new_priority;
            changes.push((*id, spec));
        }
    }
    let ids: Vec<Uuid> = changes.iter().map(|(id, _)| *id).collect();
    rdb::park_priorities(&mut tx, t, &ids).await?;
    for (id, spec) in &changes {
        let w = rdb::RuleWrite { id: *id, customer_id: t, spec, by: Some(by.user_id), now };
        rdb::update(&mut tx, &w).await?;
    }
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "rule.reorder",
        None,
        "success",
        serde_json::json!({ "order": req.rule_ids }),
    );
    audit::record(&mut tx, &e).await?;
    let rows = rdb::list(&mut tx, t).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(|r| to_api(r, now)).collect::<ApiResult<Vec<_>>>()?))
}

/// Validates a draft without saving it; answers 200 with every error found.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/rules/validate", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = RuleSpec,
    responses((status = 200, body = RuleValidation), (status = 404, body = Err)))]
pub(super) async fn validate(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> ApiResult<Json<RuleValidation>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    let errs = match check(&mut tx, t, Uuid::nil(), &spec, None).await? {
        Ok(_) => Vec::new(),
        Err(e) => e,
    };
    tx.commit().await?;
    Ok(Json(RuleValidation {
        valid: errs.is_empty(),
        errors: errs
            .into_iter()
            .map(|e| RuleErrorBody { field: e.field, message: e.message })
            .collect(),
    }))
}

const AGE_BANDS: [(i64, &str); 7] = [
    (30, "0-30d"),
    (90, "30-90d"),
    (180, "90-180d"),
    (365, "180d-1y"),
    (730, "1-2y"),
    (1825, "2-5y"),
    (i64::MAX, "5y+"),
];

fn age_band(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> &'static str {
    let Some(t) = t else { return "unknown" };
    let days = (now - t).num_days();
    AGE_BANDS.iter().find(|(d, _)| days < *d).map_or("5y+", |(_, k)| k)
}

fn tops(m: BTreeMap<String, (u64, i64)>, n: usize, by_bytes: bool) -> Vec<CountBytes> {
    let mut v: Vec<CountBytes> =
        m.into_iter().map(|(key, (files, bytes))| CountBytes { key, files, bytes }).collect();
    if by_bytes {
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.key.cmp(&b.key)));
    }
    v.truncate(n);
    v
}

async fn preview_impl(
    state: &AppState,
    ctx: alto_db::TenantCtx,
    t: Uuid,
    req: PreviewRequest,
) -> ApiResult<Preview> {
    let sample_n = req.sample.unwrap_or(20);
    if sample_n > 200 {
        return Err(ApiError::validation("sample must be 0 to 200"));
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    pdb::tune(&mut tx).await?;
    let mut set = planner::load(&mut tx, t).await?;
    let mut only: Option<Uuid> = None;
    if let Some(draft) = &req.draft {
        if let Some(id) = req.rule_id {
            rdb::get(&mut tx, id).await?;
        }
        let id = req.rule_id.unwrap_or_else(Uuid::now_v7);
        let compiled = check(&mut tx, t, id, draft, req.rule_id).await?.map_err(|e| invalid(&e))?;
        set.rules.retain(|r| r.id != id);
        set.rules.push(compiled);
        set.rules.sort_by_key(|r| r.spec.priority);
        only = Some(id);
    } else if req.rule_id.is_some() {
        return Err(ApiError::validation("rule_id is only meaningful with a draft"));
    }
    let mut hosts = pdb::plan_hosts(&mut tx, t).await?;
    for h in &req.host_ids {
        if !hosts.iter().any(|x| x.id == *h) {
            return Err(ApiError::not_found("host"));
        }
    }
    if !req.host_ids.is_empty() {
        hosts.retain(|h| req.host_ids.contains(&h.id));
    }
    let eligible = |_: usize, r: &CompiledRule| only.is_none_or(|id| r.id == id);
    let mut per_host = BTreeMap::new();
    let mut per_target = BTreeMap::new();
    let mut per_rule = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    let mut ages = BTreeMap::new();
    let mut sample: Vec<PreviewFile> = Vec::new();
    let (mut files, mut bytes, mut saved, mut seconds) = (0u64, 0i64, 0i64, 0f64);
    for h in &hosts {
        let mut cands = planner::host_candidates(&mut tx, &set, h, &eligible, now, None, true)
            .await?
            .candidates;
        let bps = h.observed_bytes_per_second.unwrap_or(set.settings.link_bytes_per_second).max(1);
        let host_bytes = cands.iter().fold(0i64, |a, c| a.saturating_add(c.size));
        seconds += host_bytes as f64 / bps as f64
            + cands.len() as f64 * f64::from(set.settings.per_file_overhead_ms) / 1000.0;
        cands.sort_by(|a, b| (a.rule, a.accessed, &a.path).cmp(&(b.rule, b.accessed, &b.path)));
        for c in &cands {
            let r = &set.rules[c.rule];
            let target = r.target().unwrap_or_default().to_owned();
            files += 1;
            bytes = bytes.saturating_add(c.size);
            saved = saved.saturating_add(alto_rules::plan::space_saved(c.size));
            for (m, k) in [
                (&mut per_host, h.name.clone()),
                (&mut per_target, target.clone()),
                (&mut per_rule, r.spec.name.clone()),
                (&mut ages, age_band(now, c.accessed).to_owned()),
                (
                    &mut dirs,
                    match c.path.rfind('/') {
                        Some(0) | None => "/".to_owned(),
                        Some(i) => c.path[..i].to_owned(),
                    },
                ),
            ] {
                let e = m.entry(k).or_insert((0u64, 0i64));
                e.0 += 1;
                e.1 += c.size;
            }
            if sample.len() < sample_n as usize {
                sample.push(PreviewFile {
                    host_id: h.id,
                    file_path: c.path.clone(),
                    file_size: c.size,
                    last_accessed: c.accessed,
                    last_modified: c.modified,
                    rule_name: r.spec.name.clone(),
                    target,
                });
            }
        }
    }
    tx.commit().await?;
    let mut accessed_age = tops(ages, 100, false);
    let rank = |k: &str| AGE_BANDS.iter().position(|(_, b)| *b == k).unwrap_or(99);
    accessed_age.sort_by_key(|b| rank(&b.key));
    Ok(Preview {
        evaluated_at: now,
        ruleset_revision: set.revision,
        files,
        bytes,
        space_saved: saved,
        estimated_seconds: seconds,
        per_host: tops(per_host, 1000, true),
        per_target: tops(per_target, 1000, true),
        per_rule: tops(per_rule, 1000, true),
        top_directories: tops(dirs, 20, true),
        accessed_age,
        sample,
    })
}

/// What a draft rule (in its place among the current rules), or the current rule set, would
/// move: counts and bytes per host, target and rule, top directories, an age histogram and
/// a sample. Creates nothing.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/rules/preview", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn preview(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    Ok(Json(preview_impl(&state, ctx, t, req).await?))
}

/// The same preview for the caller's own tenant (tenant users; platform staff use the
/// tenant path).
#[utoipa::path(post, path = "/api/v1/rules/preview", tag = "rules", request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400, body = Err), (status = 404, body = Err)))]
pub(super) async fn preview_own(
    State(state): State<AppState>,
    by: User,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let alto_model::Scope::Tenant(CustomerId(t)) = by.scope else {
        return Err(ApiError::not_found("tenant"));
    };
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    Ok(Json(preview_impl(&state, ctx, t, req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainQuery {
    host_id: Uuid,
    /// The file's path as the inventory shows it.
    path: String,
}

/// For one file: each rule in order with the conditions that held or failed, and the final
/// decision.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/rules/explain", tag = "rules",
    params(("tenant_id" = Uuid, Path), ExplainQuery),
    responses((status = 200, body = ExplainResponse), (status = 404, body = Err)))]
pub(super) async fn explain(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> ApiResult<Json<ExplainResponse>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    if q.path.len() > 8192 || q.path.contains('\0') {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "path is too long or has a NUL byte"));
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    let set = planner::load(&mut tx, t).await?;
    let host = pdb::plan_hosts(&mut tx, t)
        .await?
        .into_iter()
        .find(|h| h.id == q.host_id)
        .ok_or_else(|| ApiError::not_found("host"))?;
    let file = pdb::file_by_path(&mut tx, host.id, &q.path)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let in_job = pdb::live_job_of(&mut tx, file.id).await?;
    tx.commit().await?;
    let hf = HostFacts { id: host.id, groups: &host.groups };
    let ex = alto_rules::explain(
        &set.rules,
        &hf,
        &planner::facts(&file),
        &set.tags,
        &set.eval_settings(now),
    );
    let mut explanation = serde_json::to_value(&ex).unwrap_or_default();
    if let (Some(job), Some(obj)) = (in_job, explanation.as_object_mut()) {
        obj.insert(
            "note".into(),
            serde_json::Value::String(format!(
                "the file is already in live job {job}; it is not planned again until that job ends"
            )),
        );
    }
    Ok(Json(ExplainResponse {
        host_id: host.id,
        file_path: file.file_path,
        file_id: file.id,
        file_size: file.file_size,
        last_accessed: file.last_accessed,
        last_modified: file.last_modified,
        in_job,
        evaluated_at: now,
        ruleset_revision: set.revision,
        explanation,
    }))
}

fn settings_api(s: &rdb::Settings) -> PlannerSettings {
    PlannerSettings {
        safety_window_seconds: s.safety_window_seconds,
        high_watermark_pct: s.high_watermark_pct,
        low_watermark_pct: s.low_watermark_pct,
        watermark_order: match s.watermark_order.as_str() {
            "oldest_modify" => OrderBy::OldestModify,
            "largest" => OrderBy::Largest,
            _ => OrderBy::OldestAccess,
        },
        max_files_per_run: s.max_files_per_run,
        max_bytes_per_run: s.max_bytes_per_run,
        host_max_files_per_hour: s.host_max_files_per_hour,
        host_max_bytes_per_hour: s.host_max_bytes_per_hour,
        link_bytes_per_second: s.link_bytes_per_second,
        per_file_overhead_ms: s.per_file_overhead_ms,
        plan_after_ingest: s.plan_after_ingest,
        ruleset_revision: s.ruleset_revision,
        recall_retention_days: s.recall_retention_days,
        tier_bandwidth_limit_bytes_per_second: s.tier_bandwidth_limit_bytes_per_second,
        recall_bandwidth_limit_bytes_per_second: s.recall_bandwidth_limit_bytes_per_second,
    }
}

/// The tenant's planner settings (defaults until changed).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/planner-settings", tag = "rules",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = PlannerSettings), (status = 404, body = Err)))]
pub(super) async fn get_settings(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
) -> ApiResult<Json<PlannerSettings>> {
    let ctx = by.authorize(&state, Permission::RuleRead, CustomerId(t)).await?;
    let mut tx = state.db.begin(ctx).await?;
    alto_db::tenants::get(&mut tx, t).await?;
    let s = rdb::settings(&mut tx, t).await?;
    tx.commit().await?;
    Ok(Json(settings_api(&s)))
}

/// Replaces the tenant's planner settings.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/planner-settings", tag = "rules",
    params(("tenant_id" = Uuid, Path)), request_body = PlannerSettings,
    responses((status = 200, body = PlannerSettings), (status = 400, body = Err)))]
pub(super) async fn put_settings(
    State(state): State<AppState>,
    by: User,
    ApiPath(t): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PlannerSettings>,
) -> ApiResult<Json<PlannerSettings>> {
    let ctx = by.authorize(&state, Permission::RuleManage, CustomerId(t)).await?;
    let mut errs = Vec::new();
    if !(0..=7 * 86_400).contains(&req.safety_window_seconds) {
        errs.push("safety_window_seconds must be 0 to 604800 (7 days)");
    }
    let pct_ok = |p: f64| p.is_finite() && (1.0..=100.0).contains(&p);
    if !pct_ok(req.high_watermark_pct) || !pct_ok(req.low_watermark_pct) {
        errs.push("watermarks must be 1 to 100 percent");
    } else if req.low_watermark_pct >= req.high_watermark_pct {
        errs.push("low_watermark_pct must be below high_watermark_pct");
    }
    for v in [
        req.max_files_per_run,
        req.max_bytes_per_run,
        req.host_max_files_per_hour,
        req.host_max_bytes_per_hour,
    ]
    .into_iter()
    .flatten()
    {
        if v < 1 {
            errs.push("caps and rate limits must be at least 1 (omit them for no limit)");
            break;
        }
    }
    if !(1_000..=1_000_000_000_000).contains(&req.link_bytes_per_second) {
        errs.push("link_bytes_per_second must be 1 kB/s to 1 TB/s");
    }
    if !(0..=60_000).contains(&req.per_file_overhead_ms) {
        errs.push("per_file_overhead_ms must be 0 to 60000");
    }
    if !(0..=alto_rules::compile::MAX_RETAIN_AFTER_RECALL_DAYS as i32)
        .contains(&req.recall_retention_days)
    {
        errs.push("recall_retention_days must be 0 to 3650");
    }
    if [req.tier_bandwidth_limit_bytes_per_second, req.recall_bandwidth_limit_bytes_per_second]
        .into_iter()
        .flatten()
        .any(|b| !(1..=1 << 40).contains(&b))
    {
        errs.push(
            "bandwidth limits must be 1 to 1099511627776 bytes per second (omit them for no limit)",
        );
    }
    if !errs.is_empty() {
        return Err(ApiError::validation(errs.join("; ")));
    }
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    alto_db::tenants::get(&mut tx, t).await?;
    let s = rdb::Settings {
        safety_window_seconds: req.safety_window_seconds,
        high_watermark_pct: req.high_watermark_pct,
        low_watermark_pct: req.low_watermark_pct,
        watermark_order: serde_json::to_value(req.watermark_order)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "oldest_access".into()),
        max_files_per_run: req.max_files_per_run,
        max_bytes_per_run: req.max_bytes_per_run,
        host_max_files_per_hour: req.host_max_files_per_hour,
        host_max_bytes_per_hour: req.host_max_bytes_per_hour,
        link_bytes_per_second: req.link_bytes_per_second,
        per_file_overhead_ms: req.per_file_overhead_ms,
        plan_after_ingest: req.plan_after_ingest,
        ruleset_revision: 0,
        recall_retention_days: req.recall_retention_days,
        tier_bandwidth_limit_bytes_per_second: req.tier_bandwidth_limit_bytes_per_second,
        recall_bandwidth_limit_bytes_per_second: req.recall_bandwidth_limit_bytes_per_second,
    };
    let saved = rdb::save_settings(&mut tx, t, &s, now).await?;
    let e = audit::entry(
        state.now(),
        Some(CustomerId(t)),
        &by.actor(),
        "planner.settings_update",
        None,
        "success",
        serde_json::to_value(&saved).unwrap_or_default(),
    );
    audit::record(&mut tx, &e).await?;
    tx.commit().await?;
    Ok(Json(settings_api(&saved)))
}
