//! The operator commands.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tenantdb::catalog::{DbStatus, MemberRole};
use tenantdb::provisioner::ReconcileOutcome;
use tenantdb::{NewTenant, Tenancy, TenantMigrations, TenantRef, TenantStatus, TenantView};

use crate::http;
use crate::settings::Settings;
use crate::tenant_schema::Migrator;

/// Database-per-tenant toolkit: create, inspect, migrate, repair and delete
/// tenant databases.
///
/// With no configuration everything lives in SQLite files under ./data.
/// Point TENANTDB_DATABASE_URL (catalog) and TENANTDB_TENANT_SERVER_URL
/// (tenant server) at PostgreSQL, and set TENANTDB_SECRET, for production.
#[derive(Debug, Parser)]
#[command(name = "tenantdb", version)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// With no command: `serve`.
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    pub fn is_serve(&self) -> bool {
        matches!(self.command, None | Some(Command::Serve))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (API.md) on TENANTDB_LISTEN until SIGINT or
    /// SIGTERM; the default command.
    Serve,
    /// Create users and their API tokens.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Add and remove tenant members.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Create, list, inspect, rename, repair and delete tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// One screen: tenants by status and version, servers, pools, last runs.
    Status,
    /// Bring every tenant that is behind up to the latest tenant migration
    /// (`migrate status`: runs and tenants per version).
    Migrate(MigrateArgs),
    /// Finish work a dead process left half-done (rows in PROVISIONING,
    /// RENAMING, MIGRATING or DELETING whose lease expired).
    Reconcile,
    /// Find drift between the catalog and the tenant server (orphan and
    /// foreign databases, missing databases, stuck or failed rows, version
    /// drift, stale templates) and explain it; exits non-zero while
    /// problems remain.
    Doctor(DoctorArgs),
}

#[derive(Debug, clap::Args)]
struct DoctorArgs {
    /// Repair what is safe (drop orphans, finish stuck work, correct
    /// recorded versions, rebuild or drop templates), then check again.
    /// Databases tenantdb did not create are never touched.
    #[arg(long)]
    fix: bool,
    /// Skip connecting to each tenant database to compare its migration
    /// table with the catalog.
    #[arg(long)]
    no_versions: bool,
    /// Tenant databases checked at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    #[command(subcommand)]
    action: Option<MigrateAction>,
    /// Tenants migrated at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only this tenant (repeatable; slug or id).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Print who would get which migrations; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop handing out work after this many failures.
    #[arg(long)]
    max_failures: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    #[arg(long)]
    canary: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Recent runs, and how many tenants sit at each version.
    Status,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user.
    Create {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Make an API token for a user; it is printed once and never stored.
    Token {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Make a user a member of a tenant (or change their role).
    Add {
        tenant: String,
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: MemberRole,
    },
    /// Remove a user from a tenant.
    Remove { tenant: String, email: String },
}

impl MigrateArgs {
    fn into_options(self) -> anyhow::Result<crate::fleet_cli::MigrateCommand> {
        let tenants = self
            .tenants
            .iter()
            .map(|t| parse_ref(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        Ok(crate::fleet_cli::MigrateCommand {
            status: matches!(self.action, Some(MigrateAction::Status)),
            dry_run: self.dry_run,
            options: tenantdb::fleet::FleetOptions {
                concurrency: self.concurrency,
                tenants,
                max_failures: self.max_failures,
                canary: self.canary,
            },
        })
    }
}

fn parse_role(s: &str) -> Result<MemberRole, String> {
    match s.to_ascii_uppercase().as_str() {
        "OWNER" => Ok(MemberRole::Owner),
        "ADMIN" => Ok(MemberRole::Admin),
        "MEMBER" => Ok(MemberRole::Member),
        _ => Err("expected OWNER, ADMIN or MEMBER".into()),
    }
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
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
        #[arg(long)]
        json: bool,
    },
    /// List tenants with their database status and schema version.
    List {
        /// Only tenants with this status (ACTIVE or SUSPENDED).
        #[arg(long, value_parser = parse_tenant_status)]
        status: Option<TenantStatus>,
        /// Only tenants whose database has this status (PROVISIONING,
        /// ACTIVE, MIGRATING, RENAMING, FAILED, DELETING).
        #[arg(long, value_parser = parse_db_status)]
        database_status: Option<DbStatus>,
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant (by slug or id).
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Rename a tenant's database; its data stays.
    RenameDatabase {
        tenant: String,
        new_name: String,
        #[arg(long)]
        json: bool,
    },
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
        #[arg(long)]
        json: bool,
    },
    /// Bring one tenant's database up to the latest tenant migration.
    Migrate {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Connect to the tenant's database the way a request does (resolution,
    /// status check, pool as the tenant's role) and time a query.
    Check { tenant: String },
    /// Refuse the tenant's requests (its database keeps being migrated).
    Suspend { tenant: String },
    /// Serve the tenant again.
    Resume { tenant: String },
}

fn parse_tenant_status(s: &str) -> Result<TenantStatus, String> {
    match s.to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(TenantStatus::Active),
        "SUSPENDED" => Ok(TenantStatus::Suspended),
        _ => Err("expected ACTIVE or SUSPENDED".into()),
    }
}

fn parse_db_status(s: &str) -> Result<DbStatus, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|_| "expected PROVISIONING, ACTIVE, MIGRATING, RENAMING, FAILED or DELETING".into())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.settings.to_config()?;
    let command = match cli.command {
        None | Some(Command::Serve) => return serve(config, &cli.settings).await,
        Some(command) => command,
    };
    let tenancy = Tenancy::connect(config, TenantMigrations::of::<Migrator>())
        .await
        .context("failed to start")?;
    // Work under way belongs to the provisioner: on Ctrl-C, stop waiting
    // for the result but let DDL that already started finish cleanly.
    let result = tokio::select! {
        result = dispatch(&tenancy, command) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: waiting for work under way to finish");
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    tenancy.close().await;
    result
}

async fn dispatch(tenancy: &Tenancy, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tenants(command) => tenants(tenancy, command).await,
        Command::Reconcile => reconcile(tenancy).await,
        Command::Doctor(args) => {
            let options = tenantdb::doctor::DoctorOptions {
                check_versions: !args.no_versions,
                concurrency: args.concurrency,
            };
            crate::fleet_cli::doctor(tenancy, options, args.fix, args.json).await
        }
        Command::Status => crate::fleet_cli::overview(tenancy).await,
        Command::Migrate(args) => crate::fleet_cli::migrate(tenancy, args.into_options()?).await,
        Command::Users(command) => users(tenancy, command).await,
        Command::Members(command) => members(tenancy, command).await,
        Command::Serve => unreachable!("serve is handled before dispatch"),
    }
}

async fn serve(config: tenantdb::Config, settings: &Settings) -> anyhow::Result<()> {
    let (admin_token, token_file) = settings.admin_token()?;
    let connections = settings.connection_limits()?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("failed to listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    match token_file {
        Some(path) => eprintln!(
            "tenantdb listening on http://{address} (operator token in {})",
            path.display()
        ),
        None => eprintln!("tenantdb listening on http://{address} (operator token from TENANTDB_ADMIN_TOKEN)"),
    }
    let options = http::ServiceOptions {
        admin_token,
        base_domain: settings.base_domain.clone(),
        connections,
    };
    http::start(config, options, listener, shutdown_signal()).await
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

async fn users(tenancy: &Tenancy, command: UsersCommand) -> anyhow::Result<()> {
    let users = tenancy.catalog().users();
    match command {
        UsersCommand::Create { email, name } => {
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
            let user = users
                .create(&email, &name)
                .await
                .with_context(|| format!("failed to create user '{email}'"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"id": user.id, "email": user.email, "name": user.name})
                )?
            );
        }
        UsersCommand::Token { email, name } => {
            let user = users
                .find_by_email(&email)
                .await?
                .with_context(|| format!("no user with email '{email}'"))?;
            let (_, token) = tenancy
                .catalog()
                .tokens()
                .create(user.id, name.as_deref().unwrap_or("cli"))
                .await?;
            println!("{token}");
        }
    }
    Ok(())
}

