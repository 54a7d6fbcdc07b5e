//! The tenant servers this process works with, by catalog id: for each, its
//! engine (admin connections), template, tenant pools under the server's
//! own budget, and this process's membership of the instances sharing
//! that budget.
//!
//! The server of the settings (`Config::tenant_server`, recorded under
//! `Config::server_name`) is opened at start. Every other server in the
//! catalog is opened the first time something needs it (a request for one
//! of its tenants, a create placed on it, doctor, a fleet run), from what
//! the catalog records: its admin URL without password and the password
//! sealed with the deployment secret (`ServerSettings`). A request on the
//! server of the settings takes its pools without a lock; any other takes
//! them from a map under a read lock.
//!
//! Read replicas (`replicas`) are sites too, kept apart: each is followed
//! by a watch that decides whether reads may go to it.

mod replicas;

pub(crate) use replicas::{DEFAULT_MAX_LAG_MS, MIN_MAX_LAG_MS, Replica};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Catalog, InstanceIdentity, database_servers};
use crate::config::{self, Config, PoolConfig};
use crate::engine::{Engine, PostgresEngine};
use crate::error::{Error, Result};
use crate::instance::Membership;
use crate::migrate::TenantMigrations;
use crate::pools::TenantPools;
use crate::secret::{SealedPassword, TenantSecret};
use crate::templates::Templates;

/// How long placement waits for a server to answer before trying the next.
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a server that failed to open or answer is passed by before it
/// is tried again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the catalog records about a tenant server besides its columns
/// (`database_servers.settings`): where it is and how to log in, never a
/// plaintext password.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ServerSettings {
    /// The admin URL without its password (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// The admin password, sealed (see `TenantSecret::seal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<SealedPassword>,
    /// The cluster's system identifier when it was recorded: a URL that
    /// reaches another cluster (another host's `localhost`, a wrong DNS
    /// entry) is refused rather than used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cluster: Option<String>,
    /// Connections one tenant's pool may hold on this server; the
    /// settings' `max_per_tenant` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_per_tenant: Option<u32>,
    /// For a read replica: how far behind its primary it may be and still
    /// take reads (`DEFAULT_MAX_LAG_MS` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_lag_ms: Option<u32>,
    /// Host, port, user and admin database, for people reading the row.
    #[serde(flatten)]
    pub(crate) shown: serde_json::Map<String, serde_json::Value>,
}

/// What a sealed admin password is bound to: the catalog, the server's
/// name and its URL without password.
fn seal_context(catalog: Uuid, server: &str, url: &str) -> String {
    format!("tenantdb server admin password\n{catalog}\n{server}\n{url}")
}

