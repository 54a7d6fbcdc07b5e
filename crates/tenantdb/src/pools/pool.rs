//! `TenantPool`: one tenant's sqlx pool, the budget permits it holds, and
//! the count of handles out that decides when it may close.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sea_orm::DatabaseConnection;
use tokio::sync::OwnedSemaphorePermit;

use super::handle::PoolHandle;

/// The bit of `TenantPool::state` that marks a pool as closing; the bits
/// below count the handles out.
pub(super) const CLOSING: u64 = 1 << 63;

/// One tenant's pool and the budget it holds.
pub(super) struct TenantPool {
    pub(super) db: DatabaseConnection,
    /// Milliseconds since `Inner::epoch` of the last hand-out.
    pub(super) last_used: AtomicU64,
    /// Handles out, plus `CLOSING` once the pool may hand out no more.
    pub(super) state: AtomicU64,
    /// Set by the one `close_pool` that does the closing.
    pub(super) closed: AtomicBool,
    pub(super) permits: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    pub(super) backends: crate::engine::Backends,
}

impl TenantPool {
    /// A handle, unless the pool is closing.
    pub(super) fn hand_out(self: &Arc<Self>) -> Option<PoolHandle> {
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        if before & CLOSING != 0 {
            self.state.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PoolHandle { pool: self.clone() })
    }

    /// No handle out, not closing, every connection idle.
    pub(super) fn unused(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0 && self.all_idle()
    }

    /// Claims an unused pool for closing. After this no handle is handed
    /// out; false if it is in use (or already claimed).
    pub(super) fn try_retire(&self) -> bool {
        self.unused()
            && self
                .state
                .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Stops handing out handles, whatever is out (invalidation, shutdown).
    pub(super) fn retire(&self) {
        self.state.fetch_or(CLOSING, Ordering::AcqRel);
    }

    pub(super) fn size(&self) -> u32 {
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self.db.get_postgres_connection_pool().size(),
            _ => self.db.get_sqlite_connection_pool().size(),
        }
    }

    pub(super) fn num_idle(&self) -> u32 {
        let idle = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self.db.get_postgres_connection_pool().num_idle(),
            _ => self.db.get_sqlite_connection_pool().num_idle(),
        };
        // sqlx keeps the idle count in an atomic that can be decremented
        // before the matching increment under churn, so a read can see it
        // wrapped around below zero. A count above the pool's size is such
        // a read: report none idle, so a busy pool is never taken for an
        // idle one (eviction) and sums cannot overflow (stats).
        match u32::try_from(idle) {
            Ok(idle) if idle <= self.size() => idle,
            _ => 0,
        }
    }

    pub(super) fn all_idle(&self) -> bool {
        self.num_idle() >= self.size()
    }

    pub(super) async fn close_connections(&self) {
        // sqlx's close waits for borrowed connections to come back.
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self.db.get_postgres_connection_pool().close().await,
            _ => self.db.get_sqlite_connection_pool().close().await,
        }
    }
}
