//! Settings of a `Tenancy` and their defaults. The library never reads the
//! environment: the binary maps `TENANTDB_*` variables onto this struct.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::names::DatabasePrefix;
use crate::secret::TenantSecret;

/// The default data directory of the embedded setup; the CLI's default for
/// `TENANTDB_DATA_DIR`.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Name of the tenant server in the catalog unless configured.
pub const DEFAULT_SERVER_NAME: &str = "default";
/// How long a lease on a tenant row lasts without renewal. Work renews it
/// every third of this; a crashed process's rows are free again after it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// Default lease of an instance (a process sharing the servers' budgets):
/// a dead instance's share returns to the others within about this long.
pub const DEFAULT_INSTANCE_LEASE: Duration = Duration::from_secs(10);
/// `CONNECTION LIMIT` of every tenant role.
pub const DEFAULT_ROLE_CONNECTION_LIMIT: i32 = 20;
/// Connections of the catalog pool.
pub const DEFAULT_CATALOG_MAX_CONNECTIONS: u32 = 5;
/// Connections of the admin pool on the tenant server (DDL only).
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 2;

/// Connections all tenant pools of one server may hold at once.
pub const DEFAULT_POOL_BUDGET: u32 = 40;
/// Largest pool of one tenant.
pub const DEFAULT_POOL_MAX_PER_TENANT: u32 = 4;
/// A pool nobody used for this long is closed (and its idle connections).
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(300);
/// How long a caller waits for a connection before getting "busy".
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection idle for longer than this is pinged before reuse; fresher
/// ones are not (a ping on every acquire doubles the cost of a short query).
pub const DEFAULT_VALIDATE_AFTER_IDLE: Duration = Duration::from_secs(5);
/// How often each process polls the catalog generation, so that changes
/// made by other processes reach it within about this long.
pub const DEFAULT_CATALOG_POLL: Duration = Duration::from_millis(500);

/// Settings of the tenant pools.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Per server: the open connections of all tenant pools never exceed it.
    pub budget: u32,
    /// Largest pool of one tenant (connections); at most the role's
    /// connection limit.
    pub max_per_tenant: u32,
    /// A tenant pool nobody used for this long is closed; so is a connection
    /// idle for this long.
    pub idle_timeout: Duration,
    /// How long a caller waits for a connection before getting `Error::Busy`.
    pub acquire_timeout: Duration,
    /// A connection idle for longer than this is pinged before reuse.
    pub validate_after_idle: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            budget: DEFAULT_POOL_BUDGET,
            max_per_tenant: DEFAULT_POOL_MAX_PER_TENANT,
            idle_timeout: DEFAULT_POOL_IDLE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            validate_after_idle: DEFAULT_VALIDATE_AFTER_IDLE,
        }
    }
}

/// Where tenant databases live.
#[derive(Clone)]
#[non_exhaustive]
pub enum TenantServerConfig {
    /// One SQLite file per tenant in this directory.
    Sqlite {
        /// The directory of the tenant files (created if missing).
        dir: PathBuf,
    },
    /// A PostgreSQL server, reached with an admin connection (a role with
    /// CREATEDB and CREATEROLE, or a superuser).
    Postgres {
        /// The admin connection's URL (`postgres://...`); kept secret, never
        /// logged.
        url: SecretString,
    },
}

impl TenantServerConfig {
    /// `postgres://...` or `postgresql://...` selects PostgreSQL; a
    /// `sqlite://DIR` URL or a plain path selects SQLite files in that
    /// directory.
    pub fn parse(value: &str) -> Result<Self> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres {
                url: SecretString::from(value.to_owned()),
            });
        }
        if value.contains("://") && !value.starts_with("sqlite://") {
            return Err(Error::Config(
                "tenant server URL must start with postgres://, postgresql:// or sqlite:// (or be a directory)".into(),
            ));
        }
        let dir = value.trim_start_matches("sqlite://");
        if dir.is_empty() {
            return Err(Error::Config("tenant server directory is empty".into()));
        }
        Ok(Self::Sqlite {
            dir: PathBuf::from(dir),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn engine_name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

impl fmt::Debug for TenantServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { dir } => f.debug_struct("Sqlite").field("dir", dir).finish(),
            Self::Postgres { .. } => f.debug_struct("Postgres").field("url", &"[redacted]").finish(),
        }
    }
}

