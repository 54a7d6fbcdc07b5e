//! What the commands print: JSON, the tenant table, and the closing line of
//! a command that ran but reports problems.

use std::process::ExitCode;

use tenantdb::Tenant;

/// Pretty JSON on stdout (`--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Tenants as JSON or as a table.
pub(crate) fn print_tenants(tenants: &[Tenant], json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&tenants)
    } else {
        print_table(tenants);
        Ok(())
    }
}

/// One tenant as JSON (the tenant object of API.md) or as a table.
pub(crate) fn print_tenant(tenant: Tenant, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&tenant)
    } else {
        print_table(&[tenant]);
        Ok(())
    }
}

fn print_table(tenants: &[Tenant]) {
    println!(
        "{:<24} {:<10} {:<32} {:<12} {:<34} ERROR",
        "SLUG", "TENANT", "DATABASE", "DB STATUS", "SCHEMA VERSION"
    );
    for t in tenants {
        let (name, status, version, error) = match &t.database {
            Some(d) => (
                d.database_name.as_str(),
                d.status.as_str(),
                d.schema_version.as_deref().unwrap_or("-"),
                d.error_message.as_deref().unwrap_or(""),
            ),
            None => ("-", "-", "-", ""),
        };
        println!(
            "{:<24} {:<10} {:<32} {:<12} {:<34} {}",
            t.slug,
            t.status.as_str(),
            name,
            status,
            version,
            error
        );
    }
}

/// Says on stderr why the exit code is non-zero, in the words an error
/// gets (`error: ...`), for a command that ran to the end but leaves
/// problems behind; the code is `code`.
pub(crate) fn problems_remain(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
