//! `TenantConnections`: from a tenant (id or slug) to a connection to its
//! database, on the hot path of every request.
//!
//! 1. Resolve the tenant from an in-process cache (never the catalog on a
//!    hit). Entries carry the catalog change stamp they were read at
//!    (`Catalog::changes`); any routing change written by this process, or
//!    seen by the poller in another's, moves the stamp and makes every entry
//!    stale at once.
//! 2. Refuse early unless the tenant is ACTIVE (not suspended) and its
//!    database serves traffic (ACTIVE, MIGRATING).
//! 3. Hand out the tenant's pool from `TenantPools`: for reads, the pool on
//!    a read replica of its server while one is within its lag bound (see
//!    `sites::replicas`), else on the server itself. A replica that refuses
//!    the pool is left out and the read goes to the server, so a stopped
//!    replica fails no request that asks for a connection after it stopped
//!    answering its watch.
//!
//! Other processes: a poller reads the catalog generation every
//! `catalog_poll_interval` (one indexed single-row read). When it moved, the
//! cache is flushed and every open pool whose row changed (renamed, deleted,
//! not serving) is closed, so a change anywhere reaches this process within
//! about one interval even with no notification at all. On a PostgreSQL
//! catalog the poller also LISTENs (one connection of its own): a change
//! committed by another process wakes it at once, so the interval is only
//! the bound for a notification that was lost (a listener reconnecting).
//! The same connection hears instances joining, giving back and leaving
//! (`catalog::INSTANCES_CHANNEL`), passed on to the heartbeats.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use uuid::Uuid;

use crate::catalog::{Catalog, DbStatus, TenantStatus, tenant_database, tenants};
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, RoleName, TenantId, TenantRef};
use crate::pools::{PoolHandle, TenantPools};
use crate::sites::Sites;

/// How long a request for a tenant whose move is switching servers waits
/// for the switch before it is refused (503, try again).
pub(crate) const SWITCH_WAIT: Duration = Duration::from_secs(2);

/// Past this many entries (most of them misses for made-up names) the cache
/// starts over rather than grow without bound.
const MAX_CACHE_ENTRIES: usize = 100_000;

/// A tenant as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTenant {
    /// The tenant's id.
    pub id: TenantId,
    /// The tenant's slug.
    pub slug: String,
    /// Whether it is active or suspended.
    pub status: TenantStatus,
    /// Its database, once provisioning has recorded one.
    pub database: Option<ResolvedDatabase>,
    /// The catalog change stamp this was read at: while the stamp has not
    /// moved, this is still what the catalog says.
    stamp: u64,
}

/// A tenant's database as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDatabase {
    /// Whether it serves traffic now.
    pub status: DbStatus,
    /// The tenant server it lives on (`database_servers.id`).
    pub server: Uuid,
    /// The database writes go to.
    pub primary: DatabaseSpec,
    /// The read database: the same name as `primary`, on a read replica of
    /// its server while one keeps up, else on the server itself.
    pub read: DatabaseSpec,
}

impl ResolvedTenant {
    fn new(tenant: &tenants::Model, row: Option<&tenant_database::Model>, stamp: u64) -> Self {
        let id = TenantId::from(tenant.id);
        Self {
            id,
            slug: tenant.slug.clone(),
            status: tenant.status,
            stamp,
            database: row.map(|row| {
                let role = RoleName::from_catalog(row.role_name.clone());
                ResolvedDatabase {
                    status: row.status,
                    server: row.server_id,
                    primary: DatabaseSpec {
                        tenant: id,
                        database: DatabaseName::from_catalog(row.database_name.clone()),
                        role: role.clone(),
                    },
                    read: DatabaseSpec {
                        tenant: id,
                        database: DatabaseName::from_catalog(row.read_database_name.clone()),
                        role,
                    },
                }
            }),
        }
    }

    /// Whether its database is switching servers (a move's last moment).
    pub fn is_switching(&self) -> bool {
        self.database.as_ref().is_some_and(|d| d.status == DbStatus::Switching)
    }

    /// The database, if the tenant may be served now; otherwise the precise
    /// reason: suspended, no database, or a database status that does not
    /// serve traffic.
    pub fn serving(&self) -> Result<&ResolvedDatabase> {
        if self.status == TenantStatus::Suspended {
            return Err(Error::TenantSuspended(self.slug.clone()));
        }
        let database = self
            .database
            .as_ref()
            .ok_or_else(|| Error::TenantDatabaseNotFound(self.slug.clone()))?;
        if database.status == DbStatus::Deleted {
            return Err(Error::TenantDeleted(self.slug.clone()));
        }
        if !database.status.serves_traffic() {
            return Err(Error::TenantUnavailable {
                tenant: self.slug.clone(),
                status: database.status,
            });
        }
        Ok(database)
    }
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: u64,
    /// `None`: the catalog has no such tenant (cached too, so probing for
    /// names does not reach the catalog on every request).
    value: Option<Arc<ResolvedTenant>>,
}