/// How long closing waits for provisioning work under way.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long a deleted tenant's database is kept for `restore` (7 days).
pub const DEFAULT_DELETED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Warm databases each server keeps ready for new tenants.
pub const DEFAULT_WARM_DATABASES: usize = 3;

/// Everything a [`crate::Tenancy`] needs.
#[derive(Clone)]
pub struct Config {
    /// The catalog (master) database: `sqlite://...` or `postgres://...`.
    pub catalog_url: SecretString,
    /// Where tenant databases live.
    pub tenant_server: TenantServerConfig,
    /// Name of the tenant server in the catalog's `database_servers`.
    pub server_name: String,
    /// The prefix of every tenant database name (default `tenant_`).
    pub database_prefix: DatabasePrefix,
    /// Required when the tenant server is PostgreSQL.
    pub secret: Option<TenantSecret>,
    /// The secret before the last rotation, if any: only to open the admin
    /// passwords of tenant servers sealed under it, until `doctor --fix`
    /// seals them again under `secret`.
    pub previous_secret: Option<TenantSecret>,
    /// How long a lease on a tenant row lasts without renewal (at least
    /// 300 ms); work renews it every third of this.
    pub lease_ttl: Duration,
    /// How long this process's instance lease lasts without a heartbeat
    /// (beats every fifth of it; at least the acquire timeout plus a
    /// second): the budget of a server is shared among the instances with
    /// a live lease.
    pub instance_lease: Duration,
    /// `CONNECTION LIMIT` of every tenant role (PostgreSQL); at least
    /// `pools.max_per_tenant`.
    pub role_connection_limit: i32,
    /// Connections of the catalog pool (raised to 2 when lower).
    pub catalog_max_connections: u32,
    /// Settings of the tenant pools.
    pub pools: PoolConfig,
    /// How often this process polls the catalog generation, so that changes
    /// made by other processes reach it within about this long.
    pub catalog_poll_interval: Duration,
    /// Clone new tenant databases from a template at the latest tenant
    /// version instead of replaying every migration (default on).
    pub use_templates: bool,
    /// How long closing waits for provisioning work under way (DDL stuck
    /// behind a lock); what is left keeps its lease and is finished later.
    pub shutdown_deadline: Duration,
    /// The directory of `pg_dump` and `pg_restore`, which moving and
    /// exporting tenants run (`None`: found on the `PATH`).
    pub pg_bin: Option<std::path::PathBuf>,
    /// How long `delete_tenant` keeps a tenant's database (renamed into
    /// the trash, its role locked out) so that `restore_tenant` can bring
    /// it back; the sweep purges it after that. Zero deletes at once.
    pub deleted_retention: Duration,
    /// Databases each server keeps cloned from the current template ahead
    /// of need, so that a new tenant claims one (a rename) instead of
    /// waiting for a copy; refilled in the background
    /// (`Provisioner::spawn_warm_stock`). Zero turns it off. Needs
    /// templates.
    pub warm_databases: usize,
}

impl Config {
    /// The embedded default: a SQLite catalog and SQLite tenant files under
    /// `data_dir`. Needs no server and no secret.
    pub fn embedded(data_dir: impl AsRef<Path>) -> Self {
        let data_dir = data_dir.as_ref();
        Self::new(
            SecretString::from(sqlite_url(&data_dir.join("catalog.db"))),
            TenantServerConfig::Sqlite {
                dir: data_dir.join("tenants"),
            },
        )
    }

