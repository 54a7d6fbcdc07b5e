//! `tenants export`, `tenants backup` and `tenants import`: one tenant's
//! database in one file (a header saying what it is, then a `pg_dump`
//! custom-format archive or a SQLite file), every served tenant's into a
//! directory (a few at a time, progress on stderr), and a new tenant made
//! from such a file.

use std::path::PathBuf;

use serde_json::json;
use tenantdb::{NewTenant, Tenancy, TenantRef};

use crate::args::parse_ref;
use crate::output::{print_json, print_rows};
use crate::per_tenant;

/// The flags of `tenants export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The tenant (slug or id).
    tenant: String,
    /// The file to write (replaced if it exists; written owner-only under
    /// a temporary name, renamed once complete).
    #[arg(long)]
    output: PathBuf,
    /// Print `{"header": {"tenant_id", "slug", "engine", "database_name",
    /// "schema_version", "exported_at"}, "path", "bytes"}`.
    #[arg(long)]
    json: bool,
}

/// The flags of `tenants backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The tenants to back up (slugs or ids) [default with --all: every
    /// tenant that is served now].
    tenants: Vec<String>,
    /// Every served tenant.
    #[arg(long, conflicts_with = "tenants")]
    all: bool,
    /// The directory for the files (`<slug>.tenantdb`), made if missing.
    #[arg(long)]
    output: PathBuf,
    /// Tenants exported at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Print `[{"tenant", "ok", "path", "bytes", "error"}]`, by slug.
    #[arg(long)]
    json: bool,
}

/// The flags of `tenants import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The new tenant's slug.
    slug: String,
    /// An export (`tenants export`, `tenants backup`).
    #[arg(long)]
    input: PathBuf,
    /// Display name [default: the slug].
    #[arg(long)]
    name: Option<String>,
    /// The tenant server for its database [default: placement's choice].
    #[arg(long)]
    server: Option<String>,
    /// Print the tenant object (docs/API.md's shape).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn import(tenancy: &Tenancy, args: ImportArgs) -> anyhow::Result<()> {
    let new = NewTenant {
        slug: args.slug.clone(),
        name: args.name,
        server: args.server,
        ..Default::default()
    };
    let created = tenancy
        .provisioner()
        .import_tenant(new, &args.input)
        .await
        .map_err(|err| anyhow::anyhow!("failed to import tenant '{}': {}", args.slug, err.chain()))?;
    crate::output::print_tenant(
        tenancy.tenant(&TenantRef::Id(created.tenant_id.into())).await?,
        args.json,
    )
}

pub(crate) async fn export(tenancy: &Tenancy, args: ExportArgs) -> anyhow::Result<()> {
    let exported = tenancy.export_tenant(&parse_ref(&args.tenant)?, &args.output).await?;
    if args.json {
        return print_json(&exported);
    }
    println!(
        "exported tenant '{}' ({} at version {}) to {} ({} bytes)",
        exported.header.slug,
        exported.header.engine,
        exported.header.schema_version.as_deref().unwrap_or("none"),
        exported.path.display(),
        exported.bytes
    );
    Ok(())
}

pub(crate) async fn backup(tenancy: &Tenancy, args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.all || !args.tenants.is_empty(),
        "name the tenants to back up, or --all"
    );
    std::fs::create_dir_all(&args.output)
        .map_err(|err| anyhow::anyhow!("cannot make {}: {err}", args.output.display()))?;
    let targets = per_tenant::targets(tenancy, &args.tenants).await?;
    let dir = args.output.clone();
    let results = per_tenant::for_each(
        tenancy,
        targets,
        args.concurrency,
        "backed up",
        move |tenancy, tenant| {
            let file = dir.join(format!("{}.tenantdb", tenant.slug));
            async move {
                tenancy
                    .export_tenant(&TenantRef::Id(tenant.id.into()), &file)
                    .await
                    .map(|exported| (exported.path.display().to_string(), exported.bytes))
                    .map_err(|err| err.chain())
            }
        },
    )
    .await?;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(slug, r)| match r {
                Ok((path, bytes)) => json!({"tenant": slug, "ok": true, "path": path, "bytes": bytes, "error": null}),
                Err(err) => json!({"tenant": slug, "ok": false, "path": null, "bytes": null, "error": err}),
            })
            .collect();
        print_json(&rows)?;
    } else {
        print_rows(
            &["TENANT", "FILE", "BYTES", "ERROR"],
            results.iter().map(|(slug, r)| match r {
                Ok((path, bytes)) => vec![slug.clone(), path.clone(), bytes.to_string(), String::new()],
                Err(err) => vec![slug.clone(), "-".into(), "-".into(), err.clone()],
            }),
        );
    }
    per_tenant::all_succeeded(&results, "the backup")
}
