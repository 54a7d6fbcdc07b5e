//! `tenantdb`: the reference app. The example tenant schema, the operator
//! commands of `tenantdb_cli` and the reference service (`serve`, also the
//! default). Parses flags, sets up logging and hands over to the libraries.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tenantdb::{Tenancy, TenantMigrations};
use tenantdb_cli::ConfigArgs;
use tenantdb_server::http;
use tenantdb_server::settings::ServiceArgs;
use tenantdb_server::tenant_schema::Migrator;

/// Database-per-tenant toolkit: create, inspect, migrate, repair and delete
/// tenant databases.
///
/// With no configuration everything lives in SQLite files under ./data.
/// Point TENANTDB_DATABASE_URL (catalog) and TENANTDB_TENANT_SERVER_URL
/// (tenant server) at PostgreSQL, and set TENANTDB_SECRET, for production.
#[derive(Debug, Parser)]
#[command(name = "tenantdb", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// With no command: `serve`.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (API.md) on TENANTDB_LISTEN until SIGINT or
    /// SIGTERM; the default command.
    Serve,
    #[command(flatten)]
    Operator(tenantdb_cli::Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let operator = match cli.command {
        None | Some(Command::Serve) => None,
        Some(Command::Operator(command)) => Some(command),
    };
    let default_filter = if operator.is_none() { "info" } else { "warn" };
    if let Err(err) = tenantdb_cli::init_logging(default_filter) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let result = match operator {
        None => serve(&cli.config, &cli.service).await.map(|()| ExitCode::SUCCESS),
        Some(command) => operate(&cli.config, command).await,
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// One operator command over the example schema.
async fn operate(config: &ConfigArgs, command: tenantdb_cli::Command) -> anyhow::Result<ExitCode> {
    let tenancy = Tenancy::connect(config.to_config()?, TenantMigrations::of::<Migrator>())
        .await
        .context("failed to start")?;
    let result = tenantdb_cli::execute(&tenancy, command).await;
    tenancy.close().await;
    result
}

async fn serve(config: &ConfigArgs, service: &ServiceArgs) -> anyhow::Result<()> {
    let library_config = config.to_config()?;
    let (admin_token, token_file) = service.admin_token(config.data_dir())?;
    let connections = service.connection_limits()?;
    let listener = tokio::net::TcpListener::bind(&service.listen)
        .await
        .with_context(|| format!("failed to listen on {}", service.listen))?;
    let address = listener.local_addr()?;
    // A log event rather than a bare line, so a JSON log stays one object
    // per line.
    match token_file {
        Some(path) => tracing::info!(
            "tenantdb listening on http://{address} (operator token in {})",
            path.display()
        ),
        None => tracing::info!("tenantdb listening on http://{address} (operator token from TENANTDB_ADMIN_TOKEN)"),
    }
    let options = http::ServiceOptions {
        admin_token,
        base_domain: service.base_domain.clone(),
        connections,
    };
    http::start(library_config, options, listener, shutdown_signal()).await
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