impl ServerSettings {
    /// The settings of PostgreSQL server `server` at `url` in `catalog`:
    /// the URL without its password (in the user part or as a `password`
    /// parameter), and the password sealed under `secret`.
    pub(crate) fn postgres(
        catalog: Uuid,
        server: &str,
        url: &SecretString,
        secret: &TenantSecret,
        max_per_tenant: Option<u32>,
    ) -> Result<Self> {
        let invalid = |rule: &str| Error::Invalid {
            kind: "admin URL",
            value: "[redacted]".into(),
            rule: rule.into(),
        };
        let mut parsed = url::Url::parse(url.expose_secret()).map_err(|_| invalid("must be a postgres:// URL"))?;
        let socket = parsed.query_pairs().any(|(k, _)| k == "host");
        if !matches!(parsed.scheme(), "postgres" | "postgresql") || (parsed.host_str().is_none() && !socket) {
            return Err(invalid("must be a postgres:// URL with a host"));
        }
        let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
        let mut password = parsed.password().map(decode);
        let _ = parsed.set_password(None);
        // `?password=` is a password too: sealed, never kept in the URL.
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let mut kept = Vec::new();
            for (key, value) in pairs {
                if key == "password" {
                    password.get_or_insert(value);
                } else {
                    kept.push((key, value));
                }
            }
            parsed.set_query(None);
            if !kept.is_empty() {
                parsed.query_pairs_mut().extend_pairs(kept);
            }
        }
        let mut shown = serde_json::Map::new();
        shown.insert("host".into(), parsed.host_str().unwrap_or_default().into());
        shown.insert("port".into(), parsed.port().unwrap_or(5432).into());
        shown.insert("user".into(), parsed.username().into());
        shown.insert("admin_database".into(), parsed.path().trim_start_matches('/').into());
        let url = parsed.to_string();
        Ok(Self {
            password: password.map(|p| secret.seal(&seal_context(catalog, server, &url), &p)),
            url: Some(url),
            cluster: None,
            max_per_tenant,
            max_lag_ms: None,
            shown,
        })
    }

    /// Reads a row's settings (fields it does not know are kept in `shown`).
    pub(crate) fn of(row: &database_servers::Model) -> Self {
        serde_json::from_value(row.settings.clone()).unwrap_or_default()
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The password, opened with whichever of `secrets` it was sealed
    /// under (`None` when the URL has none).
    fn password(&self, catalog: Uuid, server: &str, secrets: &[&TenantSecret]) -> Result<Option<SecretString>> {
        let (Some(sealed), Some(url)) = (&self.password, &self.url) else {
            return Ok(None);
        };
        let secret = secrets
            .iter()
            .find(|s| s.version() == sealed.version)
            .or(secrets.first())
            .ok_or_else(|| Error::Config(format!("TENANTDB_SECRET is needed to reach server '{server}'")))?;
        secret.open(&seal_context(catalog, server, url), sealed).map(Some)
    }

    /// The admin URL with its password opened (see `password`).
    fn admin_url(&self, catalog: Uuid, server: &str, secrets: &[&TenantSecret]) -> Result<SecretString> {
        let url = self.url.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "server '{server}' has no admin URL in the catalog; record it with `tenantdb servers add`"
            ))
        })?;
        let Some(password) = self.password(catalog, server, secrets)? else {
            return Ok(SecretString::from(url.to_owned()));
        };
        let mut parsed = url::Url::parse(url).map_err(|_| Error::Config(format!("server '{server}' has a bad URL")))?;
        // Every byte but letters and digits escaped: a `%` in the password
        // must not read as the start of an escape.
        let escaped =
            percent_encoding::utf8_percent_encode(password.expose_secret(), percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        if parsed.set_password(Some(&escaped)).is_err() {
            // A URL without a host (a Unix socket directory in `?host=`)
            // takes its password as a parameter.
            parsed
                .query_pairs_mut()
                .append_pair("password", password.expose_secret());
        }
        Ok(SecretString::from(parsed.to_string()))
    }

    /// The secret version its password is sealed under, if it has one.
    pub(crate) fn sealed_version(&self) -> Option<i32> {
        self.password.as_ref().map(|p| p.version)
    }

    /// The same settings with the password sealed again under the current
    /// secret (opened with whichever secret it was sealed under).
    pub(crate) fn resealed(&self, server: &str, parts: &Parts) -> Result<Self> {
        let secret = parts
            .secret
            .as_ref()
            .ok_or_else(|| Error::Config("TENANTDB_SECRET is required to seal a password".into()))?;
        let catalog = parts.catalog.id();
        let (Some(password), Some(url)) = (self.password(catalog, server, &parts.secrets())?, &self.url) else {
            return Ok(self.clone());
        };
        Ok(Self {
            password: Some(secret.seal(&seal_context(catalog, server, url), password.expose_secret())),
            ..self.clone()
        })
    }
}

/// One tenant server as this process works with it.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) engine: Engine,
    pub(crate) templates: Templates,
    pub(crate) pools: TenantPools,
    membership: Membership,
}

