//! `tenantdb migrate`: the fleet run with a progress bar on a terminal,
//! plain periodic lines otherwise, a table of failures at the end, and a
//! non-zero exit when any tenant failed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tenantdb::Tenancy;
use tenantdb::catalog::DbStatus;
use tenantdb::doctor::{DoctorOptions, Finding, Remedy};
use tenantdb::fleet::{FleetEvent, FleetOptions};

#[derive(Debug)]
pub struct MigrateCommand {
    pub status: bool,
    pub dry_run: bool,
    pub options: FleetOptions,
}

pub async fn migrate(tenancy: &Tenancy, command: MigrateCommand) -> anyhow::Result<()> {
    let provisioner = tenancy.provisioner();
    if command.status {
        return status(tenancy).await;
    }
    let behind = tenancy.fleet().behind(&command.options.tenants).await?;
    let target = provisioner
        .migrations()
        .latest_version()
        .unwrap_or_else(|| "(none)".into());
    if command.dry_run {
        println!("{} tenant(s) behind {target}", behind.len());
        for tenant in &behind {
            println!(
                "{} {} at {}: {}",
                tenant.tenant_id,
                tenant.database_name,
                tenant.from.as_deref().unwrap_or("(nothing)"),
                tenant.pending.join(", ")
            );
        }
        return Ok(());
    }
    if behind.is_empty() {
        println!("every tenant is at {target}");
        return Ok(());
    }
    let total = behind.len() as u64;
    let done = Arc::new(AtomicUsize::new(0));
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants  {per_sec}  eta {eta}  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let bar = progress.clone();
    let counter = done.clone();
    let started = Instant::now();
    let last_line = Arc::new(std::sync::Mutex::new(Instant::now()));
    let report = tenancy
        .fleet()
        .migrate(&command.options, move |event: &FleetEvent| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(bar) = &bar {
                bar.inc(1);
                if let FleetEvent::Failed { .. } = event {
                    bar.set_message("some failed");
                }
            } else {
                let mut last = last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(2) || n as u64 == total {
                    *last = Instant::now();
                    eprintln!(
                        "migrated {n}/{total} tenants ({:.1}/s)",
                        n as f64 / started.elapsed().as_secs_f64().max(1e-3)
                    );
                }
            }
        })
        .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    println!(
        "run {}: {} of {} tenants migrated to {target} in {:.1} s, {} failed, {} skipped{}",
        report.run_id,
        report.succeeded,
        report.total,
        started.elapsed().as_secs_f64(),
        report.failures.len(),
        report.skipped,
        if report.stopped { " (stopped early)" } else { "" }
    );
    if !report.failures.is_empty() {
        println!("{:<38} ERROR", "TENANT");
        for (tenant, error) in &report.failures {
            println!("{tenant:<38} {error}");
        }
        bail!(
            "{} tenant(s) failed; they keep their previous version",
            report.failures.len()
        );
    }
    Ok(())
}

/// `tenantdb status`: the fleet on one screen.
pub async fn overview(tenancy: &Tenancy) -> anyhow::Result<()> {
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
    for (status, count) in &by_status {
        println!("  {status:<40} {count}");
    }
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
    status(tenancy).await
}

async fn status(tenancy: &Tenancy) -> anyhow::Result<()> {
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
    for (version, count) in &versions {
        println!("  {version:<40} {count}");
    }
    println!("tenants by database status:");
    for (status, count) in &statuses {
        println!("  {status:<40} {count}");
    }
    let behind = rows
        .iter()
        .filter(|r| r.status == DbStatus::Active && r.schema_version.as_deref() != Some(latest.as_str()))
        .count();
    println!("behind: {behind}");
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
            tenantdb::view::rfc3339(run.started_at)
        );
    }
    Ok(())
}

/// `tenantdb doctor [--fix]`.
pub async fn doctor(tenancy: &Tenancy, options: DoctorOptions, fix: bool, json: bool) -> anyhow::Result<()> {
    let doctor = tenancy.doctor();
    let found = doctor.examine(options).await?;
    let (repaired, remaining) = if fix && found.iter().any(Finding::fixable) {
        let repaired = doctor.repair(&found).await;
        (repaired, doctor.examine(options).await?)
    } else {
        (Vec::new(), found.clone())
    };
    if json {
        let report = serde_json::json!({
            "found": found,
            "repaired": repaired.iter().map(|r| serde_json::json!({
                "problem": r.finding.problem,
                "subject": r.finding.subject,
                "tenant_id": r.finding.tenant_id,
                "done": r.outcome.as_ref().ok(),
                "error": r.outcome.as_ref().err(),
            })).collect::<Vec<_>>(),
            "remaining": remaining,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if fix {
            for r in &repaired {
                match &r.outcome {
                    Ok(done) => println!("fixed   {} {}: {done}", r.finding.problem.as_str(), r.finding.subject),
                    Err(why) => println!("not fixed {} {}: {why}", r.finding.problem.as_str(), r.finding.subject),
                }
            }
        }
        print_findings(&remaining, fix);
    }
    if remaining.is_empty() {
        return Ok(());
    }
    bail!("{} problem(s) remain", remaining.len())
}

fn print_findings(findings: &[Finding], fixed: bool) {
    if findings.is_empty() {
        println!("no problems found");
        return;
    }
    let fixable = findings.iter().filter(|f| f.fixable()).count();
    println!(
        "{} problem(s){}:",
        findings.len(),
        if fixed {
            " remain".to_owned()
        } else if fixable > 0 {
            format!(", {fixable} fixable with --fix")
        } else {
            String::new()
        }
    );
    for finding in findings {
        let tenant = finding
            .tenant_id
            .map(|id| format!(" (tenant {id})"))
            .unwrap_or_default();
        println!("  {:<18} {}{tenant}", finding.problem.as_str(), finding.subject);
        println!("      {}", finding.detail);
        match &finding.remedy {
            Remedy::Fix(what) => println!("      --fix: {what}"),
            Remedy::Manual(what) => println!("      to do: {what}"),
        }
    }
}
