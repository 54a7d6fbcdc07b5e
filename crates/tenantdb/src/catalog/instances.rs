//! `instances`: the processes that hold tenant pools on a server, each
//! with a lease and a share of the server's connection budget.
//!
//! Every heartbeat runs under the server row's lock (one beat at a time
//! per server, across processes) and keeps one invariant: **the recorded
//! shares of live instances never add up to more than the budget**. An
//! instance raises its recorded share only within what the others do not
//! hold, and lowers it only as far as its pools have actually shrunk (it
//! tells the beat how many it can still hold). A joining instance starts
//! at what is free and grows as the others give theirs back.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use uuid::Uuid;

use super::entities::{database_servers, instances};
use crate::error::{Error, Result};

/// Who this process is: its instance id, host and process id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// Made when the process started (UUIDv7).
    pub id: Uuid,
    /// The machine's host name, boot id and process id namespace
    /// (`web-1 5f3c... pid:[4026531836]`): a process of the same `host`
    /// whose `pid` no longer runs is known to be gone.
    pub host: String,
    /// The process id.
    pub pid: i32,
}

impl InstanceIdentity {
    /// This process.
    pub fn current() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        // Processes are told apart by process id only within one boot of
        // one kernel and one process id namespace: machines (and
        // containers) that share a host name do not share all three.
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok();
        let host = match (boot, namespace) {
            (Some(boot), Some(namespace)) => format!("{host} {} {}", boot.trim(), namespace.display()),
            _ => format!("{host} (no process check)"),
        };
        Self {
            id: Uuid::now_v7(),
            host,
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        }
    }
}

/// Tells the other instances of `server` (PostgreSQL: `INSTANCES_CHANNEL`
/// with the server's id, delivered when `tx` commits) to beat now rather
/// than at their next interval.
async fn notify_instances(tx: &impl ConnectionTrait, server: Uuid) -> Result<()> {
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        // A UUID's text needs no quoting beyond the literal's.
        tx.execute_unprepared(&format!("NOTIFY {}, '{server}'", super::INSTANCES_CHANNEL))
            .await?;
    }
    Ok(())
}

/// What one heartbeat decided for this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Its fair share: the budget divided among the live instances.
    pub fair: u32,
    /// Its recorded share after the beat: what it may hold now.
    pub share: u32,
    /// Live instances on the server, itself included.
    pub instances: usize,
}

/// The `instances` table.
#[derive(Debug, Clone, Copy)]
pub struct Instances<'a> {
    db: &'a DatabaseConnection,
}

impl<'a> Instances<'a> {
    pub(super) fn new(db: &'a DatabaseConnection) -> Self {
        Self { db }
    }

