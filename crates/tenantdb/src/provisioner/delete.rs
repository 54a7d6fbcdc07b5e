//! Delete: with a way back (the database renamed into the trash and its
//! role locked out until `restore` or `purge`), or for good (the database
//! and role dropped, and with `purge_tenant` the tenant itself). A failure
//! leaves the row DELETING for a retry or the reconciler.

use chrono::{DateTime, Utc};
use sea_orm::Set;
use uuid::Uuid;

use super::steps::{Change, Row, is_crash};
use super::{DRAIN_WAIT, Provisioner, Step};
use crate::catalog::DbStatus;
use crate::engine::Ownership;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, TenantId, TenantRef, TenantSlug};
use crate::tenant::TenantDatabase;

/// Whether a DELETED row's retention period is over at `now` (one that
/// records no end is: nothing says to keep it).
fn is_due(row: &Row, now: DateTime<Utc>) -> bool {
    row.purge_after.is_none_or(|end| end <= now)
}

/// How a delete treats the tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Into the trash when a retention period is set, else for good.
    Retain,
    /// For good, whatever its status.
    Now,
    /// For good, and only a DELETED one.
    Purge,
}

/// One deleted tenant `purge_expired` found past its retention period.
#[derive(Debug, Clone)]
pub struct Purged {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The trash name its database had.
    pub database_name: String,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// `Ok`: the database, role and tenant are gone; `Err`: why not (the
    /// row says it too, and the next sweep tries again).
    pub outcome: std::result::Result<(), String>,
}