impl Site {
    pub(crate) fn new(
        row: &database_servers::Model,
        engine: Engine,
        pools: PoolConfig,
        parts: &Parts,
        identity: &InstanceIdentity,
    ) -> Self {
        let templates = Templates::new(
            parts.catalog.clone(),
            engine.clone(),
            parts.migrations,
            parts.prefix.clone(),
            parts.use_templates,
        );
        let pools = TenantPools::new(engine.clone(), pools, &row.name);
        let membership = Membership::start(
            parts.catalog.clone(),
            pools.clone(),
            row.id,
            parts.instance_lease,
            identity.clone(),
        );
        Self {
            id: row.id,
            name: row.name.clone(),
            engine,
            templates,
            pools,
            membership,
        }
    }

    /// Whether the server answers now (within `REACH_TIMEOUT`).
    pub(crate) async fn reachable(&self) -> Result<()> {
        match tokio::time::timeout(REACH_TIMEOUT, self.engine.ping()).await {
            Ok(result) => result,
            Err(_) => Err(Error::ServerUnreachable(self.name.clone())),
        }
    }

    pub(crate) async fn close(&self, deadline: Duration) {
        self.pools.close_all().await;
        self.membership.leave().await;
        if tokio::time::timeout(deadline, self.engine.close()).await.is_err() {
            tracing::warn!(server = %self.name, "admin connections still busy at shutdown; leaving them");
        }
    }
}

/// What opening a site needs besides its catalog row.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub(crate) catalog: Catalog,
    pub(crate) migrations: TenantMigrations,
    pub(crate) prefix: crate::names::DatabasePrefix,
    pub(crate) use_templates: bool,
    pub(crate) instance_lease: Duration,
    pub(crate) pools: PoolConfig,
    pub(crate) role_connection_limit: i32,
    pub(crate) secret: Option<TenantSecret>,
    pub(crate) previous_secret: Option<TenantSecret>,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) pg_bin: Option<std::path::PathBuf>,
}

impl Parts {
    pub(crate) fn of(config: &Config, catalog: &Catalog, migrations: &TenantMigrations) -> Self {
        Self {
            catalog: catalog.clone(),
            migrations: *migrations,
            prefix: config.database_prefix.clone(),
            use_templates: config.use_templates,
            instance_lease: config.instance_lease,
            pools: config.pools.clone(),
            role_connection_limit: config.role_connection_limit,
            secret: config.secret.clone(),
            previous_secret: config.previous_secret.clone(),
            shutdown_deadline: config.shutdown_deadline,
            pg_bin: config.pg_bin.clone(),
        }
    }

    fn secrets(&self) -> Vec<&TenantSecret> {
        self.secret.iter().chain(self.previous_secret.iter()).collect()
    }

    /// Connects the admin pool of a PostgreSQL server from its settings.
    /// What this process lacks to log in is `Error::ServerUnusable`.
    pub(crate) async fn connect(&self, name: &str, settings: &ServerSettings) -> Result<PostgresEngine> {
        // What is not "it does not answer" (a refused login, a missing
        // admin database, a full server, no secret) is the operator's to
        // fix: `ServerUnusable`, with the reason (never the password).
        let unusable = |err: Error| match err {
            err if err.is_unreachable() => err,
            Error::Config(reason) => Error::ServerUnusable {
                server: name.to_owned(),
                reason,
            },
            other => Error::ServerUnusable {
                server: name.to_owned(),
                reason: other.chain(),
            },
        };
        self.connect_admin(name, settings).await.map_err(unusable)
    }

    async fn connect_admin(&self, name: &str, settings: &ServerSettings) -> Result<PostgresEngine> {
        let secret = self
            .secret
            .clone()
            .ok_or_else(|| Error::Config(format!("TENANTDB_SECRET is required to use PostgreSQL server '{name}'")))?;
        let url = settings.admin_url(self.catalog.id(), name, &self.secrets())?;
        let connect = PostgresEngine::connect_admin(
            &url,
            secret,
            self.catalog.id(),
            self.role_connection_limit,
            config::DEFAULT_ADMIN_MAX_CONNECTIONS,
            self.pg_bin.clone(),
        );
        match tokio::time::timeout(REACH_TIMEOUT, connect).await {
            Ok(engine) => engine,
            Err(_) => Err(Error::ServerUnreachable(name.to_owned())),
        }
    }
}

