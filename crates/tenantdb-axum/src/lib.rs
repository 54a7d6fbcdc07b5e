//! axum integration for tenantdb: the tenant layer for an application's own
//! routes, and the operator API to mount next to them.
//!
//! - **Tenant layer** ([`TenantResolution`], a `tower::Layer`):
//!   resolves each request's tenant (header `X-Tenant`, or the first label
//!   of the Host under a base domain), asks the [`Authorizer`] whether the
//!   caller may act for it, refuses early when it cannot be served, and
//!   runs the handler in its `TenantContext` scope. Handlers take
//!   [`TenantDb`] (its pools) and [`CurrentTenant`].
//! - **Operator API** ([`OperatorApi`]): users, tokens, tenants, members,
//!   databases, migrations and settings of docs/API.md, with their OpenAPI
//!   paths, behind an [`OperatorAuth`] hook ([`AdminToken`] by default).
//! - **Authorization from the catalog** ([`CatalogAuthorizer`]): users with
//!   API tokens acting for the tenants they are members of; or your own
//!   [`Authorizer`].
//! - **docs/API.md's error shape** everywhere: [`ApiError`] (with `?` on
//!   `tenantdb::Error` and `sea_orm::DbErr`), and [`Json`], [`Path`],
//!   [`Page`] extractors whose rejections use it. A 500's cause is logged
//!   with `tracing`; with no subscriber installed it goes to stderr too.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use sea_orm::ConnectionTrait;
//! use secrecy::SecretString;
//! use tenantdb::{Config, Tenancy, TenantMigrations};
//! use tenantdb_axum::{AdminToken, ApiError, CurrentTenant, OperatorApi, TenantDb, TenantResolution};
//!
//! async fn hello(CurrentTenant(tenant): CurrentTenant, db: TenantDb) -> Result<String, ApiError> {
//!     db.read.execute_unprepared("SELECT 1").await?;
//!     Ok(format!("hello, {}", tenant.tenant().slug))
//! }
//!
//! # fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> { vec![] }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tenancy = Tenancy::connect(Config::embedded("./data"), TenantMigrations::from_fn(migrations)).await?;
//! let resolution = TenantResolution::new(tenancy.connections().clone()).base_domain("example.test");
//! let operator = OperatorApi::new(tenancy.clone(), AdminToken::new(SecretString::from("change-me")));
//! let (operator_routes, _openapi) = operator.router().split_for_parts();
//! let app = Router::new()
//!     .route("/hello", get(hello))
//!     .route_layer(resolution)
//!     .merge(operator_routes);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A custom [`Authorizer`] is a few lines (both methods default to
//! allowing):
//!
//! ```
//! use tenantdb_axum::{ApiError, Authorizer, Parts, ResolvedTenant, async_trait};
//!
//! /// Only callers who name the tenant in `X-Member-Of` may act for it.
//! struct HeaderMembership;
//!
//! #[async_trait]
//! impl Authorizer for HeaderMembership {
//!     async fn authorize(&self, parts: &mut Parts, tenant: &ResolvedTenant) -> Result<(), ApiError> {
//!         match parts.headers.get("x-member-of") {
//!             Some(value) if value.as_bytes() == tenant.slug.as_bytes() => Ok(()),
//!             _ => Err(ApiError::tenant_not_found()),
//!         }
//!     }
//! }
//!
//! # fn use_it(connections: tenantdb::TenantConnections) {
//! let resolution = tenantdb_axum::TenantResolution::new(connections).authorizer(HeaderMembership);
//! # let _ = resolution;
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod auth;
mod authorizer;
mod error;
mod extract;
mod json;
mod layer;
pub mod openapi;
mod operator;
mod params;

pub use async_trait::async_trait;
pub use auth::{AdminToken, CatalogAuthorizer, Member, OperatorAuth, UserId, bearer};
pub use authorizer::{AllowAll, Authorizer};
pub use axum::http::request::Parts;
pub use error::ApiError;
pub use extract::{CurrentTenant, TenantDb};
pub use json::{Json, OptionalJson};
pub use layer::{TENANT_HEADER, TenantResolution, TenantService, tenant_of};
pub use operator::OperatorApi;
pub use params::{DEFAULT_LIMIT, MAX_LIMIT, Page, PageOf, Path, Query, StatusPage};
pub use secrecy::SecretString;
pub use tenantdb::ResolvedTenant;
