//! `servers list` and `servers show`: the tenant servers, their budgets,
//! tenants and the instances sharing each budget.

use anyhow::Context;
use clap::Subcommand;
use tenantdb::{Server, Tenancy};

use crate::output::{print_json, print_rows};

/// The `servers` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List the tenant servers.
    List {
        /// Print `[server]`: `{"id", "name", "engine", "status", "budget",
        /// "tenants", "instances": [{"id", "host", "pid", "share",
        /// "started_at"}]}` (the shape of `GET /v1/servers`).
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant server and the instances sharing its budget.
    Show {
        /// The server's name (`default` for the server of the settings).
        name: String,
        /// Print the server object (as `servers list --json`).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn servers(tenancy: &Tenancy, command: ServersCommand) -> anyhow::Result<()> {
    match command {
        ServersCommand::List { json } => {
            let servers = tenancy.servers().await?;
            if json {
                return print_json(&servers);
            }
            let rows = servers.iter().map(|s| {
                let shares: u32 = s.instances.iter().map(|i| i.share).sum();
                vec![
                    s.name.clone(),
                    s.engine.clone(),
                    s.status.clone(),
                    s.budget.to_string(),
                    s.tenants.to_string(),
                    format!("{} ({shares} held)", s.instances.len()),
                ]
            });
            print_rows(&["NAME", "ENGINE", "STATUS", "BUDGET", "TENANTS", "INSTANCES"], rows);
            Ok(())
        }
        ServersCommand::Show { name, json } => {
            let server = tenancy
                .server(&name)
                .await?
                .with_context(|| format!("no server named '{name}'"))?;
            if json {
                return print_json(&server);
            }
            print_server(&server);
            Ok(())
        }
    }
}

fn print_server(server: &Server) {
    println!(
        "server '{}' ({}): {}, budget {} connections, {} tenant(s)",
        server.name, server.engine, server.status, server.budget, server.tenants
    );
    if server.instances.is_empty() {
        println!("no instance holds tenant pools on it now");
        return;
    }
    let rows = server.instances.iter().map(|i| {
        vec![
            i.id.to_string(),
            i.host.clone(),
            i.pid.to_string(),
            i.share.to_string(),
            i.started_at.clone(),
        ]
    });
    print_rows(&["INSTANCE", "HOST", "PID", "SHARE", "STARTED"], rows);
}