/// The tenant servers of this process (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Sites {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parts: Parts,
    identity: InstanceIdentity,
    home: Arc<Site>,
    others: RwLock<HashMap<Uuid, Arc<Site>>>,
    /// Server names by id, for showing rows (refreshed when a server is
    /// opened or listed).
    names: RwLock<HashMap<Uuid, String>>,
    /// One lock per server being opened: a server that takes its time to
    /// answer holds up only requests for itself.
    opening: std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// When opening or reaching a server last failed: for `RETRY_AFTER`
    /// requests fail at once and placement passes it by, rather than each
    /// waiting for it to time out.
    failed: std::sync::Mutex<HashMap<Uuid, std::time::Instant>>,
    /// Servers removed from the catalog: never opened again.
    gone: RwLock<std::collections::HashSet<Uuid>>,
    /// Set by `close`: no site is opened after it.
    closed: std::sync::atomic::AtomicBool,
    /// The read replicas in the catalog, by the server they follow.
    replicas: RwLock<HashMap<Uuid, Vec<Arc<Replica>>>>,
    /// Whether there are any (reads skip the map when there are none).
    has_replicas: std::sync::atomic::AtomicBool,
}

impl Sites {
    pub(crate) fn new(parts: Parts, identity: InstanceIdentity, home: Site) -> Self {
        let names = HashMap::from([(home.id, home.name.clone())]);
        Self {
            inner: Arc::new(Inner {
                parts,
                identity,
                home: Arc::new(home),
                others: RwLock::new(HashMap::new()),
                names: RwLock::new(names),
                opening: std::sync::Mutex::new(HashMap::new()),
                failed: std::sync::Mutex::new(HashMap::new()),
                gone: RwLock::new(std::collections::HashSet::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
                replicas: RwLock::new(HashMap::new()),
                has_replicas: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// A replica of `primary` that may take reads now, with its site (the
    /// hot path: one atomic load when there are no replicas at all).
    pub(crate) fn replica_for_reads(&self, primary: Uuid) -> Option<(Arc<Replica>, Arc<Site>)> {
        if !self.inner.has_replicas.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let replicas = self.inner.replicas.read().unwrap_or_else(|e| e.into_inner());
        replicas
            .get(&primary)?
            .iter()
            .find_map(|r| r.for_reads().map(|site| (r.clone(), site.clone())))
    }

    /// Every replica followed, by name.
    pub(crate) fn replicas(&self) -> Vec<Arc<Replica>> {
        let replicas = self.inner.replicas.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = replicas.values().flatten().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The replica with this id, if it is followed.
    pub(crate) fn replica(&self, id: Uuid) -> Option<Arc<Replica>> {
        self.replicas().into_iter().find(|r| r.id == id)
    }

    /// Follows the replicas the catalog records now: starts watching new
    /// ones, stops those removed.
    pub(crate) async fn refresh_replicas(&self) -> Result<()> {
        let rows = self.inner.parts.catalog.servers().list().await?;
        self.follow_replicas(&rows).await;
        Ok(())
    }

    /// `refresh_replicas` from server rows just read (at start and when the
    /// catalog generation moves).
    pub(crate) async fn follow_replicas(&self, rows: &[database_servers::Model]) {
        let recorded: Vec<&database_servers::Model> = rows
            .iter()
            .filter(|r| r.role == database_servers::REPLICA && r.primary_id.is_some())
            .collect();
        let mut stopped = Vec::new();
        {
            let mut replicas = self.inner.replicas.write().unwrap_or_else(|e| e.into_inner());
            for list in replicas.values_mut() {
                list.retain(|r| {
                    let keep = recorded.iter().any(|row| row.id == r.id);
                    if !keep {
                        stopped.push(r.clone());
                    }
                    keep
                });
            }
            if !self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
                for row in &recorded {
                    let primary = row.primary_id.unwrap_or_default();
                    let list = replicas.entry(primary).or_default();
                    if !list.iter().any(|r| r.id == row.id) {
                        list.push(replicas::follow(self, row));
                    }
                }
            }
            replicas.retain(|_, list| !list.is_empty());
            self.inner
                .has_replicas
                .store(!replicas.is_empty(), std::sync::atomic::Ordering::Release);
        }
        for replica in stopped {
            tracing::info!(replica = %replica.name, "the replica was removed from the catalog: closing it");
            replica.close(self.inner.parts.shutdown_deadline).await;
        }
    }

    /// The server of the settings.
    pub(crate) fn home(&self) -> &Arc<Site> {
        &self.inner.home
    }

    pub(crate) fn identity(&self) -> &InstanceIdentity {
        &self.inner.identity
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.inner.parts
    }

    /// The site of a server already opened, without waiting.
    pub(crate) fn opened(&self, server: Uuid) -> Option<Arc<Site>> {
        if server == self.inner.home.id {
            return Some(self.inner.home.clone());
        }
        self.inner
            .others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server)
            .cloned()
    }

    /// Every site opened so far, the server of the settings first.
    pub(crate) fn all_opened(&self) -> Vec<Arc<Site>> {
        let others = self.inner.others.read().unwrap_or_else(|e| e.into_inner());
        let mut sites = vec![self.inner.home.clone()];
        let mut rest: Vec<_> = others.values().cloned().collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        sites.extend(rest);
        sites
    }

    /// The site of `server`, opened now if it was not.
    pub(crate) async fn get(&self, server: Uuid) -> Result<Arc<Site>> {
        if let Some(site) = self.opened(server) {
            return Ok(site);
        }
        if self.failed_recently(server) {
            return Err(Error::ServerUnreachable(self.name_of(server)));
        }
        let row = self
            .inner
            .parts
            .catalog
            .servers()
            .find(server)
            .await?
            .ok_or_else(|| Error::ServerNotFound(server.to_string()))?;
        self.open(&row).await
    }

    /// The site of the server row `row`, opened now if it was not.
    pub(crate) async fn open(&self, row: &database_servers::Model) -> Result<Arc<Site>> {
        if let Some(site) = self.opened(row.id) {
            return Ok(site);
        }
        let lock = self.lock_for(row.id);
        let _opening = lock.lock().await;
        if let Some(site) = self.opened(row.id) {
            return Ok(site);
        }
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::ServerUnusable {
                server: row.name.clone(),
                reason: "this process is shutting down".into(),
            });
        }
        if self
            .inner
            .gone
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&row.id)
        {
            return Err(Error::ServerNotFound(row.name.clone()));
        }
        if self.failed_recently(row.id) {
            return Err(Error::ServerUnreachable(row.name.clone()));
        }
        let site = match self.connect(row).await {
            Ok(site) => site,
            Err(err) => {
                self.failed(row.id);
                return Err(err);
            }
        };
        tracing::info!(server = %row.name, "opened tenant server");
        self.remember(row);
        self.inner
            .others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.id, site.clone());
        Ok(site)
    }

