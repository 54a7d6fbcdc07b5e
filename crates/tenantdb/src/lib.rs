//! tenantdb: the core of a database-per-tenant backend.
//!
//! A catalog (master) database knows every user, tenant, subscription and
//! tenant database; each tenant has its own database on a tenant server
//! (PostgreSQL, or SQLite files for the embedded default). [`Tenancy`] is
//! the entry point: built from a [`config::Config`] and the application's
//! [`TenantMigrations`], it connects everything and hands out the parts:
//!
//! - [`Provisioner`]: creates, retries, renames, deletes and migrates tenant
//!   databases along the status machine, crash-safe through leases
//!   ([`Tenancy::provisioner`]);
//! - [`Fleet`]: migrates every tenant that is behind, with runs recorded in
//!   the catalog ([`Tenancy::fleet`]);
//! - [`Doctor`]: finds drift between the catalog and the tenant server and
//!   repairs what is safe ([`Tenancy::doctor`]);
//! - [`Templates`]: the template new tenant databases are cloned from
//!   ([`Tenancy::templates`]);
//! - [`TenantConnections`]: the hot path, from a tenant id or slug to a
//!   connection to its database ([`Tenancy::connections`]);
//! - [`TenantScope`], [`TenantContext`] and [`TenantRepository`]: the tenant
//!   of the current task, and repositories that get their connection from it;
//! - [`TenantMigrations`]: the tenant schema, a SeaORM migrator supplied by
//!   the application;
//! - [`catalog`]: the master database ([`Catalog`]), its entities and
//!   repositories;
//! - [`config`]: the settings and their defaults.
//!
//! ```no_run
//! use sea_orm_migration::prelude::*;
//! use tenantdb::{Config, NewTenant, Tenancy, TenantMigrations};
//!
//! struct Migrator;
//! impl MigratorTrait for Migrator {
//!     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
//!         vec![] // the application's tenant migrations
//!     }
//! }
//!
//! # async fn example() -> tenantdb::Result<()> {
//! let tenancy = Tenancy::connect(Config::embedded("./data"), TenantMigrations::of::<Migrator>()).await?;
//! let db = tenancy
//!     .provisioner()
//!     .create_tenant(NewTenant { slug: "acme".into(), ..Default::default() })
//!     .await?;
//! println!("{} is {}", db.database_name, db.status);
//! tenancy.close().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod catalog;
pub mod config;
mod connections;
mod context;
mod digest;
mod doctor;
#[doc(hidden)]
pub mod engine;
mod error;
mod export;
#[doc(hidden)]
pub mod faults;
mod file_lock;
mod fleet;
mod instance;
mod migrate;
mod migration_set;
mod names;
mod pool_options;
mod pools;
mod private_files;
mod provisioner;
mod secret;
mod server;
mod sites;
mod status;
mod telemetry;
mod templates;
mod tenant;

/// Not part of the API: helpers the tests and the benchmarks reach for.
/// They may change in any release.
#[doc(hidden)]
pub mod internal {
    pub use crate::digest::{hex, sha256, sha256_hex};
    pub use crate::error::is_busy_db_err;
    pub use crate::faults::Step;
    pub use crate::migrate::MigrationList;
    pub use crate::names::{plain_text, quote_ident, quote_literal, template_stem};
    pub use crate::private_files::create_dir_all;
}