    /// One heartbeat of `me` on `server`: renews its lease for `ttl`,
    /// removes instances that are gone (lease expired, or a process of this
    /// host that no longer runs), and records its share: up to its fair
    /// share of the server's budget (`connection_budget`) as far as the
    /// others leave room, or down to `holding` (what its pools can still
    /// hold) when it must give back. `budget`, when given (the beat that
    /// joins), is recorded as the server's budget first.
    ///
    /// Times are the catalog server's clock on PostgreSQL (instances on
    /// machines whose clocks disagree still agree on whose lease is over);
    /// a SQLite catalog is on one machine, whose clock is used.
    pub async fn beat(
        &self,
        me: &InstanceIdentity,
        server: Uuid,
        budget: Option<u32>,
        holding: u32,
        ttl: Duration,
    ) -> Result<Beat> {
        let tx = self.db.begin().await?;
        // The server row's lock: beats of one server go one at a time.
        database_servers::Entity::update_many()
            .col_expr(
                database_servers::Column::UpdatedAt,
                Expr::col(database_servers::Column::UpdatedAt),
            )
            .filter(database_servers::Column::Id.eq(server))
            .exec(&tx)
            .await?;
        if let Some(budget) = budget {
            database_servers::Entity::update_many()
                .col_expr(
                    database_servers::Column::ConnectionBudget,
                    Expr::value(i32::try_from(budget).unwrap_or(i32::MAX)),
                )
                .filter(database_servers::Column::Id.eq(server))
                .exec(&tx)
                .await?;
        }
        // A server removed from the catalog takes no instance rows: its
        // share is nothing (the process closes its site when it sees).
        let budget = database_servers::Entity::find_by_id(server)
            .one(&tx)
            .await?
            .map(|row| u32::try_from(row.connection_budget).unwrap_or(0))
            .ok_or_else(|| Error::ServerNotFound(server.to_string()))?;
        let now = catalog_now(&tx).await?;
        let rows = instances::Entity::find()
            .filter(instances::Column::ServerId.eq(server))
            .order_by_asc(instances::Column::StartedAt)
            .order_by_asc(instances::Column::Id)
            .all(&tx)
            .await?;
        let mut live = Vec::new();
        let mut mine = None;
        for row in rows {
            if row.id == me.id {
                mine = Some(row);
            } else if row.lease_expires_at <= now || (row.host == me.host && !process_runs(row.pid)) {
                tracing::info!(instance = %row.id, host = %row.host, pid = row.pid, "an instance is gone: its share returns");
                instances::Entity::delete_by_id((row.id, row.server_id))
                    .exec(&tx)
                    .await?;
            } else {
                live.push(row);
            }
        }
        let lease = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(10));
        // With no row (joining, or taken for dead after a stall while it
        // still holds connections), what its pools hold is what it has:
        // recorded as it is, so the others cannot grow into it.
        let recorded = mine
            .as_ref()
            .map_or(holding, |row| u32::try_from(row.share).unwrap_or(0));
        let started_at = mine.as_ref().map_or(now, |row| row.started_at);
        // Fair shares in joining order; the remainder goes to the oldest.
        let position = live
            .iter()
            .filter(|row| (row.started_at, row.id) < (started_at, me.id))
            .count();
        let count = live.len() + 1;
        let fair = fair_share(budget, count, position);
        let others: u32 = live.iter().map(|row| u32::try_from(row.share).unwrap_or(0)).sum();
        // Never recorded below what the pools can still hold (the budget
        // may have been lowered, or the row was lost): that is reality.
        let held = recorded.min(holding);
        let share = if fair >= recorded {
            fair.min(budget.saturating_sub(others)).max(held)
        } else {
            fair.max(holding).min(recorded)
        };
        let row = instances::ActiveModel {
            id: Set(me.id),
            server_id: Set(server),
            host: Set(me.host.clone()),
            pid: Set(me.pid),
            started_at: Set(started_at),
            lease_expires_at: Set(lease),
            share: Set(i32::try_from(share).unwrap_or(i32::MAX)),
        };
        // Joining, or giving back: the others look at once (the one that
        // gives back to a joiner, and the joiner taking it) instead of at
        // their next beat. Delivered only if this commits.
        let tell = mine.is_none() || share < recorded;
        if mine.is_some() {
            row.update(&tx).await?;
        } else {
            row.insert(&tx).await?;
        }
        if tell {
            notify_instances(&tx, server).await?;
        }
        tx.commit().await?;
        Ok(Beat {
            fair,
            share,
            instances: count,
        })
    }

    /// Removes `me`'s row of `server` (a clean shutdown: its share returns
    /// at once).
    pub async fn leave(&self, me: &InstanceIdentity, server: Uuid) -> Result<()> {
        let tx = self.db.begin().await?;
        instances::Entity::delete_many()
            .filter(instances::Column::Id.eq(me.id))
            .filter(instances::Column::ServerId.eq(server))
            .exec(&tx)
            .await?;
        notify_instances(&tx, server).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instances on `server` whose lease is live, oldest first.
    pub async fn live(&self, server: Uuid) -> Result<Vec<instances::Model>> {
        Ok(instances::Entity::find()
            .filter(instances::Column::ServerId.eq(server))
            .filter(instances::Column::LeaseExpiresAt.gt(Utc::now()))
            .order_by_asc(instances::Column::StartedAt)
            .all(self.db)
            .await?)
    }
}

/// The catalog server's time on PostgreSQL, this machine's on SQLite.
async fn catalog_now(tx: &sea_orm::DatabaseTransaction) -> Result<chrono::DateTime<Utc>> {
    use sea_orm::ConnectionTrait;
    if tx.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(Utc::now());
    }
    let row = tx
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT now()",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get_by_index::<chrono::DateTime<Utc>>(0)?,
        None => Utc::now(),
    })
}

/// The fair share of the instance at `position` (joining order) among
/// `count`: the budget divided evenly, the remainder to the oldest.
pub(crate) fn fair_share(budget: u32, count: usize, position: usize) -> u32 {
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    let position = u32::try_from(position).unwrap_or(u32::MAX);
    budget / count + u32::from(position < budget % count)
}

/// Whether a process of this host runs (Linux: its `/proc` entry; where
/// that cannot be told, it is taken to run and waits for its lease).
fn process_runs(pid: i32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() || proc_hides_processes() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// Whether `/proc` is mounted with `hidepid` (other users' processes are
/// invisible there, so a missing entry proves nothing).
fn proc_hides_processes() -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return true;
    };
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"/proc")
            && fields.get(3).is_some_and(|options| {
                options
                    .split(',')
                    .any(|o| o.starts_with("hidepid=") && !matches!(o, "hidepid=0" | "hidepid=off"))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_add_up_to_the_budget_and_the_oldest_get_the_remainder() {
        for budget in [0, 1, 5, 20, 97] {
            for count in 1..8 {
                let shares: Vec<u32> = (0..count).map(|p| fair_share(budget, count, p)).collect();
                assert_eq!(shares.iter().sum::<u32>(), budget, "{budget} among {count}");
                assert!(shares.windows(2).all(|w| w[0] >= w[1]), "{shares:?}");
            }
        }
        assert_eq!(fair_share(20, 3, 0), 7);
        assert_eq!(fair_share(20, 3, 2), 6);
    }

    #[test]
    fn this_process_runs() {
        assert!(process_runs(i32::try_from(std::process::id()).unwrap()));
    }
}
