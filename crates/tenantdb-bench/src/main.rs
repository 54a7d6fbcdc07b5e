//! `tenantdb-bench`: measures tenantdb against its baselines in one run and
//! prints the ratios (absolute figures on a shared machine drift between
//! runs; ratios measured side by side hold). Build with `--release`.

mod cold;
mod env;
mod fleet;
mod provision;
mod routing;
mod stats;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Routed query vs. the same query through a plain map of the same pools.
    Routing,
    /// First query on a tenant with no pool vs. a bare connect + query.
    Cold,
    /// One new migration on every tenant at concurrency 1, 4 and 8.
    FleetMigrate,
    /// New tenants: template clone vs. replaying migrations vs. a bare clone.
    Provision,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// Benchmarks for tenantdb. PostgreSQL comes from TENANTDB_TEST_POSTGRES_URL
/// (default postgres://postgres@127.0.0.1:5432/postgres); everything the
/// harness makes is under its own prefix and dropped at the end (or swept
/// by the next run after a crash).
#[derive(Debug, Parser)]
#[command(name = "tenantdb-bench")]
struct Args {
    scenario: Scenario,
    #[arg(long, value_enum, default_value = "postgres")]
    engine: Engine,
    /// Small counts: seconds, not minutes (CI runs this to keep the harness
    /// working; its figures mean little).
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "tenantdb-bench: {} cores, engine {:?}{}",
        cores(),
        args.engine,
        if args.quick { ", quick" } else { "" }
    );
    if args.engine == Engine::Postgres {
        println!("server: {}", env::postgres_version().await?);
    }
    if matches!(args.scenario, Scenario::Routing | Scenario::All) {
        routing::run(args.engine, args.quick).await?;
    }
    if matches!(args.scenario, Scenario::Cold | Scenario::All) {
        cold::run(args.engine, args.quick).await?;
    }
    if matches!(args.scenario, Scenario::Provision | Scenario::All) {
        provision::run(args.engine, args.quick).await?;
    }
    if matches!(args.scenario, Scenario::FleetMigrate | Scenario::All) {
        fleet::run(args.engine, args.quick).await?;
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
