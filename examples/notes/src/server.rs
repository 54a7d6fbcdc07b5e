//! The notes service: its routes behind the tenant layer with its own
//! tokens, and tenantdb's operator API under the admin token beside them.
//! `main` and the tests start it the same way: [`Server::build`] binds and
//! connects, [`Server::run_until_stopped`] serves.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use secrecy::SecretString;
use tenantdb::{Config, Tenancy, TenantMigrations};
use tenantdb_axum::{AdminToken, OperatorApi, TenantResolution};
use tokio::net::TcpListener;

use crate::auth::NoteTokens;
use crate::migrations::{Migrator, Schema};
use crate::routes;

/// What the service needs besides tenantdb's [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// Signs and checks the notes tokens.
    pub tokens: NoteTokens,
    /// The operator API's bearer token; without one the operator API is
    /// not mounted.
    pub admin_token: Option<SecretString>,
    /// The schema release this process plays.
    pub schema: Schema,
}

/// The service, bound and connected, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    tenancy: Tenancy,
    app: Router,
}

impl Server {
    /// Connects tenantdb (with the notes migrations) and binds the address.
    pub async fn build(config: Config, settings: Settings) -> anyhow::Result<Self> {
        let tenancy = Tenancy::connect(config, TenantMigrations::of::<Migrator>())
            .await
            .context("failed to connect tenantdb")?;
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("failed to listen on {}", settings.addr))?;
        let app = app(&tenancy, settings);
        Ok(Self { listener, tenancy, app })
    }

    /// The address it listens on (the port chosen for port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("failed to read the listening address")
    }

    /// Serves until `shutdown` resolves, lets requests under way finish,
    /// then closes tenantdb.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await;
        self.tenancy.close().await;
        served.context("failed to serve")
    }
}

/// The routes: notes behind the tenant layer (authorized by the notes
/// tokens), and the operator API (`/v1/...`) when an admin token is set.
pub fn app(tenancy: &Tenancy, settings: Settings) -> Router {
    let resolution = TenantResolution::new(tenancy.connections().clone()).authorizer(settings.tokens);
    let notes =
        routes::router(settings.schema).route_layer(resolution);
    match settings.admin_token {
        Some(token) => {
            let (operator, _openapi) = OperatorApi::new(tenancy.clone(), AdminToken::new(token))
                .router()
                .split_for_parts();
            notes.merge(operator)
        }
        None => notes,
    }
}
