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

/// One tenant as JSON (the tenant object of docs/API.md) or as a table.
pub(crate) fn print_tenant(tenant: Tenant, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&tenant)
    } else {
        print_table(&[tenant]);
        Ok(())
    }
}

fn print_table(tenants: &[Tenant]) {
    let rows = tenants.iter().map(|t| {
        let (name, status, version, error) = match &t.database {
            Some(d) => (
                d.database_name.to_string(),
                d.status.to_string(),
                d.schema_version.clone().unwrap_or_else(|| "-".into()),
                d.error_message.clone().unwrap_or_default(),
            ),
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        vec![t.slug.to_string(), t.status.to_string(), name, status, version, error]
    });
    print_rows(
        &["SLUG", "TENANT", "DATABASE", "DB STATUS", "SCHEMA VERSION", "ERROR"],
        rows,
    );
}

/// A table for people: a header and rows, columns as wide as their widest
/// cell, no borders, no trailing spaces.
pub(crate) fn print_rows(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// Says on stderr why the exit code is non-zero, in the words an error
/// gets (`error: ...`), for a command that ran to the end but leaves
/// problems behind; the code is `code`.
pub(crate) fn problems_remain(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// The instances sharing a server's budget, as a table.
pub(crate) fn print_instances(instances: &[tenantdb::InstanceShare]) {
    let rows = instances.iter().map(|i| {
        vec![
            i.id.to_string(),
            i.host.clone(),
            i.pid.to_string(),
            i.share.to_string(),
            i.started_at.clone(),
        ]
    });
    print_rows(&["INSTANCE", "HOST", "PID", "SHARE", "STARTED"], rows);
}
