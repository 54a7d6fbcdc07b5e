//! The flags and `TENANTDB_*` variables that make a `tenantdb::Config`.
//! Every variable, its default and its meaning is listed in the README.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tenantdb::DatabasePrefix;
use tenantdb::TenantSecret;
use tenantdb::config::{self, Config, TenantServerConfig};

/// Where the catalog and the tenant databases live, and how tenantdb treats
/// them: each setting is a flag and a `TENANTDB_*` environment variable,
/// with the same defaults as the `tenantdb` binary (everything in SQLite
/// files under `./data` when nothing is set).
///
/// An application with a CLI of its own flattens it (`#[command(flatten)]`)
/// and turns it into a [`Config`] with [`ConfigArgs::to_config`]. The flags
/// are global: they may also follow a subcommand. Service settings (listen
/// address, tokens) are not here; they belong to the service.
#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// Directory for the embedded default (SQLite catalog and tenant files).
    #[arg(long, env = "TENANTDB_DATA_DIR", default_value = config::DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,

    /// Catalog database URL [default: sqlite://$TENANTDB_DATA_DIR/catalog.db].
    #[arg(
        long = "database-url",
        env = "TENANTDB_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    catalog_url: Option<String>,

    /// Where tenant databases are created: a postgres:// admin URL, or a
    /// directory for SQLite files [default: $TENANTDB_DATA_DIR/tenants].
    #[arg(long, env = "TENANTDB_TENANT_SERVER_URL", hide_env_values = true, global = true)]
    tenant_server_url: Option<String>,

    /// Prefix of tenant database names (at most 20 of a-z, 0-9, _).
    #[arg(long, env = "TENANTDB_DATABASE_PREFIX", default_value = "tenant_", global = true)]
    database_prefix: String,

    /// Secret that tenant role passwords derive from (required with
    /// PostgreSQL tenants; at least 32 characters; shared by all instances).
    #[arg(long, env = "TENANTDB_SECRET", hide_env_values = true, hide = true, global = true)]
    secret: Option<String>,

    /// Version of TENANTDB_SECRET; raise it when rotating the secret.
    #[arg(long, env = "TENANTDB_SECRET_VERSION", default_value_t = 1, global = true)]
    secret_version: i32,

    /// Seconds a lease on a tenant lasts without renewal; after it a dead
    /// process's work is picked up by `reconcile`.
    #[arg(long, env = "TENANTDB_LEASE_SECS", default_value_t = 30, global = true)]
    lease_secs: u64,

    /// Connections all tenant pools may hold at once on the tenant server.
    #[arg(long, env = "TENANTDB_POOL_BUDGET", default_value_t = config::DEFAULT_POOL_BUDGET, global = true)]
    pool_budget: u32,

    /// Largest pool of one tenant.
    #[arg(long, env = "TENANTDB_POOL_MAX_PER_TENANT", default_value_t = config::DEFAULT_POOL_MAX_PER_TENANT, global = true)]
    pool_max_per_tenant: u32,

    /// Seconds after which an unused tenant pool is closed.
    #[arg(long, env = "TENANTDB_POOL_IDLE_SECS", default_value_t = config::DEFAULT_POOL_IDLE.as_secs(), global = true)]
    pool_idle_secs: u64,

    /// Clone new tenant databases from a template at the latest tenant
    /// version (true) or replay every migration (false).
    #[arg(long, env = "TENANTDB_TEMPLATES", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    templates: bool,

    /// Milliseconds a request waits for a connection before "busy".
    #[arg(long, env = "TENANTDB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000, global = true)]
    acquire_timeout_ms: u64,
}

impl ConfigArgs {
    /// The directory of the embedded default (`TENANTDB_DATA_DIR`), where a
    /// service may keep its own files too.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The library's configuration, validated.
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
impl std::fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigArgs")
            .field("data_dir", &self.data_dir)
            .field("database_prefix", &self.database_prefix)
            .field("secret_version", &self.secret_version)
            .field("lease_secs", &self.lease_secs)
            .field("pool_budget", &self.pool_budget)
            .field("pool_max_per_tenant", &self.pool_max_per_tenant)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn args(args: &[&str]) -> ConfigArgs {
        Flags::try_parse_from(std::iter::once("app").chain(args.iter().copied()))
            .unwrap()
            .config
    }

    #[test]
    fn with_nothing_set_everything_lives_under_the_data_directory() {
        let config = args(&["--data-dir", "/srv/app"]).to_config().unwrap();
        assert!(matches!(
            &config.tenant_server,
            TenantServerConfig::Sqlite { dir } if dir == Path::new("/srv/app/tenants")
        ));
        assert_eq!(config.database_prefix.as_str(), "tenant_");
    }

    #[test]
    fn an_invalid_prefix_is_refused_naming_its_variable() {
        let err = args(&["--database-prefix", "Bad-Prefix"]).to_config().unwrap_err();
        assert!(format!("{err:#}").contains("TENANTDB_DATABASE_PREFIX"), "{err:#}");
    }

    #[test]
    fn the_debug_output_shows_no_url_or_secret() {
        let shown = format!(
            "{:?}",
            args(&[
                "--database-url",
                "postgres://u:hunter2@db/catalog",
                "--secret",
                "s3cret-s3cret-s3cret-s3cret-s3cret"
            ])
        );
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }
}
