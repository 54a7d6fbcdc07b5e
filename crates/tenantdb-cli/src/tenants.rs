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
    /// Delete a tenant: its database, role, memberships and subscription.
    Delete {
        tenant: String,
        /// Confirm: the tenant's data is gone for good.
        #[arg(long)]
        yes: bool,
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
        Delete { tenant, yes } => delete(tenancy, &tenant, yes).await,
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

async fn delete(tenancy: &Tenancy, tenant: &str, yes: bool) -> anyhow::Result<()> {
    if !yes {
        bail!("refusing to delete tenant '{tenant}' without --yes: its database and data are gone for good");
    }
    let tenant = &parse_ref(tenant)?;
    tenancy
        .provisioner()
        .delete_tenant(tenant)
        .await
        .with_context(|| format!("failed to delete tenant '{tenant}'"))?;
    println!("deleted tenant {tenant}");
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
