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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, Notify, OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::config::PoolConfig;
use crate::engine::{Engine, TenantDb};
use crate::error::{Error, Result};
use crate::names::{DatabaseName, TenantId};

/// The bit of `TenantPool::state` that marks a pool as closing; the bits
/// below count the handles out.
const CLOSING: u64 = 1 << 63;
/// How often a caller waiting for budget looks again, besides being woken
/// when a pool closes (a pool's connections going idle wakes nobody).
const BUDGET_RECHECK: Duration = Duration::from_millis(5);

/// Why a pool was closed (the `reason` label of `tenantdb_pools_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
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
    fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Invalidated => "invalidated",
            Self::Shutdown => "shutdown",
        }
    }
}

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

/// How long closing a pool waits for the server to let its backends go
/// before the budget takes its room back anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// One tenant's pool and the budget it holds.
struct TenantPool {
    db: DatabaseConnection,
    /// Milliseconds since `Inner::epoch` of the last hand-out.
    last_used: AtomicU64,
    /// Handles out, plus `CLOSING` once the pool may hand out no more.
    state: AtomicU64,
    /// Set by the one `close_pool` that does the closing.
    closed: AtomicBool,
    permits: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    backends: crate::engine::Backends,
}

impl TenantPool {
    /// A handle, unless the pool is closing.
    fn hand_out(self: &Arc<Self>) -> Option<PoolHandle> {
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        if before & CLOSING != 0 {
            self.state.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PoolHandle { pool: self.clone() })
    }

    /// No handle out, not closing, every connection idle.
    fn unused(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0 && self.all_idle()
    }

    /// Claims an unused pool for closing. After this no handle is handed
    /// out; false if it is in use (or already claimed).
    fn try_retire(&self) -> bool {
        self.unused()
            && self
                .state
                .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Stops handing out handles, whatever is out (invalidation, shutdown).
    fn retire(&self) {
        self.state.fetch_or(CLOSING, Ordering::AcqRel);
    }

    fn size(&self) -> u32 {
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self.db.get_postgres_connection_pool().size(),
            _ => self.db.get_sqlite_connection_pool().size(),
        }
    }

    fn num_idle(&self) -> u32 {
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

    fn all_idle(&self) -> bool {
        self.num_idle() >= self.size()
    }

    async fn close_connections(&self) {
        // sqlx's close waits for borrowed connections to come back.
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self.db.get_postgres_connection_pool().close().await,
            _ => self.db.get_sqlite_connection_pool().close().await,
        }
    }
}

/// A tenant database's pool, as handed out by `TenantPools::get`: use it
/// as a `DatabaseConnection` (it derefs to one and implements sea-orm's
/// connection and transaction traits). While a handle lives, its pool is
/// never evicted or reaped, so acquiring from it cannot meet a pool closed
/// under it; hold it for the work, not for the life of the process (a
/// renamed or deleted tenant's pool still closes under it).
pub struct PoolHandle {
    pool: Arc<TenantPool>,
}

impl PoolHandle {
    /// The underlying connection. A clone of it is not counted: it does not
    /// keep the pool from being evicted.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.pool.db
    }
}

impl Clone for PoolHandle {
    fn clone(&self) -> Self {
        // A live handle keeps the count above zero, so no claim can succeed
        // in between: counting the copy is enough.
        self.pool.state.fetch_add(1, Ordering::AcqRel);
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        self.pool.state.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::ops::Deref for PoolHandle {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.pool.db
    }
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle").field("db", &self.pool.db).finish()
    }
}

#[async_trait::async_trait]
impl sea_orm::ConnectionTrait for PoolHandle {
    fn get_database_backend(&self) -> sea_orm::DbBackend {
        self.pool.db.get_database_backend()
    }

    async fn execute_raw(&self, stmt: sea_orm::Statement) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.pool.db.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.pool.db.execute_unprepared(sql).await
    }

    async fn query_one_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> std::result::Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.pool.db.query_one_raw(stmt).await
    }

    async fn query_all_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.pool.db.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.pool.db.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.pool.db.is_mock_connection()
    }
}

#[async_trait::async_trait]
impl sea_orm::TransactionTrait for PoolHandle {
    type Transaction = sea_orm::DatabaseTransaction;

    async fn begin(&self) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin_with_config(isolation_level, access_mode).await
    }

    async fn begin_with_options(
        &self,
        options: sea_orm::TransactionOptions,
    ) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin_with_options(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> std::result::Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c Self::Transaction,
            )
                -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.pool.db.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> std::result::Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c Self::Transaction,
            )
                -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.pool
            .db
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

