//! `migrate`, `migrate status` and `status`: the fleet run (progress on
//! stderr, a table of failures at the end, a non-zero exit when any tenant
//! failed) and the fleet on one screen.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use tenantdb::{Behind, FleetOptions, FleetReport, MigrationRun};
use tenantdb::{DbStatus, Tenancy};

use crate::args::parse_ref;
use crate::output::{print_instances, print_json, print_rows, problems_remain};
use crate::progress::Progress;

/// The flags of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    action: Option<MigrateAction>,
    /// Tenants migrated at once on each tenant server (servers migrate
    /// side by side).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only this tenant (repeatable; slug or id).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Only tenants on this server (repeatable; by name).
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Print who would get which migrations; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the SQL each pending migration would run
    /// (in the tenant server's dialect; no database is touched).
    #[arg(long, requires = "dry_run")]
    sql: bool,
    /// Stop handing out work after this many failures.
    #[arg(long)]
    max_failures: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    #[arg(long)]
    canary: Option<usize>,
    /// Print one JSON document: the run's report (`{"run_id", "target",
    /// "status", "total", "succeeded", "failed", "skipped", "stopped",
    /// "failures": [{"tenant_id", "error"}]}`), the plan with `--dry-run`
    /// (`{"target", "behind": [{"tenant_id", "database_name", "from",
    /// "pending"}]}`, and with --sql `"sql": {"<migration>": ["<statement>",
    /// ...] | {"error"}}`), or `migrate status`'s figures.
    #[arg(long, global = true)]
    json: bool,
}

/// The flags of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this tenant server in `servers` (by name).
    #[arg(long)]
    server: Option<String>,
    /// Print `{"tenants_by_status", "server", "instances": [{"id", "host",
    /// "pid", "share", "started_at", "lease_expires_at"}], "servers":
    /// [server], "pools", "versions"}`: `server` and `instances` are the
    /// server of the settings, `servers` every tenant server as `servers
    /// list --json` prints it, `versions` is `migrate status --json`.
    #[arg(long)]
    json: bool,
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
            servers: self.servers.clone(),
            max_failures: self.max_failures,
            canary: self.canary,
        })
    }
}

