//! Service endpoints (no token): liveness, readiness, metrics.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::ConnectionTrait;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// How long `/readyz` waits for the catalog.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// What `/healthz` and `/readyz` answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, `ready`, or `catalog unavailable`.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "the process runs", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process-wide Prometheus recorder (installed once, however many
/// services a process starts, as tests do).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(super::LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only tenantdb's own");
            }
            tenantdb::describe_metrics();
            super::layers::describe_metrics();
            metrics::gauge!("tenantdb_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, description = "the catalog answers", body = Health), (status = 503, description = "it does not", body = Health)))]
async fn readyz(State(state): State<AppState>) -> Response {
    // A pool whose server is gone keeps trying to connect until its acquire
    // timeout: a probe must answer well before that.
    let probe = state.tenancy.catalog().db().execute_unprepared("SELECT 1");
    let answer = tokio::time::timeout(READY_TIMEOUT, probe)
        .await
        .map_err(|_| format!("no answer within {} ms", READY_TIMEOUT.as_millis()))
        .and_then(|result| result.map_err(|err| err.to_string()));
    match answer {
        Ok(_) => Json(Health { status: "ready" }).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "catalog not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "catalog unavailable",
                }),
            )
                .into_response()
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.run_upkeep();
    state.tenancy.refresh_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