/// Counters and gauges, fetched once so the hot path does no lookups.
struct PoolMetrics {
    hits: metrics::Counter,
    misses: metrics::Counter,
    created: metrics::Counter,
    budget_wait: metrics::Histogram,
    open_pools: metrics::Gauge,
    open_connections: metrics::Gauge,
    server: String,
}

impl PoolMetrics {
    fn new(server: &str) -> Self {
        let label = [("server", server.to_owned())];
        Self {
            hits: metrics::counter!("tenantdb_pool_hits_total", &label),
            misses: metrics::counter!("tenantdb_pool_misses_total", &label),
            created: metrics::counter!("tenantdb_pools_created_total", &label),
            budget_wait: metrics::histogram!("tenantdb_pool_budget_wait_seconds", &label),
            open_pools: metrics::gauge!("tenantdb_pools_open", &label),
            open_connections: metrics::gauge!("tenantdb_pool_connections", &label),
            server: server.to_owned(),
        }
    }

    fn closed(&self, reason: CloseReason) {
        metrics::counter!(
            "tenantdb_pools_closed_total",
            "server" => self.server.clone(),
            "reason" => reason.label()
        )
        .increment(1);
    }
}

/// A snapshot of the pools of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub pools: usize,
    pub connections: u32,
    pub idle_connections: u32,
    /// Budget permits not reserved by any pool.
    pub budget_free: usize,
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
    pools: PoolMap,
    /// Woken when a pool closes and its permits return.
    freed: Notify,
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
    pub fn new(engine: Engine, config: PoolConfig, server_name: &str) -> Self {
        let inner = Arc::new(Inner {
            engine,
            budget: Arc::new(Semaphore::new(config.budget as usize)),
            config,
            pools: PoolMap::default(),
            freed: Notify::new(),
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

    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The pool of a tenant database, created on first use.
    pub async fn get(&self, db: &TenantDb) -> Result<PoolHandle> {
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
    fn slot_for(&self, db: &TenantDb) -> Arc<Slot> {
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

    async fn open(&self, db: &TenantDb) -> Result<Arc<TenantPool>> {
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

    /// Takes up to `max_per_tenant` permits (at least one), evicting idle
    /// pools or waiting for room until `deadline`.
    async fn reserve(&self, db: &TenantDb, deadline: Instant) -> Result<OwnedSemaphorePermit> {
        // Under pressure (once we had to evict or wait) a new pool takes a
        // single permit, so that more tenants fit in the budget at once.
        let mut pressed = false;
        loop {
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

    /// Claims the key's pool if it is unused, removes it and closes it;
    /// false if it was in use.
    async fn retire_key(&self, key: &TenantId, reason: CloseReason) -> bool {
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
    async fn close_key(&self, key: &TenantId, reason: CloseReason) {
        let Some((_, slot)) = self.inner.pools.remove(key) else {
            return;
        };
        if let Some(pool) = slot.get().cloned() {
            self.close_pool(pool, reason).await;
        }
    }

    async fn close_pool(&self, pool: Arc<TenantPool>, reason: CloseReason) {
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

    fn spawn_close(&self, pool: Arc<TenantPool>, reason: CloseReason) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        self.inner
            .closing
            .spawn(async move { this.close_pool(pool, reason).await })
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

async fn reap(inner: std::sync::Weak<Inner>) {
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

/// Whether a pool last used at `last_used_ms` has been idle past `idle_ms`.
pub(crate) fn is_idle_expired(last_used_ms: u64, now_ms: u64, idle_ms: u64) -> bool {
    now_ms.saturating_sub(last_used_ms) >= idle_ms
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
    fn pools_expire_after_the_idle_timeout() {
        assert!(!is_idle_expired(1000, 1299, 300));
        assert!(is_idle_expired(1000, 1300, 300));
        // A clock that reads earlier than last use (it was touched after the
        // reaper read the time) is not expired.
        assert!(!is_idle_expired(1000, 900, 300));
    }

    #[test]
    fn a_new_pool_takes_what_is_free_up_to_its_maximum() {
        assert_eq!(reservation_size(10, 4), Some(4));
        assert_eq!(reservation_size(3, 4), Some(3));
        assert_eq!(reservation_size(0, 4), None);
    }
}
