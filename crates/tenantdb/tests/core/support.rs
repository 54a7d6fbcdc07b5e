//! Test environments: one body, two backends.
//!
//! PostgreSQL environments live in a `PgScratch` of the shared server (see
//! `tenantdb-test-support`: a registered run, a unique prefix, everything
//! dropped at the end and swept after a killed run). SQLite environments
//! live in a temporary directory.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::prelude::*;
use secrecy::SecretString;
use sqlx::postgres::PgPool;
use tenantdb::DatabasePrefix;
use tenantdb::TenantSecret;
use tenantdb::catalog::tenant_database;
use tenantdb::engine::Engine;
use tenantdb::{Config, Tenancy, TenantMigrations, TenantServerConfig};
pub use tenantdb_test_support::Backend;
use tenantdb_test_support::{PgScratch, postgres_url};

/// Short leases so that crash-repair tests wait only a couple of seconds,
/// yet long enough that a renewal (every third of it) delayed by a busy
/// shared server under the whole parallel suite does not lose the lease:
/// with one second, a CI run once saw a create lose its lease while the
/// first template was built.
pub const LEASE_TTL: Duration = Duration::from_millis(2000);
/// Long enough for any lease of `LEASE_TTL` to have expired.
pub const LEASE_EXPIRY_WAIT: Duration = Duration::from_millis(2300);
const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// One test's world: a catalog and a tenant server of one backend, named
/// under a prefix of its own, dropped when the value is.
pub struct TestEnv {
    pub backend: Backend,
    pub config: Config,
    pub tenancy: Tenancy,
    // Dropped after `tenancy` (fields drop in order), so databases go last.
    scratch: Option<PgScratch>,
    dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(backend: Backend, migrations: TenantMigrations) -> Self {
        Self::with(backend, migrations, |_| {}).await
    }

    /// An env whose config `adjust` changes first.
    pub async fn with(backend: Backend, migrations: TenantMigrations, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, scratch) = match backend {
            Backend::Sqlite => {
                let mut config = Config::embedded(dir.path());
                config.database_prefix = DatabasePrefix::parse("t_").unwrap();
                (config, None)
            }
            Backend::Postgres => {
                let scratch = PgScratch::new();
                let catalog_url = scratch.create_database("cat").await;
                let mut config = Config::new(
                    SecretString::from(catalog_url),
                    TenantServerConfig::parse(&postgres_url()).unwrap(),
                );
                config.database_prefix = DatabasePrefix::parse(&format!("{}_", scratch.prefix())).unwrap();
                config.secret = Some(TenantSecret::new(1, SecretString::from(TEST_SECRET)).unwrap());
                (config, Some(scratch))
            }
        };
        config.lease_ttl = LEASE_TTL;
        config.catalog_max_connections = 2;
        // The shared server has about 97 usable connections for every run.
        config.pools.budget = 6;
        config.pools.max_per_tenant = 2;
        config.catalog_poll_interval = Duration::from_millis(200);
        adjust(&mut config);
        let tenancy = Tenancy::connect(config.clone(), migrations)
            .await
            .expect("connecting the test tenancy failed");
        Self {
            backend,
            config,
            tenancy,
            scratch,
            dir,
        }
    }

    /// Another "process" on the same catalog and server, with its own lease
    /// owner and possibly other tenant migrations.
    pub async fn second(&self, migrations: TenantMigrations) -> Tenancy {
        Tenancy::connect(self.config.clone(), migrations)
            .await
            .expect("connecting a second tenancy failed")
    }

    /// The URL of an empty catalog database of this env's backend.
    pub async fn fresh_catalog_url(&self, name: &str) -> String {
        match &self.scratch {
            None => tenantdb::config::sqlite_url(&self.dir.path().join(format!("{name}.db"))),
            Some(scratch) => scratch.create_database(name).await,
        }
    }

    /// What a child process needs to reach this env (see `child_config`).
    pub fn child_vars(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        let server = match &self.config.tenant_server {
            TenantServerConfig::Sqlite { dir } => format!("sqlite:{}", dir.display()),
            _ => postgres_url(),
        };
        vec![
            (
                "TENANTDB_CHILD_CATALOG".into(),
                self.config.catalog_url.expose_secret().to_owned(),
            ),
            ("TENANTDB_CHILD_SERVER".into(), server),
            ("TENANTDB_CHILD_PREFIX".into(), self.db_prefix().to_owned()),
        ]
    }

    pub fn db_prefix(&self) -> &str {
        self.config.database_prefix.as_str()
    }

    /// The SQLite engine (tenant files and templates).
    pub fn sqlite(&self) -> &tenantdb::engine::SqliteEngine {
        match self.tenancy.engine() {
            Engine::Sqlite(sqlite) => sqlite,
            Engine::Postgres(_) => panic!("not a SQLite env"),
        }
    }

    /// Creates a tenant (and its database) by slug; it must succeed.
    /// Returns the catalog's row (leases, role name) for the tests' checks.
    pub async fn create(&self, slug: &str) -> tenant_database::Model {
        let created = self
            .tenancy
            .provisioner()
            .create_tenant(tenantdb::NewTenant {
                slug: slug.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        self.raw(&created).await
    }

    /// The catalog's row behind a tenant database as callers see it.
    pub async fn raw(&self, database: &tenantdb::TenantDatabase) -> tenant_database::Model {
        self.row(database.tenant_id).await.expect("the tenant's row")
    }

    /// The admin pool of the PostgreSQL engine.
    pub fn admin(&self) -> &PgPool {
        match self.tenancy.engine() {
            Engine::Postgres(pg) => pg.admin_pool(),
            Engine::Sqlite(_) => panic!("no admin pool on SQLite"),
        }
    }

    /// Whether the tenant's database exists on the server (PostgreSQL: by
    /// name in `pg_database`; SQLite: its file).
    pub async fn database_exists(&self, row: &tenant_database::Model) -> bool {
        match self.tenancy.engine() {
            Engine::Postgres(_) => self.pg_database_exists(&row.database_name).await,
            Engine::Sqlite(sqlite) => sqlite.path(row.tenant_id.into()).exists(),
        }
    }

    pub async fn pg_database_exists(&self, name: &str) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(self.admin())
            .await
            .unwrap()
    }

    /// Every tenant database (PostgreSQL) or file in the tenant directory
    /// (SQLite).
    pub async fn physical_databases(&self) -> Vec<String> {
        match self.tenancy.engine() {
            Engine::Postgres(_) => {
                sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1")
                    .bind(self.db_prefix())
                    .fetch_all(self.admin())
                    .await
                    .unwrap()
            }
            Engine::Sqlite(sqlite) => {
                let mut names: Vec<String> = std::fs::read_dir(sqlite.dir())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            }
        }
    }

    pub async fn roles(&self) -> Vec<String> {
        if self.backend == Backend::Sqlite {
            return Vec::new();
        }
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1")
            .bind(self.db_prefix())
            .fetch_all(self.admin())
            .await
            .unwrap()
    }

    /// A connection to the tenant's database as its own role.
    pub async fn connect_tenant(&self, row: &tenant_database::Model) -> DatabaseConnection {
        let spec = self.tenancy.provisioner().tenant_db(row);
        self.tenancy
            .engine()
            .connect(&spec, 1)
            .await
            .expect("connecting as the tenant failed")
    }

    pub async fn row(&self, tenant_id: uuid::Uuid) -> Option<tenant_database::Model> {
        self.tenancy
            .catalog()
            .tenant_databases()
            .find_by_tenant(tenant_id)
            .await
            .unwrap()
    }
}

