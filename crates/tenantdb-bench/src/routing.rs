//! routing: `connection(tenant)` + a primary-key select, against the same
//! select through a plain `HashMap<TenantId, pool>` of the same pools, and
//! against one pool on one database. Runs interleaved, medians of rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sea_orm::{DatabaseConnection, DbBackend};
use tenantdb::{PoolConfig, PoolHandle, TenantConnections, TenantId, TenantRef};

use crate::Engine;
use crate::env::{BenchEnv, select_item};
use crate::stats::{median, row};

const CONCURRENCY: usize = 8;

#[derive(Clone)]
enum Target {
    Routed(TenantConnections),
    Map(Arc<HashMap<TenantId, DatabaseConnection>>),
    Single(DatabaseConnection),
}

/// What a mode hands the select: a counted handle (routed) or a plain pool.
enum Db {
    Routed(PoolHandle),
    Plain(DatabaseConnection),
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        match self {
            Self::Routed(handle) => handle,
            Self::Plain(db) => db,
        }
    }
}

impl Target {
    async fn db(&self, tenant: TenantId) -> anyhow::Result<Db> {
        Ok(match self {
            Self::Routed(connections) => Db::Routed(connections.connection(&TenantRef::Id(tenant)).await?),
            Self::Map(map) => Db::Plain(map.get(&tenant).cloned().ok_or_else(|| anyhow::anyhow!("no pool"))?),
            Self::Single(db) => Db::Plain(db.clone()),
        })
    }
}

/// Requests per second of `requests` selects on random tenants from
/// `CONCURRENCY` workers; every mode sees the same tenant sequence.
async fn load(
    target: &Target,
    tenants: &Arc<Vec<TenantId>>,
    requests: usize,
    backend: DbBackend,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (target, tenants) = (target.clone(), tenants.clone());
            tokio::spawn(async move {
                let mut seed = (w as u64 + 1) * 0x9E37_79B9_7F4A_7C15;
                for _ in 0..requests / CONCURRENCY {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let tenant = tenants[(seed >> 33) as usize % tenants.len()];
                    let db = target.db(tenant).await?;
                    select_item(&db, backend).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(engine: Engine, quick: bool) -> anyhow::Result<()> {
    // The shared PostgreSQL server has about 97 usable connections for every
    // run on it: 60 hot tenants with one connection each is what fits.
    let hot = match (engine, quick) {
        (_, true) => 10,
        (Engine::Postgres, false) => 60,
        (Engine::Sqlite, false) => 100,
    };
    let (rounds, requests) = if quick { (3, 800) } else { (9, 20_000) };
    let env = BenchEnv::new(engine, hot, hot as u32, 1).await?;
    let connections = env.tenancy.connections().clone();
    let mut map = HashMap::new();
    for &id in &env.tenants {
        let handle = connections.connection(&TenantRef::Id(id)).await?;
        map.insert(id, handle.connection().clone());
    }
    let first = env.tenancy.provisioner().tenant_db(
        &env.tenancy
            .catalog()
            .tenant_databases()
            .find_by_tenant(env.tenants[0].as_uuid())
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?,
    );
    // The same kind of pool the router opens (no ping before use), on its own.
    let (single, _) = env
        .tenancy
        .engine()
        .open_pool(&first, &PoolConfig::default(), CONCURRENCY as u32)
        .await?;
    let tenants = Arc::new(env.tenants.clone());
    let single_tenant = Arc::new(vec![env.tenants[0]]);
    let targets = [
        Target::Routed(connections),
        Target::Map(Arc::new(map)),
        Target::Single(single.clone()),
    ];
    let mut results = [Vec::new(), Vec::new(), Vec::new()];
    // Warm up once, then interleave the modes round by round.
    for target in &targets {
        load(target, &tenants, requests / 4, env.backend).await?;
    }
    for _ in 0..rounds {
        for (i, target) in targets.iter().enumerate() {
            let set = if i == 2 { &single_tenant } else { &tenants };
            results[i].push(load(target, set, requests, env.backend).await?);
        }
    }
    let [mut routed, mut mapped, mut one] = results;
    let (routed, mapped, one) = (median(&mut routed), median(&mut mapped), median(&mut one));
    println!("routing: {hot} hot tenants, concurrency {CONCURRENCY}, {rounds} rounds of {requests} selects, medians");
    row(
        "routed connection(tenant) + select",
        routed,
        "HashMap of the same pools",
        mapped,
        "req/s",
        "goal >= 0.97",
    );
    row(
        "routed connection(tenant) + select",
        routed,
        "one pool, one database",
        one,
        "req/s",
        "",
    );
    let stats = env.tenancy.pools().stats();
    println!(
        "  pools created {}, open {}, connections {}",
        stats.pools_created, stats.pools, stats.connections
    );
    single.close().await?;
    env.close().await;
    Ok(())
}
