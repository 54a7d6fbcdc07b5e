//! Reconcile: finishing work a dead process left (rows in a working
//! status whose lease expired), once or in the background.

use uuid::Uuid;

use super::Provisioner;
use super::steps::{Change, Row};
use crate::catalog::DbStatus;
use crate::error::Result;

/// How often the reconciler also purges deleted tenants past their
/// retention period.
const TRASH_SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

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

/// One abandoned row `reconcile` found, and what it did with it.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The tenant of the row.
    pub tenant_id: Uuid,
    /// The database name the row had.
    pub database_name: String,
    /// The status the row was abandoned in.
    pub status: DbStatus,
    /// What became of it.
    pub outcome: ReconcileOutcome,
}

impl Provisioner {
    /// Finishes abandoned work in the background: every third of a lease
    /// period, rows whose lease expired (a process died or was restarted
    /// mid-operation) are reconciled, and about once a minute deleted
    /// tenants past their retention period are purged, until `stop` is
    /// cancelled. Several
    /// instances may run one each: a row is claimed by one conditional
    /// UPDATE, so the work is never done twice.
    pub fn spawn_reconciler(&self, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let period = self.inner.lease_ttl / 3;
        tokio::spawn(async move {
            let mut last_sweep: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                match this.reconcile().await {
                    Ok(report) => {
                        for entry in report.iter().filter(|e| e.outcome != ReconcileOutcome::Skipped) {
                            tracing::info!(
                                tenant.id = %entry.tenant_id, status = %entry.status, outcome = ?entry.outcome,
                                "finished abandoned work"
                            );
                        }
                    }
                    Err(err) => tracing::warn!(error = %err.chain(), "reconciling abandoned work failed"),
                }
                if last_sweep.is_none_or(|at| at.elapsed() >= TRASH_SWEEP_PERIOD) {
                    last_sweep = Some(tokio::time::Instant::now());
                    match this.purge_expired().await {
                        Ok(purged) => {
                            for entry in purged {
                                match entry.outcome {
                                    Ok(()) => {
                                        tracing::info!(tenant.id = %entry.tenant_id, "purged a deleted tenant past its retention period")
                                    }
                                    Err(err) => {
                                        tracing::warn!(tenant.id = %entry.tenant_id, error = %err, "purging a deleted tenant failed")
                                    }
                                }
                            }
                        }
                        Err(err) => tracing::warn!(error = %err.chain(), "sweeping deleted tenants failed"),
                    }
                }
            }
        })
    }

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
                let result = self.finish_abandoned(row).await;
                entry.outcome = match result {
                    Ok(()) => ReconcileOutcome::Finished,
                    Err(err) => ReconcileOutcome::Failed(err.to_string()),
                };
            }
            report.push(entry);
        }
        Ok(report)
    }

    /// Runs the work a row was abandoned in again, in a task the
    /// provisioner owns; the row is claimed with a fresh lease.
    async fn finish_abandoned(&self, row: Row) -> Result<()> {
        match row.status {
            DbStatus::Provisioning => {
                self.run(move |this| async move { this.provision(row).await.map(drop) })
                    .await
            }
            DbStatus::Renaming if row.deleted_at.is_some() => {
                self.run(move |this| async move { this.finish_restore(row).await.map(drop) })
                    .await
            }
            DbStatus::Renaming => {
                self.run(move |this| async move { this.finish_rename(row).await.map(drop) })
                    .await
            }
            DbStatus::Deleting => self.run(move |this| async move { this.finish_delete(row).await }).await,
            DbStatus::Moving | DbStatus::Switching => {
                self.run(move |this| async move { this.finish_abandoned_move(row).await.map(drop) })
                    .await
            }
            _ => {
                self.run(move |this| async move { this.finish_migrate(row).await.map(drop) })
                    .await
            }
        }
    }
}
