//! Health, readiness, metrics and the landing page.

use alto_api_types::{ErrorCode, Health};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::Json;

use super::error::ApiError;
use super::extract::ClientIp;
use crate::egress::Cidr;
use crate::state::AppState;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "ready".into(), version })),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "database unavailable".into(), version }),
        ),
    }
}

/// Prometheus metrics in the text exposition format. Served to clients in
/// `metrics.allow_from` (default: loopback) and to any client presenting `metrics.token` as a
/// bearer token; others get `401 unauthenticated` (a token is configured) or `403 forbidden`.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = alto_api_types::ErrorBody), (status = 403, body = alto_api_types::ErrorBody)))]
pub(super) async fn metrics(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let cfg = &state.config.metrics;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token_ok = match (&cfg.token, presented) {
        (Some(want), Some(got)) => {
            use sha2::Digest as _;
            // Equal-length digests compared without an early exit.
            let (a, b) =
                (sha2::Sha256::digest(want.as_bytes()), sha2::Sha256::digest(got.as_bytes()));
            a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        _ => false,
    };
    let from_allowed = ip.0.is_some_and(|a| {
        cfg.allow_from.iter().filter_map(|c| Cidr::parse(c).ok()).any(|c| c.contains(a))
    });
    if !token_ok && !from_allowed {
        return Err(if cfg.token.is_some() {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "metrics need the bearer token (metrics.token)",
            )
        } else {
            ApiError::new(
                ErrorCode::Forbidden,
                "metrics are served only to the addresses in metrics.allow_from",
            )
        });
    }
    let pool = state.db.pool();
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("alto_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("alto_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("alto_db_pool_max_connections")
        .set(f64::from(state.config.database.max_connections));
    let body = crate::telemetry::render_metrics();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

pub(super) async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><title>Alto</title></head><body>",
        "<h1>Alto management server</h1>",
        "<p>The web console ships in a later release. Meanwhile use <code>altoctl</code> ",
        "or the REST API: <a href=\"/api/v1/openapi.json\">OpenAPI document</a>, ",
        "<a href=\"/healthz\">health</a>, <a href=\"/metrics\">metrics</a>.</p>",
        "</body></html>"
    ))
}