pub use catalog::{Catalog, DbStatus, MemberRole, MigrationRun, SubscriptionStatus, TenantStatus};
pub use config::{Config, PoolConfig, TenantServerConfig};
pub use connections::{ResolvedTenant, TenantConnections};
pub use context::{TenantContext, TenantRepository, TenantScope};
pub use doctor::{Doctor, DoctorOptions, Finding, Problem, Remedy, Repaired};
pub use error::{Error, Result};
pub use export::{EXPORT_MAGIC, ExportHeader, Exported, read_export};
pub use fleet::{Behind, Fleet, FleetEvent, FleetOptions, FleetReport};
pub use migrate::{MigrationList, TenantMigrations};
pub use names::{DatabaseName, DatabasePrefix, RoleName, TenantId, TenantRef, TenantSlug};
pub use pools::{PoolHandle, PoolStats, TenantPools};
pub use provisioner::{
    Candidate, FewestTenants, MoveTenant, NewTenant, Placement, Provisioner, Purged, ReconcileOutcome, Reconciled,
    WarmStock,
};
/// The SeaORM this crate is built with: use it for your tenant entities
/// and queries (`PoolHandle` is a SeaORM connection), so the versions
/// always agree.
pub use sea_orm;
/// The SeaORM migration crate this crate is built with: write your tenant
/// migrations with it (see [`TenantMigrations`]).
pub use sea_orm_migration;
pub use secret::TenantSecret;
pub use server::{AddReplica, AddServer, InstanceShare, ReplicaOf, Server};
pub use status::RunStatus;
pub use telemetry::describe_metrics;
pub use templates::{TemplateName, Templates};
pub use tenant::{Tenant, TenantDatabase, TenantMove, rfc3339};

use crate::catalog::NewServer;
use crate::engine::{Engine, PostgresEngine, SqliteEngine};
use crate::provisioner::ProvisionerSettings;

/// Everything tenantdb needs at run time, built from a [`Config`].
#[derive(Debug, Clone)]
pub struct Tenancy {
    catalog: Catalog,
    provisioner: Provisioner,
    connections: TenantConnections,
    sites: sites::Sites,
    shutdown_deadline: std::time::Duration,
}

impl Tenancy {
    /// Connects the catalog (migrating it), the tenant server, and records
    /// the server in the catalog.
    pub async fn connect(config: Config, migrations: TenantMigrations) -> Result<Self> {
        config.validate()?;
        server::check_server_name(&config.server_name)?;
        let catalog = Catalog::connect(&config.catalog_url, config.catalog_max_connections).await?;
        let engine = match &config.tenant_server {
            TenantServerConfig::Sqlite { dir } => Engine::Sqlite(SqliteEngine::open(dir)?),
            TenantServerConfig::Postgres { url } => {
                let secret = config
                    .secret
                    .clone()
                    .ok_or_else(|| Error::Config("TENANTDB_SECRET is required for PostgreSQL".into()))?;
                let pg = PostgresEngine::connect_admin(
                    url,
                    secret,
                    catalog.id(),
                    config.role_connection_limit,
                    config::DEFAULT_ADMIN_MAX_CONNECTIONS,
                    config.pg_bin.clone(),
                )
                .await?;
                Engine::Postgres(pg)
            }
        };
        let reserved = protect_catalog(&catalog, &engine).await?;
        // Before anything is recorded: a refused budget is never recorded.
        check_budget(&engine, &config).await?;
        let settings = match (&config.tenant_server, &config.secret, &engine) {
            (TenantServerConfig::Postgres { url }, Some(secret), Engine::Postgres(pg)) => {
                home_settings(&catalog, &config.server_name, url, secret, pg).await?
            }
            _ => engine.describe(),
        };
        let server = catalog
            .servers()
            .ensure(NewServer {
                name: &config.server_name,
                engine: engine.name(),
                settings,
                connection_budget: i32::try_from(config.pools.budget).unwrap_or(i32::MAX),
                follows: None,
            })
            .await?;
        if server.role != catalog::database_servers::PRIMARY {
            return Err(Error::Config(format!(
                "the catalog's server '{}' is a read replica: give TENANTDB_SERVER_NAME the name of a primary",
                server.name
            )));
        }
        if let Engine::Postgres(pg) = &engine
            && shares_log(&catalog, pg).await
        {
            catalog.set_shares_log_with(server.id);
        }
        let parts = sites::Parts::of(&config, &catalog, &migrations);
        let identity = catalog::InstanceIdentity::current();
        let home = sites::Site::new(&server, engine, config.pools.clone(), &parts, &identity);
        let sites = sites::Sites::new(parts, identity, home);
        let rows = catalog.servers().list().await?;
        for row in &rows {
            sites.remember(row);
        }
        sites.follow_replicas(&rows).await;
        let connections =
            TenantConnections::with_sites(catalog.clone(), sites.clone(), config.catalog_poll_interval).await?;
        let settings = ProvisionerSettings {
            prefix: config.database_prefix.clone(),
            reserved,
            secret_version: config.secret.as_ref().map_or(0, |s| s.version()),
            lease_ttl: config.lease_ttl,
            shutdown_deadline: config.shutdown_deadline,
            deleted_retention: config.deleted_retention,
            warm_databases: config.warm_databases,
        };
        let provisioner = Provisioner::new(catalog.clone(), sites.clone(), migrations, settings);
        Ok(Self {
            catalog,
            provisioner,
            connections,
            sites,
            shutdown_deadline: config.shutdown_deadline,
        })
    }

