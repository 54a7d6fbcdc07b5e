//! many-tenants: a primary-key select on a uniformly random tenant out of
//! many, from 32 workers, under a small connection budget (so nearly every
//! request finds its tenant without a pool and must evict one), against the
//! same load on as many tenants as the budget holds at once (the hot set).
//! Interleaved rounds; throughput medians, latency percentiles over every
//! request. While the load runs, a separate connection samples what the
//! server sees (`pg_stat_activity`); SQLite reports the pools' own count.
//! Fails on any error other than a counted "busy", and on a peak above the
//! budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tenantdb::{TenantConnections, TenantId, TenantMigrations, TenantPools, TenantRef};
use tenantdb_test_support::postgres_url;

use crate::env::{BenchEnv, items, require_free_slots, select_item};
use crate::stats::{Outcome, median, percentile, row};
use crate::{Counts, Engine};

const CONCURRENCY: usize = 32;

fn is_busy(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tenantdb::Error>()
        .is_some_and(tenantdb::Error::is_busy)
        || err
            .downcast_ref::<sea_orm::DbErr>()
            .is_some_and(tenantdb::internal::is_busy_db_err)
}

/// `requests` selects on random tenants of `tenants` from `CONCURRENCY`
/// workers; `salt` varies the sequence between rounds.
pub(crate) async fn load(
    connections: &TenantConnections,
    tenants: &Arc<Vec<TenantId>>,
    requests: usize,
    salt: u64,
    backend: sea_orm::DbBackend,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (connections, tenants) = (connections.clone(), tenants.clone());
            let share = requests / CONCURRENCY + usize::from(w < requests % CONCURRENCY);
            tokio::spawn(async move {
                let mut outcome = Outcome {
                    latencies: Vec::with_capacity(share),
                    ..Default::default()
                };
                let mut seed = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
                for _ in 0..share {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let tenant = tenants[(seed >> 33) as usize % tenants.len()];
                    let sent = Instant::now();
                    let result = async {
                        let db = connections.connection(&TenantRef::Id(tenant)).await?;
                        select_item(&db, backend).await
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            outcome.served += 1;
                            outcome.latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        }
                        Err(err) if is_busy(&err) => outcome.busy += 1,
                        Err(err) => {
                            outcome.errors += 1;
                            outcome.first_error.get_or_insert_with(|| format!("{err:#}"));
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    Outcome::gather(workers, started).await
}

/// Samples, every 2 ms until stopped, the tenant connections open: as the
/// server sees them (PostgreSQL, from its own connection) and as the pools
/// count them. Returns the two peaks.
struct Sampler {
    running: Arc<AtomicBool>,
    server_peak: Arc<AtomicU32>,
    pools_peak: Arc<AtomicU32>,
    /// Samples taken, and those that saw more connections than the budget.
    samples: Arc<AtomicU64>,
    over: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Sampler {
    async fn start(pools: TenantPools, postgres_prefix: Option<String>, budget: u32) -> anyhow::Result<Self> {
        let mut server = match &postgres_prefix {
            Some(_) => Some(sqlx::PgConnection::connect(&postgres_url()).await?),
            None => None,
        };
        let running = Arc::new(AtomicBool::new(true));
        let (server_peak, pools_peak) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (samples, over) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (running, server_peak, pools_peak) = (running.clone(), server_peak.clone(), pools_peak.clone());
            let (samples, over) = (samples.clone(), over.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let held = pools.stats().connections;
                    pools_peak.fetch_max(held, Ordering::Relaxed);
                    let mut seen = 0;
                    if let (Some(conn), Some(prefix)) = (server.as_mut(), postgres_prefix.as_deref()) {
                        let count: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantdb-tenant' \
                             AND starts_with(datname, $1)",
                        )
                        .bind(prefix)
                        .fetch_one(&mut *conn)
                        .await?;
                        seen = u32::try_from(count).unwrap_or(u32::MAX);
                        server_peak.fetch_max(seen, Ordering::Relaxed);
                    }
                    samples.fetch_add(1, Ordering::Relaxed);
                    if held.max(seen) > budget {
                        over.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if let Some(conn) = server {
                    conn.close().await?;
                }
                Ok(())
            })
        };
        Ok(Self {
            running,
            server_peak,
            pools_peak,
            samples,
            over,
            task,
        })
    }

    /// The peaks since the last call (and starts over).
    fn take(&self) -> (u32, u32) {
        (
            self.server_peak.swap(0, Ordering::Relaxed),
            self.pools_peak.swap(0, Ordering::Relaxed),
        )
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.running.store(false, Ordering::Relaxed);
        self.task.await?
    }
}

pub async fn run(engine: Engine, quick: bool, counts: Counts) -> anyhow::Result<()> {
    let tenants = counts.tenants.unwrap_or(match (engine, quick) {
        (_, true) => 30,
        (Engine::Postgres, false) => 1000,
        (Engine::Sqlite, false) => 5000,
    });
    let budget = counts.budget.unwrap_or(20);
    let requests = counts.requests.unwrap_or(if quick { 1500 } else { 10_000 });
    let rounds = if quick { 2 } else { 5 };
    anyhow::ensure!(
        tenants > 0 && budget > 0,
        "many-tenants needs at least one tenant and a budget"
    );
    if engine == Engine::Postgres {
        // The budget, the catalog's and the admin pool's two each, the sampler.
        require_free_slots(budget + 5).await?;
    }
    let started = Instant::now();
    let env = BenchEnv::build(engine, tenants, TenantMigrations::from_fn(|| vec![items()]), |config| {
        config.pools.budget = budget;
        // One connection per pool: the hot set is exactly `budget` tenants.
        // (Under pressure a pool takes one permit whatever the maximum.)
        config.pools.max_per_tenant = 1;
        config.pools.acquire_timeout = tenantdb::config::DEFAULT_ACQUIRE_TIMEOUT;
    })
    .await?;
    println!(
        "many-tenants: {tenants} tenants (made in {:.1} s), budget {budget} (one connection per pool), \
         concurrency {CONCURRENCY}, {rounds} rounds of {requests} selects per mode",
        started.elapsed().as_secs_f64()
    );
    let result = measure(&env, engine, tenants, budget, requests, rounds).await;
    let scale = match result {
        Ok(()) => at_scale(&env, tenants).await,
        Err(err) => Err(err),
    };
    env.close().await;
    scale
}

/// What the fleet's size costs: the process's memory after the load (the
/// tenants the rounds reached resolved and cached), the catalog's size, and
/// the catalog queries whose cost grows with it.
async fn at_scale(env: &BenchEnv, tenants: usize) -> anyhow::Result<()> {
    let rss = crate::env::rss_bytes()? as f64;
    println!(
        "  resident memory after the rounds {:.1} MiB ({:.1} KiB per tenant in the catalog, {} pools open)",
        rss / 1048576.0,
        rss / 1024.0 / tenants as f64,
        env.tenancy.pools().stats().pools
    );
    let catalog_bytes = match env.tenancy.catalog().postgres_database_name().await? {
        Some(name) => {
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
                .bind(&name)
                .fetch_one(&sqlx::PgPool::connect(&postgres_url()).await?)
                .await?;
            size as f64
        }
        None => {
            use secrecy::ExposeSecret;
            let url = env.config.catalog_url.expose_secret();
            let path = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            std::fs::metadata(path).map(|m| m.len() as f64).unwrap_or(f64::NAN)
        }
    };
    println!("  catalog size {:.1} MiB", catalog_bytes / 1048576.0);
    // Slug lookups (the catalog, not the routing cache), 1,000 at random.
    let mut lookups = Vec::new();
    for i in 0..1000u64 {
        let n = (i.wrapping_mul(2_654_435_761) % tenants as u64) as usize;
        let slug = TenantRef::parse(&format!("b{n}"))?;
        let started = Instant::now();
        env.tenancy.tenant(&slug).await?;
        lookups.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "  tenant by slug from the catalog: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut lookups, 0.5),
        percentile(&mut lookups, 0.99)
    );
    // The whole list, 500 a page (keyset paging).
    let started = Instant::now();
    let (mut pages, mut listed, mut after) = (Vec::new(), 0, None);
    loop {
        let page_started = Instant::now();
        let page = env.tenancy.list_tenants(None, after, 500).await?;
        pages.push(page_started.elapsed().as_secs_f64() * 1e3);
        listed += page.len();
        if page.len() < 500 {
            break;
        }
        after = page.last().map(|t| t.id);
    }
    println!(
        "  tenants list, 500 a page: {} pages ({listed} tenants) in {:.2} s, page p50 {:.2} ms, p99 {:.2} ms",
        pages.len(),
        started.elapsed().as_secs_f64(),
        percentile(&mut pages, 0.5),
        percentile(&mut pages, 0.99)
    );
    let started = Instant::now();
    let behind = env.tenancy.fleet().behind(&[]).await?;
    println!(
        "  migrate: finding who is behind took {:.1} ms ({} behind)",
        started.elapsed().as_secs_f64() * 1e3,
        behind.len()
    );
    Ok(())
}

async fn measure(
    env: &BenchEnv,
    engine: Engine,
    tenants: usize,
    budget: u32,
    requests: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let connections = env.tenancy.connections().clone();
    let hot_count = (budget as usize).min(tenants);
    let all = Arc::new(env.tenants.clone());
    let hot = Arc::new(env.tenants[..hot_count].to_vec());
    let prefix = (engine == Engine::Postgres).then(|| env.config.database_prefix.to_string());
    let sampler = Sampler::start(env.tenancy.pools().clone(), prefix, budget).await?;
    // Every resolution is cached already: making the tenants wrote a row
    // through each.
    let created_before = env.tenancy.pools().stats().pools_created;
    let (mut many, mut hot_set) = (Outcome::default(), Outcome::default());
    let (mut many_rates, mut hot_rates) = (Vec::new(), Vec::new());
    let (mut many_peak, mut hot_peak) = ((0, 0), (0, 0));
    let max = |a: (u32, u32), b: (u32, u32)| (a.0.max(b.0), a.1.max(b.1));
    for round in 0..rounds {
        let salt = 0x51ED_u64 * (round as u64 + 3);
        // Alternate which goes first, so drift hits both alike.
        for mode in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            // Untimed: the previous round left the other mode's pools open.
            let set = if mode == 0 { &all } else { &hot };
            load(&connections, set, requests / 20, salt ^ 1, env.backend).await?;
            if mode == 0 {
                let outcome = load(&connections, &all, requests, salt, env.backend).await?;
                many_peak = max(many_peak, sampler.take());
                many_rates.push(outcome.served as f64 / outcome.secs);
                many.add(outcome);
            } else {
                let outcome = load(&connections, &hot, requests, salt, env.backend).await?;
                hot_peak = max(hot_peak, sampler.take());
                hot_rates.push(outcome.served as f64 / outcome.secs);
                hot_set.add(outcome);
            }
        }
    }
    let (samples, over) = (sampler.samples.clone(), sampler.over.clone());
    sampler.stop().await?;
    let stats = env.tenancy.pools().stats();
    row(
        &format!("uniform over {tenants} tenants"),
        median(&mut many_rates),
        &format!("hot set: {hot_count} tenants"),
        median(&mut hot_rates),
        "req/s",
        "",
    );
    for (name, outcome, peak) in [("many", &mut many, many_peak), ("hot set", &mut hot_set, hot_peak)] {
        let peak = match engine {
            Engine::Postgres => format!("peak connections {} (pg_stat_activity), {} (pools)", peak.0, peak.1),
            Engine::Sqlite => format!("peak connections {} (pools)", peak.1),
        };
        println!(
            "  {name:<8} p50 {:>7.2} ms  p99 {:>7.2} ms  served {:>7}  busy {:>4}  errors {}  {peak}  budget {budget}",
            percentile(&mut outcome.latencies, 0.50),
            percentile(&mut outcome.latencies, 0.99),
            outcome.served,
            outcome.busy,
            outcome.errors,
        );
    }
    println!(
        "  pools opened during the rounds {}, open now {}; {} of {} samples saw more connections than the budget",
        stats.pools_created - created_before,
        stats.pools,
        over.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
    );
    let errors = many.errors + hot_set.errors;
    if errors > 0 {
        let first = many.first_error.or(hot_set.first_error).unwrap_or_default();
        anyhow::bail!("many-tenants: {errors} requests failed with something other than busy, first: {first}");
    }
    let peak = many_peak.0.max(many_peak.1).max(hot_peak.0).max(hot_peak.1);
    anyhow::ensure!(
        peak <= budget,
        "many-tenants: {peak} tenant connections were open at once, over the budget of {budget}"
    );
    Ok(())
}
