//! Read replicas: streaming standbys of a tenant server, each a site of its
//! own (own admin connections, own pools under its own budget, own
//! membership), watched by one task per replica in every process.
//!
//! The watch, every `Replica::interval` (a quarter of the replica's lag
//! bound, between 50 ms and 1 s): read the primary's WAL position, then
//! the replica's replay position. Replayed at least that far: the replica
//! held everything the primary had committed when the check began, so its
//! lag is 0. Not yet: the lag is the age of the last transaction it
//! replayed (how long ago the newest commit it shows was made on the
//! primary). Reads go to the replica while that lag, plus twice the
//! interval (how much older the last check may be when a read is routed),
//! is within the bound, and while the last check is that recent; else to
//! the primary. A replica that does not answer, no longer replays (was
//! promoted) or refuses a pool is left out until a check passes again, and
//! its pools are closed when it is left out (a stopped server leaves dead
//! connections behind).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{ServerSettings, Site, Sites};
use crate::catalog::database_servers;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The lag bound of a replica recorded without one.
pub(crate) const DEFAULT_MAX_LAG_MS: u32 = 1000;
/// The smallest lag bound a replica may be given.
pub(crate) const MIN_MAX_LAG_MS: u32 = 100;

/// A read replica as this process follows it.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    /// The server it follows.
    pub(crate) primary: Uuid,
    pub(crate) max_lag: Duration,
    site: OnceLock<Arc<Site>>,
    /// Whether reads may go to it (as of `checked_ms`).
    usable: AtomicBool,
    /// Its lag at the last check that reached it (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    /// When the last check began, in ms since `epoch`.
    checked_ms: AtomicU64,
    epoch: Instant,
    watch: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    lag_gauge: metrics::Gauge,
    usable_gauge: metrics::Gauge,
}

/// A replica's state as this process sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplicaHealth {
    /// Whether reads go to it now.
    pub(crate) usable: bool,
    /// Its lag at the last check that reached it.
    pub(crate) lag_ms: Option<u64>,
}

impl Replica {
    fn new(row: &database_servers::Model, settings: &ServerSettings) -> Self {
        let max_lag = settings.max_lag_ms.unwrap_or(DEFAULT_MAX_LAG_MS).max(MIN_MAX_LAG_MS);
        Self {
            id: row.id,
            name: row.name.clone(),
            primary: row.primary_id.unwrap_or_default(),
            max_lag: Duration::from_millis(u64::from(max_lag)),
            site: OnceLock::new(),
            usable: AtomicBool::new(false),
            lag_ms: AtomicU64::new(u64::MAX),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            watch: std::sync::Mutex::new(None),
            lag_gauge: metrics::gauge!("tenantdb_replica_lag_ms", "server" => row.name.clone()),
            usable_gauge: metrics::gauge!("tenantdb_replica_usable", "server" => row.name.clone()),
        }
    }

