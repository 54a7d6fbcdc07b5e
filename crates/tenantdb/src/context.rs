//! `TenantContext`: the tenant of the current task, and `TenantRepository`,
//! the seed's BaseTypeormTenantRepository.
//!
//! ```no_run
//! use tenantdb::context::{TenantContext, TenantRepository, TenantScope};
//! use tenantdb::{TenantConnections, TenantRef};
//!
//! struct Projects;
//! impl TenantRepository for Projects {}
//!
//! # async fn example(connections: TenantConnections) -> tenantdb::Result<()> {
//! let scope = TenantScope::open(&connections, &TenantRef::parse("acme")?).await?;
//! TenantContext::scope(scope, async {
//!     let db = Projects.db().await?; // acme's database, as acme's role
//!     # let _ = db;
//!     Ok::<_, tenantdb::Error>(())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The scope is a tokio task-local: it covers the future passed to
//! `scope` and nothing else. A task started with `tokio::spawn` does not
//! inherit it; a background job carries the tenant id explicitly and opens
//! its own scope:
//!
//! ```no_run
//! # use tenantdb::context::{TenantContext, TenantScope};
//! # use tenantdb::{TenantConnections, TenantRef};
//! # async fn job(connections: TenantConnections, tenant: tenantdb::TenantId) -> tenantdb::Result<()> {
//! tokio::spawn(async move {
//!     let scope = TenantScope::open(&connections, &TenantRef::Id(tenant)).await?;
//!     TenantContext::scope(scope, async { /* tenant work */ Ok::<_, tenantdb::Error>(()) }).await
//! });
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use crate::pools::PoolHandle;

use crate::connections::{ResolvedTenant, TenantConnections};
use crate::error::{Error, Result};
use crate::names::{TenantId, TenantRef};

tokio::task_local! {
    static CURRENT: TenantScope;
}

/// The tenant a piece of work acts for, and the way to its database.
#[derive(Debug, Clone)]
pub struct TenantScope {
    tenant: Arc<ResolvedTenant>,
    connections: TenantConnections,
}

impl TenantScope {
    /// Resolves the tenant and checks it may be served now.
    pub async fn open(connections: &TenantConnections, tenant: &TenantRef) -> Result<Self> {
        let resolved = connections.resolve(tenant).await?;
        resolved.serving()?;
        Ok(Self {
            tenant: resolved,
            connections: connections.clone(),
        })
    }

    /// A scope for a tenant already resolved and checked (the axum layer
    /// resolves first to authorize the caller).
    pub fn from_resolved(connections: &TenantConnections, tenant: Arc<ResolvedTenant>) -> Self {
        Self {
            tenant,
            connections: connections.clone(),
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    pub fn tenant(&self) -> &ResolvedTenant {
        &self.tenant
    }

    /// The tenant's database. Resolved again (a cache hit), so a rename or
    /// suspension during a long scope is seen.
    pub async fn connection(&self) -> Result<PoolHandle> {
        self.connections.connection(&TenantRef::Id(self.tenant.id)).await
    }

    pub async fn read_connection(&self) -> Result<PoolHandle> {
        self.connections.read_connection(&TenantRef::Id(self.tenant.id)).await
    }

    /// Both, resolving the tenant once.
    pub async fn write_and_read(&self) -> Result<(PoolHandle, PoolHandle)> {
        self.connections.write_and_read(&TenantRef::Id(self.tenant.id)).await
    }
}

/// Sets and reads the current task's tenant.
#[derive(Debug, Clone, Copy)]
pub struct TenantContext;

impl TenantContext {
    /// Runs `work` with `scope` as the current tenant.
    pub async fn scope<F: Future>(scope: TenantScope, work: F) -> F::Output {
        CURRENT.scope(scope, work).await
    }

    /// The current tenant; `Error::NoTenantContext` outside a scope.
    pub fn current() -> Result<TenantScope> {
        CURRENT.try_with(Clone::clone).map_err(|_| Error::NoTenantContext)
    }
}

/// A repository of tenant data: its default methods reach the current
/// tenant's database, and fail with a clear error outside a tenant scope.
#[async_trait::async_trait]
pub trait TenantRepository: Send + Sync {
    /// The current tenant's database.
    async fn db(&self) -> Result<PoolHandle> {
        TenantContext::current()?.connection().await
    }

    /// The current tenant's read database.
    async fn read_db(&self) -> Result<PoolHandle> {
        TenantContext::current()?.read_connection().await
    }
}
