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
#[command(next_help_heading = "Global options")]
pub struct ConfigArgs {
    /// Directory for the embedded default (SQLite catalog and tenant files).
    #[arg(long, env = "TENANTDB_DATA_DIR", default_value = config::DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,

    /// Catalog database URL [default: sqlite://$TENANTDB_DATA_DIR/catalog.db].
    /// A URL with a password is refused as a flag (`ps` shows flags to
    /// every user): set it in the variable, or its file in
    /// TENANTDB_DATABASE_URL_FILE.
    #[arg(
        long = "database-url",
        env = "TENANTDB_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    catalog_url: Option<String>,

    /// Where tenant databases are created: a postgres:// admin URL, or a
    /// directory for SQLite files [default: $TENANTDB_DATA_DIR/tenants].
    /// A password only from the variable or TENANTDB_TENANT_SERVER_URL_FILE.
    #[arg(long, env = "TENANTDB_TENANT_SERVER_URL", hide_env_values = true, global = true)]
    tenant_server_url: Option<String>,

    /// Prefix of tenant database names (at most 20 of a-z, 0-9, _).
    #[arg(long, env = "TENANTDB_DATABASE_PREFIX", default_value = "tenant_", global = true)]
    database_prefix: String,

    /// Name of the tenant server of these settings in the catalog (each
    /// PostgreSQL cluster has one name; instances whose settings name
    /// another cluster give it another name).
    #[arg(long, env = "TENANTDB_SERVER_NAME", default_value = "default", global = true)]
    server_name: String,

    /// The directory of pg_dump and pg_restore (as new as the newest
    /// server), which moving and exporting tenants run [default: the PATH].
    #[arg(long, env = "TENANTDB_PG_BIN", global = true)]
    pg_bin: Option<PathBuf>,

    /// Version of TENANTDB_SECRET; raise it when rotating the secret.
    #[arg(long, env = "TENANTDB_SECRET_VERSION", default_value_t = 1, global = true)]
    secret_version: i32,

    /// Seconds a lease on a tenant lasts without renewal; after it a dead
    /// process's work is picked up by `reconcile`.
    #[arg(long, env = "TENANTDB_LEASE_SECS", default_value_t = 30, global = true)]
    lease_secs: u64,

    /// Seconds an instance's lease lasts without a heartbeat: a process
    /// that died gives its share of the pool budget back after this long.
    #[arg(long, env = "TENANTDB_INSTANCE_LEASE_SECS", default_value_t = config::DEFAULT_INSTANCE_LEASE.as_secs(), global = true)]
    instance_lease_secs: u64,

    /// Connections all tenant pools may hold at once on the tenant server,
    /// shared by every process (instance) running over the catalog.
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

    /// How long a deleted tenant's database is kept (renamed into the
    /// trash, its role locked out) for `tenants restore`, e.g. `7d`, `12h`,
    /// `30m`; `0` deletes at once.
    #[arg(long, env = "TENANTDB_DELETED_RETENTION", default_value = "7d", value_parser = humantime::parse_duration, global = true)]
    deleted_retention: Duration,

    /// Databases each server keeps cloned from the current template for new
    /// tenants (a new tenant claims one instead of waiting for a copy);
    /// refilled in the background by `serve` and after `migrate`. 0 turns
    /// it off.
    #[arg(long, env = "TENANTDB_WARM_DATABASES", default_value_t = config::DEFAULT_WARM_DATABASES, global = true)]
    warm_databases: usize,

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

    /// The library's configuration, validated. The secret comes from
    /// `TENANTDB_SECRET` or `TENANTDB_SECRET_FILE` (never a flag), and each
    /// URL may come from a `*_FILE` variable instead.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        self.to_config_with(&|name| std::env::var(name).ok())
    }

    /// The same, with `env` looked up in place of the process's environment
    /// for the settings that never come from flags (the secret, `*_FILE`
    /// variables): for tests, or secrets kept elsewhere.
    pub fn to_config_with(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let catalog_url = match url_setting("TENANTDB_DATABASE_URL", self.catalog_url.as_deref(), env)? {
            Some(url) => url,
            None => config::sqlite_url(&self.data_dir.join("catalog.db")),
        };
        let tenant_server = match url_setting("TENANTDB_TENANT_SERVER_URL", self.tenant_server_url.as_deref(), env)? {
            Some(url) => TenantServerConfig::parse(&url)?,
            None => TenantServerConfig::Sqlite {
                dir: self.data_dir.join("tenants"),
            },
        };
        let mut config = Config::new(SecretString::from(catalog_url), tenant_server);
        config.database_prefix =
            DatabasePrefix::parse(&self.database_prefix).context("invalid TENANTDB_DATABASE_PREFIX")?;
        config.server_name.clone_from(&self.server_name);
        config.pg_bin.clone_from(&self.pg_bin);
        if let Some(secret) = secret_setting("TENANTDB_SECRET", env)? {
            config.secret = Some(TenantSecret::new(self.secret_version, SecretString::from(secret))?);
        }
        // After a rotation: the secret of the version before, only to open
        // tenant servers' admin passwords sealed under it until `doctor
        // --fix` seals them again.
        if let Some(previous) = secret_setting("TENANTDB_PREVIOUS_SECRET", env)? {
            let version = self.secret_version - 1;
            config.previous_secret = Some(
                TenantSecret::new(version, SecretString::from(previous))
                    .context("invalid TENANTDB_PREVIOUS_SECRET (its version is TENANTDB_SECRET_VERSION - 1)")?,
            );
        }
        config.lease_ttl = Duration::from_secs(self.lease_secs);
        config.instance_lease = Duration::from_secs(self.instance_lease_secs);
        config.use_templates = self.templates;
        config.deleted_retention = self.deleted_retention;
        config.warm_databases = self.warm_databases;
        config.pools.budget = self.pool_budget;
        config.pools.max_per_tenant = self.pool_max_per_tenant;
        config.pools.idle_timeout = Duration::from_secs(self.pool_idle_secs);
        config.pools.acquire_timeout = Duration::from_millis(self.acquire_timeout_ms);
        config.validate()?;
        Ok(config)
    }
}

