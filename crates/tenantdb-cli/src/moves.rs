//! `tenants move`: tenants' databases to another PostgreSQL server, online
//! (logical replication, writes paused for the switch only) or offline
//! (`pg_dump | pg_restore` while refused); `--all-from` drains a server
//! and empties it, a few tenants at a time, with progress on stderr.

use serde_json::json;
use tenantdb::{MoveTenant, Tenancy, TenantRef};

use crate::output::{print_json, print_rows};
use crate::per_tenant;

/// The flags of `tenants move`.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The tenants to move (slugs or ids).
    tenants: Vec<String>,
    /// Every tenant on this server: it is drained first (it takes no new
    /// tenants from then on; `servers accept` undoes that), then emptied.
    #[arg(long, conflicts_with = "tenants")]
    all_from: Option<String>,
    /// The server to move to [default: the ACCEPTING server with the
    /// fewest tenants, as for a new tenant].
    #[arg(long)]
    to: Option<String>,
    /// Copy with pg_dump | pg_restore while the tenant is refused, rather
    /// than online (the default where the source has wal_level=logical).
    #[arg(long)]
    offline: bool,
    /// Leave the source database in place, its role locked out, for
    /// `doctor` to report and `doctor --fix` to drop.
    #[arg(long)]
    keep_source: bool,
    /// Tenants moved at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Print `[{"tenant", "ok", "server", "error"}]`, by slug.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn move_tenants(tenancy: &Tenancy, args: MoveArgs) -> anyhow::Result<()> {
    let targets = match &args.all_from {
        Some(server) => {
            tenancy
                .set_server_accepting(server, false)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no server named '{server}'"))?;
            eprintln!("server '{server}' is DRAINING: it takes no new tenants (`servers accept {server}` undoes it)");
            let all = crate::listing::tenants(tenancy, None, None).await?;
            all.into_iter()
                .filter(|t| t.database.as_ref().is_some_and(|d| &d.server == server))
                .collect()
        }
        None => {
            anyhow::ensure!(
                !args.tenants.is_empty(),
                "name the tenants to move, or empty a server with --all-from"
            );
            per_tenant::targets(tenancy, &args.tenants).await?
        }
    };
    let options = MoveTenant {
        to: args.to.clone(),
        offline: args.offline,
        keep_source: args.keep_source,
    };
    let results = per_tenant::for_each(tenancy, targets, args.concurrency, "moved", move |tenancy, tenant| {
        let options = options.clone();
        async move {
            tenancy
                .provisioner()
                .move_tenant(&TenantRef::Id(tenant.id.into()), options)
                .await
                .map(|moved| moved.server)
                .map_err(|err| err.chain())
        }
    })
    .await?;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(slug, r)| match r {
                Ok(server) => json!({"tenant": slug, "ok": true, "server": server, "error": null}),
                Err(err) => json!({"tenant": slug, "ok": false, "server": null, "error": err}),
            })
            .collect();
        print_json(&rows)?;
    } else {
        print_rows(
            &["TENANT", "SERVER", "ERROR"],
            results.iter().map(|(slug, r)| match r {
                Ok(server) => vec![slug.clone(), server.clone(), String::new()],
                Err(err) => vec![slug.clone(), "-".into(), err.clone()],
            }),
        );
    }
    per_tenant::all_succeeded(&results, "the move")
}
