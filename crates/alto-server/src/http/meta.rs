//! Health, readiness, metrics and the landing page.

use alto_api_types::Health;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::Json;

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

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.db.pool();
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("alto_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("alto_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("alto_db_pool_max_connections")
        .set(f64::from(state.config.database.max_connections));
    let body = crate::telemetry::render_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
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
