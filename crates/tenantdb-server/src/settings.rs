//! Settings from the environment (and matching flags). Every variable, its
//! default and its meaning is listed in the README.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use secrecy::SecretString;
use tenantdb::config::{self, Config, TenantServerConfig};
use tenantdb::names::DatabasePrefix;
use tenantdb::secret::TenantSecret;

use crate::http;

#[derive(Args)]
pub struct Settings {
    /// Directory for the embedded default (SQLite catalog and tenant files).
    #[arg(long, env = "TENANTDB_DATA_DIR", default_value = config::DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Catalog database URL [default: sqlite://$TENANTDB_DATA_DIR/catalog.db].
    #[arg(
        long = "database-url",
        env = "TENANTDB_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub catalog_url: Option<String>,

    /// Where tenant databases are created: a postgres:// admin URL, or a
    /// directory for SQLite files [default: $TENANTDB_DATA_DIR/tenants].
    #[arg(long, env = "TENANTDB_TENANT_SERVER_URL", hide_env_values = true, global = true)]
    pub tenant_server_url: Option<String>,

    /// Prefix of tenant database names (at most 20 of a-z, 0-9, _).
    #[arg(long, env = "TENANTDB_DATABASE_PREFIX", default_value = "tenant_", global = true)]
    pub database_prefix: String,

    /// Secret that tenant role passwords derive from (required with
    /// PostgreSQL tenants; at least 32 characters; shared by all instances).
    #[arg(long, env = "TENANTDB_SECRET", hide_env_values = true, hide = true, global = true)]
    pub secret: Option<String>,

    /// Version of TENANTDB_SECRET; raise it when rotating the secret.
    #[arg(long, env = "TENANTDB_SECRET_VERSION", default_value_t = 1, global = true)]
    pub secret_version: i32,

    /// Seconds a lease on a tenant lasts without renewal; after it a dead
    /// process's work is picked up by `reconcile`.
    #[arg(long, env = "TENANTDB_LEASE_SECS", default_value_t = 30, global = true)]
    pub lease_secs: u64,

    /// Connections all tenant pools may hold at once on the tenant server.
    #[arg(long, env = "TENANTDB_POOL_BUDGET", default_value_t = config::DEFAULT_POOL_BUDGET, global = true)]
    pub pool_budget: u32,

    /// Largest pool of one tenant.
    #[arg(long, env = "TENANTDB_POOL_MAX_PER_TENANT", default_value_t = config::DEFAULT_POOL_MAX_PER_TENANT, global = true)]
    pub pool_max_per_tenant: u32,

    /// Seconds after which an unused tenant pool is closed.
    #[arg(long, env = "TENANTDB_POOL_IDLE_SECS", default_value_t = config::DEFAULT_POOL_IDLE.as_secs(), global = true)]
    pub pool_idle_secs: u64,

    /// Clone new tenant databases from a template at the latest tenant
    /// version (true) or replay every migration (false).
    #[arg(long, env = "TENANTDB_TEMPLATES", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub templates: bool,

    /// Address the service listens on.
    #[arg(long, env = "TENANTDB_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: String,

    /// The operator's bearer token [default: made once and kept in
    /// $TENANTDB_DATA_DIR/admin-token].
    #[arg(
        long,
        env = "TENANTDB_ADMIN_TOKEN",
        hide_env_values = true,
        hide = true,
        global = true
    )]
    pub admin_token: Option<String>,

    /// Also take the tenant from the first label of a Host under this
    /// domain (acme.example.test for example.test).
    #[arg(long, env = "TENANTDB_BASE_DOMAIN", global = true)]
    pub base_domain: Option<String>,

    /// Milliseconds a request waits for a connection before "busy".
    #[arg(long, env = "TENANTDB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000, global = true)]
    pub acquire_timeout_ms: u64,

    /// Client connections the service keeps open at once; further clients
    /// wait until one closes.
    #[arg(long, env = "TENANTDB_MAX_CONNECTIONS", default_value_t = http::DEFAULT_MAX_CONNECTIONS, global = true)]
    pub max_connections: usize,
}