async fn members(tenancy: &Tenancy, command: MembersCommand) -> anyhow::Result<()> {
    let catalog = tenancy.catalog();
    let (tenant, email) = match &command {
        MembersCommand::Add { tenant, email, .. } | MembersCommand::Remove { tenant, email } => (tenant, email),
    };
    let tenant = catalog.tenants().get(&parse_ref(tenant)?).await?;
    let user = catalog
        .users()
        .find_by_email(email)
        .await?
        .with_context(|| format!("no user with email '{email}'"))?;
    match command {
        MembersCommand::Add { role, .. } => {
            catalog.memberships().upsert(tenant.id, user.id, role).await?;
            println!("{} is {role:?} of {}", user.email, tenant.slug);
        }
        MembersCommand::Remove { .. } => {
            anyhow::ensure!(
                catalog.memberships().remove(tenant.id, user.id).await?,
                "{} is not a member of {}",
                user.email,
                tenant.slug
            );
            println!("{} is no longer a member of {}", user.email, tenant.slug);
        }
    }
    Ok(())
}

async fn tenants(tenancy: &Tenancy, command: TenantsCommand) -> anyhow::Result<()> {
    let provisioner = tenancy.provisioner();
    match command {
        TenantsCommand::Create {
            slug,
            name,
            database_name,
            json,
        } => {
            let row = provisioner
                .create_tenant(NewTenant {
                    slug: slug.clone(),
                    name,
                    database_name,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("failed to create tenant '{slug}'"))?;
            print_tenant(tenancy, &TenantRef::Id(row.tenant_id.into()), json).await
        }
        TenantsCommand::List {
            status,
            database_status,
            json,
        } => list(tenancy, status, database_status, json).await,
        TenantsCommand::Show { tenant, json } => print_tenant(tenancy, &parse_ref(&tenant)?, json).await,
        TenantsCommand::RenameDatabase { tenant, new_name, json } => {
            let tenant = parse_ref(&tenant)?;
            provisioner
                .rename_tenant_database(&tenant, &new_name)
                .await
                .with_context(|| format!("failed to rename the database of tenant '{tenant}'"))?;
            print_tenant(tenancy, &tenant, json).await
        }
        TenantsCommand::Delete { tenant, yes } => {
            if !yes {
                bail!("refusing to delete tenant '{tenant}' without --yes: its database and data are gone for good");
            }
            let tenant = parse_ref(&tenant)?;
            provisioner
                .delete_tenant(&tenant)
                .await
                .with_context(|| format!("failed to delete tenant '{tenant}'"))?;
            println!("deleted tenant {tenant}");
            Ok(())
        }
        TenantsCommand::Retry { tenant, json } => {
            let tenant = parse_ref(&tenant)?;
            provisioner
                .retry(&tenant)
                .await
                .with_context(|| format!("failed to retry tenant '{tenant}'"))?;
            print_tenant(tenancy, &tenant, json).await
        }
        TenantsCommand::Migrate { tenant, json } => {
            let tenant = parse_ref(&tenant)?;
            provisioner
                .migrate_tenant(&tenant)
                .await
                .with_context(|| format!("failed to migrate tenant '{tenant}'"))?;
            print_tenant(tenancy, &tenant, json).await
        }
        TenantsCommand::Check { tenant } => check(tenancy, &parse_ref(&tenant)?).await,
        TenantsCommand::Suspend { tenant } => set_status(tenancy, &tenant, TenantStatus::Suspended).await,
        TenantsCommand::Resume { tenant } => set_status(tenancy, &tenant, TenantStatus::Active).await,
    }
}

fn parse_ref(tenant: &str) -> anyhow::Result<TenantRef> {
    Ok(TenantRef::parse(tenant)?)
}

async fn set_status(tenancy: &Tenancy, tenant: &str, status: TenantStatus) -> anyhow::Result<()> {
    let tenant = parse_ref(tenant)?;
    let view = tenancy
        .set_tenant_status(&tenant, status)
        .await
        .with_context(|| format!("failed to change the status of tenant '{tenant}'"))?;
    println!("tenant {} is {}", view.slug, view.status.as_str());
    Ok(())
}

async fn print_tenant(tenancy: &Tenancy, tenant: &TenantRef, json: bool) -> anyhow::Result<()> {
    let view = tenancy.tenant(tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_table(&[view]);
    }
    Ok(())
}

async fn list(
    tenancy: &Tenancy,
    status: Option<TenantStatus>,
    database_status: Option<DbStatus>,
    json: bool,
) -> anyhow::Result<()> {
    const PAGE: u64 = 500;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = tenancy.list_tenants(status, after, PAGE).await?;
        after = page.last().map(|t| t.id);
        let done = (page.len() as u64) < PAGE;
        all.extend(
            page.into_iter()
                .filter(|t| database_status.is_none() || t.database.as_ref().map(|d| d.status) == database_status),
        );
        if done {
            break;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_table(&all);
    }
    Ok(())
}

fn print_table(tenants: &[TenantView]) {
    println!(
        "{:<24} {:<10} {:<32} {:<12} {:<34} ERROR",
        "SLUG", "TENANT", "DATABASE", "DB STATUS", "SCHEMA VERSION"
    );
    for t in tenants {
        let (name, status, version, error) = match &t.database {
            Some(d) => (
                d.database_name.as_str(),
                d.status.as_str(),
                d.schema_version.as_deref().unwrap_or("-"),
                d.error_message.as_deref().unwrap_or(""),
            ),
            None => ("-", "-", "-", ""),
        };
        println!(
            "{:<24} {:<10} {:<32} {:<12} {:<34} {}",
            t.slug,
            t.status.as_str(),
            name,
            status,
            version,
            error
        );
    }
}

async fn check(tenancy: &Tenancy, tenant: &TenantRef) -> anyhow::Result<()> {
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
    println!(
        "tenant {tenant} is reachable: connected in {:.1} ms, first query after {:.1} ms",
        connected.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn reconcile(tenancy: &Tenancy) -> anyhow::Result<()> {
    let report = tenancy.provisioner().reconcile().await?;
    if report.is_empty() {
        println!("nothing to reconcile");
        return Ok(());
    }
    let mut failed = 0;
    for entry in &report {
        let outcome = match &entry.outcome {
            ReconcileOutcome::Finished => "finished".to_owned(),
            ReconcileOutcome::Skipped => "skipped (taken by another process)".to_owned(),
            ReconcileOutcome::Failed(message) => {
                failed += 1;
                format!("failed: {message}")
            }
        };
        println!(
            "{} {} ({}): {outcome}",
            entry.tenant_id, entry.database_name, entry.status
        );
    }
    if failed > 0 {
        bail!("{failed} of {} abandoned rows could not be finished", report.len());
    }
    Ok(())
}
