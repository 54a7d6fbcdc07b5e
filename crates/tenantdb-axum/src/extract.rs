//! Extractors for handlers behind the tenant layer. Both read the scope the
//! layer opened (the task-local `TenantContext`): no second resolution.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tenantdb::PoolHandle;
use tenantdb::{TenantContext, TenantScope};

use crate::error::ApiError;

fn no_layer() -> ApiError {
    ApiError::internal(&"a tenant extractor used on a route without the tenant layer")
}

/// The request's tenant (set by the tenant layer).
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub TenantScope);

impl<S: Send + Sync> FromRequestParts<S> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        TenantContext::current().map(Self).map_err(|_| no_layer())
    }
}

/// The request tenant's databases: `write` (primary) and `read`.
#[derive(Debug, Clone)]
pub struct TenantDb {
    /// The primary: writes and reads that must see them.
    pub write: PoolHandle,
    /// The read database (in this version the primary).
    pub read: PoolHandle,
}

impl<S: Send + Sync> FromRequestParts<S> for TenantDb {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let scope = TenantContext::current().map_err(|_| no_layer())?;
        let (write, read) = scope.write_and_read().await?;
        Ok(Self { write, read })
    }
}