    async fn connect(&self, row: &database_servers::Model) -> Result<Arc<Site>> {
        if row.engine != "postgres" {
            return Err(Error::ServerUnusable {
                server: row.name.clone(),
                reason: format!(
                    "a {} directory of another instance's settings: only PostgreSQL servers are shared by instances",
                    row.engine
                ),
            });
        }
        let settings = ServerSettings::of(row);
        let parts = &self.inner.parts;
        let pg = parts.connect(&row.name, &settings).await?;
        if let Some(recorded) = &settings.cluster
            && let Some(reached) = pg.system_identifier().await
            && *recorded != reached
        {
            pg.close().await;
            return Err(Error::ServerUnusable {
                server: row.name.clone(),
                reason: format!(
                    "its recorded URL reaches another PostgreSQL cluster from this host (system identifier \
                     {reached}, recorded {recorded}): record a URL every instance reaches the same way"
                ),
            });
        }
        let engine = Engine::Postgres(pg);
        let mut pools = parts.pools.clone();
        pools.budget = u32::try_from(row.connection_budget).unwrap_or(1).max(1);
        if let Some(max) = settings.max_per_tenant {
            pools.max_per_tenant = max.max(1);
        }
        Ok(Arc::new(Site::new(row, engine, pools, parts, &self.inner.identity)))
    }

