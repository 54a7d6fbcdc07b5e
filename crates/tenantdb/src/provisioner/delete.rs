//! Delete: the tenant's database and role, and with `purge` the tenant
//! itself; a failure leaves the row DELETING for a retry or the
//! reconciler.

use sea_orm::Set;

use super::steps::{Change, Row, is_crash};
use super::{DRAIN_WAIT, Provisioner, Step};
use crate::catalog::DbStatus;
use crate::error::{Error, Result};
use crate::names::TenantRef;

impl Provisioner {
    /// Deletes the tenant: its database, role, memberships, subscription and
    /// the tenant itself.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn delete_tenant(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, true).await
    }

    /// Deletes the tenant's database and role; the tenant stays, without a
    /// database.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn delete_tenant_database(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, false).await
    }

    async fn delete(&self, tenant: &TenantRef, purge: bool) -> Result<()> {
        let tenant = self.inner.catalog.tenants().get(tenant).await?;
        let Some(row) = self.inner.catalog.tenant_databases().find_by_tenant(tenant.id).await? else {
            if purge {
                return self.inner.catalog.tenants().delete(tenant.id).await;
            }
            return Err(Error::TenantDatabaseNotFound(tenant.slug));
        };
        self.expect(
            &row,
            &[DbStatus::Active, DbStatus::Failed, DbStatus::Deleting],
            "delete it",
        )?;
        let change = Change {
            purge_tenant: Set(purge || row.purge_tenant),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Deleting, change).await?;
        self.step(Step::DeleteClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.finish_delete(row).await }).await
    }

    pub(super) async fn finish_delete(&self, row: Row) -> Result<()> {
        let spec = self.tenant_db(&row);
        let keeper = self.keep(&row);
        let steps = async {
            let site = self.site_of(&row).await?;
            site.pools.invalidate_and_wait(spec.tenant, DRAIN_WAIT).await;
            // The lease is still ours right before the drop: a process cut
            // off from the catalog for a lease period must not drop a name
            // that another process has since freed and given away.
            keeper.check()?;
            site.engine.drop_database(&spec).await?;
            site.engine.flush().await?;
            self.step(Step::DeleteDatabaseDropped, row.tenant_id)?;
            site.engine.drop_role(spec.tenant, &spec.role).await?;
            site.engine.flush().await?;
            self.step(Step::DatabaseDropped, row.tenant_id)?;
            keeper.check()?;
            self.inner
                .catalog
                .tenant_databases()
                .remove(&row, &self.lease_of(&row).owner)
                .await
        };
        let result = steps.await;
        match &result {
            Ok(()) => {
                tracing::info!(tenant.id = %row.tenant_id, database = %row.database_name, "tenant database deleted")
            }
            Err(err) if is_crash(err) => {}
            Err(err) => {
                // Stay DELETING (it serves nothing), say why, and free the
                // lease so that a retried delete or the reconciler finishes.
                let change = Change {
                    error_message: Set(Some(err.chain())),
                    ..Default::default()
                };
                self.finish(&row, DbStatus::Deleting, change).await?;
            }
        }
        result
    }
}
