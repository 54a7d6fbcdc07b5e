//! The reference HTTP service (API.md): operator API, tenant API and
//! service endpoints. `App::build` is shared by `main` and the tests, which
//! bind port 0 and call `serve` with their own shutdown signal.

mod auth;
mod json;
mod operator;
mod projects;
mod serve;
mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use secrecy::SecretString;
use tenantdb::Tenancy;
use tenantdb_axum::{ApiError, TenantResolution, resolve_tenant};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa_axum::router::OpenApiRouter;

pub use auth::MembershipAuthorizer;
pub use serve::{ConnectionLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

/// Largest request body.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Requests other than provisioning ones are cut off after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What handlers share.
pub struct App {
    pub tenancy: Tenancy,
    pub auth: auth::Auth,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("tenancy", &self.tenancy)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// Options of the service beyond the library's `Config`.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub admin_token: SecretString,
    pub base_domain: Option<String>,
    pub connections: ConnectionLimits,
}

impl AppState {
    pub fn new(tenancy: Tenancy, admin_token: SecretString) -> Self {
        Self(Arc::new(App {
            auth: auth::Auth::new(tenancy.catalog().clone(), admin_token),
            tenancy,
            metrics: service::prometheus(),
        }))
    }
}

/// The OpenAPI document's frame; paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "tenantdb", description = "Database-per-tenant reference service (API.md)"),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "operator", description = "admin token"),
        (name = "tenant", description = "user token; the tenant from X-Tenant or the Host"),
        (name = "service", description = "no token")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router of the whole service and its OpenAPI document.
pub fn router(state: AppState, base_domain: Option<String>) -> Router {
    use utoipa::OpenApi;
    let mut resolution =
        TenantResolution::new(state.tenancy.connections().clone()).authorizer(MembershipAuthorizer(state.clone()));
    if let Some(domain) = base_domain {
        resolution = resolution.base_domain(domain);
    }
    let tenant_api = projects::router().route_layer(axum::middleware::from_fn_with_state(resolution, resolve_tenant));
    // Provisioning routes get no timeout: a timeout would not cancel the
    // DDL (the provisioner owns it) but would hide its outcome.
    let quick = operator::router()
        .merge(tenant_api)
        .merge(service::router())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // The timeout's own response has no body: give it the error shape.
        .layer(axum::middleware::map_response(timeout_as_json));
    let (routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(quick)
        .merge(operator::provisioning_router())
        .split_for_parts();
    openapi.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::path::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .tag("service")
            .response("200", utoipa::openapi::Response::new("this document"))
            .build(),
    );
    let document = Arc::new(openapi);
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(document.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            // One line per request: method, path, tenant, status, latency.
            // Headers are not logged (tokens live there).
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    // Field values are only worked out when the span is enabled.
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        tenant = %tenantdb_axum::tenant_of(request.headers(), None).unwrap_or_default()
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
}

async fn timeout_as_json(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() == axum::http::StatusCode::REQUEST_TIMEOUT {
        return ApiError::new(response.status(), "timeout", "the request took too long").into_response();
    }
    response
}

/// Installs the metrics recorder, connects, and runs the service: what
/// `tenantdb serve` does, and what the tests call with port 0.
pub async fn start(
    config: tenantdb::Config,
    options: ServiceOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    // Before connecting: the pools fetch their counters when they are made.
    service::prometheus();
    let tenancy = Tenancy::connect(
        config,
        tenantdb::TenantMigrations::of::<crate::tenant_schema::Migrator>(),
    )
    .await
    .context("failed to start")?;
    run(tenancy, options, listener, shutdown).await
}

/// Runs the service on `listener` until `shutdown` resolves: reconciles
/// abandoned work first, then serves (within `options.connections`); on
/// shutdown stops accepting, lets requests in flight finish, waits for
/// provisioning under way, and closes every pool. Shared by `tenantdb
/// serve` and the tests (which bind port 0).
pub async fn run(
    tenancy: Tenancy,
    options: ServiceOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    for entry in tenancy.provisioner().reconcile().await? {
        tracing::info!(tenant.id = %entry.tenant_id, status = %entry.status, outcome = ?entry.outcome, "reconciled");
    }
    // Work a process left behind after this start (killed and restarted
    // within a lease period, or another instance dying) is finished too.
    let stop_reconciler = tokio_util::sync::CancellationToken::new();
    let reconciler = tenancy.provisioner().spawn_reconciler(stop_reconciler.clone());
    let state = AppState::new(tenancy.clone(), options.admin_token);
    let app = router(state, options.base_domain);
    serve::serve(listener, app, options.connections, shutdown).await;
    // Stop looking for abandoned work; what a pass already claimed runs in
    // the provisioner's tasks, which closing waits for (up to its deadline).
    stop_reconciler.cancel();
    reconciler.abort();
    let _ = reconciler.await;
    tenancy.close().await;
    Ok(())
}
