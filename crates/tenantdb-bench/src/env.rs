//! A benchmark world: a catalog and N tenants with one row each, on
//! PostgreSQL (under a scratch prefix) or SQLite (a temporary directory).

use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::prelude::*;
use secrecy::SecretString;
use tenantdb::DatabasePrefix;
use tenantdb::TenantSecret;
use tenantdb::{Config, NewTenant, Tenancy, TenantId, TenantMigrations, TenantServerConfig};
use tenantdb_test_support::{PgScratch, postgres_url};

use crate::Engine;

pub struct BenchEnv {
    pub config: Config,
    pub tenancy: Tenancy,
    pub tenants: Vec<TenantId>,
    pub backend: DbBackend,
    _scratch: Option<PgScratch>,
    _dir: tempfile::TempDir,
}

pub async fn postgres_version() -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url())
        .await
        .context("no PostgreSQL server at TENANTDB_TEST_POSTGRES_URL")?;
    Ok(sqlx::query_scalar("SELECT version()").fetch_one(&mut conn).await?)
}

/// Refuses to go on unless the shared server has room for `needed` more
/// connections plus 10 to spare for the other runs on it.
pub async fn require_free_slots(needed: u32) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
    let free: i64 = sqlx::query_scalar(
        "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int \
         - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) \
         - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    anyhow::ensure!(
        free >= i64::from(needed) + 10,
        "the PostgreSQL server has {free} free connection slots; this needs {needed} plus 10 to spare for \
         other runs (lower --budget, or try again later)"
    );
    Ok(())
}

/// Resident memory of this process (`VmRSS` of /proc/self/status), bytes.
pub fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// CPU time this process has used, user and system, all threads (from
/// /proc/self/stat, in clock ticks of 10 ms).
pub fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses: the
    // state is the first, utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/self/stat"))?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

impl BenchEnv {
    /// `tenants` tenants, pools of `per_tenant` connections under `budget`.
    pub async fn new(engine: Engine, tenants: usize, budget: u32, per_tenant: u32) -> anyhow::Result<Self> {
        Self::with_schema(engine, tenants, budget, per_tenant, TenantMigrations::from_fn(schema)).await
    }

    /// Like `new`, with the tenants' schema given.
    pub async fn with_schema(
        engine: Engine,
        tenants: usize,
        budget: u32,
        per_tenant: u32,
        migrations: TenantMigrations,
    ) -> anyhow::Result<Self> {
        Self::build(engine, tenants, migrations, |config| {
            config.pools.budget = budget;
            config.pools.max_per_tenant = per_tenant;
            config.pools.acquire_timeout = Duration::from_secs(10);
            // The instance lease must outlast a whole acquire timeout.
            config.instance_lease = Duration::from_secs(30);
        })
        .await
    }

    /// `tenants` tenants on `migrations` (one row in `items` each when the
    /// schema has that table), with the settings `tweak` leaves.
    pub async fn build(
        engine: Engine,
        tenants: usize,
        migrations: TenantMigrations,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (mut config, scratch) = match engine {
            Engine::Sqlite => (Config::embedded(dir.path()), None),
            Engine::Postgres => {
                let scratch = PgScratch::new();
                let catalog = scratch.create_database("cat").await;
                let mut config = Config::new(SecretString::from(catalog), TenantServerConfig::parse(&postgres_url())?);
                config.database_prefix = DatabasePrefix::parse(&format!("{}_", scratch.prefix()))?;
                config.secret = Some(TenantSecret::new(
                    1,
                    SecretString::from("bench-secret-0123456789abcdef0123456789"),
                )?);
                (config, Some(scratch))
            }
        };
        config.catalog_max_connections = 2;
        tweak(&mut config);
        let tenancy = Tenancy::connect(config.clone(), migrations).await?;
        let mut ids = Vec::with_capacity(tenants);
        let numbers: Vec<usize> = (0..tenants).collect();
        for chunk in numbers.chunks(4) {
            let creates: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let provisioner = tenancy.provisioner().clone();
                    tokio::spawn(async move {
                        provisioner
                            .create_tenant(NewTenant {
                                slug: format!("b{i}"),
                                ..Default::default()
                            })
                            .await
                    })
                })
                .collect();
            for create in creates {
                ids.push(TenantId::from(create.await??.tenant_id));
            }
        }
        let backend = match engine {
            Engine::Postgres => DbBackend::Postgres,
            Engine::Sqlite => DbBackend::Sqlite,
        };
        let env = Self {
            config,
            tenancy,
            tenants: ids,
            backend,
            _scratch: scratch,
            _dir: dir,
        };
        let has_items = env
            .tenancy
            .provisioner()
            .migrations()
            .migrations()
            .first()
            .is_some_and(|m| m.name() == "m0001_items");
        // One row per tenant to read by primary key.
        for &id in env.tenants.iter().filter(|_| has_items) {
            let db = env
                .tenancy
                .connections()
                .connection(&tenantdb::TenantRef::Id(id))
                .await?;
            db.execute_unprepared("INSERT INTO items (id, body) VALUES (1, 'hello')")
                .await?;
        }
        Ok(env)
    }

    pub async fn close(self) {
        self.tenancy.close().await;
        if self._scratch.is_some()
            && let Err(err) = drop_tenant_databases(self.config.database_prefix.as_str()).await
        {
            eprintln!("dropping the tenant databases failed ({err:#}); the scratch cleanup drops them");
        }
    }
}

/// The primary-key select every scenario runs.
pub async fn select_item(db: &DatabaseConnection, backend: DbBackend) -> anyhow::Result<()> {
    let sql = match backend {
        DbBackend::Postgres => "SELECT body FROM items WHERE id = $1",
        _ => "SELECT body FROM items WHERE id = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [1i32.into()]))
        .await?;
    anyhow::ensure!(row.is_some(), "the row is missing");
    Ok(())
}

/// A migration that adds one column to `items` (the fleet benchmark's
/// "one new migration each").
pub struct AddColumn(pub &'static str, pub &'static str);

impl MigrationName for AddColumn {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddColumn {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = format!("ALTER TABLE items ADD COLUMN {} TEXT", self.1);
        manager.get_connection().execute_unprepared(&sql).await.map(drop)
    }
}

pub fn items() -> Box<dyn MigrationTrait> {
    Box::new(Items)
}

struct Items;

impl MigrationName for Items {
    fn name(&self) -> &str {
        "m0001_items"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Items {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .await
            .map(drop)
    }
}

fn schema() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(Items)]
}

/// Drops the (non-template) databases under `prefix`, four at a time: the
/// scratch cleanup drops one at a time, which for a thousand tenants takes
/// many minutes. What is left (roles, templates, the catalog) it drops.
async fn drop_tenant_databases(prefix: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) AND NOT datistemplate",
    )
    .bind(prefix)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    if names.len() < 20 {
        return Ok(());
    }
    let names = std::sync::Arc::new(std::sync::Mutex::new(names));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let names = names.clone();
            tokio::spawn(async move {
                let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
                loop {
                    let next = names.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some(name) = next else { break };
                    let sql = format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        tenantdb::internal::quote_ident(&name)
                    );
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
                }
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}
