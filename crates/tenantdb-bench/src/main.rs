//! `tenantdb-bench`: measures tenantdb against its baselines in one run and
//! prints the ratios (absolute figures on a shared machine drift between
//! runs; ratios measured side by side hold). Build with `--release`.

mod cold;
mod env;
mod fleet;
mod http;
mod many;
mod many_servers;
mod memory;
mod moves;
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
    /// Random tenants out of many under a connection budget vs. the hot set.
    ManyTenants,
    /// The many-tenants load on tenants spread over three throwaway
    /// PostgreSQL servers vs. on one, and fleet migrate over both
    /// (PostgreSQL only; not part of `all`).
    ManyServers,
    /// One tenant with rows over five tables under a steady write load,
    /// moved online between two throwaway PostgreSQL servers, then offline
    /// back: the longest write pause, the whole move, writes lost
    /// (PostgreSQL only; not part of `all`).
    Move,
    /// `GET /v1/projects` through the service vs. a minimal axum handler.
    Http,
    /// Resident memory per cached and per connected tenant.
    Memory,
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
    /// many-tenants: tenants (default 1,000 PostgreSQL databases, 5,000
    /// SQLite files); fleet-migrate: tenants (default 200 PostgreSQL, 500
    /// SQLite); memory: cached tenants (default 1,000).
    #[arg(long)]
    tenants: Option<usize>,
    /// many-tenants and http: the connection budget (default 20; http on
    /// SQLite: 100).
    #[arg(long)]
    budget: Option<u32>,
    /// many-tenants and http: requests per round and mode.
    #[arg(long)]
    requests: Option<usize>,
    /// memory: tenants holding one open connection (default 100; 20 on
    /// PostgreSQL, whose shared server cannot spare more).
    #[arg(long)]
    connected: Option<usize>,
    /// move: rows in the moved tenant (default 100,000).
    #[arg(long)]
    rows: Option<usize>,
}

/// Counts given on the command line (each scenario has its defaults).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub tenants: Option<usize>,
    pub budget: Option<u32>,
    pub requests: Option<usize>,
    pub connected: Option<usize>,
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
        fleet::run(args.engine, args.quick, args.tenants).await?;
    }
    let counts = Counts {
        tenants: args.tenants,
        budget: args.budget,
        requests: args.requests,
        connected: args.connected,
    };
    if matches!(args.scenario, Scenario::ManyTenants | Scenario::All) {
        many::run(args.engine, args.quick, counts).await?;
    }
    if matches!(args.scenario, Scenario::ManyServers) {
        anyhow::ensure!(args.engine == Engine::Postgres, "many-servers runs on PostgreSQL only");
        many_servers::run(args.quick, args.tenants, args.requests).await?;
    }
    if matches!(args.scenario, Scenario::Move) {
        anyhow::ensure!(args.engine == Engine::Postgres, "move runs on PostgreSQL only");
        moves::run(args.quick, args.rows).await?;
    }
    if matches!(args.scenario, Scenario::Http | Scenario::All) {
        http::run(args.engine, args.quick, counts).await?;
    }
    if matches!(args.scenario, Scenario::Memory | Scenario::All) {
        memory::run(args.engine, args.quick, counts).await?;
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