impl Cached {
    /// The entry, if it was read at `stamp` (`Some(None)`: known absent).
    fn current(&self, stamp: u64) -> Option<Option<Arc<ResolvedTenant>>> {
        (self.stamp == stamp).then(|| self.value.clone())
    }
}

/// Resolution, status checks and pools: the seed's TypeormTenantService.
#[derive(Clone)]
pub struct TenantConnections {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    /// The pools of the server of the settings: a request for one of its
    /// tenants takes them without a lock.
    home: TenantPools,
    home_id: Uuid,
    /// Every server's pools (`None` when built over one set of pools).
    sites: Option<Sites>,
    /// By id and by slug (two maps, so a slug is looked up as `&str`,
    /// without building a key).
    by_id: DashMap<Uuid, Cached, foldhash::fast::RandomState>,
    by_slug: DashMap<String, Cached, foldhash::fast::RandomState>,
    hits: metrics::Counter,
    misses: metrics::Counter,
    poller: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for TenantConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConnections")
            .field("cached", &(self.inner.by_id.len() + self.inner.by_slug.len()))
            .field("pools", &self.inner.home)
            .finish()
    }
}

impl TenantConnections {
    /// Over one set of pools, for every tenant whatever its server (for
    /// benchmarks that bring their own pools). Starts the poller that
    /// watches the catalog generation.
    #[doc(hidden)]
    pub async fn new(catalog: Catalog, pools: TenantPools, poll_interval: Duration) -> Result<Self> {
        Self::start(catalog, pools, Uuid::nil(), None, poll_interval).await
    }

    /// Over every tenant server of `sites`.
    pub(crate) async fn with_sites(catalog: Catalog, sites: Sites, poll_interval: Duration) -> Result<Self> {
        let home = sites.home().clone();
        Self::start(catalog, home.pools.clone(), home.id, Some(sites), poll_interval).await
    }

    async fn start(
        catalog: Catalog,
        home: TenantPools,
        home_id: Uuid,
        sites: Option<Sites>,
        poll_interval: Duration,
    ) -> Result<Self> {
        let generation = catalog.generation().await?;
        // Listening before this returns: a change (or an instance's news)
        // committed after it is heard.
        let listener = listen(&catalog).await;
        let inner = Arc::new(Inner {
            catalog,
            home,
            home_id,
            sites,
            by_id: DashMap::default(),
            by_slug: DashMap::default(),
            hits: metrics::counter!("tenantdb_resolve_cache_hits_total"),
            misses: metrics::counter!("tenantdb_resolve_cache_misses_total"),
            poller: std::sync::Mutex::new(None),
        });
        let poller = tokio::spawn(poll(Arc::downgrade(&inner), listener, poll_interval, generation));
        *inner.poller.lock().unwrap_or_else(|e| e.into_inner()) = Some(poller);
        Ok(Self { inner })
    }

    /// The pools of the server of the settings.
    pub fn pools(&self) -> &TenantPools {
        &self.inner.home
    }

    /// A connection from the pool of `spec`'s database on `server`.
    pub(crate) async fn get(&self, server: Uuid, spec: &DatabaseSpec) -> Result<PoolHandle> {
        match &self.inner.sites {
            Some(sites) if server != self.inner.home_id => sites.get(server).await?.pools.get(spec).await,
            _ => self.inner.home.get(spec).await,
        }
    }

    /// The tenant as routing sees it, from the cache when it is current.
    pub async fn resolve(&self, tenant: &TenantRef) -> Result<Arc<ResolvedTenant>> {
        // Read the stamp before the catalog: a change that lands while we
        // load makes this entry stale at once.
        let stamp = self.inner.catalog.changes().current();
        let hit = match tenant {
            TenantRef::Id(id) => self.inner.by_id.get(&id.as_uuid()).and_then(|c| c.current(stamp)),
            TenantRef::Slug(slug) => self.inner.by_slug.get(slug.as_str()).and_then(|c| c.current(stamp)),
        };
        if let Some(value) = hit {
            self.inner.hits.increment(1);
            return value.ok_or_else(|| Error::TenantNotFound(tenant.to_string()));
        }
        self.inner.misses.increment(1);
        let value = self.load(tenant, stamp).await?;
        let (by_id, by_slug) = (&self.inner.by_id, &self.inner.by_slug);
        if by_id.len() + by_slug.len() >= MAX_CACHE_ENTRIES {
            by_id.clear();
            by_slug.clear();
        }
        let cached = Cached {
            stamp,
            value: value.clone(),
        };
        match (&value, tenant) {
            // Cache under both names: requests use both.
            (Some(found), _) => {
                by_id.insert(found.id.as_uuid(), cached.clone());
                by_slug.insert(found.slug.clone(), cached);
            }
            (None, TenantRef::Id(id)) => {
                by_id.insert(id.as_uuid(), cached);
            }
            (None, TenantRef::Slug(slug)) => {
                by_slug.insert(slug.as_str().to_owned(), cached);
            }
        }
        value.ok_or_else(|| Error::TenantNotFound(tenant.to_string()))
    }