/// The config of the env whose `child_vars` this process was given, or
/// `None` when it was given none.
pub fn child_config() -> Option<Config> {
    let var = |name: &str| std::env::var(name).ok();
    let catalog = var("TENANTDB_CHILD_CATALOG")?;
    let server = var("TENANTDB_CHILD_SERVER")?;
    let tenant_server = match server.strip_prefix("sqlite:") {
        Some(dir) => TenantServerConfig::Sqlite { dir: dir.into() },
        None => TenantServerConfig::parse(&server).unwrap(),
    };
    let mut config = Config::new(SecretString::from(catalog), tenant_server);
    config.database_prefix = DatabasePrefix::parse(&var("TENANTDB_CHILD_PREFIX")?).unwrap();
    if matches!(config.tenant_server, TenantServerConfig::Postgres { .. }) {
        config.secret = Some(TenantSecret::new(1, SecretString::from(TEST_SECRET)).unwrap());
    }
    config.lease_ttl = LEASE_TTL;
    config.catalog_max_connections = 2;
    config.pools.budget = 4;
    config.pools.max_per_tenant = 2;
    Some(config)
}

// ---- tenant schemas used by the tests ------------------------------------

struct Step(&'static str, fn() -> Vec<&'static str>);

impl MigrationName for Step {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Step {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in (self.1)() {
            if let Some(ms) = sql.strip_prefix("SLEEP ") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                continue;
            }
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

fn v1() -> Box<dyn MigrationTrait> {
    Box::new(Step("m0001_notes", || {
        vec!["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"]
    }))
}

fn v2() -> Box<dyn MigrationTrait> {
    Box::new(Step("m0002_tags", || {
        vec!["CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"]
    }))
}

/// Creates a table, then fails: a non-atomic runner would leave the table.
fn broken() -> Box<dyn MigrationTrait> {
    Box::new(Step("m0003_broken", || {
        vec![
            "CREATE TABLE half_made (id INTEGER PRIMARY KEY)",
            "SELECT * FROM no_such_table",
        ]
    }))
}

fn slow() -> Box<dyn MigrationTrait> {
    Box::new(Step("m0002_slow", || vec!["SLEEP 2500"]))
}

/// Another application's tenant schema: none of the names above.
fn invoices() -> Box<dyn MigrationTrait> {
    Box::new(Step("x0001_invoices", || {
        vec!["CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER NOT NULL)"]
    }))
}

pub fn schema_other() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![invoices()])
}

pub fn schema_v1() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![v1()])
}

pub fn schema_v2() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![v1(), v2()])
}

fn v3() -> Box<dyn MigrationTrait> {
    Box::new(Step("m0003_labels", || {
        vec!["CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"]
    }))
}

pub fn schema_v3() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![v1(), v2(), v3()])
}

pub fn schema_broken() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![v1(), v2(), broken()])
}

pub fn schema_slow() -> TenantMigrations {
    TenantMigrations::from_fn(|| vec![v1(), slow()])
}

/// Names of the user tables in a tenant database.
pub async fn tables(conn: &DatabaseConnection) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = match conn.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    };
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect()
}