    /// The catalog (master database) and its repositories.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Creates, retries, renames, deletes and migrates tenant databases.
    pub fn provisioner(&self) -> &Provisioner {
        &self.provisioner
    }

    /// The tenant server's engine. Not part of the API: the `engine` module is
    /// hidden, for tests and benchmarks.
    #[doc(hidden)]
    pub fn engine(&self) -> &Engine {
        &self.sites.home().engine
    }

    /// Finds and repairs drift between the catalog and the server of the
    /// settings.
    pub fn doctor(&self) -> doctor::Doctor {
        doctor::Doctor::new(self.provisioner.clone(), self.sites.home().clone())
    }

    /// The doctor of the tenant server named `server` (connecting to it
    /// if this process has not yet).
    pub async fn doctor_on(&self, server: &str) -> Result<doctor::Doctor> {
        let row = self
            .catalog
            .servers()
            .named(server)
            .await?
            .ok_or_else(|| Error::ServerNotFound(server.to_owned()))?;
        if row.role != catalog::database_servers::PRIMARY {
            return Err(Error::invalid(
                "server",
                server,
                "a read replica holds what its primary holds: examine the primary",
            ));
        }
        let site = self.sites.open(&row).await?;
        Ok(doctor::Doctor::new(self.provisioner.clone(), site))
    }

    /// Chooses the server of each new tenant from now on (the default is
    /// [`FewestTenants`]: the ACCEPTING server with the fewest tenants).
    pub fn set_placement(&self, placement: std::sync::Arc<dyn Placement>) {
        self.provisioner.set_placement(placement);
    }

    /// Fleet migrations and their runs.
    pub fn fleet(&self) -> fleet::Fleet {
        fleet::Fleet::new(self.provisioner.clone())
    }

    /// This deployment's templates.
    pub fn templates(&self) -> &templates::Templates {
        self.provisioner.templates()
    }

    /// Resolution and connections: the hot path of every request.
    pub fn connections(&self) -> &TenantConnections {
        &self.connections
    }

    /// This process's tenant pools (one per tenant database, under the
    /// budget).
    pub fn pools(&self) -> &TenantPools {
        self.connections.pools()
    }

    /// Brings the pool gauges of every tenant server this process uses up
    /// to date (`tenantdb_pool_*{server}`): call before rendering metrics.
    pub fn refresh_metrics(&self) {
        for site in self.sites.all_opened() {
            site.pools.refresh_metrics();
        }
        for replica in self.sites.replicas() {
            if let Some(site) = replica.site() {
                site.pools.refresh_metrics();
            }
        }
    }

    /// This process's instance id: its row in the catalog's `instances`,
    /// where its share of the server's budget is recorded.
    pub fn instance_id(&self) -> uuid::Uuid {
        self.sites.identity().id
    }

    /// Name of the server of the settings in the catalog.
    pub fn server_name(&self) -> &str {
        &self.sites.home().name
    }

    /// The tenant servers in the catalog, by id, each with its budget,
    /// tenant count and the instances sharing its budget.
    pub async fn servers(&self) -> Result<Vec<Server>> {
        let mut servers = Vec::new();
        for row in self.catalog.servers().list().await? {
            servers.push(self.server_view(&row).await?);
        }
        Ok(servers)
    }

    /// The tenant server named `name`, if the catalog has one.
    pub async fn server(&self, name: &str) -> Result<Option<Server>> {
        match self.catalog.servers().named(name).await? {
            Some(row) => Ok(Some(self.server_view(&row).await?)),
            None => Ok(None),
        }
    }

