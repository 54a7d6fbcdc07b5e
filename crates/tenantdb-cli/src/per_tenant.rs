//! Work done in many tenants' databases at once (`tenants exec`, `tenants
//! seed`): which tenants, a few at a time, progress on stderr, and each
//! tenant's outcome kept (a failure in one does not stop the others).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tenantdb::{Tenancy, Tenant, TenantStatus};
use tokio::sync::Semaphore;

use crate::args::parse_ref;
use crate::progress::Progress;

/// The chosen tenants (slugs or ids), or, with none chosen, every ACTIVE
/// tenant whose database serves now; by slug.
pub(crate) async fn targets(tenancy: &Tenancy, chosen: &[String]) -> anyhow::Result<Vec<Tenant>> {
    let mut targets = Vec::new();
    if chosen.is_empty() {
        let tenants = crate::listing::tenants(tenancy, Some(TenantStatus::Active), None).await?;
        targets.extend(
            tenants
                .into_iter()
                .filter(|t| t.database.as_ref().is_some_and(|d| d.status.serves_traffic())),
        );
    }
    for tenant in chosen {
        targets.push(tenancy.tenant(&parse_ref(tenant)?).await?);
    }
    targets.sort_by(|a, b| a.slug.cmp(&b.slug));
    targets.dedup_by(|a, b| a.id == b.id);
    Ok(targets)
}

/// Runs `work` on each of `tenants`, `concurrency` at once, with progress
/// ("3/10 tenants <verb>"); each tenant's outcome, by slug.
pub(crate) async fn for_each<T, F, Fut>(
    tenancy: &Tenancy,
    tenants: Vec<Tenant>,
    concurrency: usize,
    verb: &'static str,
    work: F,
) -> anyhow::Result<Vec<(String, Result<T, String>)>>
where
    T: Send + 'static,
    F: Fn(Tenancy, Tenant) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, String>> + Send,
{
    anyhow::ensure!(concurrency >= 1, "--concurrency must be at least 1");
    let progress = Arc::new(Progress::new(tenants.len(), verb));
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in tenants {
        let (tenancy, slots, progress, work) = (tenancy.clone(), slots.clone(), progress.clone(), work.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let slug = tenant.slug.clone();
            let outcome = work(tenancy, tenant).await;
            progress.step(outcome.is_err());
            (slug, outcome)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("a tenant's task panicked")?);
    }
    progress.finish();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

/// An error unless every tenant succeeded: "`what` failed on N of M
/// tenant(s)".
pub(crate) fn all_succeeded<T>(results: &[(String, Result<T, String>)], what: &str) -> anyhow::Result<()> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{what} failed on {failed} of {} tenant(s)", results.len());
    Ok(())
}

/// The failures as a `TENANT ERROR` table (nothing when there are none).
pub(crate) fn print_failures<T>(results: &[(String, Result<T, String>)]) {
    let failures: Vec<Vec<String>> = results
        .iter()
        .filter_map(|(slug, r)| r.as_ref().err().map(|e| vec![slug.clone(), e.clone()]))
        .collect();
    if !failures.is_empty() {
        crate::output::print_rows(&["TENANT", "ERROR"], failures);
    }
}
