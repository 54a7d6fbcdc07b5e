//! cold: the first query on a tenant with no pool (resolution from the
//! catalog, pool creation with its identity check, the query) against a bare
//! connect + the same query. Interleaved per tenant, medians.

use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use tenantdb::TenantRef;
use tenantdb::engine::Engine as TenantEngine;

use crate::Engine;
use crate::env::{BenchEnv, select_item};
use crate::stats::{median, row};

pub async fn run(engine: Engine, quick: bool) -> anyhow::Result<()> {
    let tenants = if quick { 6 } else { 40 };
    let env = BenchEnv::new(engine, tenants, tenants as u32 + 4, 1).await?;
    let connections = env.tenancy.connections().clone();
    let (mut cold, mut bare, mut colder) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &id) in env.tenants.iter().enumerate() {
        let row = env
            .tenancy
            .catalog()
            .tenant_databases()
            .find_by_tenant(id.as_uuid())
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?;
        let spec = env.tenancy.provisioner().tenant_db(&row);
        // No pool, resolution cached: a tenant whose pool idled out.
        connections.resolve(&TenantRef::Id(id)).await?;
        env.tenancy
            .pools()
            .invalidate_and_wait(id, Duration::from_secs(5))
            .await;

        let routed = || async {
            let started = Instant::now();
            let db = connections.connection(&TenantRef::Id(id)).await?;
            select_item(&db, env.backend).await?;
            anyhow::Ok(started.elapsed().as_secs_f64() * 1e3)
        };
        let direct = async {
            let started = Instant::now();
            match env.tenancy.engine() {
                TenantEngine::Postgres(pg) => {
                    let mut conn = pg.tenant_options(&spec).connect().await?;
                    sqlx::query("SELECT body FROM items WHERE id = $1")
                        .bind(1i32)
                        .fetch_one(&mut conn)
                        .await?;
                    let elapsed = started.elapsed();
                    conn.close().await?;
                    anyhow::Ok(elapsed.as_secs_f64() * 1e3)
                }
                TenantEngine::Sqlite(sqlite) => {
                    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(sqlite.path(id));
                    let mut conn = options.connect().await?;
                    sqlx::query("SELECT body FROM items WHERE id = ?")
                        .bind(1i32)
                        .fetch_one(&mut conn)
                        .await?;
                    let elapsed = started.elapsed();
                    conn.close().await?;
                    anyhow::Ok(elapsed.as_secs_f64() * 1e3)
                }
            }
        };
        // Alternate which goes first, so drift hits both alike.
        if i % 2 == 0 {
            cold.push(routed().await?);
            bare.push(direct.await?);
        } else {
            bare.push(direct.await?);
            cold.push(routed().await?);
        }
        // No pool and no cached resolution either: as after a restart.
        env.tenancy
            .pools()
            .invalidate_and_wait(id, Duration::from_secs(5))
            .await;
        env.tenancy.catalog().changes().mark();
        colder.push(routed().await?);
    }
    let (cold, bare, colder) = (median(&mut cold), median(&mut bare), median(&mut colder));
    println!("cold: first query on {tenants} tenants without a pool, medians");
    row(
        "cold pool + select",
        cold,
        "bare connect + select",
        bare,
        "ms",
        "goal <= 1.10",
    );
    row(
        "cold pool and resolution + select",
        colder,
        "bare connect + select",
        bare,
        "ms",
        "",
    );
    env.close().await;
    Ok(())
}
