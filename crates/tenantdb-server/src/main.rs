//! `tenantdb`: the reference app. The example tenant schema, the operator
//! commands of `tenantdb_cli` and the reference service (`serve`, also the
//! default). Parses flags, sets up logging and hands over to the libraries.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tenantdb::{Config, Tenancy, TenantMigrations};
use tenantdb_cli::ConfigArgs;
use tenantdb_server::http;
use tenantdb_server::settings::ServiceArgs;
use tenantdb_server::tenant_schema::Migrator;

/// `tenantdb_cli`'s words on secrets, logs and exit codes, and the
/// service's own secret.
fn after_help() -> String {
    format!(
        "The service's operator token comes from TENANTDB_ADMIN_TOKEN or\n\
         TENANTDB_ADMIN_TOKEN_FILE, else it is made once and kept in\n\
         $TENANTDB_DATA_DIR/admin-token. The service describes its API in\n\
         GET /openapi.json.\n\n{}",
        tenantdb_cli::AFTER_HELP
    )
}

/// Database-per-tenant toolkit: create, inspect, migrate, repair and delete
/// tenant databases.
///
/// With no configuration everything lives in SQLite files under ./data.
/// Point TENANTDB_DATABASE_URL (catalog) and TENANTDB_TENANT_SERVER_URL
/// (tenant server) at PostgreSQL, and set TENANTDB_SECRET, for production.
#[derive(Debug, Parser)]
#[command(name = "tenantdb", version, after_long_help = after_help())]
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
    /// Run the HTTP service (docs/API.md) on TENANTDB_LISTEN until SIGINT or
    /// SIGTERM; the default command.
    Serve,
    #[command(flatten)]
    Operator(tenantdb_cli::Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Operator(tenantdb_cli::Command::Completions { shell })) = cli.command {
        return tenantdb_cli::completions::<Cli>(shell);
    }
    let operator = match cli.command {
        None | Some(Command::Serve) => None,
        Some(Command::Operator(command)) => Some(command),
    };
    let default_filter = if operator.is_none() { "info" } else { "warn" };
    if let Err(err) = tenantdb_cli::init_logging(default_filter) {
        eprintln!("error: {err:#}");
        return ExitCode::from(tenantdb_cli::exit::USAGE);
    }
    // Settings that do not make a valid configuration are a usage error.
    let config = match cli.config.to_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(tenantdb_cli::exit::USAGE);
        }
    };
    let result = match operator {
        None => serve(config, cli.config.data_dir(), &cli.service)
            .await
            .map(|()| ExitCode::SUCCESS),
        Some(command) => operate(config, command).await,
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// One operator command over the example schema.
async fn operate(config: Config, command: tenantdb_cli::Command) -> anyhow::Result<ExitCode> {
    let tenancy = Tenancy::connect(config, TenantMigrations::of::<Migrator>())
        .await
        .context("failed to start")?;
    let result = tenantdb_cli::execute(&tenancy, command).await;
    tenancy.close().await;
    result
}

async fn serve(library_config: Config, data_dir: &Path, service: &ServiceArgs) -> anyhow::Result<()> {
    let (admin_token, token_file) = service.admin_token(data_dir)?;
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

/// SIGINT or SIGTERM. The SIGTERM handler is installed here, before the
/// service listens: a SIGTERM that comes at once (a supervisor stopping
/// a service it just started) is a graceful stop too, not the default
/// action that kills the process.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let terminate = async {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
