//! provision: new tenants with a realistic schema (20 migrations, 15 tables
//! with indexes and foreign keys), from the create call to the first query
//! answered: claiming a warm database vs. cloning the template vs.
//! replaying every migration, vs. the physical limit: a bare clone of the
//! same template by the server (PostgreSQL `CREATE DATABASE ... TEMPLATE`,
//! SQLite a file copy). Interleaved, medians.

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
    let (mut warm, mut cloned, mut replayed, mut bare) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut first_query = Vec::new();
    for i in 0..rounds {
        warming.provisioner().refill_warm().await?;
        let (total, query) = create_and_query(&warming, &format!("w{i}")).await?;
        warm.push(total);
        first_query.push(query);
        cloned.push(create_and_query(&env.tenancy, &format!("c{i}")).await?.0);
        replayed.push(create_and_query(&replaying, &format!("r{i}")).await?.0);
        bare.push(bare_clone(&env, &template, i).await?);
    }
    let (warm, cloned, replayed, bare) = (
        median(&mut warm),
        median(&mut cloned),
        median(&mut replayed),
        median(&mut bare),
    );
    println!(
        "provision: a new tenant with 20 migrations / 15 tables, from the create call to its first query, \
         {rounds} rounds, medians"
    );
    row(
        "claiming a warm database (ms)",
        warm,
        "cloning the template",
        cloned,
        "ms",
        "goal: under 10 ms",
    );
    println!(
        "  of which the first query (a new connection as the tenant's role, SELECT 1): {:.1} ms",
        median(&mut first_query)
    );
    row(
        "claiming a warm database (ms)",
        warm,
        "bare clone by the server",
        bare,
        "ms",
        "below 1: faster than any copy",
    );
    row(
        "from the template (ms)",
        cloned,
        "replaying every migration",
        replayed,
        "ms",
        "goal <= 0.5",
    );
    row(
        "from the template (ms)",
        cloned,
        "bare clone by the server",
        bare,
        "ms",
        "goal <= 1.25",
    );
    replaying.close().await;
    warming.close().await;
    env.close().await;
    Ok(())
}

/// Milliseconds from the create call to the first query the new tenant's
/// database answers, as its own role on a connection of its own (the
/// catalog read that finds its row in between is not counted).
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
    Ok(((create + query).as_secs_f64() * 1e3, query.as_secs_f64() * 1e3))
}

/// The server's own copy of the template, nothing else (then dropped).
async fn bare_clone(env: &BenchEnv, template: &str, i: usize) -> anyhow::Result<f64> {
    let quote = tenantdb::internal::quote_ident;
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
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {}", quote(&name))))
                .execute(pg.admin_pool())
                .await?;
            Ok(elapsed)
        }
        TenantEngine::Sqlite(sqlite) => {
            let target = sqlite.path(tenantdb::TenantId::new());
            let source = sqlite.template_dir().join(format!("{template}.db"));
            let started = Instant::now();
            std::fs::copy(&source, &target)?;
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            std::fs::remove_file(&target)?;
            Ok(elapsed)
        }
    }
}
