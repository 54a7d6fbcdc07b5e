//! fleet-migrate: one new migration (a column) on every tenant, at
//! concurrency 1, 4 and 8, and a run with nothing to do (who is behind comes
//! from the catalog: no tenant is connected to).

use std::time::Instant;

use sea_orm_migration::MigrationTrait;
use tenantdb::FleetOptions;
use tenantdb::{Tenancy, TenantMigrations};

use crate::Engine;
use crate::env::{AddColumn, BenchEnv, items};

fn v1() -> Vec<Box<dyn MigrationTrait>> {
    vec![items()]
}
fn v2() -> Vec<Box<dyn MigrationTrait>> {
    vec![items(), Box::new(AddColumn("m0002_a", "a"))]
}
fn v3() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        items(),
        Box::new(AddColumn("m0002_a", "a")),
        Box::new(AddColumn("m0003_b", "b")),
    ]
}
fn v4() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        items(),
        Box::new(AddColumn("m0002_a", "a")),
        Box::new(AddColumn("m0003_b", "b")),
        Box::new(AddColumn("m0004_c", "c")),
    ]
}

pub async fn run(engine: Engine, quick: bool, tenants: Option<usize>) -> anyhow::Result<()> {
    let tenants = tenants.unwrap_or(match (engine, quick) {
        (_, true) => 20,
        (Engine::Postgres, false) => 200,
        (Engine::Sqlite, false) => 500,
    });
    let started = Instant::now();
    let env = BenchEnv::with_schema(engine, tenants, 16, 1, TenantMigrations::from_fn(v1)).await?;
    println!(
        "fleet-migrate: {tenants} tenants (made in {:.1} s), one new migration per run",
        started.elapsed().as_secs_f64()
    );
    let steps: [(usize, tenantdb::internal::MigrationList); 3] = [(1, v2), (4, v3), (8, v4)];
    for (concurrency, schema) in steps {
        let newer = Tenancy::connect(env.config.clone(), TenantMigrations::from_fn(schema)).await?;
        let options = FleetOptions {
            concurrency,
            ..Default::default()
        };
        let started = Instant::now();
        let report = newer.fleet().migrate(&options, |_| {}).await?;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(report.failures.is_empty(), "fleet run failed: {:?}", report.failures);
        println!(
            "  concurrency {concurrency}: {} tenants in {secs:.2} s = {:.0} tenants/s, {:.1} ms per tenant",
            report.succeeded,
            report.succeeded as f64 / secs,
            secs * 1e3 / report.succeeded as f64
        );
        if concurrency == 8 {
            let started = Instant::now();
            let again = newer.fleet().migrate(&options, |_| {}).await?;
            println!(
                "  nothing to do: {} behind, run took {:.1} ms",
                again.total,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        newer.close().await;
    }
    env.close().await;
    Ok(())
}
