//! axum integration for tenantdb: a middleware that resolves each request's
//! tenant (header `X-Tenant`, or the first label of the Host under a base
//! domain), checks the caller may act for it, refuses early when it cannot
//! be served, and runs the handler in its `TenantContext` scope; extractors
//! for the tenant and its databases; and the JSON error shape of API.md.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use sea_orm::ConnectionTrait;
//! use tenantdb::{Config, Tenancy, TenantMigrations};
//! use tenantdb_axum::{ApiError, CurrentTenant, TenantDb, TenantResolution, resolve_tenant};
//!
//! async fn hello(CurrentTenant(tenant): CurrentTenant, db: TenantDb) -> Result<String, ApiError> {
//!     db.read.execute_unprepared("SELECT 1").await.map_err(|e| ApiError::internal(&e))?;
//!     Ok(format!("hello, {}", tenant.tenant().slug))
//! }
//!
//! # fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> { vec![] }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tenancy = Tenancy::connect(Config::embedded("./data"), TenantMigrations::from_fn(migrations)).await?;
//! let resolution = TenantResolution::new(tenancy.connections().clone()).base_domain("example.test");
//! let app = Router::new()
//!     .route("/hello", get(hello))
//!     .route_layer(axum::middleware::from_fn_with_state(resolution, resolve_tenant));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod extract;
pub mod layer;

pub use error::ApiError;
pub use extract::{CurrentTenant, TenantDb};
pub use layer::{AllowAll, Authorizer, TENANT_HEADER, TenantResolution, resolve_tenant, tenant_of};
