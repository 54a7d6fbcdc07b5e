//! The reference HTTP service (docs/API.md): the operator API and the tenant
//! API's example domain, built from the public pieces of `tenantdb_axum`
//! (what this service does, an application can do), plus the service
//! endpoints. [`Server::build`] binds and gets ready; `main` and the tests
//! share it, and the tests bind port 0 and pass their own shutdown signal.

mod layers;
mod projects;
mod serve;
mod server;
mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use secrecy::SecretString;
use tenantdb::Tenancy;
use tenantdb_axum::{AdminToken, ApiError, CatalogAuthorizer, OperatorApi, TenantResolution, openapi};
use tower::layer::util::Stack;
use utoipa_axum::router::OpenApiRouter;

pub use layers::{LATENCY_BUCKETS, REQUEST_ID, RequestId};
use layers::{RequestTimeout, Telemetry};
pub use serve::{ConnectionLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use server::{Listen, Server, run, start};

/// Largest request body.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Requests other than provisioning ones are cut off after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the service endpoints share.
pub struct App {
    /// The tenancy served.
    pub tenancy: Tenancy,
    /// The Prometheus recorder's handle.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("tenancy", &self.tenancy)
            .finish_non_exhaustive()
    }
}

/// The router's state (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// The state for `tenancy`, with the process-wide metrics recorder.
    pub fn new(tenancy: Tenancy) -> Self {
        Self(Arc::new(App {
            tenancy,
            metrics: service::prometheus(),
        }))
    }
}

/// Options of the service beyond the library's `Config`.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The operator's bearer token.
    pub admin_token: SecretString,
    /// Also take the tenant from the Host under this domain.
    pub base_domain: Option<String>,
    /// Limits on client connections.
    pub connections: ConnectionLimits,
}

/// The OpenAPI document's frame; paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "tenantdb", description = "Database-per-tenant reference service (docs/API.md)"),
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

/// The router of the whole service and its OpenAPI document: the catalog's
/// users act for their tenants on the tenant API, the operator's token
/// opens the operator API (a user's token gets 403 there, the operator's
/// gets 403 on the tenant API).
pub fn router(tenancy: &Tenancy, options: &ServiceOptions) -> Router {
    let users = CatalogAuthorizer::refusing_operator_token(tenancy.catalog().clone(), options.admin_token.clone());
    let operator_auth = AdminToken::new(options.admin_token.clone()).telling_users_apart(users.clone());
    let operator = OperatorApi::new(tenancy.clone(), operator_auth);
    let mut resolution = TenantResolution::new(tenancy.connections().clone()).authorizer(users);
    if let Some(domain) = &options.base_domain {
        resolution = resolution.base_domain(domain.clone());
    }
    let tenant_api = projects::router().route_layer(resolution);
    // Provisioning routes get no timeout: a timeout would not cancel the
    // DDL (the provisioner owns it) but would hide its outcome.
    let mut quick = operator.routes().merge(tenant_api);
    openapi::add_responses(
        quick.get_openapi_mut(),
        &[(408, "timeout: no answer within the request timeout (30 s)")],
    );
    let quick = quick.merge(service::router()).layer(RequestTimeout(REQUEST_TIMEOUT));
    let (routes, openapi) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(quick)
        .merge(operator.provisioning_routes())
        .split_for_parts();
    with_service_layers(routes, openapi).with_state(AppState::new(tenancy.clone()))
}

/// `/openapi.json`, the JSON fallbacks, the body limit and the requests'
/// ids, metrics and logs.
fn with_service_layers(routes: Router<AppState>, mut doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    doc.paths.add_path_operation(
        "/openapi.json",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .tag("service")
            .operation_id(Some("openapi"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("this document (OpenAPI 3.1)")
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(ObjectBuilder::new())).build(),
                    )
                    .build(),
            )
            .build(),
    );
    // The service endpoints take no token.
    for (_, item) in doc.paths.paths.iter_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            if operation
                .tags
                .as_ref()
                .is_some_and(|tags| tags.iter().any(|t| t == "service"))
            {
                operation.security = Some(Vec::new());
            }
        }
    }
    openapi::error_shape(&mut doc);
    let document = Arc::new(doc);
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
        // One layer for both: each `Router::layer` boxes every route once
        // more, and this runs on every request.
        .layer(Stack::new(DefaultBodyLimit::max(BODY_LIMIT), Telemetry::default()))
}