    /// Lets the server named `name` take new tenants (`true`: ACCEPTING)
    /// or not (`false`: DRAINING; creates are refused with
    /// `Error::ServerDraining`, its tenants keep being served and
    /// migrated). `None` if there is no such server.
    pub async fn set_server_accepting(&self, name: &str, accepting: bool) -> Result<Option<Server>> {
        let Some(row) = self.catalog.servers().named(name).await? else {
            return Ok(None);
        };
        if row.role != catalog::database_servers::PRIMARY {
            return Err(Error::invalid("server", name, "a read replica takes no tenants"));
        }
        self.catalog.servers().set_accepting(row.id, accepting).await?;
        tracing::info!(server = name, accepting, "server accepts new tenants: {accepting}");
        self.server(name).await
    }

    /// Adds a PostgreSQL tenant server: checks that it answers and has
    /// room for the budget, then records it ACCEPTING, its admin password
    /// sealed (see [`AddServer`]). Every instance can reach it from then on.
    pub async fn add_server(&self, new: AddServer) -> Result<Server> {
        self.record_server(new, None).await
    }

    /// Adds a read replica of a tenant server (see [`AddReplica`]): checks
    /// that it answers, is a standby of that server's cluster and has room
    /// for its budget, then records it. Every instance then sends reads
    /// (`TenantConnections::read_connection`, the read side of `TenantDb`)
    /// to it while it is within its lag bound.
    pub async fn add_replica(&self, new: AddReplica) -> Result<Server> {
        let primary = self
            .catalog
            .servers()
            .named(&new.primary)
            .await?
            .ok_or_else(|| Error::ServerNotFound(new.primary.clone()))?;
        if primary.role != catalog::database_servers::PRIMARY || primary.engine != "postgres" {
            return Err(Error::invalid(
                "server",
                &new.primary,
                "replicas follow a PostgreSQL server that holds tenants (not a replica, not SQLite)",
            ));
        }
        let max_lag_ms = new.max_lag_ms.unwrap_or(sites::DEFAULT_MAX_LAG_MS);
        if max_lag_ms < sites::MIN_MAX_LAG_MS {
            return Err(Error::invalid(
                "max_lag_ms",
                &max_lag_ms.to_string(),
                &format!("must be at least {}", sites::MIN_MAX_LAG_MS),
            ));
        }
        let server = AddServer {
            name: new.name.unwrap_or_else(|| format!("{}-replica", primary.name)),
            admin_url: new.admin_url,
            budget: new.budget,
            max_per_tenant: new.max_per_tenant,
        };
        self.record_server(server, Some((&primary, max_lag_ms))).await
    }