    /// How often it is checked: a quarter of its bound, 50 ms to 1 s.
    pub(crate) fn interval(&self) -> Duration {
        (self.max_lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Its site, when reads may go to it now (the hot path: three atomic
    /// loads).
    pub(crate) fn for_reads(&self) -> Option<&Arc<Site>> {
        if !self.usable.load(Ordering::Acquire) {
            return None;
        }
        let fresh = 2 * u64::try_from(self.interval().as_millis()).unwrap_or(u64::MAX);
        let age = self.now_ms().saturating_sub(self.checked_ms.load(Ordering::Acquire));
        if age > fresh {
            return None;
        }
        self.site.get()
    }

    pub(crate) fn health(&self) -> ReplicaHealth {
        let lag = self.lag_ms.load(Ordering::Acquire);
        ReplicaHealth {
            usable: self.for_reads().is_some(),
            lag_ms: (lag != u64::MAX).then_some(lag),
        }
    }

    /// The site, once a check has opened it.
    pub(crate) fn site(&self) -> Option<&Arc<Site>> {
        self.site.get()
    }

    /// Records a check that reached it: `lag` behind, begun at `began_ms`.
    fn checked(&self, lag: Duration, began_ms: u64) {
        let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX - 1);
        let margin = 2 * self.interval();
        let usable = lag + margin <= self.max_lag;
        self.lag_ms.store(lag_ms, Ordering::Release);
        // No check passed for longer than reads trust one (this one waited
        // for the server to come back): it may have restarted, leaving dead
        // connections. Closed before reads may go to it again.
        let fresh = 2 * u64::try_from(self.interval().as_millis()).unwrap_or(0);
        if self.now_ms().saturating_sub(self.checked_ms.load(Ordering::Acquire)) > fresh {
            self.close_pools();
        }
        // `usable` before the time of the check: a read that sees this
        // check's time sees its verdict.
        let was = self.usable.swap(usable, Ordering::AcqRel);
        self.checked_ms.store(began_ms, Ordering::Release);
        self.lag_gauge.set(lag_ms as f64);
        self.usable_gauge.set(if usable { 1.0 } else { 0.0 });
        match (was, usable) {
            (false, true) => tracing::info!(replica = %self.name, lag_ms, "reads go to the replica"),
            (true, false) => {
                tracing::warn!(replica = %self.name, lag_ms, max_lag_ms = self.max_lag.as_millis() as u64, "the replica is behind its bound: reads go to the primary");
            }
            _ => {}
        }
    }

    /// Leaves it out of reads until a check passes again, closing its
    /// pools (their connections may be dead).
    pub(crate) fn leave_out(&self, why: &Error) {
        let was = self.usable.swap(false, Ordering::AcqRel);
        self.usable_gauge.set(0.0);
        if was {
            tracing::warn!(replica = %self.name, error = %why.chain(), "the replica is left out: reads go to the primary");
        }
        // Whether or not reads went to it just before (it may have been
        // behind): its connections may be dead.
        self.close_pools();
    }

    fn close_pools(&self) {
        if let Some(site) = self.site.get() {
            for (tenant, _) in site.pools.open_pools() {
                drop(site.pools.invalidate(tenant));
            }
        }
    }

    /// One check: the primary's position, then the replica's replay.
    async fn check(&self, sites: &Sites, row: &database_servers::Model) -> Result<Duration> {
        let site = match self.site.get() {
            Some(site) => site.clone(),
            None => {
                let site = sites.connect(row).await?;
                self.site.get_or_init(|| site).clone()
            }
        };
        let primary = sites.get(self.primary).await?;
        let (Engine::Postgres(primary), Engine::Postgres(replica)) = (&primary.engine, &site.engine) else {
            return Err(unusable(&self.name, "only PostgreSQL servers have replicas"));
        };
        let position = primary.wal_position().await?;
        let replay = replica.replay_state().await?;
        if !replay.in_recovery {
            return Err(unusable(
                &self.name,
                "it no longer replays its primary's log (promoted?): remove it or make it a standby again",
            ));
        }
        if replay.replayed >= position {
            return Ok(Duration::ZERO);
        }
        let age = replay.last_replayed_age_ms.unwrap_or(i64::MAX).max(0);
        Ok(Duration::from_millis(u64::try_from(age).unwrap_or(u64::MAX)))
    }

    /// Stops its watch and closes its site.
    pub(crate) async fn close(&self, deadline: Duration) {
        if let Some(watch) = self.watch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            watch.abort();
        }
        self.usable.store(false, Ordering::Release);
        if let Some(site) = self.site.get() {
            site.close(deadline).await;
        }
    }
}

fn unusable(name: &str, reason: &str) -> Error {
    Error::ServerUnusable {
        server: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Starts following replica `row` (its watch runs until `close`).
pub(super) fn follow(sites: &Sites, row: &database_servers::Model) -> Arc<Replica> {
    let replica = Arc::new(Replica::new(row, &ServerSettings::of(row)));
    let watch = tokio::spawn(watch(sites.downgrade(), Arc::downgrade(&replica), row.clone()));
    *replica.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
    replica
}

async fn watch(sites: Weak<super::Inner>, replica: Weak<Replica>, row: database_servers::Model) {
    let mut failing = false;
    loop {
        let (Some(inner), Some(replica)) = (sites.upgrade(), replica.upgrade()) else {
            return;
        };
        let sites = Sites { inner };
        let interval = replica.interval();
        let began = replica.now_ms();
        let limit = super::REACH_TIMEOUT.max(interval);
        match tokio::time::timeout(limit, replica.check(&sites, &row)).await {
            Ok(Ok(lag)) => {
                failing = false;
                replica.checked(lag, began);
            }
            Ok(Err(err)) => {
                if !failing {
                    tracing::warn!(replica = %replica.name, error = %err.chain(), "cannot check the replica");
                }
                failing = true;
                replica.leave_out(&err);
            }
            Err(_) => {
                failing = true;
                replica.leave_out(&Error::ServerUnreachable(replica.name.clone()));
            }
        }
        drop((sites, replica));
        tokio::time::sleep(interval).await;
    }
}
