//! `migration_runs`: one row per fleet migration run, with a lease.
//!
//! A run holds a lease in its row while it works (renewed like a tenant's);
//! a RUNNING run whose lease expired was abandoned by a process that died,
//! and every reader sees it as ABANDONED.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::migration_runs as runs;
use super::tenant_databases::Lease;
use crate::error::Result;
use crate::status::RunStatus;

/// A run's status as readers see it: RUNNING with a live lease, ABANDONED
/// when the lease expired, else what the run recorded when it ended.
fn effective_status(row: &runs::Model, now: DateTime<Utc>) -> RunStatus {
    let alive = row.lease_expires_at.is_some_and(|expiry| expiry > now);
    // Only this module writes the column, with these names; an unknown
    // value (a newer release's) reads as the end it is closest to.
    let recorded = row.status.parse().unwrap_or(RunStatus::Failed);
    match recorded {
        RunStatus::Running if !alive => RunStatus::Abandoned,
        status => status,
    }
}

/// How many tenants of a run are done, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Migrated.
    pub succeeded: usize,
    /// Failed (each stays at its old version).
    pub failed: usize,
    /// Skipped: another process held them, or they changed status.
    pub skipped: usize,
}

/// One fleet migration run, as callers see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationRun {
    /// The run's id.
    pub id: Uuid,
    /// RUNNING, SUCCEEDED, FAILED, STOPPED, or ABANDONED (its process died).
    pub status: RunStatus,
    /// The migration every tenant is brought to.
    pub target_version: Option<String>,
    /// Tenants that were behind when it started.
    pub total: i32,
    /// Tenants migrated so far.
    pub succeeded: i32,
    /// Tenants that failed so far.
    pub failed: i32,
    /// Tenants skipped so far.
    pub skipped: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while running or abandoned).
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<runs::Model> for MigrationRun {
    fn from(row: runs::Model) -> Self {
        Self {
            status: effective_status(&row, Utc::now()),
            id: row.id,
            target_version: row.target_version,
            total: row.total,
            succeeded: row.succeeded,
            failed: row.failed,
            skipped: row.skipped,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}

/// The `migration_runs` repository.
#[derive(Debug, Clone, Copy)]
pub struct MigrationRuns<'a> {
    db: &'a DatabaseConnection,
}

impl<'a> MigrationRuns<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection) -> Self {
        Self { db }
    }

    /// Records a RUNNING run leased to `lease`.
    pub async fn start(&self, id: Uuid, target: Option<String>, total: usize, lease: &Lease) -> Result<()> {
        let now = Utc::now();
        runs::ActiveModel {
            id: Set(id),
            status: Set(RunStatus::Running.as_str().into()),
            target_version: Set(target),
            total: Set(i32::try_from(total).unwrap_or(i32::MAX)),
            succeeded: Set(0),
            failed: Set(0),
            skipped: Set(0),
            started_at: Set(now),
            finished_at: Set(None),
            lease_owner: Set(Some(lease.owner.clone())),
            lease_expires_at: Set(Some(lease.expiry(now))),
        }
        .insert(self.db)
        .await?;
        Ok(())
    }

    /// Extends the run's lease; false when it is no longer ours.
    pub async fn renew(&self, id: Uuid, lease: &Lease) -> Result<bool> {
        let result = runs::Entity::update_many()
            .col_expr(runs::Column::LeaseExpiresAt, Expr::value(lease.expiry(Utc::now())))
            .filter(runs::Column::Id.eq(id))
            .filter(runs::Column::LeaseOwner.eq(lease.owner.as_str()))
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Writes progress, and with `status` ends the run: records it and
    /// releases the lease.
    pub async fn record(&self, id: Uuid, counts: RunCounts, status: Option<RunStatus>) -> Result<()> {
        let count = |n: usize| Set(i32::try_from(n).unwrap_or(i32::MAX));
        let mut change = runs::ActiveModel {
            id: sea_orm::Unchanged(id),
            succeeded: count(counts.succeeded),
            failed: count(counts.failed),
            skipped: count(counts.skipped),
            ..Default::default()
        };
        if let Some(status) = status {
            change.status = Set(status.as_str().to_owned());
            change.finished_at = Set(Some(Utc::now()));
            change.lease_owner = Set(None);
            change.lease_expires_at = Set(None);
        }
        change.update(self.db).await?;
        Ok(())
    }

    /// Records an abandoned run as ABANDONED (doctor --fix), if it still is.
    pub async fn close_abandoned(&self, id: Uuid) -> Result<bool> {
        let now = Utc::now();
        let result = runs::Entity::update_many()
            .col_expr(runs::Column::Status, Expr::value(RunStatus::Abandoned.as_str()))
            .col_expr(runs::Column::FinishedAt, Expr::value(now))
            .col_expr(runs::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .filter(runs::Column::Id.eq(id))
            .filter(runs::Column::Status.eq(RunStatus::Running.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(runs::Column::LeaseExpiresAt.is_null())
                    .add(runs::Column::LeaseExpiresAt.lt(now)),
            )
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// One run, with its effective status.
    pub async fn get(&self, id: Uuid) -> Result<Option<MigrationRun>> {
        Ok(runs::Entity::find_by_id(id).one(self.db).await?.map(MigrationRun::from))
    }

    /// The most recent runs, newest first, with their effective status.
    pub async fn recent(&self, limit: u64) -> Result<Vec<MigrationRun>> {
        let rows = runs::Entity::find()
            .order_by_desc(runs::Column::StartedAt)
            .limit(limit)
            .all(self.db)
            .await?;
        Ok(rows.into_iter().map(MigrationRun::from).collect())
    }

    /// RUNNING runs whose lease expired.
    pub async fn abandoned(&self) -> Result<Vec<MigrationRun>> {
        let rows = runs::Entity::find()
            .filter(runs::Column::Status.eq(RunStatus::Running.as_str()))
            .all(self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(MigrationRun::from)
            .filter(|r| r.status == RunStatus::Abandoned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, expires_in_s: Option<i64>, now: DateTime<Utc>) -> runs::Model {
        runs::Model {
            id: Uuid::nil(),
            status: status.into(),
            target_version: None,
            total: 1,
            succeeded: 0,
            failed: 0,
            skipped: 0,
            started_at: now,
            finished_at: None,
            lease_owner: expires_in_s.map(|_| "p".into()),
            lease_expires_at: expires_in_s.map(|s| now + chrono::Duration::seconds(s)),
        }
    }

    #[test]
    fn a_running_run_without_a_live_lease_reads_as_abandoned() {
        let now = Utc::now();
        assert_eq!(effective_status(&run("RUNNING", Some(5), now), now), RunStatus::Running);
        assert_eq!(
            effective_status(&run("RUNNING", Some(-1), now), now),
            RunStatus::Abandoned
        );
        assert_eq!(effective_status(&run("RUNNING", None, now), now), RunStatus::Abandoned);
        assert_eq!(
            effective_status(&run("SUCCEEDED", None, now), now),
            RunStatus::Succeeded
        );
        assert_eq!(effective_status(&run("FAILED", Some(-1), now), now), RunStatus::Failed);
    }
}
