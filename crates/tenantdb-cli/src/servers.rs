//! `servers list|show|drain|accept`: the tenant servers, their budgets,
//! tenants and the instances sharing each budget; draining one.

use anyhow::Context;
use clap::Subcommand;
use tenantdb::{Server, Tenancy};

use crate::output::{print_instances, print_json, print_rows};

/// The `servers` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List the tenant servers.
    List {
        /// Print `[server]`: `{"id", "name", "engine", "status", "budget",
        /// "tenants", "instances": [{"id", "host", "pid", "share",
        /// "started_at", "lease_expires_at"}]}` (the shape of `GET
        /// /v1/servers`).
        #[arg(long)]
        json: bool,
    },
    /// Take no new tenants on the server (creates are refused; its tenants
    /// keep being served and migrated).
    Drain {
        /// The server's name.
        name: String,
        /// Print the server object.
        #[arg(long)]
        json: bool,
    },
    /// Take new tenants on the server again.
    Accept {
        /// The server's name.
        name: String,
        /// Print the server object.
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
        ServersCommand::Drain { name, json } => set_accepting(tenancy, &name, false, json).await,
        ServersCommand::Accept { name, json } => set_accepting(tenancy, &name, true, json).await,
        ServersCommand::Show { name, json } => print_found(tenancy.server(&name).await?, &name, json),
    }
}

async fn set_accepting(tenancy: &Tenancy, name: &str, accepting: bool, json: bool) -> anyhow::Result<()> {
    print_found(tenancy.set_server_accepting(name, accepting).await?, name, json)
}

/// The server (as JSON, or for people), or an error naming `name`.
fn print_found(server: Option<Server>, name: &str, json: bool) -> anyhow::Result<()> {
    let server = server.with_context(|| format!("no server named '{name}'"))?;
    if json {
        return print_json(&server);
    }
    print_server(&server);
    Ok(())
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
    print_instances(&server.instances);
}