    /// `add_server` and `add_replica`: `follows` is the primary and lag
    /// bound of a replica.
    async fn record_server(
        &self,
        new: AddServer,
        follows: Option<(&catalog::database_servers::Model, u32)>,
    ) -> Result<Server> {
        server::check_server_name(&new.name)?;
        if new.budget < 1 || new.max_per_tenant == Some(0) {
            return Err(Error::invalid(
                "budget",
                &new.budget.to_string(),
                "budget and pool size must be at least 1",
            ));
        }
        let parts = self.sites.parts();
        let secret = parts.secret.as_ref().ok_or_else(|| {
            Error::Config(
                "TENANTDB_SECRET is required to add a PostgreSQL server (its password is sealed with it)".into(),
            )
        })?;
        if self.catalog.servers().named(&new.name).await?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "a server named '{}' already exists",
                new.name
            )));
        }
        let mut settings =
            sites::ServerSettings::postgres(self.catalog.id(), &new.name, &new.admin_url, secret, new.max_per_tenant)?;
        settings.max_lag_ms = follows.map(|(_, lag)| lag);
        let invalid_url = |why: String| Error::invalid("admin URL", "[redacted]", &why);
        let pg = match parts.connect(&new.name, &settings).await {
            Ok(pg) => pg,
            Err(err) if err.is_unreachable() => return Err(err),
            // Refused logins, missing databases, bad URLs: the request's fault.
            Err(err) => return Err(invalid_url(format!("it does not work: {}", err.chain()))),
        };
        settings.cluster = pg.system_identifier().await;
        let standby = pg.replay_state().await.map(|r| r.in_recovery);
        let engine = Engine::Postgres(pg);
        let room = engine.connection_room(config::DEFAULT_ADMIN_MAX_CONNECTIONS + 2).await;
        engine.close().await;
        let rows = self.catalog.servers().list().await?;
        match (follows, standby?) {
            (None, true) => {
                return Err(invalid_url(
                    "it reaches a standby (read only): add it as a replica of its primary (`servers add-replica`)"
                        .into(),
                ));
            }
            (Some(_), false) => {
                return Err(invalid_url(
                    "it reaches a primary, not a standby: a replica is a streaming standby of its server".into(),
                ));
            }
            (Some((primary, _)), true) => {
                let recorded = sites::ServerSettings::of(primary).cluster;
                if settings.cluster.is_none() || recorded != settings.cluster {
                    return Err(invalid_url(format!(
                        "it is not a standby of server '{}' (another cluster)",
                        primary.name
                    )));
                }
                let address = server::address(&settings.to_json());
                if let Some(same) = rows.iter().find(|r| server::address(&r.settings) == address) {
                    return Err(Error::AlreadyExists(format!(
                        "that address is in the catalog already, as server '{}'",
                        same.name
                    )));
                }
            }
            (None, false) => {
                if let Some(cluster) = &settings.cluster
                    && let Some(same) = rows
                        .iter()
                        .find(|r| sites::ServerSettings::of(r).cluster.as_ref() == Some(cluster))
                {
                    return Err(Error::AlreadyExists(format!(
                        "that PostgreSQL cluster is in the catalog already, as server '{}'",
                        same.name
                    )));
                }
            }
        }
        if let Some(room) = room?
            && new.budget > room
        {
            return Err(Error::invalid(
                "budget",
                &new.budget.to_string(),
                &format!(
                    "the server has room for {room} tenant connections (max_connections less reserved slots and tenantdb's own)"
                ),
            ));
        }
        let row = self
            .catalog
            .servers()
            .add(NewServer {
                name: &new.name,
                engine: "postgres",
                settings: settings.to_json(),
                connection_budget: i32::try_from(new.budget).unwrap_or(i32::MAX),
                follows: follows.map(|(primary, _)| primary.id),
            })
            .await?;
        self.sites.remember(&row);
        if let Some((primary, _)) = follows {
            // Every instance follows it once it sees the catalog change.
            self.catalog.changes().bump(self.catalog.db()).await?;
            self.sites.refresh_replicas().await?;
            tracing::info!(replica = %row.name, primary = %primary.name, budget = new.budget, "added a read replica");
        } else {
            tracing::info!(server = %row.name, budget = new.budget, "added a tenant server");
        }
        self.server_view(&row).await
    }

    /// Removes a tenant server from the catalog. Refused
    /// (`Error::ServerInUse`) while it holds tenant databases, while it
    /// holds this deployment's templates (unless `drop_templates`: they are
    /// dropped once the row is gone), and for the server of the settings.
    /// `None` if there is no such server. Nothing on the server is touched
    /// but templates; a server that cannot be reached can be removed when
    /// `drop_templates` is not asked. The other processes close what they
    /// had open on it when they see the catalog change.
    pub async fn remove_server(&self, name: &str, drop_templates: bool) -> Result<Option<Server>> {
        let Some(row) = self.catalog.servers().named(name).await? else {
            return Ok(None);
        };
        let in_use = |reason: String| Error::ServerInUse {
            server: name.to_owned(),
            reason,
        };
        if row.id == self.sites.home().id {
            return Err(in_use("it is the tenant server of this instance's settings".into()));
        }
        let rows = self.catalog.servers().list().await?;
        if row.role == catalog::database_servers::REPLICA {
            // Reads stop going to it in every process as it sees the
            // catalog change; nothing on it is touched.
            let view = self.server_view(&row).await?;
            self.catalog.servers().remove(row.id).await?;
            self.catalog.changes().bump(self.catalog.db()).await?;
            self.sites.refresh_replicas().await?;
            tracing::info!(replica = name, "removed a read replica");
            return Ok(Some(view));
        }
        let replicas: Vec<&str> = rows
            .iter()
            .filter(|r| r.primary_id == Some(row.id))
            .map(|r| r.name.as_str())
            .collect();
        if !replicas.is_empty() {
            return Err(in_use(format!(
                "it has read replicas ({}): remove them first",
                replicas.join(", ")
            )));
        }
        let tenants = self.catalog.tenant_databases().count_on(row.id).await?;
        if tenants > 0 {
            return Err(in_use(format!("it holds {tenants} tenant databases")));
        }
        // A move to it (or from it, still cleaning) needs it to finish or
        // roll back.
        if let Some(tenant) = self.provisioner.moving_through(row.id).await? {
            return Err(in_use(format!(
                "tenant {tenant} is moving to or from it; wait for the move to end"
            )));
        }
        let view = self.server_view(&row).await?;
        // Its templates, when it can be reached: refused while it has some,
        // unless asked to drop them.
        let site = match self.sites.open(&row).await {
            Ok(site) => Some(site),
            Err(err) if !drop_templates => {
                tracing::warn!(server = name, error = %err.chain(), "removing a server that cannot be reached");
                None
            }
            Err(err) => return Err(err),
        };
        let mut templates = Vec::new();
        let mut warm = Vec::new();
        if let Some(site) = &site {
            let stem = site.templates.stem();
            let inventory = site.engine.inventory(self.provisioner.prefix(), &stem).await?;
            templates = inventory.templates;
            // Its warm databases serve nobody: they go with it.
            warm = inventory.warm;
            if !templates.is_empty() && !drop_templates {
                let names: Vec<_> = templates.iter().map(|t| t.name.as_str()).collect();
                return Err(in_use(format!(
                    "it holds templates of this deployment ({}); remove it with drop_templates \
                     (--drop-templates) to drop them first",
                    names.join(", ")
                )));
            }
        }
        // Held until its templates are dropped: this process's poller, seeing
        // the row gone, closes the site only then.
        let holding = self.sites.hold(row.id).await;
        // The catalog's foreign key refuses while a tenant database row
        // names it (one placed there since the count above).
        if !self.catalog.servers().remove(row.id).await? {
            return Err(in_use("a tenant database was placed on it meanwhile".into()));
        }
        for template in &templates {
            let dropped = match &site {
                Some(site) => site.engine.drop_template(&template.name).await,
                None => Ok(()),
            };
            match dropped {
                Ok(()) => {
                    tracing::info!(server = name, template = %template.name, "dropped a template of a removed server")
                }
                Err(err) => {
                    tracing::warn!(server = name, template = %template.name, error = %err.chain(), "cannot drop a template of a removed server; drop it yourself")
                }
            }
        }
        if let Some(site) = &site {
            for database in &warm {
                if let Err(err) = site.engine.drop_warm(&database.name).await {
                    tracing::warn!(server = name, warm = %database.name, error = %err.chain(), "cannot drop a warm database of a removed server; drop it yourself");
                }
            }
        }
        drop(holding);
        self.catalog.changes().bump(self.catalog.db()).await?;
        self.sites.forget(row.id).await;
        tracing::info!(server = name, "removed a tenant server");
        Ok(Some(view))
    }

    async fn server_view(&self, row: &catalog::database_servers::Model) -> Result<Server> {
        let tenants = self.catalog.tenant_databases().count_on(row.id).await?;
        let instances = self.catalog.instances().live(row.id).await?;
        let mut server = Server::new(row, tenants, &instances);
        if row.role == catalog::database_servers::REPLICA {
            let follows = match row.primary_id {
                Some(primary) => self.sites.name(primary).await,
                None => String::new(),
            };
            let settings = sites::ServerSettings::of(row);
            let health = self.sites.replica(row.id).map(|r| r.health());
            server.replica = Some(server::ReplicaOf {
                follows,
                max_lag_ms: settings.max_lag_ms.unwrap_or(sites::DEFAULT_MAX_LAG_MS),
                usable: health.is_some_and(|h| h.usable),
                lag_ms: health.and_then(|h| h.lag_ms),
            });
        }
        Ok(server)
    }

    /// Exports the tenant's database to the file `output` (replaced if it
    /// exists): a header saying what it is, then a `pg_dump` custom-format
    /// archive made as the tenant's own role (PostgreSQL) or a copy of the
    /// database file (SQLite); a consistent snapshot taken while it is
    /// served. See [`read_export`].
    pub async fn export_tenant(&self, tenant: &TenantRef, output: &std::path::Path) -> Result<Exported> {
        export::export(&self.catalog, &self.sites, tenant, output).await
    }

    /// A tenant by id or slug, with its database.
    pub async fn tenant(&self, tenant: &TenantRef) -> Result<Tenant> {
        let tenant = self.catalog.tenants().get(tenant).await?;
        let database = self.catalog.tenant_databases().find_by_tenant(tenant.id).await?;
        let server = match &database {
            Some(row) => self.sites.name(row.server_id).await,
            None => String::new(),
        };
        Ok(Tenant::new(&tenant, database.as_ref(), &server))
    }

    /// Tenants in creation order with their databases: at most `limit`
    /// after the tenant id `after`, optionally only those with `status`.
    pub async fn list_tenants(
        &self,
        status: Option<TenantStatus>,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<Tenant>> {
        let tenants = self.catalog.tenants().list(status, after, limit).await?;
        let ids: Vec<_> = tenants.iter().map(|t| t.id).collect();
        let rows = self.catalog.tenant_databases().for_tenants(&ids).await?;
        let mut listed = Vec::with_capacity(tenants.len());
        for t in &tenants {
            let row = rows.iter().find(|r| r.tenant_id == t.id);
            let server = match row {
                Some(row) => self.sites.name(row.server_id).await,
                None => String::new(),
            };
            listed.push(Tenant::new(t, row, &server));
        }
        Ok(listed)
    }

    /// Suspends or resumes a tenant (its database keeps being migrated).
    pub async fn set_tenant_status(&self, tenant: &TenantRef, status: TenantStatus) -> Result<Tenant> {
        let found = self.catalog.tenants().get(tenant).await?;
        self.catalog.tenants().set_status(found.id, status).await?;
        self.tenant(&TenantRef::Id(found.id.into())).await
    }

    /// Waits for provisioning work under way, then closes every pool.
    pub async fn close(&self) {
        self.provisioner.shutdown().await;
        self.connections.stop();
        // Pools, then memberships, then admin connections, server by server.
        self.sites.close().await;
        // Work abandoned at the shutdown deadline may still hold a catalog
        // connection (its lease renewals): do not wait for it forever.
        if tokio::time::timeout(self.shutdown_deadline, self.catalog.close())
            .await
            .is_err()
        {
            tracing::warn!("catalog connections still busy at shutdown; leaving them");
        }
    }
}

