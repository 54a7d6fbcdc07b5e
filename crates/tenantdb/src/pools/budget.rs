//! The connection budget: a new pool reserves its size from the server's
//! semaphore, evicting the least recently used idle pool or waiting when
//! none is free (see the module docs of `pools`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::TenantPools;
use super::close::CloseReason;
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::names::TenantId;

/// How often a caller waiting for budget looks again, besides being woken
/// when a pool closes (a pool's connections going idle wakes nobody).
const BUDGET_RECHECK: Duration = Duration::from_millis(5);

impl TenantPools {
    /// Takes up to `max_per_tenant` permits (at least one), evicting idle
    /// pools or waiting for room until `deadline`.
    pub(super) async fn reserve(&self, db: &DatabaseSpec, deadline: Instant) -> Result<OwnedSemaphorePermit> {
        // Under pressure (once we had to evict or wait) a new pool takes a
        // single permit, so that more tenants fit in the budget at once.
        let mut pressed = false;
        self.ask_for_share();
        loop {
            // A lowered share is paid back before anything new is reserved.
            self.collect_debt();
            let max = if pressed { 1 } else { self.inner.config.max_per_tenant };
            let want = reservation_size(self.inner.budget.available_permits(), max);
            if let Some(want) = want
                && let Ok(permits) = self.inner.budget.clone().try_acquire_many_owned(want)
            {
                return Ok(permits);
            }
            pressed = true;
            if want.is_none() && self.evict_one().await {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Busy {
                    tenant: db.tenant.to_string(),
                    waited_ms: u64::try_from(self.inner.config.acquire_timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
            let wait = (deadline - now).min(BUDGET_RECHECK);
            let _ = tokio::time::timeout(wait, self.inner.freed.notified()).await;
        }
    }

    /// Closes the least recently used pool with no handle out and every
    /// connection idle; false if there is none.
    async fn evict_one(&self) -> bool {
        let _guard = self.inner.evicting.lock().await;
        if self.inner.budget.available_permits() > 0 {
            return true; // someone else made room meanwhile
        }
        loop {
            let candidates: Vec<(TenantId, Candidate)> = self
                .inner
                .pools
                .iter()
                .filter_map(|entry| {
                    let pool = entry.value().get()?;
                    let candidate = Candidate {
                        last_used_ms: pool.last_used.load(Ordering::Relaxed),
                        unused: pool.unused(),
                    };
                    Some((*entry.key(), candidate))
                })
                .collect();
            let only: Vec<Candidate> = candidates.iter().map(|(_, c)| *c).collect();
            let Some(victim) = pick_victim(&only) else {
                return false;
            };
            // Someone may have taken a handle since: then look again (that
            // pool is no longer a candidate).
            if self.retire_key(&candidates[victim].0, CloseReason::Evicted).await {
                return true;
            }
        }
    }
}

/// What eviction knows about a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub last_used_ms: u64,
    /// No handle out and every connection idle.
    pub unused: bool,
}

/// The pool to evict: the least recently used unused one.
pub(crate) fn pick_victim(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.unused)
        .min_by_key(|(_, c)| c.last_used_ms)
        .map(|(i, _)| i)
}

/// How many permits a new pool takes: as many as it may use, but no more
/// than are free; `None` when none are.
pub(crate) fn reservation_size(available: usize, max_per_tenant: u32) -> Option<u32> {
    let available = u32::try_from(available).unwrap_or(u32::MAX);
    (available > 0).then(|| available.min(max_per_tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(last_used_ms: u64, unused: bool) -> Candidate {
        Candidate { last_used_ms, unused }
    }

    #[test]
    fn the_victim_is_the_least_recently_used_unused_pool() {
        let pools = [c(500, true), c(100, false), c(200, true), c(300, true)];
        assert_eq!(pick_victim(&pools), Some(2));
    }

    #[test]
    fn pools_in_use_are_never_evicted() {
        assert_eq!(pick_victim(&[c(100, false)]), None);
        assert_eq!(pick_victim(&[c(990, false), c(900, true)]), Some(1));
        assert_eq!(pick_victim(&[]), None);
    }

    #[test]
    fn a_new_pool_takes_what_is_free_up_to_its_maximum() {
        assert_eq!(reservation_size(10, 4), Some(4));
        assert_eq!(reservation_size(3, 4), Some(3));
        assert_eq!(reservation_size(0, 4), None);
    }
}
