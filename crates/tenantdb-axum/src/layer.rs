//! The tenant layer: authenticate the caller, resolve the request's tenant,
//! check the caller may act for it, refuse early if it cannot be served,
//! and run the handler inside its `TenantContext` scope. One layer (one
//! boxed future, one state clone) for all of it: this runs on every tenant
//! request. [`TenantResolution`] is the layer:
//! `Router::route_layer(resolution)`.
//!
//! Each request's tenant is named once, resolved once and checked once:
//! the scope carries the resolved tenant, the extractors read it from the
//! task-local `TenantContext` (the one place it is kept) and take the
//! pools from it without resolving again.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tenantdb::{TenantConnections, TenantRef};
use tenantdb::{TenantContext, TenantScope};

use crate::authorizer::{AllowAll, Authorizer};
use crate::error::ApiError;

/// The header that names the tenant (slug or id). It wins over the Host.
pub const TENANT_HEADER: &str = "x-tenant";

/// The tenant layer (a `tower::Layer`: `router.route_layer(resolution)`):
/// how tenants are reached, named and authorized. Cloned for every
/// request (one `Arc`).
#[derive(Clone)]
pub struct TenantResolution {
    inner: Arc<Resolution>,
}

#[derive(Clone)]
struct Resolution {
    connections: TenantConnections,
    base_domain: Option<String>,
    authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for TenantResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantResolution")
            .field("base_domain", &self.inner.base_domain)
            .finish_non_exhaustive()
    }
}

impl TenantResolution {
    /// Tenants from `connections`, named by the `X-Tenant` header, every
    /// caller allowed ([`AllowAll`]).
    pub fn new(connections: TenantConnections) -> Self {
        Self {
            inner: Arc::new(Resolution {
                connections,
                base_domain: None,
                authorizer: Arc::new(AllowAll),
            }),
        }
    }

    /// The settings to change (copied first if this state is shared).
    fn building(&mut self) -> &mut Resolution {
        Arc::make_mut(&mut self.inner)
    }

    /// Also take the tenant from the first label of a Host under `domain`
    /// (`acme.example.test` for `example.test`).
    pub fn base_domain(mut self, domain: impl Into<String>) -> Self {
        self.building().base_domain = Some(domain.into().trim_start_matches('.').to_ascii_lowercase());
        self
    }

    /// Authenticate callers and authorize them for tenants with
    /// `authorizer`.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.building().authorizer = Arc::new(authorizer);
        self
    }
}

/// The tenant a request names: the `X-Tenant` header, else the first label
/// of a Host under the base domain. `None` when it names none. Borrowed
/// from the header when it can be (the usual case).
pub fn tenant_of<'h>(headers: &'h HeaderMap, base_domain: Option<&str>) -> Option<Cow<'h, str>> {
    if let Some(value) = headers.get(TENANT_HEADER) {
        return Some(Cow::Borrowed(value.to_str().unwrap_or_default().trim()));
    }
    let base = base_domain?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.split(':').next()?.to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then(|| Cow::Owned(label.to_owned()))
}

impl<S> tower::Layer<S> for TenantResolution {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> TenantService<S> {
        TenantService {
            resolution: self.clone(),
            inner,
        }
    }
}

/// The tenant layer's service (what [`TenantResolution`] makes of the
/// routes it wraps): `Router::route_layer(resolution)`.
#[derive(Clone)]
pub struct TenantService<S> {
    resolution: TenantResolution,
    inner: S,
}

impl<S> std::fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService")
            .field("resolution", &self.resolution)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request> for TenantService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was made ready answers this request; its clone
        // waits for the next (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resolution = self.resolution.clone();
        Box::pin(async move {
            match enter(&resolution, request).await {
                Ok((scope, request)) => TenantContext::scope(scope, inner.call(request)).await,
                Err(err) => Ok(err.into_response()),
            }
        })
    }
}

async fn enter(resolution: &TenantResolution, request: Request) -> Result<(TenantScope, Request), ApiError> {
    let resolution = &*resolution.inner;
    let (mut parts, body) = request.into_parts();
    resolution.authorizer.authenticate(&mut parts).await?;
    let tenant = {
        let named = tenant_of(&parts.headers, resolution.base_domain.as_deref())
            .ok_or_else(|| ApiError::invalid("name the tenant in the X-Tenant header"))?;
        // A malformed name cannot exist: the same answer as an unknown one.
        TenantRef::parse(&named).map_err(|_| ApiError::tenant_not_found())?
    };
    let resolved = resolution.connections.resolve_serving(&tenant).await?;
    resolution.authorizer.authorize(&mut parts, &resolved).await?;
    let scope = TenantScope::from_resolved(&resolution.connections, resolved)?;
    Ok((scope, Request::from_parts(parts, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_header_wins_over_the_host() {
        let h = headers(&[("x-tenant", "beta"), ("host", "acme.example.test")]);
        assert_eq!(tenant_of(&h, Some("example.test")).as_deref(), Some("beta"));
    }

    #[test]
    fn the_first_label_under_the_base_domain_names_the_tenant() {
        let base = Some("example.test");
        assert_eq!(
            tenant_of(&headers(&[("host", "acme.example.test:8080")]), base).as_deref(),
            Some("acme")
        );
        assert_eq!(
            tenant_of(&headers(&[("host", "ACME.Example.Test")]), base).as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_of(&headers(&[("host", "example.test")]), base), None);
        assert_eq!(tenant_of(&headers(&[("host", "a.b.example.test")]), base), None);
        assert_eq!(tenant_of(&headers(&[("host", "acme.other.test")]), base), None);
        assert_eq!(tenant_of(&headers(&[("host", "acme.example.test")]), None), None);
    }

    mod properties {
        use axum::http::{HeaderMap, HeaderValue, header};
        use proptest::prelude::*;

        use super::super::tenant_of;

        proptest! {
            /// Any header bytes and any Host: no panic; a tenant taken from
            /// the Host is one label directly under the base domain.
            #[test]
            fn any_tenant_header_or_host_is_parsed_without_panicking(
                tenant in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
                host in proptest::collection::vec(any::<u8>(), 0..80),
                host_text in "[a-zA-Z0-9.:-]{0,40}(\\.example\\.test)?(:[0-9]{1,5})?",
            ) {
                let mut headers = HeaderMap::new();
                if let Some(tenant) = tenant.and_then(|t| HeaderValue::from_bytes(&t).ok()) {
                    headers.insert("x-tenant", tenant);
                }
                for host in [HeaderValue::from_bytes(&host).ok(), HeaderValue::from_str(&host_text).ok()].into_iter().flatten() {
                    headers.insert(header::HOST, host);
                    let named = tenant_of(&headers, Some("example.test")).map(|c| c.into_owned());
                    if headers.get("x-tenant").is_none() && let Some(label) = named {
                        prop_assert!(!label.is_empty() && !label.contains('.'));
                        let host = headers[header::HOST].to_str().unwrap().to_ascii_lowercase();
                        let host = host.split(':').next().unwrap();
                        prop_assert_eq!(host, format!("{label}.example.test"));
                    }
                }
            }
        }
    }
}
