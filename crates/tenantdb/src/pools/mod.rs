//! `TenantPools`: one connection pool per tenant database, under a budget.
//!
//! - **Single flight**: the first request for a tenant creates its pool;
//!   concurrent ones wait for that same creation (a `OnceCell` per key).
//! - **Budget**: sqlx fixes a pool's size when it is built and has no limit
//!   shared across pools, so each pool *reserves* its size from the server's
//!   semaphore when it is created and gives it back once it is closed and
//!   all its connections are gone. Under pressure a new pool takes fewer
//!   permits (down to one); when none are left, the least recently used pool
//!   whose connections are all idle is closed; when nothing can be closed,
//!   the caller waits up to the acquire timeout, then gets `Error::Busy`.
//!   The open connections of all pools never exceed the budget.
//! - **Validation**: connections idle longer than a threshold are pinged
//!   before reuse (see `Engine::open_pool`); a new pool checks that it
//!   reached the right tenant's database as the tenant's role.
//! - **Handles**: `get` returns a `PoolHandle`, counted while it lives.
//!   Eviction and the idle reaper close a pool only when no handle is out
//!   and every connection is idle, claiming it with one compare-and-swap
//!   on the same word the hot path increments, so a caller that was handed
//!   a pool can always acquire from it (no timer, no race).
//! - **Lifecycle**: pools nobody used for `idle_timeout` close; a tenant is
//!   invalidated (rename, delete) by closing its pools once borrowed
//!   connections return; `close_all` on shutdown.

mod budget;
mod close;
mod handle;
mod metrics;
mod pool;
mod reaper;
mod share;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{Mutex, Notify, OnceCell, Semaphore};
use tokio_util::task::TaskTracker;

pub(crate) use close::CloseReason;
pub use handle::PoolHandle;

use crate::config::PoolConfig;
use crate::engine::{DatabaseSpec, Engine};
use crate::error::{Error, Result};
use crate::names::{DatabaseName, TenantId};
use metrics::PoolMetrics;
use pool::TenantPool;
use reaper::reap;

/// The pool map's value: the pool of one tenant under one database name
/// (a rename gives the tenant a new slot), created once.
struct Slot {
    database: DatabaseName,
    cell: OnceCell<Arc<TenantPool>>,
}

impl Slot {
    fn new(database: &DatabaseName) -> Arc<Self> {
        Arc::new(Self {
            database: database.clone(),
            cell: OnceCell::new(),
        })
    }

    fn get(&self) -> Option<&Arc<TenantPool>> {
        self.cell.get()
    }
}

/// Keyed by tenant id (no allocation or string hashing on a hit);
/// foldhash because the default SipHash is a measurable share of a routed
/// query on SQLite.
type PoolMap = DashMap<TenantId, Arc<Slot>, foldhash::fast::RandomState>;

/// A snapshot of the pools of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open pools.
    pub pools: usize,
    /// Connections of all open pools.
    pub connections: u32,
    /// Of those, the idle ones.
    pub idle_connections: u32,
    /// Budget permits not reserved by any pool.
    pub budget_free: usize,
    /// Pools opened since start.
    pub pools_created: u64,
}

/// The pool cache of one tenant server.
#[derive(Clone)]
pub struct TenantPools {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: PoolConfig,
    budget: Arc<Semaphore>,
    /// This process's share of the server's budget (see `share`).
    share: std::sync::Mutex<share::Share>,
    /// Set when the first pool asked for a share (`share::ask_for_share`).
    asked: AtomicBool,
    wanted: Notify,
    pools: PoolMap,
    /// Woken when a pool closes and its permits return.
    freed: Notify,
    /// Woken when a lowered share's debt is paid (see `share`).
    repaid: Notify,
    /// Serialises evictions so that waiters do not close several pools for
    /// one free slot.
    evicting: Mutex<()>,
    epoch: Instant,
    created: AtomicU64,
    metrics: PoolMetrics,
    closing: TaskTracker,
    reaper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for TenantPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPools")
            .field("config", &self.inner.config)
            .field("pools", &self.inner.pools.len())
            .finish_non_exhaustive()
    }
}

impl TenantPools {
    /// Pools for `engine`'s server. Starts a reaper task that closes idle
    /// pools (it stops when the last handle is dropped or on `close_all`).
    #[doc(hidden)]
    pub fn new(engine: Engine, config: PoolConfig, server_name: &str) -> Self {
        let inner = Arc::new(Inner {
            engine,
            budget: Arc::new(Semaphore::new(config.budget as usize)),
            share: std::sync::Mutex::new(share::Share {
                limit: config.budget as usize,
                ..Default::default()
            }),
            asked: AtomicBool::new(false),
            wanted: Notify::new(),
            config,
            pools: PoolMap::default(),
            freed: Notify::new(),
            repaid: Notify::new(),
            evicting: Mutex::new(()),
            epoch: Instant::now(),
            created: AtomicU64::new(0),
            metrics: PoolMetrics::new(server_name),
            closing: TaskTracker::new(),
            reaper: std::sync::Mutex::new(None),
        });
        let reaper = tokio::spawn(reap(Arc::downgrade(&inner)));
        *inner.reaper.lock().unwrap_or_else(|e| e.into_inner()) = Some(reaper);
        Self { inner }
    }