impl Provisioner {
    /// Deletes the tenant. With a retention period (`Config::deleted_retention`,
    /// default 7 days) an ACTIVE tenant's database is kept: renamed into the
    /// trash ([`DatabaseName::trash`]), its role locked out, the tenant
    /// DELETED and refused at the door, until [`Provisioner::restore_tenant`]
    /// brings it back or [`Provisioner::purge_tenant`] or the sweep
    /// ([`Provisioner::purge_expired`]) drops it. Without one, or for a
    /// FAILED tenant (nothing to keep), it goes for good, like
    /// [`Provisioner::delete_tenant_now`]. Deleting a DELETED tenant again
    /// does nothing.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn delete_tenant(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, true, Mode::Retain).await
    }

    /// Deletes the tenant for good, now, whatever the retention period: its
    /// database, role, memberships, subscription and the tenant itself (a
    /// DELETED one's kept database too).
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn delete_tenant_now(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, true, Mode::Now).await
    }

    /// Drops a DELETED tenant's kept database and role and the tenant
    /// before its retention period is over. Refused for any other status.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn purge_tenant(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, true, Mode::Purge).await
    }

    /// Deletes the tenant's database and role at once (no retention); the
    /// tenant stays, without a database.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn delete_tenant_database(&self, tenant: &TenantRef) -> Result<()> {
        self.delete(tenant, false, Mode::Now).await
    }

    async fn delete(&self, tenant: &TenantRef, purge: bool, mode: Mode) -> Result<()> {
        let tenant = self.inner.catalog.tenants().get(tenant).await?;
        let Some(mut row) = self.inner.catalog.tenant_databases().find_by_tenant(tenant.id).await? else {
            if purge && mode != Mode::Purge {
                return self.inner.catalog.tenants().delete(tenant.id).await;
            }
            return Err(Error::TenantDatabaseNotFound(tenant.slug));
        };
        if row.status == DbStatus::Deleting && self.trash_target(&row).is_some() {
            // A move into the trash that failed or whose process died is
            // finished first: then the database is where the row says.
            let claimed = self.claim(&row, DbStatus::Deleting, Change::default()).await?;
            match self
                .run(move |this| async move { this.finish_trash(claimed).await })
                .await?
            {
                Some(kept) => row = kept,
                // Nothing was left to keep: it went for good.
                None => return Ok(()),
            }
        }
        match (mode, row.status) {
            (Mode::Retain, DbStatus::Deleted) => return Ok(()),
            (Mode::Retain, DbStatus::Active) if !self.inner.deleted_retention.is_zero() => {
                return self.trash(row).await;
            }
            (Mode::Purge, status) if status != DbStatus::Deleted && status != DbStatus::Deleting => {
                return Err(Error::IllegalState {
                    tenant: row.tenant_id.to_string(),
                    database: row.database_name.clone(),
                    status,
                    action: "purge it (only a DELETED tenant is purged)",
                });
            }
            _ => {}
        }
        self.expect(
            &row,
            &[
                DbStatus::Active,
                DbStatus::Failed,
                DbStatus::Deleting,
                DbStatus::Deleted,
            ],
            "delete it",
        )?;
        let from_trash = row.status == DbStatus::Deleted;
        let change = Change {
            // A kept tenant was to go with its database; dropping only the
            // database (`delete_tenant_database`) keeps the tenant.
            purge_tenant: Set(purge || (row.purge_tenant && !from_trash)),
            // A kept database's reserved name is let go with the rest.
            pending_database_name: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Deleting, change).await?;
        self.step(
            if from_trash {
                Step::PurgeClaimed
            } else {
                Step::DeleteClaimed
            },
            row.tenant_id,
        )?;
        self.run(move |this| async move { this.finish_delete(row).await }).await
    }

    /// Claims an ACTIVE row for the trash: DELETING, the trash name pending
    /// (reserved in the catalog first), the time of deletion and the end of
    /// the retention period recorded.
    async fn trash(&self, row: Row) -> Result<()> {
        let trash = DatabaseName::trash(&self.inner.prefix, TenantId::from(row.tenant_id));
        let now = Utc::now();
        // This process's period, written on the row: the sweep of any
        // process, whatever its own setting, keeps to it.
        let purge_after = chrono::Duration::from_std(self.inner.deleted_retention)
            .ok()
            .and_then(|retention| now.checked_add_signed(retention))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let change = Change {
            purge_tenant: Set(true),
            pending_database_name: Set(Some(trash.as_str().to_owned())),
            deleted_at: Set(Some(now)),
            purge_after: Set(Some(purge_after)),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Deleting, change).await?;
        self.step(Step::TrashClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.finish_trash(row).await.map(drop) })
            .await
    }

    /// The trash name a DELETING row is moving its database to, if it is
    /// one (a delete for good has none pending).
    fn trash_target(&self, row: &Row) -> Option<DatabaseName> {
        row.pending_database_name
            .clone()
            .map(DatabaseName::from_catalog)
            .filter(|name| name.is_trash(&self.inner.prefix))
    }

    /// Finishes a claimed DELETING row: into the trash when a trash name is
    /// pending, else for good.
    pub(super) async fn finish_delete(&self, row: Row) -> Result<()> {
        if self.trash_target(&row).is_some() {
            return self.finish_trash(row).await.map(drop);
        }
        self.drop_for_good(row).await
    }

    /// The delete for good of a claimed DELETING row with nothing pending.
    async fn drop_for_good(&self, row: Row) -> Result<()> {
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

    /// Into the trash: this process's pools closed, the role locked out
    /// (its sessions everywhere ended), the database renamed to its trash
    /// name; the row DELETED under that name, its old name still reserved
    /// (pending) for the restore. Every step is idempotent. A failure while
    /// the database still has its name rolls back to ACTIVE. A database
    /// under neither name leaves nothing to keep: the tenant goes for good
    /// (`None`).
    async fn finish_trash(&self, row: Row) -> Result<Option<Row>> {
        let spec = self.tenant_db(&row);
        let Some(trash) = self.trash_target(&row) else {
            return Err(Error::Task(format!("tenant {}: no trash name pending", row.tenant_id)));
        };
        let site = self.site_of(&row).await?;
        let here = site.engine.ownership(&spec, &spec.database).await?;
        let there = site.engine.ownership(&spec, &trash).await?;
        if here == Ownership::Missing && there == Ownership::Missing {
            tracing::warn!(
                tenant.id = %row.tenant_id, database = %row.database_name,
                "the tenant's database is missing: nothing to keep, deleting the tenant for good"
            );
            let change = Change {
                pending_database_name: Set(None),
                ..Default::default()
            };
            let row = self.finish(&row, DbStatus::Deleting, change).await?;
            let row = self.claim(&row, DbStatus::Deleting, Change::default()).await?;
            self.drop_for_good(row).await?;
            return Ok(None);
        }
        let keeper = self.keep(&row);
        let steps = async {
            site.pools.invalidate_and_wait(spec.tenant, DRAIN_WAIT).await;
            keeper.check()?;
            site.engine.lock_out(&spec).await?;
            site.engine.flush().await?;
            self.step(Step::TrashLockedOut, row.tenant_id)?;
            keeper.check()?;
            site.engine.rename(&spec, &trash).await?;
            site.engine.flush().await?;
            self.step(Step::DatabaseTrashed, row.tenant_id)?;
            keeper.check()
        };
        match steps.await {
            Ok(()) => {
                let change = Change {
                    database_name: Set(trash.as_str().to_owned()),
                    read_database_name: Set(trash.as_str().to_owned()),
                    pending_database_name: Set(Some(row.database_name.clone())),
                    error_message: Set(None),
                    ..Default::default()
                };
                let done = self.finish(&row, DbStatus::Deleted, change).await?;
                tracing::info!(tenant.id = %row.tenant_id, database = %trash, "tenant deleted; its database is kept in the trash");
                Ok(Some(done))
            }
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => {
                let in_place = site.engine.ownership(&spec, &spec.database).await;
                let change = Change {
                    error_message: Set(Some(format!("delete failed: {}", err.chain()))),
                    ..Default::default()
                };
                if matches!(in_place, Ok(Ownership::Ours)) && site.engine.let_in(&spec).await.is_ok() {
                    let back = Change {
                        pending_database_name: Set(None),
                        deleted_at: Set(None),
                        purge_after: Set(None),
                        purge_tenant: Set(false),
                        ..change
                    };
                    if let Err(finish) = self.finish(&row, DbStatus::Active, back).await {
                        tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot roll back a failed delete");
                    }
                } else if let Err(finish) = self.finish(&row, DbStatus::Deleting, change).await {
                    tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot record a failed delete");
                }
                Err(err)
            }
        }
    }

    /// Brings a DELETED tenant back as it was: its database renamed back
    /// to its name, its role let in (with the current secret's password),
    /// the tenant ACTIVE; then migrated if a tenant migration came while it
    /// was deleted.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn restore_tenant(&self, tenant: &TenantRef) -> Result<TenantDatabase> {
        let (model, row) = self.load(tenant).await?;
        self.expect(&row, &[DbStatus::Deleted, DbStatus::Renaming], "restore it")?;
        if row.status == DbStatus::Renaming && row.deleted_at.is_none() {
            return Err(Error::IllegalState {
                tenant: row.tenant_id.to_string(),
                database: row.database_name.clone(),
                status: row.status,
                action: "restore it (it is not deleted)",
            });
        }
        let to = match &row.pending_database_name {
            Some(name) => DatabaseName::from_catalog(name.clone()),
            // A row with no reserved name (none recorded): a fresh one.
            None => {
                let site = self.site_of(&row).await?;
                let slug = TenantSlug::parse(&model.slug)?;
                self.choose_name(&site, None, &slug, TenantId::from(row.tenant_id))
                    .await?
            }
        };
        let change = Change {
            pending_database_name: Set(Some(to.as_str().to_owned())),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Renaming, change).await?;
        self.step(Step::RestoreClaimed, row.tenant_id)?;
        let row = self
            .run(move |this| async move { this.finish_restore(row).await })
            .await?;
        if row.schema_version == self.inner.migrations.latest_version() {
            return Ok(self.public(&row));
        }
        // Restored, but behind: migrated like any tenant. A failure keeps
        // it ACTIVE at its version with the error on its row (as a fleet
        // run would), and is said, not hidden, by the row returned.
        let tenant = TenantRef::Id(TenantId::from(row.tenant_id));
        match self.migrate_tenant(&tenant).await {
            Ok(migrated) => Ok(migrated),
            Err(err) => {
                tracing::warn!(tenant.id = %row.tenant_id, error = %err.chain(), "restored, but its migration failed");
                let (_, row) = self.load(&tenant).await?;
                Ok(self.public(&row))
            }
        }
    }

    /// Out of the trash: the database renamed back to the pending name,
    /// the role let in with the current password, the row ACTIVE. A failure
    /// goes back to DELETED (with the error) unless the database already
    /// has its name back, which the reconciler finishes.
    pub(super) async fn finish_restore(&self, row: Row) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let Some(to) = row.pending_database_name.clone().map(DatabaseName::from_catalog) else {
            return self.finish(&row, DbStatus::Deleted, Change::default()).await;
        };
        let keeper = self.keep(&row);
        let site = self.site_of(&row).await?;
        let steps = async {
            keeper.check()?;
            site.engine.rename(&spec, &to).await?;
            site.engine.flush().await?;
            self.step(Step::DatabaseRestored, row.tenant_id)?;
            // Its role logs in again, with the password of the current
            // secret (the secret may have been rotated meanwhile).
            site.engine.ensure_role(&spec).await?;
            site.engine.flush().await?;
            keeper.check()
        };
        match steps.await {
            Ok(()) => {
                let change = Change {
                    database_name: Set(to.as_str().to_owned()),
                    read_database_name: Set(to.as_str().to_owned()),
                    pending_database_name: Set(None),
                    deleted_at: Set(None),
                    purge_after: Set(None),
                    purge_tenant: Set(false),
                    secret_version: Set(self.inner.secret_version),
                    error_message: Set(None),
                    ..Default::default()
                };
                let done = self.finish(&row, DbStatus::Active, change).await?;
                tracing::info!(tenant.id = %row.tenant_id, database = %to, "tenant restored");
                Ok(done)
            }
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => {
                // SQLite files are named by tenant id: the name is never
                // "back" there, and nothing was renamed.
                let renamed = match &site.engine {
                    crate::engine::Engine::Postgres(_) => site.engine.ownership(&spec, &to).await,
                    crate::engine::Engine::Sqlite(_) => Ok(Ownership::Missing),
                };
                if !matches!(renamed, Ok(Ownership::Ours)) {
                    let change = Change {
                        error_message: Set(Some(format!("restore failed: {}", err.chain()))),
                        ..Default::default()
                    };
                    if let Err(finish) = self.finish(&row, DbStatus::Deleted, change).await {
                        tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot roll back a failed restore");
                    }
                }
                Err(err)
            }
        }
    }

    /// Purges every DELETED tenant whose retention period is over (the
    /// end recorded on its row when it was deleted). The reconciler's sweep
    /// runs this about once a minute; a row that changed since it was
    /// listed (restored, deleted again, taken by another process) is left.
    #[tracing::instrument(skip_all)]
    pub async fn purge_expired(&self) -> Result<Vec<Purged>> {
        let now = Utc::now();
        let rows = self
            .inner
            .catalog
            .tenant_databases()
            .list(Some(DbStatus::Deleted))
            .await?;
        let mut purged = Vec::new();
        for row in rows.into_iter().filter(|row| is_due(row, now)) {
            let (tenant_id, database_name, deleted_at) = (row.tenant_id, row.database_name.clone(), row.deleted_at);
            let outcome = match self.purge_row(row).await {
                Err(Error::Locked { .. } | Error::TenantNotFound(_)) => continue,
                other => other.map_err(|err| err.chain()),
            };
            purged.push(Purged {
                tenant_id,
                database_name,
                deleted_at,
                outcome,
            });
        }
        Ok(purged)
    }

    /// Purges the DELETED row as it was read: the claim fails (`Locked`) if
    /// it changed since.
    async fn purge_row(&self, row: Row) -> Result<()> {
        let change = Change {
            purge_tenant: Set(true),
            pending_database_name: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Deleting, change).await?;
        self.step(Step::PurgeClaimed, row.tenant_id)?;
        self.run(move |this| async move { this.finish_delete(row).await }).await
    }

    /// Purges the tenant if it is DELETED and past the end of its retention
    /// period now (`doctor --fix` for `expired_trash`); `false` if not.
    pub(crate) async fn purge_if_due(&self, tenant: Uuid) -> Result<bool> {
        let Some(row) = self.inner.catalog.tenant_databases().find_by_tenant(tenant).await? else {
            return Ok(false);
        };
        if row.status != DbStatus::Deleted || !is_due(&row, Utc::now()) {
            return Ok(false);
        }
        self.purge_row(row).await.map(|()| true)
    }

    /// The retention period of deleted tenants.
    pub fn deleted_retention(&self) -> std::time::Duration {
        self.inner.deleted_retention
    }
}
