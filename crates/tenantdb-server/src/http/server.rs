//! One start path for `tenantdb serve`, the tests and the bench:
//! [`Server::build`] connects, reconciles abandoned work, builds the router
//! and binds, so the address is known (and connections queue in the
//! backlog) before [`Server::run_until_stopped`] serves. Nobody polls
//! `/healthz` to learn that the service is up.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tenantdb::{Config, Tenancy, TenantMigrations};
use tokio::net::TcpListener;

use super::{ServiceOptions, router, serve, service};
use crate::tenant_schema::Migrator;

/// Where to listen: a listener already bound (tests bind port 0) or an
/// address to bind.
#[derive(Debug)]
pub enum Listen {
    /// Serve on this listener.
    Listener(TcpListener),
    /// Bind this address (`host:port`).
    Addr(String),
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Self {
        Self::Listener(listener)
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self::Addr(addr.to_string())
    }
}

impl From<&str> for Listen {
    fn from(addr: &str) -> Self {
        Self::Addr(addr.to_owned())
    }
}

impl From<String> for Listen {
    fn from(addr: String) -> Self {
        Self::Addr(addr)
    }
}

impl Listen {
    async fn bind(self) -> anyhow::Result<TcpListener> {
        match self {
            Self::Listener(listener) => Ok(listener),
            Self::Addr(addr) => TcpListener::bind(&addr)
                .await
                .with_context(|| format!("failed to listen on {addr}")),
        }
    }
}

/// The service, bound and ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tenancy: Tenancy,
    app: Router,
    options: ServiceOptions,
}

impl Server {
    /// Installs the metrics recorder, connects to `config` with the
    /// reference tenant schema, then as [`Server::with_tenancy`].
    pub async fn build(config: Config, options: ServiceOptions, listen: impl Into<Listen>) -> anyhow::Result<Self> {
        // Before connecting: the pools fetch their counters when they are made.
        service::prometheus();
        let tenancy = Tenancy::connect(config, TenantMigrations::of::<Migrator>())
            .await
            .context("failed to start")?;
        Self::with_tenancy(tenancy, options, listen).await
    }

    /// Reconciles work a previous process abandoned, builds the router and
    /// binds. The tenancy is closed when the server stops.
    pub async fn with_tenancy(
        tenancy: Tenancy,
        options: ServiceOptions,
        listen: impl Into<Listen>,
    ) -> anyhow::Result<Self> {
        for entry in tenancy.provisioner().reconcile().await? {
            tracing::info!(tenant.id = %entry.tenant_id, status = %entry.status, outcome = ?entry.outcome, "reconciled");
        }
        let listener = listen.into().bind().await?;
        let local_addr = listener.local_addr().context("failed to read the listening address")?;
        let app = router(&tenancy, &options);
        Ok(Self {
            listener,
            local_addr,
            tenancy,
            app,
            options,
        })
    }

    /// The address it listens on (the port chosen when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves (within `options.connections`) until `shutdown` resolves,
    /// finishing abandoned work found meanwhile; then stops accepting, lets
    /// requests in flight finish, waits for provisioning under way, and
    /// closes every pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            tenancy,
            app,
            options,
            ..
        } = self;
        // Work a process left behind after this start (killed and restarted
        // within a lease period, or another instance dying) is finished too.
        let stop_reconciler = tokio_util::sync::CancellationToken::new();
        let reconciler = tenancy.provisioner().spawn_reconciler(stop_reconciler.clone());
        // The warm stock (TENANTDB_WARM_DATABASES) is filled in the background.
        let warm = tenancy.provisioner().spawn_warm_stock(stop_reconciler.clone());
        serve::serve(listener, app, options.connections, shutdown).await;
        // Stop looking for abandoned work; what a pass already claimed runs in
        // the provisioner's tasks, which closing waits for (up to its deadline).
        stop_reconciler.cancel();
        reconciler.abort();
        let _ = reconciler.await;
        // A clone under way is left to finish on the server; a warm
        // database left without its comment is stale: the next refill (or
        // doctor --fix) drops it.
        warm.abort();
        let _ = warm.await;
        tenancy.close().await;
        Ok(())
    }
}

/// `Server::build` then `run_until_stopped`: what `tenantdb serve` does.
pub async fn start(
    config: Config,
    options: ServiceOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::build(config, options, listener)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// `Server::with_tenancy` then `run_until_stopped`.
pub async fn run(
    tenancy: Tenancy,
    options: ServiceOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::with_tenancy(tenancy, options, listener)
        .await?
        .run_until_stopped(shutdown)
        .await
}
