//! The sqlx pool settings of tenantdb, one function per kind of pool, so
//! that every pool of a kind is built the same way: the pools that do one
//! job (the admin pool, the catalog, a migration or a template build) and
//! the tenant pools that serve requests. Connection options are not here:
//! each engine derives its own from one parsed server setting.

use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;

use crate::config::PoolConfig;

/// How long a PostgreSQL job pool waits for a connection (connecting
/// included) before it gives up.
const JOB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL pool of at most `max` connections for one job.
pub(crate) fn postgres_job(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(JOB_ACQUIRE_TIMEOUT)
}

/// A SQLite pool of at most `max` connections for one job (sqlx's default
/// acquire timeout: the database is a local file).
pub(crate) fn sqlite_job(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(max)
}

/// A tenant pool of `size` connections (the budget's grant), either engine:
/// none opened ahead of use, idle ones closed after the idle timeout, and
/// no test query on each acquire (the engines ping only connections idle
/// past `validate_after_idle`).
pub(crate) fn tenant<DB: sqlx::Database>(config: &PoolConfig, size: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .test_before_acquire(false)
}
