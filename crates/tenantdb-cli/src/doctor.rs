//! `doctor [--fix]` and `reconcile`: finding drift between the catalog and
//! the tenant server, and finishing work a dead process left half-done.

use std::process::ExitCode;

use tenantdb::Tenancy;
use tenantdb::{DoctorOptions, Finding, ReconcileOutcome, Remedy, Repaired};

use crate::output::{print_json, problems_remain};

/// The flags of `doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Repair what is safe (drop orphans, finish stuck work, correct
    /// recorded versions, rebuild or drop templates), then check again.
    /// Databases tenantdb did not create are never touched.
    #[arg(long)]
    fix: bool,
    /// Skip connecting to each tenant database to compare its migration
    /// table with the catalog.
    #[arg(long)]
    no_versions: bool,
    /// Tenant databases checked at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only this tenant server (by name) [default: every server].
    #[arg(long)]
    server: Option<String>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn doctor(tenancy: &Tenancy, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let options = DoctorOptions {
        check_versions: !args.no_versions,
        concurrency: args.concurrency,
    };
    let names = match &args.server {
        Some(name) => vec![name.clone()],
        None => tenancy.servers().await?.into_iter().map(|s| s.name).collect(),
    };
    let (mut found, mut repaired, mut remaining) = (Vec::new(), Vec::new(), Vec::new());
    // A server that cannot be reached is reported, and the others examined.
    let mut unreachable = Vec::new();
    for name in names {
        let doctor = match tenancy.doctor_on(&name).await {
            Ok(doctor) => doctor,
            Err(tenantdb::Error::ServerNotFound(_)) => anyhow::bail!("no server named '{name}'"),
            Err(err) => {
                unreachable.push(serde_json::json!({"server": name, "error": err.chain()}));
                continue;
            }
        };
        let on_server = match doctor.examine(options).await {
            Ok(found) => found,
            Err(err) => {
                unreachable.push(serde_json::json!({"server": name, "error": err.chain()}));
                continue;
            }
        };
        if args.fix && on_server.iter().any(Finding::fixable) {
            repaired.extend(doctor.repair(&on_server).await);
            match doctor.examine(options).await {
                Ok(left) => remaining.extend(left),
                Err(err) => unreachable.push(serde_json::json!({"server": name, "error": err.chain()})),
            }
        } else {
            remaining.extend(on_server.iter().cloned());
        }
        found.extend(on_server);
    }
    if args.json {
        let mut report = report(&found, &repaired, &remaining);
        report["unreachable"] = serde_json::Value::Array(unreachable.clone());
        print_json(&report)?;
    } else {
        if args.fix {
            print_repairs(&repaired);
        }
        print_findings(&remaining, args.fix);
        for server in &unreachable {
            println!(
                "  server {} could not be examined: {}",
                server["server"], server["error"]
            );
        }
    }
    if remaining.is_empty() && unreachable.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(problems_remain(
        crate::exit::PROBLEMS_FOUND,
        format_args!(
            "{} problem(s) remain{}",
            remaining.len(),
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(", {} server(s) could not be examined", unreachable.len())
            }
        ),
    ))
}

/// `doctor --json`: what was found, what was repaired, what remains.
fn report(found: &[Finding], repaired: &[Repaired], remaining: &[Finding]) -> serde_json::Value {
    let repaired: Vec<_> = repaired
        .iter()
        .map(|r| {
            serde_json::json!({
                "server": r.finding.server,
                "problem": r.finding.problem,
                "subject": r.finding.subject,
                "tenant_id": r.finding.tenant_id,
                "done": r.outcome.as_ref().ok(),
                "error": r.outcome.as_ref().err(),
            })
        })
        .collect();
    serde_json::json!({"found": found, "repaired": repaired, "remaining": remaining})
}

fn print_repairs(repaired: &[Repaired]) {
    for r in repaired {
        match &r.outcome {
            Ok(done) => println!("fixed   {} {}: {done}", r.finding.problem.as_str(), r.finding.subject),
            Err(why) => println!("not fixed {} {}: {why}", r.finding.problem.as_str(), r.finding.subject),
        }
    }
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
        println!(
            "  {:<18} {}{tenant} on server {}",
            finding.problem.as_str(),
            finding.subject,
            finding.server
        );
        println!("      {}", finding.detail);
        match &finding.remedy {
            Remedy::Fix(what) => println!("      --fix: {what}"),
            Remedy::Manual(what) => println!("      to do: {what}"),
        }
    }
}

/// The flags of `reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Print `[{"tenant_id", "database_name", "status", "outcome",
    /// "error"}]` (outcome: finished, skipped or failed).
    #[arg(long)]
    json: bool,
}

/// `reconcile`: every row whose lease expired, finished or reported.
pub(crate) async fn reconcile(tenancy: &Tenancy, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let report = tenancy.provisioner().reconcile().await?;
    let failed = report
        .iter()
        .filter(|entry| matches!(entry.outcome, ReconcileOutcome::Failed(_)))
        .count();
    if args.json {
        let entries: Vec<serde_json::Value> = report
            .iter()
            .map(|entry| {
                let (outcome, error) = match &entry.outcome {
                    ReconcileOutcome::Finished => ("finished", None),
                    ReconcileOutcome::Skipped => ("skipped", None),
                    ReconcileOutcome::Failed(message) => ("failed", Some(message.as_str())),
                };
                serde_json::json!({
                    "tenant_id": entry.tenant_id, "database_name": entry.database_name,
                    "status": entry.status, "outcome": outcome, "error": error,
                })
            })
            .collect();
        print_json(&entries)?;
    } else if report.is_empty() {
        println!("nothing to reconcile");
    }
    for entry in report.iter().filter(|_| !args.json) {
        let outcome = match &entry.outcome {
            ReconcileOutcome::Finished => "finished".to_owned(),
            ReconcileOutcome::Skipped => "skipped (taken by another process)".to_owned(),
            ReconcileOutcome::Failed(message) => format!("failed: {message}"),
        };
        println!(
            "{} {} ({}): {outcome}",
            entry.tenant_id, entry.database_name, entry.status
        );
    }
    if failed > 0 {
        return Ok(problems_remain(
            crate::exit::FAILURE,
            format_args!("{failed} of {} abandoned rows could not be finished", report.len()),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