impl Settings {
    /// The operator token: from the environment, else the one kept under
    /// the data directory (made on first start, readable by the owner only).
    pub fn admin_token(&self) -> anyhow::Result<(SecretString, Option<PathBuf>)> {
        if let Some(token) = &self.admin_token {
            anyhow::ensure!(token.len() >= 16, "TENANTDB_ADMIN_TOKEN must be at least 16 characters");
            return Ok((SecretString::from(token.clone()), None));
        }
        let path = self.data_dir.join("admin-token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            return Ok((SecretString::from(token.trim().to_owned()), Some(path)));
        }
        tenantdb::private_files::create_dir_all(&self.data_dir)
            .with_context(|| format!("failed to create {}", self.data_dir.display()))?;
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let token = format!("tdb_admin_{}", tenantdb::secret::hex(&bytes));
        write_private(&path, &token).with_context(|| format!("failed to write {}", path.display()))?;
        Ok((SecretString::from(token), Some(path)))
    }

    /// Limits on the service's client connections.
    pub fn connection_limits(&self) -> anyhow::Result<http::ConnectionLimits> {
        anyhow::ensure!(self.max_connections >= 1, "TENANTDB_MAX_CONNECTIONS must be at least 1");
        Ok(http::ConnectionLimits {
            max_connections: self.max_connections,
            ..http::ConnectionLimits::default()
        })
    }

    pub fn to_config(&self) -> anyhow::Result<Config> {
        let catalog_url = match &self.catalog_url {
            Some(url) => url.clone(),
            None => config::sqlite_url(&self.data_dir.join("catalog.db")),
        };
        let tenant_server = match &self.tenant_server_url {
            Some(url) => TenantServerConfig::parse(url)?,
            None => TenantServerConfig::Sqlite {
                dir: self.data_dir.join("tenants"),
            },
        };
        let mut config = Config::new(SecretString::from(catalog_url), tenant_server);
        config.database_prefix =
            DatabasePrefix::parse(&self.database_prefix).context("invalid TENANTDB_DATABASE_PREFIX")?;
        if let Some(secret) = &self.secret {
            config.secret = Some(TenantSecret::new(
                self.secret_version,
                SecretString::from(secret.clone()),
            )?);
        }
        config.lease_ttl = Duration::from_secs(self.lease_secs);
        config.use_templates = self.templates;
        config.pools.budget = self.pool_budget;
        config.pools.max_per_tenant = self.pool_max_per_tenant;
        config.pools.idle_timeout = Duration::from_secs(self.pool_idle_secs);
        config.pools.acquire_timeout = Duration::from_millis(self.acquire_timeout_ms);
        config.validate()?;
        Ok(config)
    }
}

/// Without URLs or the secret, which may hold passwords.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_prefix", &self.database_prefix)
            .field("secret_version", &self.secret_version)
            .field("lease_secs", &self.lease_secs)
            .field("pool_budget", &self.pool_budget)
            .field("pool_max_per_tenant", &self.pool_max_per_tenant)
            .field("listen", &self.listen)
            .field("max_connections", &self.max_connections)
            .field("base_domain", &self.base_domain)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        Flags::try_parse_from(std::iter::once("tenantdb").chain(args.iter().copied()))
            .unwrap()
            .settings
    }

    #[test]
    fn the_made_admin_token_and_its_directory_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let (_, path) = settings(&["--data-dir", data.to_str().unwrap()]).admin_token().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&data), mode(&path.unwrap())), (0o700, 0o600));
    }

    #[test]
    fn the_connection_limit_must_allow_a_connection() {
        assert_eq!(
            settings(&[]).connection_limits().unwrap().max_connections,
            http::DEFAULT_MAX_CONNECTIONS
        );
        let limits = settings(&["--max-connections", "2"]).connection_limits().unwrap();
        assert_eq!(limits.max_connections, 2);
        assert!(settings(&["--max-connections", "0"]).connection_limits().is_err());
    }
}
