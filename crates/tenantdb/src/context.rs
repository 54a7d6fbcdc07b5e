//! `TenantContext`: the tenant of the current task, and `TenantRepository`,
//! the seed's BaseTypeormTenantRepository.
//!
//! ```no_run
//! use tenantdb::{TenantContext, TenantRepository, TenantScope};
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
//! # use tenantdb::{TenantContext, TenantScope};
//! # use tenantdb::{TenantConnections, TenantRef};
//! # async fn job(connections: TenantConnections, tenant: tenantdb::TenantId) -> tenantdb::Result<()> {
//! tokio::spawn(async move {
//!     let scope = TenantScope::open(&connections, &TenantRef::Id(tenant)).await?;
//!     TenantContext::scope(scope, async { /* tenant work */ Ok::<_, tenantdb::Error>(()) }).await
//! });
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use crate::connections::{ResolvedDatabase, ResolvedTenant, TenantConnections};
use crate::error::{Error, Result};
use crate::names::{TenantId, TenantRef};
use crate::pools::PoolHandle;

tokio::task_local! {
    static CURRENT: TenantScope;
}

/// The tenant a piece of work acts for, and the way to its database. It
/// carries the tenant as resolved when the scope opened (checked to be
/// served then): while the catalog records no change, its database is
/// reached without resolving the tenant again; after a change (a rename,
/// a suspension) it is resolved and checked anew.
#[derive(Debug, Clone)]
pub struct TenantScope {
    tenant: Arc<ResolvedTenant>,
    connections: TenantConnections,
}

impl TenantScope {
    /// Resolves the tenant and checks it may be served now.
    pub async fn open(connections: &TenantConnections, tenant: &TenantRef) -> Result<Self> {
        let resolved = connections.resolve_serving(tenant).await?;
        Self::from_resolved(connections, resolved)
    }

    /// A scope for a tenant already resolved (the axum layer resolves
    /// first to authorize the caller); checks it may be served now.
    pub fn from_resolved(connections: &TenantConnections, tenant: Arc<ResolvedTenant>) -> Result<Self> {
        tenant.serving()?;
        Ok(Self {
            tenant,
            connections: connections.clone(),
        })
    }

    /// The tenant's id.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    /// The tenant as resolved when the scope opened.
    pub fn tenant(&self) -> &ResolvedTenant {
        &self.tenant
    }

    /// The tenant's database as it is now: the one resolved when the scope
    /// opened unless the catalog changed since (then resolved and checked
    /// again, so a rename or suspension during a long scope is seen).
    async fn database(&self) -> Result<Cow<'_, ResolvedDatabase>> {
        if self.connections.is_current(&self.tenant) {
            // Checked when the scope opened, and nothing changed since.
            return Ok(Cow::Borrowed(self.tenant.serving()?));
        }
        let resolved = self.connections.resolve_serving(&TenantRef::Id(self.tenant.id)).await?;
        Ok(Cow::Owned(resolved.serving()?.clone()))
    }

    /// A connection to the tenant's (primary) database.
    pub async fn connection(&self) -> Result<PoolHandle> {
        let database = self.database().await?;
        self.connections.get(database.server, &database.primary).await
    }

    /// A connection to the tenant's read database.
    pub async fn read_connection(&self) -> Result<PoolHandle> {
        let database = self.database().await?;
        self.connections.read_pool(&database).await
    }

    /// Both (the same pool twice while the read database is the primary).
    pub async fn write_and_read(&self) -> Result<(PoolHandle, PoolHandle)> {
        let database = self.database().await?;
        self.connections.pools_of(&database).await
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
