//! many-servers: the many-tenants load (a primary-key select on a uniformly
//! random tenant, from 32 workers) over tenants on one throwaway PostgreSQL
//! server, and over as many tenants spread over three, each server with the
//! same budget; interleaved rounds, throughput medians and p99 over every
//! request. Then a fleet migration (one new column) over each set. Each set
//! has its own catalog and servers; the four clusters are made for the run
//! and removed.
//!
//! All servers share this machine's cores: the ratio says how much of the
//! per-server limit (its budget, its connection setup) three servers lift,
//! not what three machines would give.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use tenantdb::config::{Config, TenantServerConfig};
use tenantdb::{AddServer, DatabasePrefix, FleetOptions, NewTenant, Tenancy, TenantId, TenantMigrations, TenantSecret};
use tenantdb_test_support::{PgCluster, PgScratch};

use crate::env::{AddColumn, items};
use crate::many::load;
use crate::stats::{Outcome, median, percentile, row};

/// Each server's connection budget (the clusters allow 30 connections).
const BUDGET: u32 = 12;

fn v1() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
    vec![items()]
}

fn v2() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
    vec![items(), Box::new(AddColumn("m0002_a", "a"))]
}

/// One catalog whose tenants live on `servers`.
struct Set {
    config: Config,
    tenancy: Tenancy,
    tenants: Arc<Vec<TenantId>>,
    _catalog: PgScratch,
}

impl Set {
    async fn build(name: &str, servers: &[&PgCluster], tenants: usize) -> anyhow::Result<Self> {
        let scratch = PgScratch::new();
        let catalog = scratch.create_database(name).await;
        let mut config = Config::new(
            SecretString::from(catalog),
            TenantServerConfig::parse(&servers[0].url())?,
        );
        config.database_prefix = DatabasePrefix::parse(&format!("{}_", scratch.prefix()))?;
        config.secret = Some(TenantSecret::new(
            1,
            SecretString::from("bench-secret-0123456789abcdef0123456789"),
        )?);
        config.catalog_max_connections = 4;
        config.pools.budget = BUDGET;
        config.pools.max_per_tenant = 1;
        config.pools.acquire_timeout = tenantdb::config::DEFAULT_ACQUIRE_TIMEOUT;
        let tenancy = Tenancy::connect(config.clone(), TenantMigrations::from_fn(v1)).await?;
        for (i, server) in servers.iter().enumerate().skip(1) {
            tenancy
                .add_server(AddServer {
                    name: format!("s{i}"),
                    admin_url: SecretString::from(server.url()),
                    budget: BUDGET,
                    max_per_tenant: Some(1),
                })
                .await?;
        }
        let mut ids = Vec::with_capacity(tenants);
        for i in 0..tenants {
            let db = tenancy
                .provisioner()
                .create_tenant(NewTenant {
                    slug: format!("b{i}"),
                    ..Default::default()
                })
                .await?;
            let id = TenantId::from(db.tenant_id);
            let conn = tenancy.connections().connection(&tenantdb::TenantRef::Id(id)).await?;
            conn.execute_unprepared("INSERT INTO items (id, body) VALUES (1, 'hello')")
                .await?;
            ids.push(id);
        }
        Ok(Self {
            config,
            tenancy,
            tenants: Arc::new(ids),
            _catalog: scratch,
        })
    }

    /// Fleet migrate to `v2` at `concurrency` per server: (tenants, seconds).
    async fn migrate(&self, concurrency: usize) -> anyhow::Result<(usize, f64)> {
        let newer = Tenancy::connect(self.config.clone(), TenantMigrations::from_fn(v2)).await?;
        let started = Instant::now();
        let report = newer
            .fleet()
            .migrate(
                &FleetOptions {
                    concurrency,
                    ..Default::default()
                },
                |_| {},
            )
            .await?;
        let secs = started.elapsed().as_secs_f64();
        newer.close().await;
        anyhow::ensure!(report.failures.is_empty(), "fleet run failed: {:?}", report.failures);
        Ok((report.succeeded, secs))
    }
}

