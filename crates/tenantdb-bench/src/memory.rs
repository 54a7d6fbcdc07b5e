//! memory: resident memory of this process per tenant, measured on a
//! routing layer of its own (a fresh `TenantConnections` over a fresh
//! `TenantPools`), in three steps: every tenant resolved (the resolution
//! cache only); `connected` tenants with their pool open and one open, idle
//! connection each; the other tenants with their pool open and no
//! connection (each pool is opened, which connects and checks the
//! database, then its connection is closed). RSS deltas from
//! /proc/self/status, after each step settles.
//!
//! Each pool holds a budget permit even with no connection, and on
//! PostgreSQL `Tenancy::connect` refuses a budget the server cannot hold,
//! so a `Tenancy` cannot keep 1,000 pools open on the shared server. The
//! pools here are built directly with a budget of one permit per tenant;
//! they hold the `connected` connections and one more at a time while the
//! others are opened.

use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend};
use tenantdb::config::DEFAULT_CATALOG_POLL;
use tenantdb::engine::Engine as TenantEngine;
use tenantdb::{PoolConfig, TenantConnections, TenantMigrations, TenantPools, TenantRef};

use crate::env::{BenchEnv, items, require_free_slots, rss_bytes};
use crate::{Counts, Engine};

/// The seed design's figure: a cached tenant in the TypeORM prototype.
const REFERENCE_KIB: f64 = 108.0;

/// Closes the pool's open connections; the pool stays (size 0).
async fn close_connections(db: &DatabaseConnection) -> anyhow::Result<()> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            while pool.size() > 0 {
                pool.acquire().await?.close().await?;
            }
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            while pool.size() > 0 {
                pool.acquire().await?.close().await?;
            }
        }
    }
    Ok(())
}

/// RSS after letting background work (closing connections, their threads)
/// settle.
async fn settled_rss() -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss_bytes()
}

/// Runs `step` on every item, in two halves, and returns the RSS before and
/// its growth per item, in KiB: over all items, and over the second half
/// only (the first half may reuse memory freed before, by the setup or an
/// earlier step; the second half shows what each more tenant costs).
async fn grow<T>(
    items: &[T],
    mut step: impl AsyncFnMut(&T) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, (f64, f64))> {
    let half = items.len() / 2;
    let before = settled_rss().await?;
    for item in &items[..half] {
        step(item).await?;
    }
    let middle = settled_rss().await?;
    for item in &items[half..] {
        step(item).await?;
    }
    let after = settled_rss().await?;
    let per = |delta: u64, n: usize| delta as f64 / 1024.0 / n.max(1) as f64;
    Ok((
        before,
        (
            per(after.saturating_sub(before), items.len()),
            per(after.saturating_sub(middle), items.len() - half),
        ),
    ))
}

pub async fn run(engine: Engine, quick: bool, counts: Counts) -> anyhow::Result<()> {
    let cached = counts.tenants.unwrap_or(if quick { 50 } else { 1000 });
    // The shared PostgreSQL server cannot spare 100 connections.
    let connected = counts.connected.unwrap_or(match (engine, quick) {
        (_, true) => 10,
        (Engine::Postgres, false) => 20,
        (Engine::Sqlite, false) => 100,
    });
    anyhow::ensure!(
        connected > 0 && connected < cached,
        "memory needs fewer connected tenants (--connected) than tenants (--tenants), and at least one"
    );
    if engine == Engine::Postgres {
        // The held connections, the one being opened, catalog and admin pools.
        require_free_slots(u32::try_from(connected)? + 5).await?;
    }
    let started = Instant::now();
    let env = BenchEnv::build(engine, cached, TenantMigrations::from_fn(|| vec![items()]), |config| {
        config.pools.budget = 8;
        config.pools.max_per_tenant = 1;
    })
    .await?;
    println!(
        "memory: {cached} tenants (made in {:.1} s); resident memory of this process, deltas",
        started.elapsed().as_secs_f64()
    );
    // The making tenancy's pools are closed; its resolutions stay (they are
    // there before the baseline and count in neither step).
    env.tenancy.pools().close_all().await;
    let result = measure(&env, cached, connected).await;
    env.close().await;
    result
}

async fn measure(env: &BenchEnv, cached: usize, connected: usize) -> anyhow::Result<()> {
    let config = PoolConfig {
        budget: u32::try_from(cached)?,
        max_per_tenant: 1,
        ..PoolConfig::default()
    };
    let pools = TenantPools::new(env.tenancy.engine().clone(), config, "memory");
    let connections =
        TenantConnections::new(env.tenancy.catalog().clone(), pools.clone(), DEFAULT_CATALOG_POLL).await?;
    let tenants: Vec<TenantRef> = env.tenants.iter().map(|&id| TenantRef::Id(id)).collect();

    let mut handles = Vec::with_capacity(cached);
    let (rss_before, resolution) = grow(&tenants, async |tenant| {
        connections.resolve(tenant).await?;
        Ok(())
    })
    .await?;
    // Connected tenants first: opening and closing the others' connections
    // first would leave freed memory for these connections to reuse.
    let (_, connected_tenant) = grow(&tenants[..connected], async |tenant| {
        handles.push(connections.connection(tenant).await?);
        Ok(())
    })
    .await?;
    let (_, cached_tenant) = grow(&tenants[connected..], async |tenant| {
        let db = connections.connection(tenant).await?;
        close_connections(&db).await?;
        handles.push(db);
        Ok(())
    })
    .await?;
    let rss_after = rss_bytes()?;
    let stats = pools.stats();
    anyhow::ensure!(
        stats.pools == cached && stats.connections as usize == connected,
        "expected {cached} pools and {connected} connections, found {stats:?}"
    );
    if let TenantEngine::Postgres(pg) = env.tenancy.engine() {
        // Closed connections' backends take a moment to exit.
        let mut seen: i64 = -1;
        for _ in 0..20 {
            seen = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantdb-tenant' \
                 AND starts_with(datname, $1)",
            )
            .bind(env.config.database_prefix.as_str())
            .fetch_one(pg.admin_pool())
            .await?;
            if seen as usize == connected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(
            seen as usize == connected,
            "the server sees {seen} tenant connections, expected {connected}"
        );
    }
    drop(handles);

    println!(
        "  RSS before {:.1} MiB, after {:.1} MiB; per tenant: growth over the second half of each step \
         (over all of it in parentheses)",
        mib(rss_before),
        mib(rss_after)
    );
    let show = |what: String, (all, marginal): (f64, f64), note: String| {
        println!("  {what:<56} {marginal:>7.1} KiB  ({all:>6.1} KiB)  {note}");
    };
    show(
        format!("resolution cached, no pool ({cached} tenants)"),
        resolution,
        String::new(),
    );
    let sum = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
    let idle = sum(resolution, cached_tenant);
    show(
        format!("idle cached tenant: pool open, no connection ({})", cached - connected),
        idle,
        format!(
            "reference {REFERENCE_KIB:.0} KiB (TypeORM, seed design), ratio {:.2}",
            idle.1 / REFERENCE_KIB
        ),
    );
    let busy = sum(resolution, connected_tenant);
    show(
        format!("connected tenant: pool, one open connection ({connected})"),
        busy,
        format!("of which the connection {:.1} KiB", busy.1 - idle.1),
    );
    connections.stop();
    pools.close_all().await;
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
