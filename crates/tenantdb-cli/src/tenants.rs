//! `tenants ...`: create, list, inspect, rename, repair and delete tenants.

use anyhow::{Context, bail};
use clap::Subcommand;
use tenantdb::{DbStatus, NewTenant, Tenancy, TenantRef, TenantStatus};

use crate::args::{enum_parser, parse_ref};
use crate::output::{print_tenant, print_tenants};

/// The `tenants` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant and its database; exits 0 once the database is ACTIVE.
    Create {
        /// DNS label: 1-63 of a-z, 0-9 and '-'.
        slug: String,
        /// Display name [default: the slug].
        #[arg(long)]
        name: Option<String>,
        /// Database name (must start with the prefix) [default: prefix + slug].
        #[arg(long)]
        database_name: Option<String>,
        /// The tenant server for its database, by name [default: the
        /// ACCEPTING server with the fewest tenants].
        #[arg(long)]
        server: Option<String>,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List tenants with their database status and schema version.
    List {
        /// Only tenants with this status.
        #[arg(long, ignore_case = true, value_parser = enum_parser::<TenantStatus>())]
        status: Option<TenantStatus>,
        /// Only tenants whose database has this status.
        #[arg(long, ignore_case = true, value_parser = enum_parser::<DbStatus>())]
        database_status: Option<DbStatus>,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant (by slug or id).
    Show {
        tenant: String,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rename a tenant's database; its data stays.
    RenameDatabase {
        tenant: String,
        new_name: String,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move tenants' databases to another PostgreSQL server: online by
    /// default (logical replication; served all along but for a pause of
    /// about a second at the switch), offline with --offline (refused while
    /// pg_dump | pg_restore copies it). A failure or a crash before the
    /// switch leaves the tenant where it was. Exits 1 if any move failed.
    Move(crate::moves::MoveArgs),
    /// Export the tenant's database to one file: a header (tenant, engine,
    /// schema version), then a pg_dump custom-format archive made as the
    /// tenant's own role, or a copy of its SQLite file. A consistent
    /// snapshot, taken while it is served.
    Export(crate::export::ExportArgs),
    /// Export the chosen tenants, or every served one with --all, into a
    /// directory (`<slug>.tenantdb` each), a few at a time; exits 1 if any
    /// failed.
    Backup(crate::export::BackupArgs),
    /// Create a tenant from an export: its own role and database, the
    /// export restored into it, then the migrations newer than the export's
    /// version. An export from a version this program does not have is
    /// refused; exits 0 once the tenant is ACTIVE.
    Import(crate::export::ImportArgs),
    /// Delete a tenant. Its database is kept for the retention period
    /// (TENANTDB_DELETED_RETENTION, default 7 days): renamed into the
    /// trash, its role locked out, the tenant DELETED and refused; `tenants
    /// restore` brings it back, `tenants purge` (or the service's sweep once
    /// the period is over) drops it with the tenant's memberships and
    /// subscription.
    Delete {
        tenant: String,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Delete for good at once, without the retention period (a
        /// DELETED tenant's kept database too).
        #[arg(long)]
        now: bool,
    },
    /// Bring a DELETED tenant back as it was (its data, its database name,
    /// its members), migrated if a tenant migration came meanwhile.
    Restore {
        tenant: String,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Drop what the trash holds: the named DELETED tenants (with --yes),
    /// or, with no tenant named, every one past its retention period.
    /// Exits 1 if any purge failed.
    Purge {
        tenants: Vec<String>,
        /// Confirm purging named tenants before their period is over.
        #[arg(long)]
        yes: bool,
        /// Print `[{"tenant_id", "database_name", "deleted_at", "purged", "error"}]`.
        #[arg(long)]
        json: bool,
    },
    /// Provision a FAILED tenant database again.
    Retry {
        tenant: String,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bring one tenant's database up to the latest tenant migration.
    Migrate {
        tenant: String,
        /// Print the tenant object (docs/API.md's shape) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Connect to the tenant's database the way a request does (resolution,
    /// status check, pool as the tenant's role) and time a query.
    Check {
        tenant: String,
        /// Print `{"tenant", "reachable", "connect_ms", "query_ms"}`.
        #[arg(long)]
        json: bool,
    },
    /// Run one SQL statement in every tenant's database (or the chosen
    /// ones) as each tenant's role; a read prints its rows per tenant.
    /// Exits 1 if it failed on any tenant.
    Exec(crate::exec::ExecArgs),
    /// Run the application's seed (the rows a tenant starts with) in the
    /// chosen tenants' databases, or every serving one with --all; exits 1
    /// if it failed on any. A binary with no seed says so and does nothing.
    Seed(crate::seed::SeedArgs),
    /// Print a connection URL for the tenant's database as its own role
    /// (`postgres://role@host:port/db`, or `sqlite://file`).
    Url {
        tenant: String,
        /// Include the role's password (printed on stdout only).
        #[arg(long)]
        show_password: bool,
    },
    /// Open `psql` (or `sqlite3`) on the tenant's database as its own role.
    Shell { tenant: String },
    /// Refuse the tenant's requests (its database keeps being migrated).
    Suspend { tenant: String },
    /// Serve the tenant again.
    Resume { tenant: String },
}

pub(crate) async fn tenants(
    tenancy: &Tenancy,
    command: TenantsCommand,
    seed: Option<std::sync::Arc<dyn crate::Seed>>,
) -> anyhow::Result<()> {
    use TenantsCommand::*;
    match command {
        Create {
            slug,
            name,
            database_name,
            server,
            json,
        } => create(tenancy, slug, name, database_name, server, json).await,
        List {
            status,
            database_status,
            json,
        } => print_tenants(&crate::listing::tenants(tenancy, status, database_status).await?, json),
        Show { tenant, json } => {
            let tenant = tenancy.tenant(&parse_ref(&tenant)?).await?;
            let file = match tenancy.engine() {
                tenantdb::engine::Engine::Sqlite(sqlite) if !json && tenant.database.is_some() => {
                    Some(sqlite.path(tenantdb::TenantId::from(tenant.id)))
                }
                _ => None,
            };
            print_tenant(tenant, json)?;
            if let Some(file) = file {
                println!("file: {}", file.display());
            }
            Ok(())
        }
        RenameDatabase { tenant, new_name, json } => rename(tenancy, &parse_ref(&tenant)?, &new_name, json).await,
        Move(args) => crate::moves::move_tenants(tenancy, args).await,
        Export(args) => crate::export::export(tenancy, args).await,
        Backup(args) => crate::export::backup(tenancy, args).await,
        Import(args) => crate::export::import(tenancy, args).await,
        Delete { tenant, yes, now } => delete(tenancy, &tenant, yes, now).await,
        Restore { tenant, json } => restore(tenancy, &parse_ref(&tenant)?, json).await,
        Purge { tenants, yes, json } => purge(tenancy, &tenants, yes, json).await,
        Retry { tenant, json } => retry(tenancy, &parse_ref(&tenant)?, json).await,
        Migrate { tenant, json } => migrate(tenancy, &parse_ref(&tenant)?, json).await,
        Check { tenant, json } => check(tenancy, &parse_ref(&tenant)?, json).await,
        Exec(args) => crate::exec::exec(tenancy, args).await,
        Seed(args) => crate::seed::seed(tenancy, seed, args).await,
        Url { tenant, show_password } => crate::access::url(tenancy, &parse_ref(&tenant)?, show_password).await,
        Shell { tenant } => crate::access::shell(tenancy, &parse_ref(&tenant)?).await,
        Suspend { tenant } => set_status(tenancy, &parse_ref(&tenant)?, TenantStatus::Suspended).await,
        Resume { tenant } => set_status(tenancy, &parse_ref(&tenant)?, TenantStatus::Active).await,
    }
}

async fn create(
    tenancy: &Tenancy,
    slug: String,
    name: Option<String>,
    database_name: Option<String>,
    server: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let row = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: slug.clone(),
            name,
            database_name,
            server,
            ..Default::default()
        })
        .await
        .with_context(|| format!("failed to create tenant '{slug}'"))?;
    print_tenant(tenancy.tenant(&TenantRef::Id(row.tenant_id.into())).await?, json)
}

async fn rename(tenancy: &Tenancy, tenant: &TenantRef, new_name: &str, json: bool) -> anyhow::Result<()> {
    tenancy
        .provisioner()
        .rename_tenant_database(tenant, new_name)
        .await
        .with_context(|| format!("failed to rename the database of tenant '{tenant}'"))?;
    print_tenant(tenancy.tenant(tenant).await?, json)
}

async fn delete(tenancy: &Tenancy, tenant: &str, yes: bool, now: bool) -> anyhow::Result<()> {
    let provisioner = tenancy.provisioner();
    let retention = provisioner.deleted_retention();
    let for_good = now || retention.is_zero();
    if !yes {
        if for_good {
            bail!("refusing to delete tenant '{tenant}' without --yes: its database and data are gone for good");
        }
        bail!(
            "refusing to delete tenant '{tenant}' without --yes: it stops being served at once \
             (its data is kept for {} for `tenants restore`)",
            humantime::format_duration(retention)
        );
    }
    let tenant = &parse_ref(tenant)?;
    let result = if now {
        provisioner.delete_tenant_now(tenant).await
    } else {
        provisioner.delete_tenant(tenant).await
    };
    result.with_context(|| format!("failed to delete tenant '{tenant}'"))?;
    match tenancy.tenant(tenant).await {
        Ok(view) if view.database.as_ref().is_some_and(|db| db.status == DbStatus::Deleted) => {
            let until = view
                .database
                .and_then(|db| db.purge_after)
                .unwrap_or_else(|| "the end of its retention period".to_owned());
            println!(
                "deleted tenant {tenant}: its database is kept until {until}; `tenants restore {tenant}` brings it back"
            );
        }
        _ => println!("deleted tenant {tenant} for good"),
    }
    Ok(())
}

async fn restore(tenancy: &Tenancy, tenant: &TenantRef, json: bool) -> anyhow::Result<()> {
    tenancy
        .provisioner()
        .restore_tenant(tenant)
        .await
        .with_context(|| format!("failed to restore tenant '{tenant}'"))?;
    print_tenant(tenancy.tenant(tenant).await?, json)
}

async fn purge(tenancy: &Tenancy, tenants: &[String], yes: bool, json: bool) -> anyhow::Result<()> {
    let provisioner = tenancy.provisioner();
    let purged = if tenants.is_empty() {
        provisioner.purge_expired().await?
    } else {
        if !yes {
            bail!("refusing to purge named tenants without --yes: their data is gone for good");
        }
        let mut purged = Vec::new();
        for tenant in tenants {
            let tenant = parse_ref(tenant)?;
            let view = tenancy.tenant(&tenant).await?;
            let database = view.database.as_ref();
            let outcome = provisioner.purge_tenant(&tenant).await.map_err(|err| err.chain());
            purged.push(tenantdb::Purged {
                tenant_id: view.id,
                database_name: database.map(|db| db.database_name.clone()).unwrap_or_default(),
                deleted_at: database
                    .and_then(|db| db.deleted_at.as_deref())
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                    .map(|at| at.with_timezone(&chrono::Utc)),
                outcome,
            });
        }
        purged
    };
    let failed = purged.iter().filter(|p| p.outcome.is_err()).count();
    if json {
        let rows: Vec<_> = purged
            .iter()
            .map(|p| {
                serde_json::json!({
                    "tenant_id": p.tenant_id,
                    "database_name": p.database_name,
                    "deleted_at": p.deleted_at,
                    "purged": p.outcome.is_ok(),
                    "error": p.outcome.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for p in &purged {
            match &p.outcome {
                Ok(()) => println!("purged tenant {} ({})", p.tenant_id, p.database_name),
                Err(err) => println!("could not purge tenant {}: {err}", p.tenant_id),
            }
        }
        if purged.is_empty() {
            println!("nothing to purge");
        }
    }
    if failed > 0 {
        bail!("{failed} of {} purges failed", purged.len());
    }
    Ok(())
}

async fn retry(tenancy: &Tenancy, tenant: &TenantRef, json: bool) -> anyhow::Result<()> {
    tenancy
        .provisioner()
        .retry(tenant)
        .await
        .with_context(|| format!("failed to retry tenant '{tenant}'"))?;
    print_tenant(tenancy.tenant(tenant).await?, json)
}

async fn migrate(tenancy: &Tenancy, tenant: &TenantRef, json: bool) -> anyhow::Result<()> {
    tenancy
        .provisioner()
        .migrate_tenant(tenant)
        .await
        .with_context(|| format!("failed to migrate tenant '{tenant}'"))?;
    print_tenant(tenancy.tenant(tenant).await?, json)
}

async fn set_status(tenancy: &Tenancy, tenant: &TenantRef, status: TenantStatus) -> anyhow::Result<()> {
    let view = tenancy
        .set_tenant_status(tenant, status)
        .await
        .with_context(|| format!("failed to change the status of tenant '{tenant}'"))?;
    println!("tenant {} is {}", view.slug, view.status.as_str());
    Ok(())
}

async fn check(tenancy: &Tenancy, tenant: &TenantRef, json: bool) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let started = std::time::Instant::now();
    let db = tenancy
        .connections()
        .connection(tenant)
        .await
        .with_context(|| format!("tenant '{tenant}' is not reachable"))?;
    let connected = started.elapsed();
    db.execute_unprepared("SELECT 1")
        .await
        .with_context(|| format!("a query on tenant '{tenant}' failed"))?;
    let (connect_ms, query_ms) = (connected.as_secs_f64() * 1e3, started.elapsed().as_secs_f64() * 1e3);
    if json {
        return crate::output::print_json(&serde_json::json!({
            "tenant": tenant.to_string(), "reachable": true, "connect_ms": connect_ms, "query_ms": query_ms,
        }));
    }
    println!("tenant {tenant} is reachable: connected in {connect_ms:.1} ms, first query after {query_ms:.1} ms");
    Ok(())
}
