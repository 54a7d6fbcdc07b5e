//! Rename: the tenant's database gets a new name and keeps its data; its
//! pools are drained first, and a failure rolls back while the old
//! database is still in place.

use sea_orm::Set;

use super::steps::{Change, Row, is_crash};
use super::{DRAIN_WAIT, Provisioner, Step};
use crate::catalog::DbStatus;
use crate::engine::Ownership;
use crate::error::Result;
use crate::names::{DatabaseName, TenantRef};
use crate::tenant::TenantDatabase;

impl Provisioner {
    /// Renames the tenant's database; its data stays. PostgreSQL: the
    /// database's sessions are ended and new ones refused while it happens.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, to = new_name))]
    pub async fn rename_tenant_database(&self, tenant: &TenantRef, new_name: &str) -> Result<TenantDatabase> {
        let to = self.parse_database_name(new_name)?;
        let (_, row) = self.load(tenant).await?;
        if row.status == DbStatus::Active && row.database_name == to.as_str() {
            return Ok(self.public(&row));
        }
        self.expect(&row, &[DbStatus::Active], "rename its database")?;
        let site = self.site_of(&row).await?;
        self.check_name_free(&site, &to).await?;
        let change = Change {
            pending_database_name: Set(Some(to.as_str().to_owned())),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Renaming, change).await?;
        self.step(Step::RenameClaimed, row.tenant_id)?;
        let row = self
            .run(move |this| async move { this.finish_rename(row).await })
            .await?;
        Ok(self.public(&row))
    }

    pub(super) async fn finish_rename(&self, row: Row) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let Some(to) = row.pending_database_name.clone().map(DatabaseName::from_catalog) else {
            // Nothing pending: a RENAMING row without a target goes back.
            return self.finish(&row, DbStatus::Active, Change::default()).await;
        };
        let keeper = self.keep(&row);
        // A server that cannot be reached leaves the row RENAMING: its
        // lease expires and the reconciler finishes once it answers.
        let site = self.site_of(&row).await?;
        let steps = async {
            site.pools.invalidate_and_wait(spec.tenant, DRAIN_WAIT).await;
            self.step(Step::RenameDrained, row.tenant_id)?;
            keeper.check()?;
            site.engine.rename(&spec, &to).await?;
            site.engine.flush().await?;
            self.step(Step::DatabaseRenamed, row.tenant_id)?;
            keeper.check()
        };
        match steps.await {
            Ok(()) => {
                let change = Change {
                    database_name: Set(to.as_str().to_owned()),
                    read_database_name: Set(to.as_str().to_owned()),
                    pending_database_name: Set(None),
                    error_message: Set(None),
                    ..Default::default()
                };
                self.finish(&row, DbStatus::Active, change).await
            }
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => {
                // Roll back when the old database is still in place; else
                // leave RENAMING for the reconciler (its lease will expire).
                let old_in_place = site.engine.ownership(&spec, &spec.database).await;
                if matches!(old_in_place, Ok(Ownership::Ours)) {
                    let change = Change {
                        pending_database_name: Set(None),
                        error_message: Set(Some(format!("rename to '{to}' failed: {}", err.chain()))),
                        ..Default::default()
                    };
                    if let Err(finish) = self.finish(&row, DbStatus::Active, change).await {
                        tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot roll back a failed rename");
                    }
                }
                Err(err)
            }
        }
    }
}