    /// Like `resolve`, but a tenant whose move is switching servers is
    /// waited for (up to `SWITCH_WAIT`): the request then goes to the new
    /// server. Still switching after that, it is returned as it is (its
    /// `serving` says 503).
    pub async fn resolve_serving(&self, tenant: &TenantRef) -> Result<Arc<ResolvedTenant>> {
        let resolved = self.resolve(tenant).await?;
        if !resolved.is_switching() {
            return Ok(resolved);
        }
        let deadline = tokio::time::Instant::now() + SWITCH_WAIT;
        let mut resolved = resolved;
        while resolved.is_switching() && tokio::time::Instant::now() < deadline {
            // The switch moves the catalog's change stamp (at once in this
            // process, within a notification or a poll in others).
            let stamp = resolved.stamp;
            while self.inner.catalog.changes().current() == stamp && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            resolved = self.resolve(tenant).await?;
        }
        Ok(resolved)
    }

    async fn load(&self, tenant: &TenantRef, stamp: u64) -> Result<Option<Arc<ResolvedTenant>>> {
        let found = self.inner.catalog.tenants().find_with_database(tenant).await?;
        Ok(found.map(|(tenant, row)| Arc::new(ResolvedTenant::new(&tenant, row.as_ref(), stamp))))
    }

    /// Whether `resolved` is still what the catalog says: no change was
    /// recorded since it was read (an atomic load, no lookup).
    pub(crate) fn is_current(&self, resolved: &ResolvedTenant) -> bool {
        self.inner.catalog.changes().current() == resolved.stamp
    }

    /// A connection to the tenant's (primary) database, as the tenant's own
    /// role. Fails early with the tenant's status when it may not be served.
    pub async fn connection(&self, tenant: &TenantRef) -> Result<PoolHandle> {
        let resolved = self.resolve_serving(tenant).await?;
        let database = resolved.serving()?;
        self.get(database.server, &database.primary).await
    }

    /// A connection for reads: on a read replica of the tenant's server
    /// while one is within its lag bound (reads there may miss the last
    /// moments of writes, up to that bound: read your own writes from
    /// `connection`), else on the server itself.
    pub async fn read_connection(&self, tenant: &TenantRef) -> Result<PoolHandle> {
        let resolved = self.resolve_serving(tenant).await?;
        self.read_pool(resolved.serving()?).await
    }

    /// The read pool of a database already checked to serve.
    pub(crate) async fn read_pool(&self, database: &ResolvedDatabase) -> Result<PoolHandle> {
        match self.on_replica(database).await {
            Some(read) => Ok(read),
            None => self.get(database.server, &database.read).await,
        }
    }

    /// The write and read connections with one resolution (the same pool
    /// twice when reads go to the server itself).
    pub async fn write_and_read(&self, tenant: &TenantRef) -> Result<(PoolHandle, PoolHandle)> {
        let resolved = self.resolve_serving(tenant).await?;
        self.pools_of(resolved.serving()?).await
    }

    /// The write and read pools of a database already checked to serve.
    pub(crate) async fn pools_of(&self, database: &ResolvedDatabase) -> Result<(PoolHandle, PoolHandle)> {
        let write = self.get(database.server, &database.primary).await?;
        let read = match self.on_replica(database).await {
            Some(read) => read,
            None if database.read == database.primary => write.clone(),
            None => self.get(database.server, &database.read).await?,
        };
        Ok((write, read))
    }

    /// The read pool on a replica that keeps up, if there is one and it
    /// gives a pool; a replica that cannot is left out.
    async fn on_replica(&self, database: &ResolvedDatabase) -> Option<PoolHandle> {
        let (replica, site) = self.inner.sites.as_ref()?.replica_for_reads(database.server)?;
        match site.pools.get(&database.read).await {
            Ok(read) => Some(read),
            // It does not answer: left out until its watch sees it again.
            Err(err) if err.is_unreachable() => {
                replica.leave_out(&err);
                None
            }
            // Anything else (a database it has not replayed yet, its
            // budget taken): this read goes to the server.
            Err(err) => {
                tracing::debug!(replica = %replica.name, error = %err.chain(), "read on the server instead of the replica");
                None
            }
        }
    }