    /// Settings with every default, for this catalog and tenant server.
    pub fn new(catalog_url: SecretString, tenant_server: TenantServerConfig) -> Self {
        Self {
            catalog_url,
            tenant_server,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            database_prefix: DatabasePrefix::default(),
            secret: None,
            previous_secret: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            instance_lease: DEFAULT_INSTANCE_LEASE,
            role_connection_limit: DEFAULT_ROLE_CONNECTION_LIMIT,
            catalog_max_connections: DEFAULT_CATALOG_MAX_CONNECTIONS,
            pools: PoolConfig::default(),
            catalog_poll_interval: DEFAULT_CATALOG_POLL,
            use_templates: true,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            pg_bin: None,
            deleted_retention: DEFAULT_DELETED_RETENTION,
            warm_databases: DEFAULT_WARM_DATABASES,
        }
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<()> {
        let url = self.catalog_url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Config(
                "catalog URL must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if matches!(self.tenant_server, TenantServerConfig::Postgres { .. }) && self.secret.is_none() {
            return Err(Error::Config(
                "TENANTDB_SECRET is required when tenant databases live on PostgreSQL: every instance must share it, \
                 tenant role passwords derive from it"
                    .into(),
            ));
        }
        if self.lease_ttl < Duration::from_millis(300) {
            return Err(Error::Config("lease TTL must be at least 300 ms".into()));
        }
        if self.instance_lease < self.pools.acquire_timeout + Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "the instance lease ({} ms, TENANTDB_INSTANCE_LEASE_SECS) must be at least the acquire timeout \
                 ({} ms, TENANTDB_ACQUIRE_TIMEOUT_MS) plus a second",
                self.instance_lease.as_millis(),
                self.pools.acquire_timeout.as_millis()
            )));
        }
        if self.pools.budget < 1 || self.pools.max_per_tenant < 1 {
            return Err(Error::Config("pool budget and pool size must be at least 1".into()));
        }
        if self.pools.max_per_tenant as i32 > self.role_connection_limit {
            return Err(Error::Config(format!(
                "pool size per tenant ({}) exceeds the tenant role's connection limit ({})",
                self.pools.max_per_tenant, self.role_connection_limit
            )));
        }
        if self.role_connection_limit < 1 {
            return Err(Error::Config("role connection limit must be at least 1".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("catalog_url", &"[redacted]")
            .field("tenant_server", &self.tenant_server)
            .field("server_name", &self.server_name)
            .field("database_prefix", &self.database_prefix)
            .field("secret", &self.secret)
            .field("previous_secret", &self.previous_secret)
            .field("lease_ttl", &self.lease_ttl)
            .field("instance_lease", &self.instance_lease)
            .field("role_connection_limit", &self.role_connection_limit)
            .field("pools", &self.pools)
            .finish()
    }
}

/// A `sqlite://` URL for a file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_server_is_chosen_by_url() {
        assert!(matches!(
            TenantServerConfig::parse("postgres://u@h/db").unwrap(),
            TenantServerConfig::Postgres { .. }
        ));
        match TenantServerConfig::parse("sqlite://./data/tenants").unwrap() {
            TenantServerConfig::Sqlite { dir } => assert_eq!(dir, PathBuf::from("./data/tenants")),
            other => panic!("{other:?}"),
        }
        assert!(TenantServerConfig::parse("mysql://h/db").is_err());
    }

    #[test]
    fn postgres_tenants_need_a_secret() {
        let config = Config::new(
            SecretString::from("sqlite::memory:".to_owned()),
            TenantServerConfig::parse("postgres://u:pw@h/db").unwrap(),
        );
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("TENANTDB_SECRET"), "{err}");
    }

    #[test]
    fn debug_output_hides_urls() {
        let config = Config::new(
            SecretString::from("postgres://u:hunter2@h/db".to_owned()),
            TenantServerConfig::parse("postgres://u:hunter2@h/db").unwrap(),
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