    /// The lock under which `server`'s site is opened or closed.
    fn lock_for(&self, server: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut opening = self.inner.opening.lock().unwrap_or_else(|e| e.into_inner());
        opening.entry(server).or_default().clone()
    }

    /// Keeps `server`'s site from being opened or closed until the guard is
    /// dropped.
    pub(crate) async fn hold(&self, server: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.lock_for(server);
        lock.lock_owned().await
    }

    /// Records that `server` could not be opened or reached just now.
    pub(crate) fn failed(&self, server: Uuid) {
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert(server, std::time::Instant::now());
    }

    /// Whether `server` failed to open or answer within `RETRY_AFTER`.
    pub(crate) fn failed_recently(&self, server: Uuid) -> bool {
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        match failed.get(&server) {
            Some(at) if at.elapsed() < RETRY_AFTER => true,
            Some(_) => {
                failed.remove(&server);
                false
            }
            None => false,
        }
    }

    /// Closes the sites of servers no longer in the catalog (removed by
    /// another process) and follows the replicas it records now: seen when
    /// the catalog generation moves.
    pub(crate) async fn forget_removed(&self) -> Result<()> {
        let rows = self.inner.parts.catalog.servers().list().await?;
        self.follow_replicas(&rows).await;
        let opened: Vec<Uuid> = self
            .inner
            .others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for server in opened {
            if !rows.iter().any(|r| r.id == server) {
                tracing::info!(%server, "the server was removed from the catalog: closing its pools");
                self.forget(server).await;
            }
        }
        Ok(())
    }