    /// Whether the tenant may be served now (exists, not suspended, its
    /// database ACTIVE or MIGRATING). Touches no pool.
    pub async fn is_active(&self, tenant: &TenantRef) -> Result<bool> {
        match self.resolve(tenant).await {
            Ok(resolved) => Ok(resolved.serving().is_ok()),
            Err(Error::TenantNotFound(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Stops the poller (shutdown). Pools are closed by `TenantPools`.
    pub fn stop(&self) {
        if let Some(poller) = self.inner.poller.lock().unwrap_or_else(|e| e.into_inner()).take() {
            poller.abort();
        }
    }
}

async fn poll(inner: Weak<Inner>, mut listener: Option<sqlx::postgres::PgListener>, interval: Duration, mut seen: i64) {
    // The next poll is due at a fixed time: notifications that are not
    // routing changes (instances' news) do not put it off.
    let mut due = tokio::time::Instant::now() + interval;
    loop {
        // Wake on a notification (a PostgreSQL catalog) or when the poll
        // is due, whichever comes first.
        match listener.as_mut() {
            Some(listening) => {
                tokio::select! {
                    got = listening.recv() => match got {
                        // Another instance joined, gave back or left: the
                        // heartbeats of that server look (see `instance`);
                        // no routing change.
                        Ok(heard) if heard.channel() == crate::catalog::INSTANCES_CHANNEL => {
                            if let Some(inner) = inner.upgrade() {
                                inner.catalog.heard_instance_news(heard.payload());
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(err) => {
                            // It reconnects on the next `recv`; meanwhile the
                            // interval is the bound.
                            tracing::warn!(error = %err, "listening for catalog changes failed");
                            tokio::time::sleep_until(due).await;
                        }
                    },
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            None => tokio::time::sleep_until(due).await,
        }
        due = tokio::time::Instant::now() + interval;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.catalog.generation().await {
            Ok(generation) if generation != seen => {
                seen = generation;
                inner.catalog.changes().mark();
                if let Err(err) = revalidate_pools(&inner).await {
                    tracing::warn!(error = %err, "revalidating tenant pools failed");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "polling the catalog generation failed"),
        }
    }
}

/// A listener on the catalog's change channel, on a connection of its own
/// (`None` on SQLite, or if it cannot be had: polling alone then).
async fn listen(catalog: &Catalog) -> Option<sqlx::postgres::PgListener> {
    if catalog.db().get_database_backend() != sea_orm::DbBackend::Postgres {
        return None;
    }
    let options = catalog.db().get_postgres_connection_pool().connect_options();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*options).clone());
    let listening = async {
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener
            .listen_all([crate::catalog::CHANGES_CHANNEL, crate::catalog::INSTANCES_CHANNEL])
            .await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match listening.await {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for catalog changes; polling only");
            None
        }
    }
}

/// Closes the pools whose database was renamed, deleted or stopped serving
/// (or moved to another server).
async fn revalidate_pools(inner: &Inner) -> Result<()> {
    if let Some(sites) = &inner.sites {
        sites.forget_removed().await?;
    }
    // A replica's pools hold the databases of the server it follows.
    let servers: Vec<(Uuid, TenantPools)> = match &inner.sites {
        Some(sites) => sites
            .all_opened()
            .iter()
            .map(|s| (s.id, s.pools.clone()))
            .chain(
                sites
                    .replicas()
                    .iter()
                    .filter_map(|r| Some((r.primary, r.site()?.pools.clone()))),
            )
            .collect(),
        None => vec![(inner.home_id, inner.home.clone())],
    };
    for (server, pools) in servers {
        let open = pools.open_pools();
        if open.is_empty() {
            continue;
        }
        let ids: Vec<Uuid> = open.iter().map(|(tenant, _)| tenant.as_uuid()).collect();
        let rows = inner.catalog.tenant_databases().for_tenants(&ids).await?;
        for (tenant, database) in open {
            let still_good = rows.iter().any(|row| {
                row.tenant_id == tenant.as_uuid()
                    && (inner.sites.is_none() || row.server_id == server)
                    && row.database_name == database.as_str()
                    && row.status.serves_traffic()
            });
            if !still_good {
                drop(pools.invalidate(tenant));
            }
        }
    }
    Ok(())
}
