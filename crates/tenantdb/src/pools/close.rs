//! Closing pools: claiming an unused one, removing it from the map, and
//! giving its budget back only once the server has let its connections go.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::TenantPools;
use super::pool::TenantPool;
use crate::names::TenantId;

/// Why a pool was closed (the `reason` label of `tenantdb_pools_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Unused for longer than the idle timeout.
    Idle,
    /// Closed to make room under the budget.
    Evicted,
    /// The tenant was renamed, deleted or changed.
    Invalidated,
    /// `close_all` (shutdown).
    Shutdown,
}

impl CloseReason {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Invalidated => "invalidated",
            Self::Shutdown => "shutdown",
        }
    }
}

/// How long closing a pool waits for the server to let its backends go
/// before the budget takes its room back anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl TenantPools {
    /// Claims the key's pool if it is unused, removes it and closes it;
    /// false if it was in use.
    pub(super) async fn retire_key(&self, key: &TenantId, reason: CloseReason) -> bool {
        let Some(slot) = self.inner.pools.get(key).map(|s| s.clone()) else {
            return false;
        };
        let Some(pool) = slot.get().cloned() else {
            return false;
        };
        if !pool.try_retire() {
            return false;
        }
        self.inner.pools.remove_if(key, |_, s| Arc::ptr_eq(s, &slot));
        self.close_pool(pool, reason).await;
        true
    }

    /// Removes a key and closes its pool (waiting for its connections).
    pub(super) async fn close_key(&self, key: &TenantId, reason: CloseReason) {
        let Some((_, slot)) = self.inner.pools.remove(key) else {
            return;
        };
        if let Some(pool) = slot.get().cloned() {
            self.close_pool(pool, reason).await;
        }
    }

    /// Closes a pool once (later calls return at once): no more handles,
    /// its connections closed and gone from the server, then its permits
    /// back in the budget and waiters woken.
    pub(super) async fn close_pool(&self, pool: Arc<TenantPool>, reason: CloseReason) {
        pool.retire();
        if pool.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        pool.close_connections().await;
        // The server lets a backend go a moment after its client hung up:
        // wait for that too, so the budget holds as the server counts.
        self.inner.engine.wait_closed(&pool.backends, CLOSE_WAIT).await;
        // Only now, with every connection gone, does the budget get its
        // permits back.
        drop(pool.permits.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.inner.metrics.open_pools.decrement(1.0);
        self.inner.metrics.closed(reason);
        self.inner.freed.notify_waiters();
    }

    /// `close_pool` in a task of its own, tracked for `close_all`.
    pub(super) fn spawn_close(&self, pool: Arc<TenantPool>, reason: CloseReason) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        self.inner
            .closing
            .spawn(async move { this.close_pool(pool, reason).await })
    }
}