pub(crate) async fn migrate(tenancy: &Tenancy, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    if let Some(MigrateAction::Status) = args.action {
        let figures = Versions::read(tenancy).await?;
        if args.json {
            print_json(&figures.to_json())?;
        } else {
            figures.print();
        }
        return Ok(ExitCode::SUCCESS);
    }
    let provisioner = tenancy.provisioner();
    let fleet = tenancy.fleet();
    let behind = fleet
        .on_servers(fleet.behind(&options.tenants).await?, &options.servers)
        .await?;
    let target = provisioner
        .migrations()
        .latest_version()
        .unwrap_or_else(|| "(none)".into());
    if args.dry_run {
        let sql = if args.sql {
            let mut pending: Vec<String> = behind.iter().flat_map(|t| t.pending.iter().cloned()).collect();
            pending.sort_unstable();
            pending.dedup();
            let backend = match tenancy.engine() {
                tenantdb::engine::Engine::Postgres(_) => sea_orm::DatabaseBackend::Postgres,
                _ => sea_orm::DatabaseBackend::Sqlite,
            };
            Some(crate::migration_sql::sql_of(provisioner.migrations(), &pending, backend).await)
        } else {
            None
        };
        if args.json {
            let mut plan = plan_json(&behind, &target);
            if let Some(sql) = &sql {
                plan["sql"] = sql_json(sql);
            }
            print_json(&plan)?;
        } else {
            print_plan(&behind, &target);
            if let Some(sql) = &sql {
                print_sql(sql, &behind);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if behind.is_empty() && !args.json {
        println!("every tenant is at {target}");
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Arc::new(Progress::new(behind.len(), "migrated"));
    let recorder = progress.clone();
    let report = tenancy
        .fleet()
        .migrate(&options, move |event| recorder.record(event))
        .await?;
    let took = progress.finish();
    if args.json {
        print_json(&report_json(&report, took))?;
        if report.failures.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(ExitCode::from(crate::exit::FAILURE));
    }
    Ok(print_report(&report, &target, took))
}

fn plan_json(behind: &[Behind], target: &str) -> Value {
    let behind: Vec<Value> = behind
        .iter()
        .map(|t| json!({"tenant_id": t.tenant_id, "database_name": t.database_name, "from": t.from, "pending": t.pending}))
        .collect();
    json!({"target": target, "behind": behind})
}

fn report_json(report: &FleetReport, took: std::time::Duration) -> Value {
    let failures: Vec<Value> = report
        .failures
        .iter()
        .map(|(tenant, error)| json!({"tenant_id": tenant, "error": error}))
        .collect();
    json!({
        "run_id": report.run_id, "target": report.target, "status": report.status(),
        "total": report.total, "succeeded": report.succeeded, "failed": report.failures.len(),
        "skipped": report.skipped, "stopped": report.stopped, "seconds": took.as_secs_f64(),
        "failures": failures,
    })
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

type RenderedSql = BTreeMap<String, Result<Vec<String>, String>>;

fn sql_json(sql: &RenderedSql) -> Value {
    let by_name = sql.iter().map(|(name, rendered)| {
        let value = match rendered {
            Ok(statements) => json!(statements),
            Err(error) => json!({ "error": error }),
        };
        (name.clone(), value)
    });
    Value::Object(by_name.collect())
}

/// Each pending migration's SQL under a comment naming it and how many
/// tenants would run it, in the order the set applies them.
fn print_sql(sql: &RenderedSql, behind: &[Behind]) {
    let mut order: Vec<&String> = Vec::new();
    for tenant in behind {
        for name in &tenant.pending {
            if !order.contains(&name) {
                order.push(name);
            }
        }
    }
    for name in order {
        let tenants = behind.iter().filter(|t| t.pending.contains(name)).count();
        println!("\n-- {name} ({tenants} tenant(s))");
        match &sql[name] {
            Ok(statements) if statements.is_empty() => println!("-- (no statements)"),
            Ok(statements) => statements.iter().for_each(|s| println!("{s}")),
            Err(error) => println!("-- {error}"),
        }
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
    print_rows(
        &["TENANT", "ERROR"],
        report
            .failures
            .iter()
            .map(|(tenant, error)| vec![tenant.to_string(), error.clone()]),
    );
    problems_remain(
        crate::exit::FAILURE,
        format_args!(
            "{} tenant(s) failed; they keep their previous version",
            report.failures.len()
        ),
    )
}

/// `status`: the fleet on one screen.
pub(crate) async fn overview(tenancy: &Tenancy, args: StatusArgs) -> anyhow::Result<()> {
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
    let engine = tenancy.engine();
    let pools = tenancy.pools();
    let stats = pools.stats();
    let versions = Versions::read(tenancy).await?;
    // This server's view: its live instances and their shares.
    let instances = tenancy
        .server(tenancy.server_name())
        .await?
        .map(|server| server.instances)
        .unwrap_or_default();
    let servers: Vec<tenantdb::Server> = match &args.server {
        Some(name) => vec![
            tenancy
                .server(name)
                .await?
                .with_context(|| format!("no server named '{name}'"))?,
        ],
        None => tenancy.servers().await?,
    };
    let warm = tenancy.provisioner().warm_stock().await.unwrap_or_default();
    if args.json {
        return print_json(&json!({
            "tenants_by_status": by_status,
            "warm": warm,
            "server": {
                "name": tenancy.server_name(), "engine": engine.name(), "describe": engine.describe(),
                "budget": pools.config().budget, "max_per_tenant": pools.config().max_per_tenant,
            },
            "instances": instances,
            "servers": servers,
            "pools": {"open": stats.pools, "connections": stats.connections, "idle_connections": stats.idle_connections},
            "versions": versions.to_json(),
        }));
    }
    println!("tenants by status:");
    print_counts(&by_status);
    let wanted = tenancy.provisioner().warm_databases();
    for stock in &warm {
        println!("warm databases on '{}': {} of {wanted}", stock.server, stock.ready);
    }
    println!(
        "tenant server '{}': {} ({}), budget {} connections, up to {} per tenant",
        tenancy.server_name(),
        engine.name(),
        engine.describe(),
        pools.config().budget,
        pools.config().max_per_tenant
    );
    if instances.is_empty() {
        println!("instances sharing the budget: none has opened a tenant pool");
    } else {
        println!("instances sharing the budget:");
        print_instances(&instances);
    }
    println!("tenant servers:");
    crate::servers::print_table(&servers);
    println!(
        "pools in this process: {} open, {} connections ({} idle)",
        stats.pools, stats.connections, stats.idle_connections
    );
    versions.print();
    Ok(())
}

/// `migrate status`: tenants per version and per database status, and the
/// recent runs.
struct Versions {
    latest: String,
    by_version: BTreeMap<String, usize>,
    by_status: BTreeMap<&'static str, usize>,
    behind: usize,
    runs: Vec<MigrationRun>,
}

impl Versions {
    async fn read(tenancy: &Tenancy) -> anyhow::Result<Self> {
        let rows = tenancy.catalog().tenant_databases().list(None).await?;
        let latest = tenancy.provisioner().migrations().latest_version().unwrap_or_default();
        let mut figures = Self {
            behind: 0,
            by_version: BTreeMap::new(),
            by_status: BTreeMap::new(),
            runs: tenancy.fleet().runs(10).await?,
            latest,
        };
        for row in &rows {
            *figures
                .by_version
                .entry(row.schema_version.clone().unwrap_or_else(|| "(none)".into()))
                .or_default() += 1;
            *figures.by_status.entry(row.status.as_str()).or_default() += 1;
            if row.status == DbStatus::Active && row.schema_version.as_deref() != Some(figures.latest.as_str()) {
                figures.behind += 1;
            }
        }
        Ok(figures)
    }

    /// `{"latest", "by_version", "by_database_status", "behind", "runs"}`.
    fn to_json(&self) -> Value {
        json!({
            "latest": self.latest, "by_version": self.by_version, "by_database_status": self.by_status,
            "behind": self.behind, "runs": self.runs,
        })
    }

    fn print(&self) {
        println!("latest tenant migration: {}", self.latest);
        println!("tenants by version:");
        print_counts(&self.by_version);
        println!("tenants by database status:");
        print_counts(&self.by_status);
        println!("behind: {}", self.behind);
        println!("recent runs:");
        let rows = self.runs.iter().map(|run| {
            vec![
                run.id.to_string(),
                run.status.to_string(),
                run.target_version.clone().unwrap_or_else(|| "-".into()),
                run.total.to_string(),
                run.succeeded.to_string(),
                run.failed.to_string(),
                run.skipped.to_string(),
                tenantdb::rfc3339(run.started_at),
            ]
        });
        print_rows(
            &["RUN", "STATUS", "TARGET", "TOTAL", "OK", "FAILED", "SKIPPED", "STARTED"],
            rows,
        );
    }
}

fn print_counts<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) {
    for (key, count) in counts {
        println!("  {key:<40} {count}");
    }
}
