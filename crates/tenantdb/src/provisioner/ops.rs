//! The operations of the provisioner, each split into a claim (in the
//! caller's task) and idempotent steps (in a task the provisioner owns) that
//! the reconciler can run again.

use chrono::Utc;
use sea_orm::Set;
use uuid::Uuid;

use super::lease::LeaseKeeper;
use super::{Provisioner, Step};
use crate::catalog::{DbStatus, tenant_database, tenants};
use crate::engine::{Created, Ownership, TenantDb};
use crate::error::{Error, Result};
use crate::migrate::{self, Applied, MigrationFailure};
use crate::names::{DatabaseName, TenantRef};

type Row = tenant_database::Model;
type Change = tenant_database::ActiveModel;

/// What `reconcile` did with one abandoned row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// The interrupted work was run again to its end.
    Finished,
    /// Running it again failed; the row says why (FAILED for a create).
    Failed(String),
    /// Another process took the row first.
    Skipped,
}

#[derive(Debug, Clone)]
pub struct Reconciled {
    pub tenant_id: Uuid,
    pub database_name: String,
    /// The status the row was abandoned in.
    pub status: DbStatus,
    pub outcome: ReconcileOutcome,
}

/// Errors after which the row must be left exactly as it is: the process is
/// "dead" (test hook) or another one owns the row now.
fn is_crash(err: &Error) -> bool {
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

    fn expect(&self, row: &Row, allowed: &[DbStatus], action: &'static str) -> Result<()> {
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
    async fn claim(&self, row: &Row, to: DbStatus, change: Change) -> Result<Row> {
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

    fn keep(&self, row: &Row) -> LeaseKeeper {
        LeaseKeeper::start(self.inner.catalog.clone(), row.id, row.tenant_id, self.lease_of(row))
    }

    async fn finish(&self, row: &Row, to: DbStatus, change: Change) -> Result<Row> {
        self.inner
            .catalog
            .tenant_databases()
            .finish(row.id, row.status, to, &self.lease_of(row).owner, change)
            .await
    }

    /// Connects as the tenant's role and applies pending migrations while
    /// `lease_held` says the tenant's lease is still ours.
    async fn apply_migrations(
        &self,
        spec: &TenantDb,
        lease_held: &(dyn Fn() -> bool + Sync),
    ) -> Result<Result<Applied, MigrationFailure>> {
        let conn = self.inner.engine.connect(spec, 1).await?;
        let result = migrate::apply_pending(&conn, self.inner.migrations.migrations(), lease_held).await;
        if let Err(err) = conn.close().await {
            tracing::warn!(tenant.id = %spec.tenant, error = %err, "closing the migration connection failed");
        }
        Ok(result)
    }

    fn migration_error(spec: &TenantDb, failure: MigrationFailure) -> Error {
        Error::MigrationFailed {
            tenant: spec.tenant.to_string(),
            database: spec.database.to_string(),
            migration: failure.migration,
            message: failure.error.to_string(),
        }
    }

    // ---- create ---------------------------------------------------------

    /// Runs the create steps on a PROVISIONING row we hold.
    pub(super) async fn provision(&self, row: Row) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let keeper = self.keep(&row);
        let started = std::time::Instant::now();
        match self.provision_steps(&spec, &keeper).await {
            Ok(version) => {
                let change = Change {
                    schema_version: Set(version),
                    last_migration_at: Set(Some(Utc::now())),
                    error_message: Set(None),
                    ..Default::default()
                };
                let row = self.finish(&row, DbStatus::Active, change).await?;
                metrics::counter!("tenantdb_provisioning_total", "outcome" => "active").increment(1);
                metrics::histogram!("tenantdb_provisioning_seconds").record(started.elapsed().as_secs_f64());
                tracing::info!(
                    tenant.id = %row.tenant_id,
                    database = %row.database_name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "tenant database is active"
                );
                Ok(row)
            }
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => {
                let mut message = err.chain();
                // Clean up only what is still certainly ours: if the lease
                // lapsed, another process may own (and have finished) it.
                let lease = self.lease_of(&row);
                let still_ours = keeper.held()
                    && self
                        .inner
                        .catalog
                        .tenant_databases()
                        .renew(row.id, &lease)
                        .await
                        .unwrap_or(false);
                if !still_ours {
                    return Err(Error::LeaseLost {
                        tenant: row.tenant_id.to_string(),
                    });
                }
                // Leave nothing half-made; if cleanup fails too, retry
                // finishes the same (idempotent) steps.
                let cleanup = match self.inner.engine.drop_tenant(&spec).await {
                    Ok(()) => self.inner.engine.flush().await,
                    Err(err) => Err(err),
                };
                if let Err(cleanup) = cleanup {
                    message.push_str(&format!("; cleanup failed too: {}", cleanup.chain()));
                }
                tracing::warn!(tenant.id = %row.tenant_id, database = %row.database_name, error = %message, "provisioning failed");
                metrics::counter!("tenantdb_provisioning_total", "outcome" => "failed").increment(1);
                let change = Change {
                    error_message: Set(Some(message.clone())),
                    ..Default::default()
                };
                if let Err(finish) = self.finish(&row, DbStatus::Failed, change).await {
                    tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot mark the row FAILED");
                }
                Err(Error::ProvisioningFailed {
                    tenant: row.tenant_id.to_string(),
                    database: row.database_name,
                    message,
                })
            }
        }
    }

    async fn provision_steps(&self, spec: &TenantDb, keeper: &LeaseKeeper) -> Result<Option<String>> {
        let tenant = spec.tenant.as_uuid();
        self.inner.engine.ensure_role(spec).await?;
        self.step(Step::RoleCreated, tenant)?;
        keeper.check()?;
        let template = self.inner.templates.ready().await;
        let created = self.inner.engine.create_database(spec, template.as_deref()).await?;
        if template.is_some() && created == Created::Empty {
            self.inner.templates.forget();
        }
        self.step(Step::DatabaseCreated, tenant)?;
        keeper.check()?;
        self.inner.engine.open_database(spec).await?;
        // The role and database are durable before anything is recorded.
        self.inner.engine.flush().await?;
        self.step(Step::DatabaseOpened, tenant)?;
        keeper.check()?;
        let version = if created == Created::Cloned {
            // The template holds every migration of this version (it is
            // marked only once they all applied): no connection needed.
            self.inner.migrations.latest_version()
        } else {
            self.apply_migrations(spec, &|| keeper.held())
                .await?
                .map_err(|failure| Self::migration_error(spec, failure))?
                .version
        };
        self.step(Step::Migrated, tenant)?;
        keeper.check()?;
        Ok(version)
    }

    /// Provisions a FAILED tenant database again.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn retry(&self, tenant: &TenantRef) -> Result<Row> {
        let (_, row) = self.load(tenant).await?;
        self.expect(&row, &[DbStatus::Failed], "retry")?;
        self.check_migration_set().await?;
        let change = Change {
            error_message: Set(None),
            secret_version: Set(self.inner.secret_version),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Provisioning, change).await?;
        self.step(Step::RetryClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.provision(row).await }).await
    }

    // ---- rename ---------------------------------------------------------

    /// Renames the tenant's database; its data stays. PostgreSQL: the
    /// database's sessions are ended and new ones refused while it happens.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, to = new_name))]
    pub async fn rename_tenant_database(&self, tenant: &TenantRef, new_name: &str) -> Result<Row> {
        let to = self.parse_database_name(new_name)?;
        let (_, row) = self.load(tenant).await?;
        if row.status == DbStatus::Active && row.database_name == to.as_str() {
            return Ok(row);
        }
        self.expect(&row, &[DbStatus::Active], "rename its database")?;
        self.check_name_free(&to).await?;
        let change = Change {
            pending_database_name: Set(Some(to.as_str().to_owned())),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Renaming, change).await?;
        self.step(Step::RenameClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.finish_rename(row).await }).await
    }

    pub(super) async fn finish_rename(&self, row: Row) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let Some(to) = row.pending_database_name.clone().map(DatabaseName::from_catalog) else {
            // Nothing pending: a RENAMING row without a target goes back.
            return self.finish(&row, DbStatus::Active, Change::default()).await;
        };
        let keeper = self.keep(&row);
        let steps = async {
            self.inner
                .pools
                .invalidate_and_wait(spec.tenant, super::DRAIN_WAIT)
                .await;
            self.step(Step::RenameDrained, row.tenant_id)?;
            keeper.check()?;
            self.inner.engine.rename(&spec, &to).await?;
            self.inner.engine.flush().await?;
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
                let old_in_place = self.inner.engine.ownership(&spec, &spec.database).await;
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

    // ---- delete ---------------------------------------------------------

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
            self.inner
                .pools
                .invalidate_and_wait(spec.tenant, super::DRAIN_WAIT)
                .await;
            // The lease is still ours right before the drop: a process cut
            // off from the catalog for a lease period must not drop a name
            // that another process has since freed and given away.
            keeper.check()?;
            self.inner.engine.drop_database(&spec).await?;
            self.inner.engine.flush().await?;
            self.step(Step::DeleteDatabaseDropped, row.tenant_id)?;
            self.inner.engine.drop_role(spec.tenant, &spec.role).await?;
            self.inner.engine.flush().await?;
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

    // ---- migrate --------------------------------------------------------

    /// Brings one tenant's database up to the latest tenant migration. A
    /// failure records `error_message`, leaves the schema at its last good
    /// version and the database serving. Holds the tenant's lease, so two
    /// migrators never run on one tenant at once.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn migrate_tenant(&self, tenant: &TenantRef) -> Result<Row> {
        let (_, row) = self.load(tenant).await?;
        self.migrate_row(row).await
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
        let outcome = self.apply_migrations(&spec, &|| keeper.held()).await;
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

    // ---- reconcile ------------------------------------------------------

    /// Finishes work that a dead process left: rows in PROVISIONING,
    /// RENAMING, DELETING or MIGRATING whose lease has expired. Rows whose
    /// lease is alive belong to a process still working and are not touched.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile(&self) -> Result<Vec<Reconciled>> {
        let rows = self.inner.catalog.tenant_databases().abandoned().await?;
        let mut report = Vec::with_capacity(rows.len());
        let mut set_check = None;
        for row in rows {
            let status = row.status;
            let mut entry = Reconciled {
                tenant_id: row.tenant_id,
                database_name: row.database_name.clone(),
                status,
                outcome: ReconcileOutcome::Skipped,
            };
            // Finishing a create or a migration runs this program's
            // migrations: only with the catalog's set.
            if matches!(status, DbStatus::Provisioning | DbStatus::Migrating) {
                if set_check.is_none() {
                    set_check = Some(self.check_migration_set().await.map_err(|err| err.to_string()));
                }
                if let Some(Err(mismatch)) = &set_check {
                    entry.outcome = ReconcileOutcome::Failed(mismatch.clone());
                    report.push(entry);
                    continue;
                }
            }
            let claimed = self
                .inner
                .catalog
                .tenant_databases()
                .claim(&row, status, &self.new_lease(), Change::default())
                .await?;
            if let Some(row) = claimed {
                tracing::info!(tenant.id = %row.tenant_id, %status, "finishing abandoned work");
                let result = match status {
                    DbStatus::Provisioning => {
                        self.run(move |this| async move { this.provision(row).await.map(drop) })
                            .await
                    }
                    DbStatus::Renaming => {
                        self.run(move |this| async move { this.finish_rename(row).await.map(drop) })
                            .await
                    }
                    DbStatus::Deleting => self.run(move |this| async move { this.finish_delete(row).await }).await,
                    _ => {
                        self.run(move |this| async move { this.finish_migrate(row).await.map(drop) })
                            .await
                    }
                };
                entry.outcome = match result {
                    Ok(()) => ReconcileOutcome::Finished,
                    Err(err) => ReconcileOutcome::Failed(err.to_string()),
                };
            }
            report.push(entry);
        }
        Ok(report)
    }
}