    /// Records a server's name for `name_of`.
    pub(crate) fn remember(&self, row: &database_servers::Model) {
        self.inner
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.id, row.name.clone());
    }

    /// The name of a server (its id when this process has not seen it).
    pub(crate) fn name_of(&self, server: Uuid) -> String {
        if server == self.inner.home.id {
            return self.inner.home.name.clone();
        }
        self.inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server)
            .cloned()
            .unwrap_or_else(|| server.to_string())
    }

    /// The name of a server, from the catalog when this process has not
    /// seen it yet (its id if the catalog has no such server).
    pub(crate) async fn name(&self, server: Uuid) -> String {
        let known = self
            .inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server)
            .cloned();
        if let Some(name) = known {
            return name;
        }
        match self.inner.parts.catalog.servers().find(server).await {
            Ok(Some(row)) => {
                self.remember(&row);
                row.name
            }
            _ => server.to_string(),
        }
    }

    /// Closes a site this process opened and never opens it again (its
    /// server was removed).
    pub(crate) async fn forget(&self, server: Uuid) {
        self.inner
            .gone
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server);
        let lock = self.lock_for(server);
        let _opening = lock.lock().await;
        let site = self
            .inner
            .others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server);
        self.inner
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server);
        if let Some(site) = site {
            site.close(self.inner.parts.shutdown_deadline).await;
        }
    }

    /// Closes every site: pools, memberships, admin connections.
    pub(crate) async fn close(&self) {
        self.inner.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = self.inner.parts.shutdown_deadline;
        let replicas: Vec<_> = self
            .inner
            .replicas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, list)| list)
            .collect();
        self.inner
            .has_replicas
            .store(false, std::sync::atomic::Ordering::Release);
        for replica in replicas {
            replica.close(deadline).await;
        }
        let others: Vec<_> = self
            .inner
            .others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, site)| site)
            .collect();
        for site in others {
            site.close(deadline).await;
        }
        self.inner.home.close(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(version: i32, key: &str) -> TenantSecret {
        TenantSecret::new(version, SecretString::from(key.repeat(40))).unwrap()
    }

    #[test]
    fn an_admin_url_is_kept_without_its_password_and_put_back_whole() {
        // A password with every character that needs escaping in a URL.
        let password = "p@ss:w/rd%20?#&=é'\"";
        let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
        let url = SecretString::from(format!(
            "postgres://admin:{encoded}@db.internal:6432/postgres?sslmode=require"
        ));
        let catalog = Uuid::now_v7();
        let settings = ServerSettings::postgres(catalog, "eu-1", &url, &secret(1, "k"), Some(3)).unwrap();
        let stored = settings.to_json().to_string();
        assert!(!stored.contains("p@ss") && !stored.contains(&encoded), "{stored}");
        assert_eq!(
            settings.url.as_deref(),
            Some("postgres://admin@db.internal:6432/postgres?sslmode=require")
        );
        assert_eq!(settings.shown["port"], 6432);
        let back = settings.admin_url(catalog, "eu-1", &[&secret(1, "k")]).unwrap();
        let parsed = url::Url::parse(back.expose_secret()).unwrap();
        let got = percent_encoding::percent_decode_str(parsed.password().unwrap()).decode_utf8_lossy();
        assert_eq!(got, password);
        assert_eq!(parsed.query(), Some("sslmode=require"));
        // What the catalog holds reads back the same.
        let row_settings: ServerSettings = serde_json::from_str(&stored).unwrap();
        assert_eq!(row_settings, settings);
    }

    #[test]
    fn a_password_sealed_under_an_older_secret_opens_with_the_previous_one_and_reseals() {
        let url = SecretString::from("postgres://admin:old-pw@db/postgres");
        let catalog = Uuid::now_v7();
        let sealed = ServerSettings::postgres(catalog, "eu-1", &url, &secret(1, "a"), None).unwrap();
        let err = sealed
            .admin_url(catalog, "eu-1", &[&secret(2, "b")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 1") && !err.contains("old-pw"), "{err}");
        assert!(
            sealed
                .admin_url(catalog, "eu-1", &[&secret(2, "b"), &secret(1, "a")])
                .is_ok()
        );
        assert_eq!(sealed.sealed_version(), Some(1));
        // Bound to its catalog, server name and URL.
        for (other_catalog, name) in [(Uuid::now_v7(), "eu-1"), (catalog, "eu-2")] {
            let err = sealed.admin_url(other_catalog, name, &[&secret(1, "a")]).unwrap_err();
            assert!(err.to_string().contains("does not open"), "{err}");
        }
        let moved = ServerSettings {
            url: Some("postgres://admin@evil.example/postgres".into()),
            ..sealed.clone()
        };
        assert!(
            moved.admin_url(catalog, "eu-1", &[&secret(1, "a")]).is_err(),
            "a changed URL does not open"
        );
    }

    #[test]
    fn a_password_parameter_is_sealed_and_a_socket_directory_is_a_host() {
        let url = SecretString::from("postgres:///postgres?host=/run/postgresql&user=admin&password=in-query");
        let settings = ServerSettings::postgres(Uuid::nil(), "local", &url, &secret(1, "k"), None).unwrap();
        let stored = settings.to_json().to_string();
        assert!(!stored.contains("in-query"), "{stored}");
        let kept = settings.url.clone().unwrap();
        assert!(
            kept.starts_with("postgres:///postgres?") && kept.contains("user=admin"),
            "{kept}"
        );
        let back = settings.admin_url(Uuid::nil(), "local", &[&secret(1, "k")]).unwrap();
        let parsed = url::Url::parse(back.expose_secret()).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("password".into(), "in-query".into())), "{pairs:?}");
        assert!(pairs.contains(&("host".into(), "/run/postgresql".into())), "{pairs:?}");
    }

    #[test]
    fn only_postgres_urls_with_a_host_are_taken() {
        for bad in ["mysql://u:p@h/db", "postgres:///db", "not a url", "sqlite://x.db"] {
            let err = ServerSettings::postgres(Uuid::nil(), "x", &SecretString::from(bad), &secret(1, "k"), None)
                .unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
            assert!(
                !err.to_string().contains(':'.to_string().as_str()) || !err.to_string().contains("u:p"),
                "{err}"
            );
        }
    }
}
