//! What read replicas are judged by: the primary's WAL position and a
//! standby's replay state.

use super::PostgresEngine;
use crate::error::{Error, Result};

/// Where a standby's replay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayState {
    /// Whether the server is a standby replaying a primary's log (false
    /// once promoted).
    pub(crate) in_recovery: bool,
    /// The log position replayed so far (bytes from `0/0`).
    pub(crate) replayed: i64,
    /// Milliseconds since the last transaction it replayed committed on
    /// the primary (`None` when it has replayed none since it started).
    pub(crate) last_replayed_age_ms: Option<i64>,
}

impl PostgresEngine {
    /// The server's current WAL insert position (bytes from `0/0`): past
    /// every commit acknowledged so far, even one acknowledged before its
    /// log reached the disk (`synchronous_commit = off`).
    pub(crate) async fn wal_position(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server("cannot read the server's WAL position"))
    }

    /// The replay state of a standby (`in_recovery` false on a primary).
    pub(crate) async fn replay_state(&self) -> Result<ReplayState> {
        let row: (bool, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), \
                    (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, \
                    (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint",
        )
        .fetch_one(&self.inner.admin)
        .await
        .map_err(Error::server("cannot read the standby's replay state"))?;
        Ok(ReplayState {
            in_recovery: row.0,
            replayed: row.1.unwrap_or(0),
            last_replayed_age_ms: row.2,
        })
    }
}
