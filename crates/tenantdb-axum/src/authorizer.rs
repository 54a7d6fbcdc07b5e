//! The hook between the tenant layer and an application's idea of who may
//! act for which tenant.

use axum::http::request::Parts;
use tenantdb::ResolvedTenant;

use crate::error::ApiError;

/// Who is calling, and whether they may act for a tenant. Both methods
/// default to allowing, so an implementation writes only what it checks:
///
/// ```
/// use tenantdb_axum::{ApiError, Authorizer, Parts, ResolvedTenant, async_trait};
///
/// /// Callers must send `X-Api-Key: letmein`; any of them may use any tenant
/// /// but `internal`.
/// struct ApiKey;
///
/// #[async_trait]
/// impl Authorizer for ApiKey {
///     async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
///         match parts.headers.get("x-api-key") {
///             Some(key) if key == "letmein" => Ok(()),
///             _ => Err(ApiError::unauthorized()),
///         }
///     }
///
///     async fn authorize(&self, _parts: &mut Parts, tenant: &ResolvedTenant) -> Result<(), ApiError> {
///         if tenant.slug == "internal" {
///             return Err(ApiError::tenant_not_found());
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Runs first, before the tenant is looked up, so a caller rejected
    /// here learns nothing about tenants: check the credentials and put
    /// the caller in the request's extensions for `authorize` and the
    /// handlers. Accepts everyone by default.
    async fn authenticate(&self, _parts: &mut Parts) -> Result<(), ApiError> {
        Ok(())
    }

    /// Whether the caller may act for the tenant. Runs after the tenant is
    /// found and before its status is revealed, so a caller who may not
    /// see a tenant cannot learn that it is suspended (answer
    /// [`ApiError::tenant_not_found`] to keep it hidden). May add what it
    /// learned (a role) to the extensions. Allows by default.
    async fn authorize(&self, _parts: &mut Parts, _tenant: &ResolvedTenant) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Lets every caller act for every tenant (for services that authorize
/// elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {}