/// The same load on `one` and `three`, interleaved rounds: the medians'
/// ratio and each side's latencies.
async fn compare(
    one: &Set,
    three: &Set,
    one_tenants: &Arc<Vec<TenantId>>,
    three_tenants: &Arc<Vec<TenantId>>,
    requests: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let backend = sea_orm::DbBackend::Postgres;
    let (mut on_one, mut on_three) = (Outcome::default(), Outcome::default());
    let (mut one_rates, mut three_rates) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let salt = 0x5E4_u64 * (round as u64 + 7);
        for first in if round % 2 == 0 { [true, false] } else { [false, true] } {
            let (set, tenants) = if first {
                (one, one_tenants)
            } else {
                (three, three_tenants)
            };
            let connections = set.tenancy.connections();
            load(connections, tenants, requests / 20, salt ^ 1, backend).await?;
            let outcome = load(connections, tenants, requests, salt, backend).await?;
            anyhow::ensure!(outcome.errors == 0, "errors under load: {:?}", outcome.first_error);
            if first {
                one_rates.push(outcome.served as f64 / outcome.secs);
                on_one.add(outcome);
            } else {
                three_rates.push(outcome.served as f64 / outcome.secs);
                on_three.add(outcome);
            }
        }
    }
    row(
        "3 servers",
        median(&mut three_rates),
        "1 server",
        median(&mut one_rates),
        "req/s",
        "(goal >= 2.5 on uniform load)",
    );
    for (name, outcome) in [("1 server", &mut on_one), ("3 servers", &mut on_three)] {
        println!(
            "  {name:<9} p50 {:>7.2} ms  p99 {:>7.2} ms  served {:>7}  busy {:>4}",
            percentile(&mut outcome.latencies, 0.50),
            percentile(&mut outcome.latencies, 0.99),
            outcome.served,
            outcome.busy,
        );
    }
    Ok(())
}

pub async fn run(quick: bool, tenants: Option<usize>, requests: Option<usize>) -> anyhow::Result<()> {
    let tenants = tenants.unwrap_or(if quick { 30 } else { 300 });
    let requests = requests.unwrap_or(if quick { 1500 } else { 5000 });
    let rounds = if quick { 2 } else { 5 };
    let started = Instant::now();
    // Four clusters: the one-server set has one of its own (each cluster
    // takes 30 connections; two sets' pools on one would not fit).
    let clusters = [
        PgCluster::start(),
        PgCluster::start(),
        PgCluster::start(),
        PgCluster::start(),
    ];
    let one = Set::build("one", &[&clusters[3]], tenants).await?;
    let three = Set::build("three", &[&clusters[0], &clusters[1], &clusters[2]], tenants).await?;
    let placed: Vec<String> = three
        .tenancy
        .servers()
        .await?
        .iter()
        .map(|s| format!("{} {}", s.name, s.tenants))
        .collect();
    println!(
        "many-servers: {tenants} tenants on 1 server and on 3 ({}), budget {BUDGET} per server (one connection \
         per pool), concurrency 32, {rounds} rounds of {requests} selects each (set up in {:.1} s)",
        placed.join(", "),
        started.elapsed().as_secs_f64()
    );
    // Uniform over every tenant: nearly every request opens a connection
    // on both sides (the load is connection setup). Then uniform over as
    // many tenants as the three servers' budgets hold (the first placed
    // there, a third on each): three servers hold them all, one churns.
    compare(&one, &three, &one.tenants, &three.tenants, requests, rounds).await?;
    let fits = (3 * BUDGET as usize).min(tenants);
    let subset = |set: &Set| Arc::new(set.tenants[..fits].to_vec());
    println!("  over {fits} tenants (what three budgets hold):");
    compare(&one, &three, &subset(&one), &subset(&three), requests / 4, rounds).await?;
    // The migrations connect on their own: no pool of the load stays open.
    one.tenancy.close().await;
    three.tenancy.close().await;
    let concurrency = 2;
    let (n1, secs1) = one.migrate(concurrency).await?;
    let (n3, secs3) = three.migrate(concurrency).await?;
    row(
        &format!("fleet migrate, 3 servers ({n3} tenants, {secs3:.2} s)"),
        n3 as f64 / secs3,
        &format!("1 server ({n1} tenants, {secs1:.2} s)"),
        n1 as f64 / secs1,
        "tenants/s",
        "(goal >= 2; concurrency 2 per server)",
    );
    Ok(())
}