/// Refuses a pool budget the tenant server cannot hold: PostgreSQL's
/// `max_connections`, less reserved slots and tenantdb's own other
/// connections (catalog and admin pools, one migration connection per
/// operation under way, counted as two).
async fn check_budget(engine: &Engine, config: &Config) -> Result<()> {
    let others = config.catalog_max_connections + config::DEFAULT_ADMIN_MAX_CONNECTIONS + 2;
    if let Some(room) = engine.connection_room(others).await?
        && config.pools.budget > room
    {
        return Err(Error::Config(format!(
            "pool budget {} does not fit the tenant server: it has room for {room} tenant connections \
             (max_connections less reserved slots and tenantdb's own {others}); lower TENANTDB_POOL_BUDGET",
            config.pools.budget
        )));
    }
    Ok(())
}

/// What the catalog records about the server of the settings: its URL
/// without password, the password sealed, its cluster. Refused when the
/// catalog knows this server's name for another cluster, or this cluster
/// under another name (each would make two budgets, templates and doctors
/// for one server, or send tenants to the wrong one).
async fn home_settings(
    catalog: &Catalog,
    name: &str,
    url: &secrecy::SecretString,
    secret: &TenantSecret,
    pg: &PostgresEngine,
) -> Result<serde_json::Value> {
    let cluster = pg.system_identifier().await;
    if let Some(cluster) = &cluster {
        // A replica shares its primary's cluster identifier.
        let rows = catalog.servers().list().await?;
        for row in rows.iter().filter(|r| r.role == catalog::database_servers::PRIMARY) {
            let recorded = sites::ServerSettings::of(row).cluster;
            let same_cluster = recorded.as_ref() == Some(cluster);
            if row.name == name && recorded.is_some() && !same_cluster {
                return Err(Error::Config(format!(
                    "the catalog's server '{name}' is another PostgreSQL cluster than TENANTDB_TENANT_SERVER_URL \
                     reaches (system identifier {cluster}, recorded {}): give this one another name \
                     (TENANTDB_SERVER_NAME)",
                    recorded.unwrap_or_default()
                )));
            }
            if row.name != name && same_cluster {
                return Err(Error::Config(format!(
                    "TENANTDB_TENANT_SERVER_URL reaches the cluster the catalog knows as server '{}': \
                     set TENANTDB_SERVER_NAME={}",
                    row.name, row.name
                )));
            }
        }
    }
    let settings = match sites::ServerSettings::postgres(catalog.id(), name, url, secret, None) {
        Ok(settings) => settings,
        // A URL this instance can use but others cannot be given (a Unix
        // socket directory): recorded without one, as before.
        Err(err) => {
            tracing::warn!(server = name, error = %err, "the tenant server's URL cannot be recorded for other instances");
            return Ok(pg.describe());
        }
    };
    Ok(sites::ServerSettings { cluster, ..settings }.to_json())
}

