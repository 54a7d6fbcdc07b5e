//! provision: new tenants with a realistic schema (20 migrations, 15 tables
//! with indexes and foreign keys), from the create call to ACTIVE and then
//! to the first query answered on a new connection: claiming a warm
//! database vs. cloning the template vs. replaying every migration, vs. the
//! physical limit: a bare clone of the same template by the server
//! (PostgreSQL `CREATE DATABASE ... TEMPLATE`, SQLite a file copy) and its
//! own first query. Interleaved, medians.

use std::time::Instant;

use sea_orm_migration::prelude::*;
use tenantdb::engine::Engine as TenantEngine;
use tenantdb::{NewTenant, Tenancy, TenantMigrations};

use crate::Engine;
use crate::env::BenchEnv;
use crate::stats::{median, row};

const NAMES: [&str; 20] = [
    "m01", "m02", "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m11", "m12", "m13", "m14", "m15", "m16",
    "m17", "m18", "m19", "m20",
];

struct Step(usize);

impl MigrationName for Step {
    fn name(&self) -> &str {
        NAMES[self.0]
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Step {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let i = self.0;
        let sql = if i < 15 {
            let parent = if i == 0 {
                String::new()
            } else {
                format!(", parent_id INTEGER REFERENCES t{} (id) ON DELETE CASCADE", i - 1)
            };
            format!(
                "CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL{parent}); \
                 CREATE INDEX ix_t{i}_name ON t{i} (name); CREATE INDEX ix_t{i}_created ON t{i} (created_at)"
            )
        } else {
            format!("ALTER TABLE t{} ADD COLUMN extra_{i} TEXT", i - 15)
        };
        for statement in sql.split("; ") {
            manager.get_connection().execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

fn realistic() -> Vec<Box<dyn MigrationTrait>> {
    (0..NAMES.len())
        .map(|i| Box::new(Step(i)) as Box<dyn MigrationTrait>)
        .collect()
}

pub async fn run(engine: Engine, quick: bool) -> anyhow::Result<()> {
    let rounds = if quick { 3 } else { 15 };
    let env = BenchEnv::with_schema(engine, 0, 8, 1, TenantMigrations::from_fn(realistic)).await?;
    let template = env
        .tenancy
        .templates()
        .ready()
        .await
        .ok_or_else(|| anyhow::anyhow!("no template"))?;
    let mut replay_config = env.config.clone();
    replay_config.use_templates = false;
    let replaying = Tenancy::connect(replay_config, TenantMigrations::from_fn(realistic)).await?;
    // One warm database at a time, made (untimed) before each warm create;
    // the cloning tenancy keeps none, so it always copies.
    let mut warm_config = env.config.clone();
    warm_config.warm_databases = 1;
    let warming = Tenancy::connect(warm_config, TenantMigrations::from_fn(realistic)).await?;
    let (mut warm, mut cloned, mut replayed, mut bare) = (
        Timings::default(),
        Timings::default(),
        Timings::default(),
        Timings::default(),
    );
    for i in 0..rounds {
        warming.provisioner().refill_warm().await?;
        warm.push(create_and_query(&warming, &format!("w{i}")).await?);
        cloned.push(create_and_query(&env.tenancy, &format!("c{i}")).await?);
        replayed.push(create_and_query(&replaying, &format!("r{i}")).await?);
        bare.push(bare_clone(&env, &template, i).await?);
    }
    let (warm, cloned, replayed, bare) = (warm.medians(), cloned.medians(), replayed.medians(), bare.medians());
    println!(
        "provision: a new tenant with 20 migrations / 15 tables, {rounds} rounds, medians; \
         'answering': from the create call to its first query answered on a new connection"
    );
    println!(
        "  create call to ACTIVE / first query: warm {:.1} / {:.1} ms, template {:.1} / {:.1} ms, \
         replaying {:.1} / {:.1} ms; bare clone {:.1} ms / its first query {:.1} ms",
        warm.create, warm.query, cloned.create, cloned.query, replayed.create, replayed.query, bare.create, bare.query
    );
    row(
        "warm, answering (ms)",
        warm.total(),
        "template, answering",
        cloned.total(),
        "ms",
        "",
    );
    row(
        "warm, answering (ms)",
        warm.total(),
        "bare clone, answering",
        bare.total(),
        "ms",
        "goal: under 10 ms; below 1: faster than any copy",
    );
    row(
        "template, answering (ms)",
        cloned.total(),
        "replaying, answering",
        replayed.total(),
        "ms",
        "goal <= 0.5",
    );
    row(
        "template, to ACTIVE (ms)",
        cloned.create,
        "bare clone",
        bare.create,
        "ms",
        "goal <= 1.25",
    );
    row(
        "template, answering (ms)",
        cloned.total(),
        "bare clone, answering",
        bare.total(),
        "ms",
        "",
    );
    replaying.close().await;
    warming.close().await;
    env.close().await;
    Ok(())
}

/// Per round: milliseconds to the database (a create returning ACTIVE, or
/// the bare clone), then to its first query on a new connection.
#[derive(Debug, Default)]
struct Timings {
    create: Vec<f64>,
    query: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Medians {
    create: f64,
    query: f64,
}

impl Medians {
    fn total(self) -> f64 {
        self.create + self.query
    }
}

impl Timings {
    fn push(&mut self, (create, query): (f64, f64)) {
        self.create.push(create);
        self.query.push(query);
    }

    /// The medians of each part (their sum is close to, not exactly, the
    /// median of the sums).
    fn medians(mut self) -> Medians {
        Medians {
            create: median(&mut self.create),
            query: median(&mut self.query),
        }
    }
}

/// Milliseconds from the create call to ACTIVE, then to the first query
/// the new tenant's database answers, as its own role on a connection of
/// its own (the catalog read that finds its row in between is not counted).
async fn create_and_query(tenancy: &Tenancy, slug: &str) -> anyhow::Result<(f64, f64)> {
    use tenantdb::sea_orm::ConnectionTrait;
    let started = Instant::now();
    let created = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: slug.to_owned(),
            ..Default::default()
        })
        .await?;
    let create = started.elapsed();
    let row = tenancy
        .catalog()
        .tenant_databases()
        .find_by_tenant(created.tenant_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row for {slug}"))?;
    let spec = tenancy.provisioner().tenant_db(&row);
    let started = Instant::now();
    let conn = tenancy.engine().connect(&spec, 1).await?;
    conn.execute_unprepared("SELECT 1").await?;
    let query = started.elapsed();
    conn.close().await?;
    Ok((create.as_secs_f64() * 1e3, query.as_secs_f64() * 1e3))
}

/// The server's own copy of the template and its first query on a new
/// connection (as the admin; SQLite: the file opened), nothing else (then
/// dropped).
async fn bare_clone(env: &BenchEnv, template: &str, i: usize) -> anyhow::Result<(f64, f64)> {
    use sqlx::Connection;
    let quote = tenantdb::internal::quote_ident;
    let ms = |started: Instant| started.elapsed().as_secs_f64() * 1e3;
    match env.tenancy.engine() {
        TenantEngine::Postgres(pg) => {
            let name = format!("{}bare{i}", env.config.database_prefix);
            let started = Instant::now();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote(&name),
                quote(template)
            )))
            .execute(pg.admin_pool())
            .await?;
            let clone = ms(started);
            let options: sqlx::postgres::PgConnectOptions = tenantdb_test_support::postgres_url().parse()?;
            let started = Instant::now();
            let mut conn = sqlx::PgConnection::connect_with(&options.database(&name)).await?;
            sqlx::raw_sql("SELECT 1").execute(&mut conn).await?;
            let query = ms(started);
            conn.close().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {} WITH (FORCE)",
                quote(&name)
            )))
            .execute(pg.admin_pool())
            .await?;
            Ok((clone, query))
        }
        TenantEngine::Sqlite(sqlite) => {
            let target = sqlite.path(tenantdb::TenantId::new());
            let source = sqlite.template_dir().join(format!("{template}.db"));
            let started = Instant::now();
            std::fs::copy(&source, &target)?;
            let clone = ms(started);
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&target);
            let started = Instant::now();
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql("SELECT 1").execute(&mut conn).await?;
            let query = ms(started);
            conn.close().await?;
            std::fs::remove_file(&target)?;
            Ok((clone, query))
        }
    }
}
