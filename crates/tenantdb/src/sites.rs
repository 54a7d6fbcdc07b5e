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
    /// Connections one tenant's pool may hold on this server; the
    /// settings' `max_per_tenant` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_per_tenant: Option<u32>,
    /// Host, port, user and admin database, for people reading the row.
    #[serde(flatten)]
    pub(crate) shown: serde_json::Map<String, serde_json::Value>,
}

impl ServerSettings {
    /// The settings of a PostgreSQL server at `url`: the URL without its
    /// password, and the password sealed for `server` under `secret`.
    pub(crate) fn postgres(
        server: &str,
        url: &SecretString,
        secret: &TenantSecret,
        max_per_tenant: Option<u32>,
    ) -> Result<Self> {
        let mut parsed = url::Url::parse(url.expose_secret()).map_err(|_| Error::Invalid {
            kind: "admin URL",
            value: "[redacted]".into(),
            rule: "must be a postgres:// URL".into(),
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") || parsed.host_str().is_none() {
            return Err(Error::Invalid {
                kind: "admin URL",
                value: "[redacted]".into(),
                rule: "must be a postgres:// URL with a host".into(),
            });
        }
        let password = parsed
            .password()
            .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned());
        let _ = parsed.set_password(None);
        let mut shown = serde_json::Map::new();
        shown.insert("host".into(), parsed.host_str().unwrap_or_default().into());
        shown.insert("port".into(), parsed.port().unwrap_or(5432).into());
        shown.insert("user".into(), parsed.username().into());
        shown.insert("admin_database".into(), parsed.path().trim_start_matches('/').into());
        Ok(Self {
            url: Some(parsed.to_string()),
            password: password.map(|p| secret.seal(server, &p)),
            max_per_tenant,
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

    /// The admin URL with its password opened, under the secret it was
    /// sealed with (`secrets`: the current one, then the previous one).
    fn admin_url(&self, server: &str, secrets: &[&TenantSecret]) -> Result<SecretString> {
        let url = self.url.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "server '{server}' has no admin URL in the catalog; record it with `tenantdb servers add`"
            ))
        })?;
        let Some(sealed) = &self.password else {
            return Ok(SecretString::from(url.to_owned()));
        };
        let secret = secrets
            .iter()
            .find(|s| s.version() == sealed.version)
            .or(secrets.first())
            .ok_or_else(|| Error::Config(format!("TENANTDB_SECRET is needed to reach server '{server}'")))?;
        let password = secret.open(server, sealed)?;
        let mut parsed = url::Url::parse(url).map_err(|_| Error::Config(format!("server '{server}' has a bad URL")))?;
        // Every byte but letters and digits escaped: a `%` in the password
        // must not read as the start of an escape.
        let escaped =
            percent_encoding::utf8_percent_encode(password.expose_secret(), percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        parsed
            .set_password(Some(&escaped))
            .map_err(|()| Error::Config(format!("server '{server}' has a URL that takes no password")))?;
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
        let Some(sealed) = &self.password else {
            return Ok(self.clone());
        };
        let opener = parts
            .secrets()
            .into_iter()
            .find(|s| s.version() == sealed.version)
            .unwrap_or(secret);
        let password = opener.open(server, sealed)?;
        Ok(Self {
            password: Some(secret.seal(server, password.expose_secret())),
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

    async fn close(&self, deadline: Duration) {
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
        }
    }

    fn secrets(&self) -> Vec<&TenantSecret> {
        self.secret.iter().chain(self.previous_secret.iter()).collect()
    }

    /// Connects the admin pool of a PostgreSQL server from its settings.
    /// What this process lacks to log in is `Error::ServerUnusable`.
    pub(crate) async fn connect(&self, name: &str, settings: &ServerSettings) -> Result<PostgresEngine> {
        let unusable = |err: Error| match err {
            Error::Config(reason) => Error::ServerUnusable {
                server: name.to_owned(),
                reason,
            },
            other => other,
        };
        self.connect_admin(name, settings).await.map_err(unusable)
    }

    async fn connect_admin(&self, name: &str, settings: &ServerSettings) -> Result<PostgresEngine> {
        let secret = self
            .secret
            .clone()
            .ok_or_else(|| Error::Config(format!("TENANTDB_SECRET is required to use PostgreSQL server '{name}'")))?;
        let url = settings.admin_url(name, &self.secrets())?;
        let connect = PostgresEngine::connect_admin(
            &url,
            secret,
            self.catalog.id(),
            self.role_connection_limit,
            config::DEFAULT_ADMIN_MAX_CONNECTIONS,
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
    opening: tokio::sync::Mutex<()>,
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
                opening: tokio::sync::Mutex::new(()),
            }),
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
        let _opening = self.inner.opening.lock().await;
        if let Some(site) = self.opened(row.id) {
            return Ok(site);
        }
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
        let engine = Engine::Postgres(parts.connect(&row.name, &settings).await?);
        let mut pools = parts.pools.clone();
        pools.budget = u32::try_from(row.connection_budget).unwrap_or(1).max(1);
        if let Some(max) = settings.max_per_tenant {
            pools.max_per_tenant = max.max(1);
        }
        let site = Arc::new(Site::new(row, engine, pools, parts, &self.inner.identity));
        tracing::info!(server = %row.name, "opened tenant server");
        self.remember(row);
        self.inner
            .others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.id, site.clone());
        Ok(site)
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

    /// Closes a site this process opened (its server was removed).
    pub(crate) async fn forget(&self, server: Uuid) {
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
        let deadline = self.inner.parts.shutdown_deadline;
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
        let settings = ServerSettings::postgres("eu-1", &url, &secret(1, "k"), Some(3)).unwrap();
        let stored = settings.to_json().to_string();
        assert!(!stored.contains("p@ss") && !stored.contains(&encoded), "{stored}");
        assert_eq!(
            settings.url.as_deref(),
            Some("postgres://admin@db.internal:6432/postgres?sslmode=require")
        );
        assert_eq!(settings.shown["port"], 6432);
        let back = settings.admin_url("eu-1", &[&secret(1, "k")]).unwrap();
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
        let sealed = ServerSettings::postgres("eu-1", &url, &secret(1, "a"), None).unwrap();
        let err = sealed.admin_url("eu-1", &[&secret(2, "b")]).unwrap_err().to_string();
        assert!(err.contains("version 1") && !err.contains("old-pw"), "{err}");
        assert!(sealed.admin_url("eu-1", &[&secret(2, "b"), &secret(1, "a")]).is_ok());
        assert_eq!(sealed.sealed_version(), Some(1));
    }

    #[test]
    fn only_postgres_urls_with_a_host_are_taken() {
        for bad in ["mysql://u:p@h/db", "postgres:///db", "not a url", "sqlite://x.db"] {
            let err = ServerSettings::postgres("x", &SecretString::from(bad), &secret(1, "k"), None).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
            assert!(
                !err.to_string().contains(':'.to_string().as_str()) || !err.to_string().contains("u:p"),
                "{err}"
            );
        }
    }
}
