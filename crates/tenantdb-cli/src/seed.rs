//! `tenants seed`: an application's seed (the rows a tenant's database
//! starts with: lookup tables, demo data) run in one, several or every
//! tenant's database, as the tenant's own role, over the same runner as
//! `tenants exec`.

use serde_json::json;
use tenantdb::{PoolHandle, Tenancy, Tenant, TenantId, TenantRef};

use crate::output::print_json;
use crate::per_tenant;

/// An application's seed, given to [`Operator::seed`]: fills a tenant's
/// database with the rows it starts with.
///
/// `tenants seed` may run it again on a tenant it already ran on (an
/// operator re-seeding after a fix, `--all` after new tenants came): write
/// it so a second run changes nothing (`INSERT ... ON CONFLICT DO
/// NOTHING`, or check first).
///
/// ```
/// use sea_orm::ConnectionTrait;
///
/// struct Plans;
///
/// #[tenantdb_cli::async_trait]
/// impl tenantdb_cli::Seed for Plans {
///     async fn seed(&self, _tenant: &tenantdb::Tenant, db: &tenantdb::PoolHandle) -> anyhow::Result<()> {
///         db.execute_unprepared("INSERT INTO plans (name) VALUES ('free') ON CONFLICT DO NOTHING")
///             .await?;
///         Ok(())
///     }
/// }
///
/// let operator = tenantdb_cli::Operator::new().seed(Plans);
/// # drop(operator);
/// ```
///
/// [`Operator::seed`]: crate::Operator::seed
#[async_trait::async_trait]
pub trait Seed: Send + Sync + 'static {
    /// Seeds `tenant`'s database; `db` is its pool, as the tenant's own
    /// role (migrated to the latest version the tenant has).
    async fn seed(&self, tenant: &Tenant, db: &PoolHandle) -> anyhow::Result<()>;
}

/// The flags of `tenants seed`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["tenants", "all"]))]
pub struct SeedArgs {
    /// The tenants to seed (slugs or ids).
    tenants: Vec<String>,
    /// Seed every ACTIVE tenant whose database serves.
    #[arg(long)]
    all: bool,
    /// Tenants worked on at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print `[{"tenant", "ok", "error"}]`, by slug.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn seed(
    tenancy: &Tenancy,
    seed: Option<std::sync::Arc<dyn Seed>>,
    args: SeedArgs,
) -> anyhow::Result<()> {
    let Some(seed) = seed else {
        // Said on stderr, so `--json` readers still get valid (empty) JSON.
        eprintln!(
            "this binary has no seed: nothing to do (an application gives one with tenantdb_cli::Operator::seed)"
        );
        if args.json {
            print_json(&Vec::<serde_json::Value>::new())?;
        }
        return Ok(());
    };
    let targets = per_tenant::targets(tenancy, &args.tenants).await?;
    let results = per_tenant::for_each(tenancy, targets, args.concurrency, "seeded", move |tenancy, tenant| {
        let seed = seed.clone();
        async move {
            let db = tenancy
                .connections()
                .connection(&TenantRef::Id(TenantId::from(tenant.id)))
                .await
                .map_err(|err| err.to_string())?;
            seed.seed(&tenant, &db).await.map_err(|err| format!("{err:#}"))
        }
    })
    .await?;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(slug, r)| match r {
                Ok(()) => json!({"tenant": slug, "ok": true}),
                Err(error) => json!({"tenant": slug, "ok": false, "error": error}),
            })
            .collect();
        print_json(&rows)?;
    } else {
        for (slug, result) in &results {
            if result.is_ok() {
                println!("{slug}: seeded");
            }
        }
        per_tenant::print_failures(&results);
    }
    per_tenant::all_succeeded(&results, "the seed")
}
