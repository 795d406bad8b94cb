//! The HTTP surface: the `/api/v1` router, middleware (request ids, metrics, limits,
//! timeouts, panic capture) and the OpenAPI document.

pub mod error;
pub mod extract;
pub mod page;

mod agent;
mod audit;
mod auth;
mod convert;
mod events;
pub(crate) mod execution;
mod hosts;
mod inventory;
mod meta;
mod plans;
mod recalls;
mod rules;
mod scans;
mod storage;
mod tenants;
mod users;

use std::time::Instant;

use alto_api_types::ErrorCode;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi as _;

use crate::state::AppState;
use error::ApiError;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.http.max_body_bytes;
    let timeout = state.config.http.request_timeout;
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/password", post(auth::change_password))
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/tenants/{tenant_id}", get(tenants::get).patch(tenants::update))
        .route("/tenants/{tenant_id}/users", get(users::list).post(users::create))
        .route("/tenants/{tenant_id}/users/{user_id}", get(users::get).patch(users::update))
        .route("/tenants/{tenant_id}/users/{user_id}/roles", put(users::set_roles))
        .route("/platform/users", get(users::list_platform).post(users::create_platform))
        .route("/platform/users/{user_id}", get(users::get_platform).patch(users::update_platform))
        .route("/platform/users/{user_id}/roles", put(users::set_roles_platform))
        .route("/tenants/{tenant_id}/hosts", get(hosts::list).post(hosts::create))
        .route(
            "/tenants/{tenant_id}/hosts/{host_id}",
            get(hosts::get).patch(hosts::update).delete(hosts::decommission),
        )
        .route(
            "/tenants/{tenant_id}/hosts/{host_id}/enrollment-tokens",
            post(hosts::new_enrollment_token),
        )
        .route("/tenants/{tenant_id}/hosts/{host_id}/credentials", get(hosts::list_credentials))
        .route(
            "/tenants/{tenant_id}/hosts/{host_id}/credentials/{credential_id}/revoke",
            post(hosts::revoke_credential),
        )
        .route("/agent/enroll", post(agent::enroll))
        .route("/agent/heartbeat", post(agent::heartbeat))
        .route("/agent/credentials/rotate", post(agent::rotate))
        .route("/agent/link", get(agent::link_info))
        .route("/agent/jobs/claim", post(execution::claim))
        .route("/agent/jobs/{job_id}/progress", post(execution::progress))
        .route("/agent/jobs/{job_id}/files", post(execution::results))
        .route("/agent/jobs/{job_id}/complete", post(execution::complete))
        .route("/agent/recalled", post(execution::recalled))
        .route("/agent/stubs/check", post(execution::check_refs))
        .route("/tenants/{tenant_id}/stubs", get(execution::list))
        .route("/tenants/{tenant_id}/stubs/summary", get(execution::summary))
        .route(
            "/scan-results",
            post(scans::upload).layer(DefaultBodyLimit::max(state.config.ingest.max_part_bytes)),
        )
        .route("/tenants/{tenant_id}/scans", get(scans::list))
        .route("/tenants/{tenant_id}/scans/{scan_id}", get(scans::get))
        .route("/tenants/{tenant_id}/inventory/summary", get(inventory::summary))
        .route("/tenants/{tenant_id}/inventory/files", get(inventory::files))
        .route("/tenants/{tenant_id}/rules", get(rules::list).post(rules::create))
        .route("/tenants/{tenant_id}/rules/reorder", post(rules::reorder))
        .route("/tenants/{tenant_id}/rules/validate", post(rules::validate))
        .route("/tenants/{tenant_id}/rules/preview", post(rules::preview))
        .route("/tenants/{tenant_id}/rules/explain", get(rules::explain))
        .route(
            "/tenants/{tenant_id}/rules/{rule_id}",
            get(rules::get).put(rules::update).delete(rules::delete),
        )
        .route("/tenants/{tenant_id}/rules/{rule_id}/versions", get(rules::versions))
        .route("/rules/preview", post(rules::preview_own))
        .route(
            "/tenants/{tenant_id}/planner-settings",
            get(rules::get_settings).put(rules::put_settings),
        )
        .route("/tenants/{tenant_id}/plans", get(plans::list).post(plans::run))
        .route("/tenants/{tenant_id}/plans/{plan_id}", get(plans::get))
        .route("/tenants/{tenant_id}/plans/{plan_id}/release", post(plans::release))
        .route("/tenants/{tenant_id}/jobs", get(plans::jobs_list))
        .route("/tenants/{tenant_id}/jobs/{job_id}", get(plans::job_get))
        .route("/tenants/{tenant_id}/jobs/{job_id}/files", get(plans::job_files))
        .route("/tenants/{tenant_id}/jobs/{job_id}/document", get(plans::job_document))
        .route("/tenants/{tenant_id}/jobs/{job_id}/cancel", post(plans::job_cancel))
        .route("/tenants/{tenant_id}/jobs/{job_id}/retry", post(plans::job_retry))
        .route("/tenants/{tenant_id}/recalls", post(recalls::create))
        .route(
            "/tenants/{tenant_id}/recall-schedules",
            get(recalls::schedules_list).post(recalls::schedules_create),
        )
        .route(
            "/tenants/{tenant_id}/recall-schedules/{schedule_id}",
            get(recalls::schedules_get)
                .patch(recalls::schedules_update)
                .delete(recalls::schedules_delete),
        )
        .route(
            "/tenants/{tenant_id}/storage-targets",
            get(storage::targets_list).post(storage::targets_create),
        )
        .route(
            "/tenants/{tenant_id}/storage-targets/{target_id}",
            get(storage::targets_get)
                .put(storage::targets_replace)
                .patch(storage::targets_update)
                .delete(storage::targets_delete),
        )
        .route("/tenants/{tenant_id}/storage-targets/{target_id}/test", post(storage::targets_test))
        .route("/tenants/{tenant_id}/tags", get(plans::tags_list).post(plans::tags_create))
        .route("/tenants/{tenant_id}/tags/{tag_id}", axum::routing::delete(plans::tags_delete))
        .route("/tenants/{tenant_id}/hosts/{host_id}/groups", put(plans::host_groups))
        .route("/tenants/{tenant_id}/audit", get(audit::list))
        .route("/tenants/{tenant_id}/audit/verify", get(audit::verify))
        .route("/platform/audit", get(audit::list_platform))
        .route("/platform/audit/verify", get(audit::verify_platform))
        .route("/events", get(events::subscribe))
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed);

    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route("/", get(meta::index))
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
}

