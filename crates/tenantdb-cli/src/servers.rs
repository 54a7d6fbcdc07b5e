//! `servers list|show|add|add-replica|drain|accept|remove`: the tenant
//! servers, their budgets, tenants and the instances sharing each budget;
//! adding one or a read replica of one, draining one, removing an empty
//! one.

use anyhow::Context;
use clap::Subcommand;
use tenantdb::{AddReplica, AddServer, Server, Tenancy};

use crate::output::{print_instances, print_json, print_rows};

/// The `servers` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List the tenant servers.
    List {
        /// Print `[server]`: `{"id", "name", "engine", "address", "status", "budget",
        /// "tenants", "instances": [{"id", "host", "pid", "share",
        /// "started_at", "lease_expires_at"}], "replica": null | {"follows",
        /// "max_lag_ms", "usable", "lag_ms"}}` (the shape of `GET
        /// /v1/servers`).
        #[arg(long)]
        json: bool,
    },
    /// Add a PostgreSQL tenant server. It must answer and have room for the
    /// budget; its admin password is sealed with TENANTDB_SECRET in the
    /// catalog (never stored in plain text), so every instance can reach it.
    /// The password is never an argument (`ps` shows arguments to every
    /// user): it comes from TENANTDB_SERVER_PASSWORD or the file named by
    /// TENANTDB_SERVER_PASSWORD_FILE.
    Add {
        /// The server's name: lowercase letters, digits and '-'.
        name: String,
        /// `postgres://user@host:port/postgres`, without password: a
        /// superuser, or a role with CREATEDB and CREATEROLE.
        admin_url: String,
        /// Connections all instances together may hold on it.
        #[arg(long, default_value_t = 20)]
        budget: u32,
        /// Connections one tenant's pool may hold there (the settings' value
        /// when not given).
        #[arg(long)]
        max_per_tenant: Option<u32>,
        /// Print the server object.
        #[arg(long)]
        json: bool,
    },
    /// Add a read replica of a tenant server: a streaming standby of it
    /// (`pg_basebackup -R`, or a provider's read replica). Reads
    /// (`read_connection`, the read side of the service) go to it while it
    /// is within --max-lag-ms of the server, checked about every quarter of
    /// that bound by every instance; else, or while it does not answer, to
    /// the server. Its connections count against a budget of its own. The
    /// password comes from TENANTDB_SERVER_PASSWORD(_FILE), as for `add`.
    AddReplica {
        /// The server it follows.
        server: String,
        /// `postgres://user@host:port/postgres` of the standby, without
        /// password.
        admin_url: String,
        /// Its name (`<server>-replica` when not given).
        #[arg(long)]
        name: Option<String>,
        /// How far behind the server it may be and still take reads
        /// (milliseconds, at least 100).
        #[arg(long, default_value_t = 1000)]
        max_lag_ms: u32,
        /// Connections all instances together may hold on it.
        #[arg(long, default_value_t = 20)]
        budget: u32,
        /// Connections one tenant's pool may hold there.
        #[arg(long)]
        max_per_tenant: Option<u32>,
        /// Print the server object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant server from the catalog: refused while it holds
    /// tenant databases or this deployment's templates, and for the server
    /// of the settings. Nothing on the server is touched (but templates,
    /// with --drop-templates).
    Remove {
        /// The server's name.
        name: String,
        /// Drop this deployment's templates on it first.
        #[arg(long)]
        drop_templates: bool,
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
            print_table(&servers);
            Ok(())
        }
        ServersCommand::Add {
            name,
            admin_url,
            budget,
            max_per_tenant,
            json,
        } => {
            let admin_url = with_password(&admin_url, &|name| std::env::var(name).ok())?;
            let server = tenancy
                .add_server(AddServer {
                    name,
                    admin_url: admin_url.into(),
                    budget,
                    max_per_tenant,
                })
                .await?;
            print_found(Some(server), "", json)
        }
        ServersCommand::AddReplica {
            server,
            admin_url,
            name,
            max_lag_ms,
            budget,
            max_per_tenant,
            json,
        } => {
            let admin_url = with_password(&admin_url, &|name| std::env::var(name).ok())?;
            let replica = tenancy
                .add_replica(AddReplica {
                    primary: server,
                    name,
                    admin_url: admin_url.into(),
                    budget,
                    max_per_tenant,
                    max_lag_ms: Some(max_lag_ms),
                })
                .await?;
            print_found(Some(replica), "", json)
        }
        ServersCommand::Remove { name, drop_templates } => {
            tenancy
                .remove_server(&name, drop_templates)
                .await?
                .with_context(|| format!("no server named '{name}'"))?;
            println!("removed server '{name}' from the catalog");
            Ok(())
        }
        ServersCommand::Drain { name, json } => set_accepting(tenancy, &name, false, json).await,
        ServersCommand::Accept { name, json } => set_accepting(tenancy, &name, true, json).await,
        ServersCommand::Show { name, json } => print_found(tenancy.server(&name).await?, &name, json),
    }
}

