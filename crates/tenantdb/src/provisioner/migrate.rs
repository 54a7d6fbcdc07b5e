//! Migrate: one tenant's database brought up to the latest tenant
//! migration under the tenant's lease; a failure is recorded on the row
//! and the database keeps serving at its last good version.

use chrono::Utc;
use sea_orm::Set;

use super::steps::{Change, Row};
use super::{Provisioner, Step};
use crate::catalog::DbStatus;
use crate::error::Result;
use crate::names::TenantRef;
use crate::tenant::TenantDatabase;

impl Provisioner {
    /// Brings one tenant's database up to the latest tenant migration. A
    /// failure records `error_message`, leaves the schema at its last good
    /// version and the database serving. Holds the tenant's lease, so two
    /// migrators never run on one tenant at once.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn migrate_tenant(&self, tenant: &TenantRef) -> Result<TenantDatabase> {
        let (_, row) = self.load(tenant).await?;
        let row = self.migrate_row(row).await?;
        Ok(self.public(&row))
    }

    /// Migrates the tenant of `row` if the row is still as read: a row that
    /// changed since (another process migrated it, renamed it, ...) gives
    /// `Error::Locked` and is left alone. Fleet runs use the rows they planned
    /// with, so two runs never both migrate one tenant.
    pub(crate) async fn migrate_row(&self, row: Row) -> Result<Row> {
        self.expect(&row, &[DbStatus::Active], "migrate it")?;
        self.check_migration_set().await?;
        let row = self.claim(&row, DbStatus::Migrating, Change::default()).await?;
        self.step(Step::MigrateClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.finish_migrate(row).await })
            .await
    }

    pub(super) async fn finish_migrate(&self, row: Row) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let keeper = self.keep(&row);
        let started = std::time::Instant::now();
        let outcome = match self.site_of(&row).await {
            Ok(site) => self.apply_migrations(&site, &spec, &|| keeper.held()).await,
            Err(err) => Err(err),
        };
        self.step(Step::MigrationApplied, row.tenant_id)?;
        let label = if matches!(outcome, Ok(Ok(_))) { "ok" } else { "failed" };
        metrics::counter!("tenantdb_tenant_migrations_total", "outcome" => label).increment(1);
        metrics::histogram!("tenantdb_tenant_migration_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(applied)) => {
                let mut change = Change {
                    schema_version: Set(applied.version),
                    error_message: Set(None),
                    ..Default::default()
                };
                if !applied.applied.is_empty() {
                    change.last_migration_at = Set(Some(Utc::now()));
                }
                self.finish(&row, DbStatus::Active, change).await
            }
            Ok(Err(failure)) => {
                // A failure never lowers or erases the recorded version: it
                // moves only to a version this run applied.
                let last_good = failure.version.clone().filter(|_| failure.applied_any);
                let err = Self::migration_error(&spec, failure);
                let change = Change {
                    schema_version: last_good.map_or(sea_orm::ActiveValue::NotSet, |v| Set(Some(v))),
                    error_message: Set(Some(err.to_string())),
                    ..Default::default()
                };
                self.finish(&row, DbStatus::Active, change).await?;
                Err(err)
            }
            Err(err) => {
                let change = Change {
                    error_message: Set(Some(err.chain())),
                    ..Default::default()
                };
                self.finish(&row, DbStatus::Active, change).await?;
                Err(err)
            }
        }
    }
}
