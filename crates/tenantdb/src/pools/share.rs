//! This process's share of the server's budget, which can change while it
//! runs (another instance joins or leaves: see `instance`). Raising it adds
//! permits at once. Lowering it is a debt: free permits are taken at once,
//! then permits are taken as pools close, idle pools first (least recently
//! used), and once the acquire timeout has passed the busy ones too (each
//! closes when its borrowed connections come back). A new pool pays the
//! debt before it reserves anything, so the pools never grow while they
//! are over their share.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::TenantPools;
use super::close::CloseReason;
use crate::names::TenantId;

/// How often the shrinking task looks again, besides being woken when a
/// pool closes.
const SHRINK_RECHECK: Duration = Duration::from_millis(10);

/// Once busy pools must go, how often one more is retired while the debt
/// is not paid.
const RETIRE_EVERY: Duration = Duration::from_millis(100);

/// The share and what is still to be taken back from the pools.
#[derive(Debug, Default)]
pub(super) struct Share {
    /// The connections these pools may hold.
    pub(super) limit: usize,
    /// Permits still held by pools beyond `limit`, to be forgotten as they
    /// come back.
    pub(super) debt: usize,
    /// Whether a task is taking the debt back.
    pub(super) shrinking: bool,
    /// Whether the share is given on demand (by an instance membership):
    /// the first pool that finds none asks for one.
    pub(super) on_demand: bool,
}

impl TenantPools {
    /// The connections these pools may hold (the share of the server's
    /// budget given to this process).
    pub fn share(&self) -> u32 {
        u32::try_from(self.share_state().limit).unwrap_or(u32::MAX)
    }

    /// The most connections these pools can hold right now: the share,
    /// plus what a lowered share has not taken back yet.
    pub fn ceiling(&self) -> u32 {
        let share = self.share_state();
        u32::try_from(share.limit + share.debt).unwrap_or(u32::MAX)
    }

    /// From now on the share starts at nothing and is given on demand:
    /// the first pool that needs budget wakes [`TenantPools::wanted`]'s
    /// waiter (this process's instance membership), which joins the
    /// server's instances and sets the share.
    pub(crate) fn share_on_demand(&self) {
        self.share_state().on_demand = true;
        self.set_share(0);
    }

    /// Resolves once a pool has needed budget (see `share_on_demand`).
    pub(crate) async fn wanted(&self) {
        // `notify_one` keeps a permit when nobody waits yet: no wake-up is
        // lost between the check and the wait.
        while !self.inner.asked.load(Ordering::Acquire) {
            self.inner.wanted.notified().await;
        }
    }

    /// Resolves once a lowered share's debt has been paid (the pools hold
    /// no more than the share): the membership then records the smaller
    /// share at once, for the instance waiting for it. A payment made
    /// while nobody waited is kept for the next call.
    pub(crate) async fn repaid(&self) {
        self.inner.repaid.notified().await;
    }

    /// Called by a pool that needs budget: asks for a share if it is given
    /// on demand and none was asked for yet.
    pub(super) fn ask_for_share(&self) {
        if self.share_state().on_demand && !self.inner.asked.swap(true, Ordering::AcqRel) {
            self.inner.wanted.notify_one();
        }
    }

    fn share_state(&self) -> std::sync::MutexGuard<'_, Share> {
        self.inner.share.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the share to `limit` connections: more at once; fewer as
    /// described in the module docs (this returns at once; `ceiling` tells
    /// how far it got).
    pub fn set_share(&self, limit: u32) {
        let limit = limit as usize;
        let start_shrinking = {
            let mut share = self.share_state();
            if limit >= share.limit {
                let mut more = limit - share.limit;
                let repaid = more.min(share.debt);
                share.debt -= repaid;
                more -= repaid;
                self.inner.budget.add_permits(more);
            } else {
                share.debt += share.limit - limit;
            }
            share.limit = limit;
            let start = share.debt > 0 && !share.shrinking;
            if start {
                share.shrinking = true;
            }
            start
        };
        self.collect_debt();
        if limit > 0 {
            self.inner.freed.notify_waiters();
        }
        if start_shrinking {
            let this = self.clone();
            self.inner.closing.spawn(async move { this.shrink().await });
        }
    }

    /// Forgets as many free permits as the debt asks; true once the debt
    /// is paid.
    pub(super) fn collect_debt(&self) -> bool {
        let mut share = self.share_state();
        if share.debt > 0 {
            share.debt -= self.inner.budget.forget_permits(share.debt);
        }
        share.debt == 0
    }

    /// Takes the debt back: idle pools first, busy ones after the acquire
    /// timeout.
    async fn shrink(&self) {
        let mut started = Instant::now();
        loop {
            if self.collect_debt() {
                // Done, unless a new debt came in since: decided under the
                // lock `set_share` takes, so no debt is left without a task.
                let mut share = self.share_state();
                if share.debt == 0 {
                    share.shrinking = false;
                    drop(share);
                    self.inner.repaid.notify_one();
                    return;
                }
                started = Instant::now();
                continue;
            }
            let closed = self.evict_unused().await;
            if !closed && started.elapsed() >= self.inner.config.acquire_timeout {
                // One busy pool at a time: give the last one retired a
                // moment to hand its connections back.
                self.retire_least_recent();
                started = Instant::now() - self.inner.config.acquire_timeout + RETIRE_EVERY;
            }
            let _ = tokio::time::timeout(SHRINK_RECHECK, self.inner.freed.notified()).await;
        }
    }

    /// Closes the least recently used pool nobody uses; false if none.
    async fn evict_unused(&self) -> bool {
        let victim = self
            .inner
            .pools
            .iter()
            .filter_map(|entry| {
                let pool = entry.value().get()?;
                pool.unused()
                    .then(|| (pool.last_used.load(Ordering::Relaxed), *entry.key()))
            })
            .min();
        match victim {
            Some((_, key)) => self.retire_key(&key, CloseReason::Evicted).await,
            None => false,
        }
    }

    /// Closes the least recently used pool even though it is in use: it
    /// goes once its borrowed connections come back, and the tenant's next
    /// request opens a new one within the share.
    fn retire_least_recent(&self) {
        let victim: Option<(u64, TenantId)> = self
            .inner
            .pools
            .iter()
            .filter_map(|entry| {
                let pool = entry.value().get()?;
                Some((pool.last_used.load(Ordering::Relaxed), *entry.key()))
            })
            .min();
        if let Some((_, key)) = victim {
            self.invalidate(key);
        }
    }
}