    /// The pool settings these pools were made with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Milliseconds since these pools were made (the clock of `last_used`).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The pool of a tenant database, created on first use.
    pub async fn get(&self, db: &DatabaseSpec) -> Result<PoolHandle> {
        if let Some(slot) = self.inner.pools.get(&db.tenant)
            && slot.database == db.database
            && let Some(pool) = slot.get()
            && let Some(handle) = pool.hand_out()
        {
            pool.last_used.store(self.now_ms(), Ordering::Relaxed);
            self.inner.metrics.hits.increment(1);
            return Ok(handle);
        }
        self.inner.metrics.misses.increment(1);
        // A slot can be replaced or removed (rename, invalidation) while its
        // pool is being made, and a pool can be claimed for closing (idle,
        // evicted): such a slot is dropped, its pool closed, and we go again.
        for _ in 0..3 {
            let slot = self.slot_for(db);
            let pool = slot.cell.get_or_try_init(|| self.open(db)).await?.clone();
            let current = self.inner.pools.get(&db.tenant).is_some_and(|s| Arc::ptr_eq(&s, &slot));
            if current && let Some(handle) = pool.hand_out() {
                pool.last_used.store(self.now_ms(), Ordering::Relaxed);
                return Ok(handle);
            }
            self.inner.pools.remove_if(&db.tenant, |_, s| Arc::ptr_eq(s, &slot));
            self.spawn_close(pool, CloseReason::Invalidated);
        }
        Err(Error::TenantUnavailable {
            tenant: db.tenant.to_string(),
            status: crate::catalog::DbStatus::Renaming,
        })
    }

    /// The tenant's slot for this database name; a slot for an older name
    /// (the tenant was renamed) is replaced and its pool closed.
    fn slot_for(&self, db: &DatabaseSpec) -> Arc<Slot> {
        use dashmap::mapref::entry::Entry;
        match self.inner.pools.entry(db.tenant) {
            Entry::Occupied(entry) if entry.get().database == db.database => entry.get().clone(),
            Entry::Occupied(mut entry) => {
                let slot = Slot::new(&db.database);
                let old = entry.insert(slot.clone());
                if let Some(pool) = old.get().cloned() {
                    self.spawn_close(pool, CloseReason::Invalidated);
                }
                slot
            }
            Entry::Vacant(entry) => entry.insert(Slot::new(&db.database)).clone(),
        }
    }

    /// Opens a tenant's pool with as many connections as the budget
    /// grants it.
    async fn open(&self, db: &DatabaseSpec) -> Result<Arc<TenantPool>> {
        let started = Instant::now();
        let permits = self.reserve(db, started + self.inner.config.acquire_timeout).await?;
        self.inner.metrics.budget_wait.record(started.elapsed().as_secs_f64());
        let size = u32::try_from(permits.num_permits()).unwrap_or(1);
        // On failure the permits drop here and go back to the budget.
        let (conn, backends) = self.inner.engine.open_pool(db, &self.inner.config, size).await?;
        self.inner.created.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.created.increment(1);
        self.inner.metrics.open_pools.increment(1.0);
        tracing::debug!(tenant.id = %db.tenant, database = %db.database, size, "tenant pool opened");
        Ok(Arc::new(TenantPool {
            db: conn,
            last_used: AtomicU64::new(self.now_ms()),
            state: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            permits: std::sync::Mutex::new(Some(permits)),
            backends,
        }))
    }

    /// Closes every pool of a tenant once its borrowed connections return;
    /// the next request gets a fresh pool. Returns at once; the closing
    /// goes on in the background.
    pub fn invalidate(&self, tenant: TenantId) -> Vec<tokio::task::JoinHandle<()>> {
        let mut closing = Vec::new();
        if let Some((_, slot)) = self.inner.pools.remove(&tenant)
            && let Some(pool) = slot.get().cloned()
        {
            closing.push(self.spawn_close(pool, CloseReason::Invalidated));
        }
        closing
    }

    /// Like `invalidate`, then waits up to `max_wait` for the pools to
    /// close (long requests may hold connections longer; the closing goes
    /// on after that).
    pub async fn invalidate_and_wait(&self, tenant: TenantId, max_wait: Duration) {
        let closing = self.invalidate(tenant);
        let _ = tokio::time::timeout(max_wait, async {
            for handle in closing {
                let _ = handle.await;
            }
        })
        .await;
    }

    /// Tenants and database names of the open pools.
    pub fn open_pools(&self) -> Vec<(TenantId, DatabaseName)> {
        self.inner
            .pools
            .iter()
            .filter(|entry| entry.value().get().is_some())
            .map(|entry| (*entry.key(), entry.value().database.clone()))
            .collect()
    }

    /// A snapshot of the open pools and the budget.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            pools: 0,
            connections: 0,
            idle_connections: 0,
            budget_free: self.inner.budget.available_permits(),
            pools_created: self.inner.created.load(Ordering::Relaxed),
        };
        for entry in &self.inner.pools {
            if let Some(pool) = entry.value().get() {
                stats.pools += 1;
                stats.connections = stats.connections.saturating_add(pool.size());
                stats.idle_connections = stats.idle_connections.saturating_add(pool.num_idle());
            }
        }
        stats
    }

    /// Sets the gauges that are read rather than counted (the free budget)
    /// from the pools as they are now: call it before a scrape.
    pub fn refresh_metrics(&self) {
        let free = self.inner.budget.available_permits();
        self.inner.metrics.budget_free.set(free as f64);
        self.inner.metrics.share.set(f64::from(self.share()));
    }

    /// Closes every pool (waiting for borrowed connections) and stops the
    /// reaper. For shutdown.
    pub async fn close_all(&self) {
        if let Some(reaper) = self.inner.reaper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            reaper.abort();
        }
        let keys: Vec<TenantId> = self.inner.pools.iter().map(|e| *e.key()).collect();
        for key in keys {
            self.close_key(&key, CloseReason::Shutdown).await;
        }
        self.inner.closing.close();
        self.inner.closing.wait().await;
    }
}