/// The admin URL with the password of TENANTDB_SERVER_PASSWORD(_FILE), if
/// set; a URL that carries a password itself is refused.
fn with_password(url: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).context("the admin URL is not a URL")?;
    anyhow::ensure!(
        parsed.password().is_none(),
        "the admin URL must not carry its password (`ps` shows arguments to every user): \
         set TENANTDB_SERVER_PASSWORD or TENANTDB_SERVER_PASSWORD_FILE instead"
    );
    if let Some(password) = crate::settings::secret_setting("TENANTDB_SERVER_PASSWORD", env)? {
        let escaped = percent_encoding::utf8_percent_encode(&password, percent_encoding::NON_ALPHANUMERIC).to_string();
        parsed
            .set_password(Some(&escaped))
            .map_err(|()| anyhow::anyhow!("the admin URL takes no password"))?;
    }
    Ok(parsed.to_string())
}

/// The servers as a table: name, engine, status, budget, tenants, and the
/// instances sharing the budget with what they hold.
pub(crate) fn print_table(servers: &[Server]) {
    let rows = servers.iter().map(|s| {
        let shares: u32 = s.instances.iter().map(|i| i.share).sum();
        vec![
            s.name.clone(),
            s.engine.clone(),
            s.address.clone().unwrap_or_else(|| "-".into()),
            match &s.replica {
                Some(r) => format!("REPLICA of {}", r.follows),
                None => s.status.clone(),
            },
            s.budget.to_string(),
            s.tenants.to_string(),
            format!("{} ({shares} held)", s.instances.len()),
        ]
    });
    print_rows(
        &["NAME", "ENGINE", "ADDRESS", "STATUS", "BUDGET", "TENANTS", "INSTANCES"],
        rows,
    );
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
        "server '{}' ({} at {}): {}, budget {} connections, {} tenant(s)",
        server.name,
        server.engine,
        server.address.as_deref().unwrap_or("-"),
        server.status,
        server.budget,
        server.tenants
    );
    if let Some(replica) = &server.replica {
        let lag = replica.lag_ms.map_or("unknown".to_owned(), |ms| format!("{ms} ms"));
        println!(
            "read replica of '{}': lag {lag} (bound {} ms), reads go {}",
            replica.follows,
            replica.max_lag_ms,
            if replica.usable { "to it" } else { "to its server" }
        );
    }
    if server.instances.is_empty() {
        println!("no instance holds tenant pools on it now");
        return;
    }
    print_instances(&server.instances);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_the_environment_never_the_argument() {
        let none = |_: &str| None;
        let err = with_password("postgres://admin:pw@db/postgres", &none).unwrap_err();
        assert!(format!("{err:#}").contains("TENANTDB_SERVER_PASSWORD"), "{err:#}");
        assert_eq!(
            with_password("postgres://admin@db/postgres", &none).unwrap(),
            "postgres://admin@db/postgres"
        );
        let set = |name: &str| (name == "TENANTDB_SERVER_PASSWORD").then(|| "p%w@:/".to_owned());
        let url = with_password("postgres://admin@db:6432/postgres", &set).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let password = percent_encoding::percent_decode_str(parsed.password().unwrap()).decode_utf8_lossy();
        assert_eq!(password, "p%w@:/");
    }
}
