//! Extractors for handlers behind the tenant layer.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tenantdb::PoolHandle;
use tenantdb::context::TenantScope;

use crate::error::ApiError;

/// The request's tenant (set by the tenant layer).
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub TenantScope);

impl<S: Send + Sync> FromRequestParts<S> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentTenant>()
            .cloned()
            .ok_or_else(|| ApiError::internal(&"CurrentTenant used on a route without the tenant layer"))
    }
}

/// The request tenant's databases: `write` (primary) and `read`.
#[derive(Debug, Clone)]
pub struct TenantDb {
    pub write: PoolHandle,
    pub read: PoolHandle,
}

impl<S: Send + Sync> FromRequestParts<S> for TenantDb {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentTenant(scope) = CurrentTenant::from_request_parts(parts, state).await?;
        let (write, read) = scope.write_and_read().await?;
        Ok(Self { write, read })
    }
}
