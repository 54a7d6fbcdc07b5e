//! The idle reaper: a task that closes pools nobody used for the idle
//! timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::close::CloseReason;
use super::{Inner, TenantPools};
use crate::names::TenantId;

impl TenantPools {
    /// Closes the pools unused for the idle timeout (skipping any in use)
    /// and updates the open-connections gauge.
    async fn close_idle(&self) {
        let idle_ms = u64::try_from(self.inner.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let expired: Vec<TenantId> = self
            .inner
            .pools
            .iter()
            .filter(|entry| {
                entry
                    .value()
                    .get()
                    .is_some_and(|pool| is_idle_expired(pool.last_used.load(Ordering::Relaxed), now, idle_ms))
            })
            .map(|entry| *entry.key())
            .collect();
        for key in expired {
            // Skipped when in use after all (a handle out or a connection
            // borrowed); it comes up again next round.
            self.retire_key(&key, CloseReason::Idle).await;
        }
        self.inner
            .metrics
            .open_connections
            .set(f64::from(self.stats().connections));
    }
}

pub(super) async fn reap(inner: std::sync::Weak<Inner>) {
    loop {
        let period = match inner.upgrade() {
            Some(inner) => (inner.config.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5)),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        TenantPools { inner }.close_idle().await;
    }
}

/// Whether a pool last used at `last_used_ms` has been idle past `idle_ms`.
pub(crate) fn is_idle_expired(last_used_ms: u64, now_ms: u64, idle_ms: u64) -> bool {
    now_ms.saturating_sub(last_used_ms) >= idle_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_expire_after_the_idle_timeout() {
        assert!(!is_idle_expired(1000, 1299, 300));
        assert!(is_idle_expired(1000, 1300, 300));
        // A clock that reads earlier than last use (it was touched after the
        // reaper read the time) is not expired.
        assert!(!is_idle_expired(1000, 900, 300));
    }
}