/// Counts and times requests by route template (never by raw path: ids would explode the
/// label set), and stamps the request id into error bodies and logs.
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id =
        req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    let elapsed = start.elapsed();
    metrics::counter!("alto_http_requests_total", "method" => method.clone(),
        "route" => route.clone(), "status" => status.as_u16().to_string())
    .increment(1);
    metrics::histogram!("alto_http_request_duration_seconds", "method" => method.clone(),
        "route" => route.clone())
    .record(elapsed.as_secs_f64());
    if status.is_server_error() {
        tracing::error!(%method, %route, status = status.as_u16(), %request_id, "request failed");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    }
    if status.is_client_error() || status.is_server_error() {
        return add_request_id(resp, &request_id).await;
    }
    resp
}

async fn add_request_id(resp: Response, request_id: &str) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json || request_id.is_empty() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let mut v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    if let Some(err) = v.get_mut("error").and_then(|e| e.as_object_mut()) {
        err.insert("request_id".into(), serde_json::Value::String(request_id.to_owned()));
    }
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    if let Ok(len) = HeaderValue::from_str(&out.len().to_string()) {
        parts.headers.insert(axum::http::header::CONTENT_LENGTH, len);
    }
    Response::from_parts(parts, axum::body::Body::from(out))
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Alto API", description = "Alto hierarchical storage management: REST API v1."),
    paths(
        auth::login, auth::logout, auth::me, auth::change_password,
        tenants::list, tenants::create, tenants::get, tenants::update,
        users::list, users::create, users::get, users::update, users::set_roles,
        users::list_platform, users::create_platform, users::get_platform,
        users::update_platform, users::set_roles_platform,
        hosts::list, hosts::create, hosts::get, hosts::update, hosts::decommission,
        hosts::new_enrollment_token, hosts::list_credentials, hosts::revoke_credential,
        agent::enroll, agent::heartbeat, agent::rotate, agent::link_info,
        execution::claim, execution::progress, execution::results, execution::complete,
        execution::recalled, execution::check_refs, execution::list, execution::summary,
        scans::upload, scans::list, scans::get, inventory::summary, inventory::files,
        rules::list, rules::create, rules::get, rules::update, rules::delete, rules::versions,
        rules::reorder, rules::validate, rules::preview, rules::preview_own, rules::explain,
        rules::get_settings, rules::put_settings,
        plans::run, plans::list, plans::get, plans::release, plans::jobs_list, plans::job_get,
        plans::job_files, plans::job_document, plans::job_cancel, plans::job_retry,
        recalls::create, recalls::schedules_list, recalls::schedules_create,
        recalls::schedules_get, recalls::schedules_update, recalls::schedules_delete,
        storage::targets_list, storage::targets_create, storage::targets_get,
        storage::targets_replace, storage::targets_update, storage::targets_delete,
        storage::targets_test,
        plans::tags_list, plans::tags_create, plans::tags_delete, plans::host_groups,
        audit::list, audit::verify, audit::list_platform, audit::verify_platform,
        events::subscribe,
        meta::healthz, meta::readyz, meta::metrics,
    ),
    components(schemas(alto_api_types::ErrorBody, alto_api_types::ErrorCode)),
    modifiers(&SecurityAddon),
    tags(
        (name = "auth", description = "Login, logout, sessions"),
        (name = "tenants", description = "Customers (platform staff)"),
        (name = "users", description = "Users and roles"),
        (name = "hosts", description = "Hosts, enrollment, agent credentials"),
        (name = "agent", description = "Endpoints agents call with their host credential"),
        (name = "inventory", description = "Scans and the file inventory"),
        (name = "rules", description = "Tiering rules, previews, explanations, tags, planner settings"),
        (name = "jobs", description = "Planning runs and tiering jobs"),
        (name = "recall", description = "Recall requests and scheduled restoration rules"),
        (name = "storage", description = "Storage targets (tier-2 locations)"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "events", description = "Live events over WebSocket"),
        (name = "meta", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    }
}
