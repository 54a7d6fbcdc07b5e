//! The notes service (`serve`), and a token for a user of a tenant
//! (`token`). tenantdb's settings are the `TENANTDB_*` variables of
//! `notes-admin`; the service's own are `NOTES_*`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use notes::Schema;
use notes::auth::NoteTokens;
use notes::server::{Server, Settings};
use secrecy::SecretString;

#[derive(Parser)]
#[command(about = "The notes service: one database per tenant")]
struct Cli {
    #[command(flatten)]
    config: tenantdb_cli::ConfigArgs,
    /// Key that signs the notes tokens (at least 32 bytes).
    #[arg(long, env = "NOTES_TOKEN_KEY", hide_env_values = true)]
    token_key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the notes API (and the operator API with an admin token);
    /// prints `listening on http://ADDR` once it accepts requests.
    Serve {
        #[arg(long, env = "NOTES_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Bearer token of the operator API (/v1/...); not mounted without.
        #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Print a token with which `user` may act for the tenant `tenant`.
    Token { user: String, tenant: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tokens = NoteTokens::new(SecretString::from(cli.token_key))
        .map_err(anyhow::Error::msg)
        .context("invalid NOTES_TOKEN_KEY")?;
    let (addr, admin_token) = match cli.command {
        Command::Token { user, tenant } => {
            println!("{}", tokens.mint(&user, &tenant));
            return Ok(());
        }
        Command::Serve { addr, admin_token } => (addr, admin_token),
    };
    let schema = Schema::from_env().map_err(anyhow::Error::msg)?;
    let admin_token = admin_token.map(SecretString::from);
    let settings = Settings {
        addr,
        tokens,
        admin_token,
        schema,
    };
    let server = Server::build(cli.config.to_config()?, settings).await?;
    println!("listening on http://{}", server.local_addr()?);
    server.run_until_stopped(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
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
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
