//! The shape every operation shares: load the row, check its status,
//! claim it (a conditional UPDATE into a working status with our lease),
//! keep the lease alive while the steps run, and finish it.

use super::Provisioner;
use super::lease::LeaseKeeper;
use crate::catalog::{DbStatus, tenant_database, tenants};
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::migrate::{self, Applied, MigrationFailure};
use crate::names::TenantRef;
use crate::sites::Site;

/// A tenant database row of the catalog.
pub(super) type Row = tenant_database::Model;
/// A change to such a row, written together with a status transition.
pub(super) type Change = tenant_database::ActiveModel;

/// Errors after which the row must be left exactly as it is: the process is
/// "dead" (test hook) or another one owns the row now.
pub(super) fn is_crash(err: &Error) -> bool {
    matches!(err, Error::Interrupted { .. } | Error::LeaseLost { .. })
}

impl Provisioner {
    /// The tenant and its database row.
    pub(super) async fn load(&self, tenant: &TenantRef) -> Result<(tenants::Model, Row)> {
        let tenant = self.inner.catalog.tenants().get(tenant).await?;
        let row = self
            .inner
            .catalog
            .tenant_databases()
            .find_by_tenant(tenant.id)
            .await?
            .ok_or_else(|| Error::TenantDatabaseNotFound(tenant.slug.clone()))?;
        Ok((tenant, row))
    }

    /// Refuses an operation the row's status does not allow.
    pub(super) fn expect(&self, row: &Row, allowed: &[DbStatus], action: &'static str) -> Result<()> {
        if allowed.contains(&row.status) {
            return Ok(());
        }
        Err(Error::IllegalState {
            tenant: row.tenant_id.to_string(),
            database: row.database_name.clone(),
            status: row.status,
            action,
        })
    }

    /// Moves the row into a working status with our lease, or explains why
    /// not (another process holds it).
    pub(super) async fn claim(&self, row: &Row, to: DbStatus, change: Change) -> Result<Row> {
        let claimed = self
            .inner
            .catalog
            .tenant_databases()
            .claim(row, to, &self.new_lease(), change)
            .await;
        match claimed {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(Error::Locked {
                tenant: row.tenant_id.to_string(),
            }),
            Err(err) => Err(err),
        }
    }

    /// Keeps the claimed row's lease alive until the keeper is dropped.
    pub(super) fn keep(&self, row: &Row) -> LeaseKeeper {
        LeaseKeeper::start(self.inner.catalog.clone(), row.id, row.tenant_id, self.lease_of(row))
    }

    /// Moves a claimed row out of its working status (releasing the
    /// lease), with `change` written in the same UPDATE.
    pub(super) async fn finish(&self, row: &Row, to: DbStatus, change: Change) -> Result<Row> {
        self.inner
            .catalog
            .tenant_databases()
            .finish(row.id, row.status, to, &self.lease_of(row).owner, change)
            .await
            // The repository knows the row, not the tenant: name the tenant.
            .map_err(|err| match err {
                Error::LeaseLost { .. } => Error::LeaseLost {
                    tenant: row.tenant_id.to_string(),
                },
                other => other,
            })
    }

    /// Connects as the tenant's role and applies pending migrations while
    /// `lease_held` says the tenant's lease is still ours.
    pub(super) async fn apply_migrations(
        &self,
        site: &Site,
        spec: &DatabaseSpec,
        lease_held: &(dyn Fn() -> bool + Sync),
    ) -> Result<Result<Applied, MigrationFailure>> {
        let conn = site.engine.connect(spec, 1).await?;
        let result = migrate::apply_pending(&conn, self.inner.migrations.migrations(), lease_held).await;
        if let Err(err) = conn.close().await {
            tracing::warn!(tenant.id = %spec.tenant, error = %err, "closing the migration connection failed");
        }
        Ok(result)
    }

    /// The error of a failed tenant migration.
    pub(super) fn migration_error(spec: &DatabaseSpec, failure: MigrationFailure) -> Error {
        Error::MigrationFailed {
            tenant: spec.tenant.to_string(),
            database: spec.database.to_string(),
            migration: failure.migration,
            message: failure.error.to_string(),
        }
    }
}
