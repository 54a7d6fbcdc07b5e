//! Service endpoints (no token): liveness, readiness, metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process-wide Prometheus recorder (installed once, however many
/// services a process starts, as tests do).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only tenantdb's own");
            }
            handle
        })
        .clone()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.tenancy.catalog().db().execute_unprepared("SELECT 1").await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "catalog not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "catalog unavailable" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.tenancy.pools().stats();
    metrics::gauge!("tenantdb_pools_open_now").set(stats.pools as f64);
    metrics::gauge!("tenantdb_pool_connections_now").set(f64::from(stats.connections));
    metrics::gauge!("tenantdb_pool_budget_free").set(stats.budget_free as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