/// A setting that holds a secret: the variable `name`, or the contents of
/// the file named by `name_FILE` (the container and systemd convention;
/// one trailing newline is dropped). Setting both is an error, as is a
/// file that cannot be read or is empty. Never a flag.
pub fn secret_setting(name: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
    let file_var = format!("{name}_FILE");
    match (env(name), env(&file_var)) {
        (Some(_), Some(_)) => anyhow::bail!("set {name} or {file_var}, not both"),
        (Some(value), None) => Ok(Some(value)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{file_var}: cannot read {path}"))?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            anyhow::ensure!(!value.is_empty(), "{file_var}: {path} is empty");
            Ok(Some(value.to_owned()))
        }
    }
}

/// A URL from its flag or variable (`given`, as clap read it) or from
/// `name_FILE`. A URL with a password given as a flag is refused: flags
/// are visible to every user of the machine.
fn url_setting(
    name: &str,
    given: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let Some(given) = given else {
        return secret_setting(name, env);
    };
    let from_env = env(name).as_deref() == Some(given);
    if !from_env && has_password(given) {
        anyhow::bail!(
            "a URL with a password cannot be a flag ({name}'s flag is visible in `ps`): set {name} or {name}_FILE instead"
        );
    }
    anyhow::ensure!(
        env(&format!("{name}_FILE")).is_none(),
        "set {name} (or its flag) or {name}_FILE, not both"
    );
    Ok(Some(given.to_owned()))
}

/// Whether a URL carries a password (`scheme://user:password@host`).
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Without URLs or the secret, which may hold passwords.
impl std::fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigArgs")
            .field("data_dir", &self.data_dir)
            .field("database_prefix", &self.database_prefix)
            .field("secret_version", &self.secret_version)
            .field("lease_secs", &self.lease_secs)
            .field("instance_lease_secs", &self.instance_lease_secs)
            .field("pool_budget", &self.pool_budget)
            .field("pool_max_per_tenant", &self.pool_max_per_tenant)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use secrecy::ExposeSecret;

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

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_debug_output_shows_no_url() {
        let shown = format!("{:?}", args(&["--database-url", "postgres://u@db/catalog"]));
        assert!(!shown.contains("db/catalog"), "{shown}");
    }

    #[test]
    fn no_flag_takes_the_secret() {
        let parsed = Flags::try_parse_from(["app", "--secret", "s3cret-s3cret-s3cret-s3cret-s3cret"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn a_url_with_a_password_is_refused_as_a_flag_and_taken_from_the_variable() {
        let url = "postgres://u:hunter2@db/catalog";
        let flags = args(&["--database-url", url]);
        let err = flags.to_config_with(&env_of(vec![])).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("TENANTDB_DATABASE_URL") && !message.contains("hunter2"),
            "{message}"
        );
        // The same value, read by clap from the variable, is taken.
        let config = flags
            .to_config_with(&env_of(vec![("TENANTDB_DATABASE_URL", url.to_owned())]))
            .unwrap();
        assert_eq!(config.catalog_url.expose_secret(), url);
        // Without a password a flag is fine.
        let plain = args(&["--database-url", "postgres://u@db/catalog"]);
        assert!(plain.to_config_with(&env_of(vec![])).is_ok());
    }

    #[test]
    fn secrets_and_urls_come_from_files_named_by_file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret").display().to_string();
        std::fs::write(&secret, "from-a-file-0123456789abcdef0123456789\n").unwrap();
        let url = dir.path().join("url").display().to_string();
        std::fs::write(&url, "postgres://u:pw@db/catalog\n").unwrap();
        let config = args(&[])
            .to_config_with(&env_of(vec![
                ("TENANTDB_SECRET_FILE", secret.clone()),
                ("TENANTDB_DATABASE_URL_FILE", url),
            ]))
            .unwrap();
        assert_eq!(config.catalog_url.expose_secret(), "postgres://u:pw@db/catalog");
        assert!(config.secret.is_some(), "the secret from its file");

        let both = env_of(vec![("TENANTDB_SECRET_FILE", secret), ("TENANTDB_SECRET", "x".into())]);
        let err = args(&[]).to_config_with(&both).unwrap_err();
        assert!(format!("{err:#}").contains("not both"), "{err:#}");
        let missing = env_of(vec![("TENANTDB_SECRET_FILE", "/nonexistent/secret".into())]);
        let err = args(&[]).to_config_with(&missing).unwrap_err();
        assert!(format!("{err:#}").contains("TENANTDB_SECRET_FILE"), "{err:#}");
    }

    #[test]
    fn a_password_is_seen_only_in_the_userinfo() {
        assert!(has_password("postgres://u:pw@db:5432/x"));
        assert!(!has_password("postgres://u@db:5432/x"));
        assert!(!has_password("postgres://db:5432/x?user=a:b"));
        assert!(!has_password("sqlite:///tmp/a:b@c.db"));
    }
}
