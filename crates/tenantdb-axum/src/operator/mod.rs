//! The operator API of docs/API.md (users, tokens, tenants and their databases,
//! members, subscriptions, settings, fleet migrations, servers) as routers with
//! their OpenAPI paths, to mount next to an application's own routes.
//! Every route asks the [`OperatorAuth`] hook first ([`AdminToken`] by
//! default).
//!
//! Two routers: [`OperatorApi::routes`] answer quickly and may sit behind
//! a request timeout; [`OperatorApi::provisioning_routes`] (create and
//! delete tenants, rename or retry a database) wait for the provisioner,
//! and should not: a timeout would not cancel the DDL (the provisioner owns
//! it) but would hide its outcome. [`OperatorApi::router`] is both.
//!
//! [`AdminToken`]: crate::AdminToken

mod export;
mod members;
mod migrations;
mod servers;
mod settings;
mod tenants;
mod users;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use tenantdb::{Tenancy, Tenant, TenantRef};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::OperatorAuth;
use crate::error::ApiError;
use crate::openapi;

type ApiResult<T = Response> = Result<T, ApiError>;

/// The operator API's state: the tenancy it manages and the hook that
/// authenticates operators. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct OperatorApi {
    inner: Arc<Inner>,
}

struct Inner {
    tenancy: Tenancy,
    auth: Box<dyn OperatorAuth>,
}

impl std::fmt::Debug for OperatorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorApi")
            .field("tenancy", &self.inner.tenancy)
            .finish_non_exhaustive()
    }
}

impl OperatorApi {
    /// The operator API over `tenancy`, for callers `auth` accepts.
    pub fn new(tenancy: Tenancy, auth: impl OperatorAuth) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenancy,
                auth: Box::new(auth),
            }),
        }
    }

    /// The tenancy it manages.
    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    /// The routes that answer quickly (a request timeout may apply).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        let routes = OpenApiRouter::new()
            .merge(users::routes())
            .merge(tenants::routes())
            .merge(members::routes())
            .merge(settings::routes())
            .merge(migrations::routes())
            .merge(servers::routes());
        documented(routes).with_state(self.clone())
    }

    /// The routes whose work runs in the provisioner: no request timeout
    /// (see the module doc).
    pub fn provisioning_routes<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        documented(tenants::provisioning_routes().merge(export::routes())).with_state(self.clone())
    }

    /// Every operator route, for an application that sets no request
    /// timeout.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        self.routes().merge(self.provisioning_routes())
    }
}

/// What every operator route may answer besides its own responses, in
/// the error shape.
fn documented(mut routes: OpenApiRouter<OperatorApi>) -> OpenApiRouter<OperatorApi> {
    let doc = routes.get_openapi_mut();
    openapi::add_responses(
        doc,
        &[
            (401, "unauthorized: no valid bearer token"),
            (403, "forbidden: not the operator's token"),
            (500, "internal: logged, never detailed"),
        ],
    );
    openapi::error_shape(doc);
    routes
}

/// The caller is an operator (the [`OperatorAuth`] hook said so).
#[derive(Debug, Clone, Copy)]
struct Admin;

impl FromRequestParts<OperatorApi> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &OperatorApi) -> Result<Self, ApiError> {
        api.inner.auth.authenticate(parts).await?;
        Ok(Admin)
    }
}

/// `{tenant}`: an id or a slug; a malformed one cannot exist.
fn tenant_ref(raw: &str) -> ApiResult<TenantRef> {
    TenantRef::parse(raw).map_err(|_| ApiError::tenant_not_found())
}

async fn tenant_view(api: &OperatorApi, tenant: &TenantRef) -> ApiResult<Tenant> {
    Ok(api.tenancy().tenant(tenant).await?)
}
