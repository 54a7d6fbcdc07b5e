//! Reading the whole catalog a page at a time, for the commands that
//! work on every tenant (`tenants list`, `tenants exec`).

use tenantdb::{DbStatus, Tenancy, TenantStatus};

/// Every tenant, a page at a time, optionally only those with the given
/// statuses.
pub(crate) async fn tenants(
    tenancy: &Tenancy,
    status: Option<TenantStatus>,
    database_status: Option<DbStatus>,
) -> anyhow::Result<Vec<tenantdb::Tenant>> {
    const PAGE: u64 = 500;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = tenancy.list_tenants(status, after, PAGE).await?;
        after = page.last().map(|t| t.id);
        let done = (page.len() as u64) < PAGE;
        all.extend(
            page.into_iter()
                .filter(|t| database_status.is_none() || t.database.as_ref().map(|d| d.status) == database_status),
        );
        if done {
            return Ok(all);
        }
    }
}
