//! `migrate`, `migrate status` and `status`: the fleet run (progress on
//! stderr, a table of failures at the end, a non-zero exit when any tenant
//! failed) and the fleet on one screen.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use tenantdb::{Behind, FleetOptions, FleetReport};
use tenantdb::{DbStatus, Tenancy};

use crate::args::parse_ref;
use crate::output::problems_remain;
use crate::progress::Progress;

/// The flags of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    action: Option<MigrateAction>,
    /// Tenants migrated at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only this tenant (repeatable; slug or id).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Print who would get which migrations; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop handing out work after this many failures.
    #[arg(long)]
    max_failures: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    #[arg(long)]
    canary: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Recent runs, and how many tenants sit at each version.
    Status,
}

impl MigrateArgs {
    fn options(&self) -> anyhow::Result<FleetOptions> {
        let tenants = self
            .tenants
            .iter()
            .map(|t| parse_ref(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        Ok(FleetOptions {
            concurrency: self.concurrency,
            tenants,
            max_failures: self.max_failures,
            canary: self.canary,
        })
    }
}

pub(crate) async fn migrate(tenancy: &Tenancy, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    if let Some(MigrateAction::Status) = args.action {
        versions(tenancy).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let provisioner = tenancy.provisioner();
    let behind = tenancy.fleet().behind(&options.tenants).await?;
    let target = provisioner
        .migrations()
        .latest_version()
        .unwrap_or_else(|| "(none)".into());
    if args.dry_run {
        print_plan(&behind, &target);
        return Ok(ExitCode::SUCCESS);
    }
    if behind.is_empty() {
        println!("every tenant is at {target}");
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Arc::new(Progress::new(behind.len()));
    let recorder = progress.clone();
    let report = tenancy
        .fleet()
        .migrate(&options, move |event| recorder.record(event))
        .await?;
    let took = progress.finish();
    Ok(print_report(&report, &target, took))
}

fn print_plan(behind: &[Behind], target: &str) {
    println!("{} tenant(s) behind {target}", behind.len());
    for tenant in behind {
        println!(
            "{} {} at {}: {}",
            tenant.tenant_id,
            tenant.database_name,
            tenant.from.as_deref().unwrap_or("(nothing)"),
            tenant.pending.join(", ")
        );
    }
}

fn print_report(report: &FleetReport, target: &str, took: std::time::Duration) -> ExitCode {
    println!(
        "run {}: {} of {} tenants migrated to {target} in {:.1} s, {} failed, {} skipped{}",
        report.run_id,
        report.succeeded,
        report.total,
        took.as_secs_f64(),
        report.failures.len(),
        report.skipped,
        if report.stopped { " (stopped early)" } else { "" }
    );
    if report.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("{:<38} ERROR", "TENANT");
    for (tenant, error) in &report.failures {
        println!("{tenant:<38} {error}");
    }
    problems_remain(
        crate::exit::FAILURE,
        format_args!(
            "{} tenant(s) failed; they keep their previous version",
            report.failures.len()
        ),
    )
}

/// `status`: the fleet on one screen.
pub(crate) async fn overview(tenancy: &Tenancy) -> anyhow::Result<()> {
    let mut by_status: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = tenancy.list_tenants(None, after, 500).await?;
        for tenant in &page {
            *by_status.entry(tenant.status.as_str()).or_default() += 1;
        }
        if page.len() < 500 {
            break;
        }
        after = page.last().map(|t| t.id);
    }
    println!("tenants by status:");
    print_counts(&by_status);
    let engine = tenancy.engine();
    let pools = tenancy.pools();
    println!(
        "tenant server '{}': {} ({}), budget {} connections, up to {} per tenant",
        tenancy.server_name(),
        engine.name(),
        engine.describe(),
        pools.config().budget,
        pools.config().max_per_tenant
    );
    let stats = pools.stats();
    println!(
        "pools in this process: {} open, {} connections ({} idle)",
        stats.pools, stats.connections, stats.idle_connections
    );
    versions(tenancy).await
}

/// `migrate status`: tenants per version and per database status, and the
/// recent runs.
async fn versions(tenancy: &Tenancy) -> anyhow::Result<()> {
    let rows = tenancy.catalog().tenant_databases().list(None).await?;
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in &rows {
        *versions
            .entry(row.schema_version.clone().unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
        *statuses.entry(row.status.as_str()).or_default() += 1;
    }
    let latest = tenancy.provisioner().migrations().latest_version().unwrap_or_default();
    println!("latest tenant migration: {latest}");
    println!("tenants by version:");
    print_counts(&versions);
    println!("tenants by database status:");
    print_counts(&statuses);
    let behind = rows
        .iter()
        .filter(|r| r.status == DbStatus::Active && r.schema_version.as_deref() != Some(latest.as_str()))
        .count();
    println!("behind: {behind}");
    recent_runs(tenancy).await
}

fn print_counts<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) {
    for (key, count) in counts {
        println!("  {key:<40} {count}");
    }
}

async fn recent_runs(tenancy: &Tenancy) -> anyhow::Result<()> {
    println!("recent runs:");
    for run in tenancy.fleet().runs(10).await? {
        println!(
            "  {} {:<9} target {} total {} ok {} failed {} skipped {} started {}",
            run.id,
            run.status,
            run.target_version.as_deref().unwrap_or("-"),
            run.total,
            run.succeeded,
            run.failed,
            run.skipped,
            tenantdb::rfc3339(run.started_at)
        );
    }
    Ok(())
}