/// Whether the catalog is on the tenant server itself: the same cluster
/// system identifier, i.e. one write-ahead log (see `ChangeStamp::shares_log`).
async fn shares_log(catalog: &Catalog, pg: &PostgresEngine) -> bool {
    if catalog.db().get_database_backend() != sea_orm::DbBackend::Postgres {
        return false;
    }
    let system_identifier = async |pool: &sqlx::PgPool| -> Option<i64> {
        sqlx::query_scalar("SELECT system_identifier FROM pg_control_system()")
            .fetch_one(pool)
            .await
            .ok()
    };
    let catalog_log = system_identifier(catalog.db().get_postgres_connection_pool()).await;
    catalog_log.is_some() && catalog_log == system_identifier(pg.admin_pool()).await
}

/// Keeps tenant roles out of the catalog when it lives on the tenant server:
/// revokes `CONNECT` on the catalog's database from `PUBLIC` (granting it to
/// the catalog's own user), and reserves its name. Returns the names no
/// tenant database may take.
async fn protect_catalog(catalog: &Catalog, engine: &Engine) -> Result<Vec<String>> {
    let Engine::Postgres(_) = engine else {
        return Ok(Vec::new());
    };
    let Some(name) = catalog.postgres_database_name().await? else {
        return Ok(Vec::new());
    };
    if name == "postgres" {
        tracing::warn!(
            "the catalog lives in the 'postgres' database, which every role may connect to; \
             give the catalog a database of its own so tenant roles cannot reach it"
        );
    } else {
        // Services that start together would otherwise update the
        // database's row at once, and PostgreSQL fails the second with
        // "tuple concurrently updated": one at a time (a transaction lock,
        // released at commit), and nothing written once it is done.
        let sql = "DO $$ BEGIN \
                   PERFORM pg_advisory_xact_lock(hashtextextended('tenantdb protect catalog', 0)); \
                   IF has_database_privilege('public', current_database(), 'CONNECT') THEN \
                   EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), current_user); \
                   EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database()); \
                   END IF; \
                   END $$";
        sqlx::raw_sql(sql)
            .execute(catalog.db().get_postgres_connection_pool())
            .await
            .map_err(Error::server(
                "cannot revoke CONNECT on the catalog database from PUBLIC",
            ))?;
    }
    Ok(vec![name])
}

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
