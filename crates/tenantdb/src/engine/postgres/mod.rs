//! PostgreSQL: one database and one login role per tenant.
//!
//! - The role (`<prefix>r_<tenant id>`) logs in, is not a superuser, cannot
//!   create databases or roles, has a connection limit, and carries a
//!   comment that marks it as this catalog's role for this tenant. The role
//!   and its comment are made in one transaction, so a role without the mark
//!   never exists.
//! - The database is created owned by that role with `ALLOW_CONNECTIONS
//!   false`, then `CONNECT` is revoked from `PUBLIC` and only then are
//!   connections allowed: nobody but the owner (and superusers) can connect
//!   at any moment, including while it is being made.
//! - A database is "ours" when its owner is the tenant's marked role.
//! - The server only ever sees a SCRAM verifier of the role's password.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use uuid::Uuid;

use super::{
    Backends, Created, Inventory, MarkedRole, Ownership, ServerDatabase, ServerTemplate, TENANT_APPLICATION_NAME,
    TenantDb,
};
use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, DatabasePrefix, RoleName, TenantId, quote_ident, quote_literal};
use crate::secret::TenantSecret;
use templates::{FOUND_DATABASE, FoundDatabase, TemplateState};

mod templates;

/// SQLSTATE: object in use (a database someone is connected to).
const OBJECT_IN_USE: &str = "55006";
/// SQLSTATE: duplicate database / duplicate object (role).
const DUPLICATE_DATABASE: &str = "42P04";
const DUPLICATE_OBJECT: &str = "42710";
/// SQLSTATE: dependent objects still exist (a role with privileges or
/// objects elsewhere).
const DEPENDENT_OBJECTS: &str = "2BP01";
/// The oldest server we support: `DROP DATABASE ... WITH (FORCE)` is 13+.
const MIN_SERVER_VERSION: i32 = 130_000;

#[derive(Clone)]
pub struct PostgresEngine {
    inner: Arc<Inner>,
}

struct Inner {
    admin: PgPool,
    /// One template build at a time in this process (others wait here, not
    /// on an admin connection).
    template_build: tokio::sync::Mutex<()>,
    options: PgConnectOptions,
    secret: TenantSecret,
    catalog_id: Uuid,
    role_connection_limit: i32,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("host", &self.inner.options.get_host())
            .field("port", &self.inner.options.get_port())
            .finish_non_exhaustive()
    }
}

impl PostgresEngine {
    /// Connects the admin pool and checks the server version.
    pub async fn connect_admin(
        url: &SecretString,
        secret: TenantSecret,
        catalog_id: Uuid,
        role_connection_limit: i32,
        max_connections: u32,
    ) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(Error::server("invalid tenant server URL"))?
            .application_name("tenantdb-admin");
        let admin = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // DDL commits without waiting for its WAL to reach disk (one
            // fsync each would be most of a provisioning's cost); `flush`
            // makes it all durable with one synchronous commit before the
            // catalog records the result.
            // Admin statements carry role passwords (SCRAM verifiers) in
            // `CREATE ROLE` / `ALTER ROLE`: sqlx must never log them, at any
            // level. (Tenant pools, derived from `options`, keep sqlx's
            // statement and slow-query logging.)
            .connect_with(
                options
                    .clone()
                    .options([("synchronous_commit", "off")])
                    .disable_statement_logging(),
            )
            .await
            .map_err(Error::server("cannot connect to the tenant PostgreSQL server"))?;
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(&admin)
            .await
            .map_err(Error::server("cannot read the server version"))?;
        if version < MIN_SERVER_VERSION {
            return Err(Error::Config(format!(
                "tenant server runs PostgreSQL {version}; tenantdb needs 13 or newer"
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                admin,
                template_build: tokio::sync::Mutex::new(()),
                options,
                secret,
                catalog_id,
                role_connection_limit,
            }),
        })
    }

    /// Makes every DDL committed so far durable: one commit that waits for
    /// the WAL to be flushed up to it, which covers every earlier commit of
    /// the server (the WAL is written in order).
    pub(crate) async fn flush(&self) -> Result<()> {
        sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_current_xact_id(); COMMIT")
            .execute(&self.inner.admin)
            .await
            .map(drop)
            .map_err(Error::server("cannot flush the tenant server's log"))
    }

    pub(crate) fn describe(&self) -> serde_json::Value {
        let options = &self.inner.options;
        serde_json::json!({
            "host": options.get_host(),
            "port": options.get_port(),
            "user": options.get_username(),
            "admin_database": options.get_database(),
        })
    }

    /// The admin pool (superuser or CREATEDB + CREATEROLE).
    pub fn admin_pool(&self) -> &PgPool {
        &self.inner.admin
    }

    fn marker(&self, db: &TenantDb) -> String {
        format!("tenantdb catalog={} tenant={}", self.inner.catalog_id, db.tenant)
    }

    pub(crate) async fn name_in_use(&self, name: &DatabaseName) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name.as_str())
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot look up database '{name}'")))
    }

    pub(crate) async fn ownership(&self, db: &TenantDb, name: &DatabaseName) -> Result<Ownership> {
        let row = sqlx::query(
            "SELECT r.rolname::text AS owner, shobj_description(r.oid, 'pg_authid') AS mark
             FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.inner.admin)
        .await
        .map_err(Error::server(format!("cannot look up database '{name}'")))?;
        let Some(row) = row else {
            return Ok(Ownership::Missing);
        };
        let owner: String = row.get("owner");
        let mark: Option<String> = row.get("mark");
        let ours = owner == db.role.as_str() && mark.as_deref() == Some(self.marker(db).as_str());
        Ok(if ours { Ownership::Ours } else { Ownership::Foreign })
    }

    /// The role's comment, or `None` when the role does not exist.
    async fn role_mark(&self, role: &RoleName) -> Result<Option<Option<String>>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
                .bind(role.as_str())
                .fetch_optional(&self.inner.admin)
                .await
                .map_err(Error::server(format!("cannot look up role '{role}'")))?;
        Ok(row.map(|(mark,)| mark))
    }

    pub(crate) async fn ensure_role(&self, db: &TenantDb) -> Result<()> {
        let role = quote_ident(db.role.as_str());
        let password = quote_literal(&self.inner.secret.verifier_for(db.tenant));
        let limit = self.inner.role_connection_limit;
        match self.role_mark(&db.role).await? {
            Some(mark) if mark.as_deref() == Some(self.marker(db).as_str()) => {
                let sql = format!(
                    "ALTER ROLE {role} WITH LOGIN CONNECTION LIMIT {limit} PASSWORD {password}; \
                     GRANT {role} TO current_user"
                );
                self.exec(&sql, || format!("cannot update role '{}'", db.role)).await
            }
            Some(_) => Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: format!("(role) {}", db.role),
            }),
            None => {
                let create = format!(
                    "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                     NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {password}"
                );
                let comment = format!("COMMENT ON ROLE {role} IS {}", quote_literal(&self.marker(db)));
                // An admin that is not a superuser (CREATEDB and CREATEROLE
                // only) must be a member of a role to create a database
                // owned by it, and to alter or drop that database later.
                let grant = format!("GRANT {role} TO current_user");
                // One simple query: one implicit transaction, one round
                // trip, and the role never exists without its mark.
                let result = sqlx::raw_sql(AssertSqlSafe(format!("{create}; {comment}; {grant}")))
                    .execute(&self.inner.admin)
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    // Two processes raced to create it: the winner's role
                    // carries the same mark, which the next call checks.
                    Err(err) if sql_state(&err).as_deref() == Some(DUPLICATE_OBJECT) => {
                        Box::pin(self.ensure_role(db)).await
                    }
                    Err(err) => Err(Error::server(format!("cannot create role '{}'", db.role))(err)),
                }
            }
        }
    }

    pub(crate) async fn create_database(&self, db: &TenantDb, template: Option<&str>) -> Result<Created> {
        let name = quote_ident(db.database.as_str());
        match self.ownership(db, &db.database).await? {
            Ownership::Foreign => Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: db.database.to_string(),
            }),
            Ownership::Ours => Ok(Created::Existing),
            Ownership::Missing => {
                // template0, not template1: nobody can connect to template0,
                // so no session can block the copy and no role can have
                // planted objects in it.
                let create = |from: &str| {
                    format!(
                        "CREATE DATABASE {name} WITH OWNER {} TEMPLATE {} ALLOW_CONNECTIONS false",
                        quote_ident(db.role.as_str()),
                        quote_ident(from)
                    )
                };
                let context = || format!("cannot create database '{}'", db.database);
                let is_duplicate = |err: &Error| matches!(err, Error::Server { source, .. } if sql_state(source).as_deref() == Some(DUPLICATE_DATABASE));
                let mut cloned = None;
                if let Some(from) = template {
                    match self.clone_template(&create(from), context).await {
                        Ok(()) => cloned = Some(Ok(Created::Cloned)),
                        Err(err) if is_duplicate(&err) => cloned = Some(Err(err)),
                        // The template is gone (a newer deploy replaced it)
                        // or busy: the migrations replayed on template0
                        // give the same schema, only slower.
                        Err(err) => {
                            tracing::warn!(template = from, error = %err.chain(), "cloning the template failed; replaying migrations");
                        }
                    }
                }
                let result = match cloned {
                    Some(result) => result,
                    None => self
                        .exec_retrying(&create("template0"), context)
                        .await
                        .map(|()| Created::Empty),
                };
                match result {
                    Ok(created) => Ok(created),
                    // Lost a race to another creator: only fine if it is ours.
                    Err(err) if is_duplicate(&err) && self.ownership(db, &db.database).await? == Ownership::Ours => {
                        Ok(Created::Existing)
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// Clones a template: PostgreSQL refuses while anyone is connected to
    /// it (nobody should be: templates accept no connections), after
    /// waiting up to 5 s itself for the sessions to leave. A busy template
    /// is tried once more after a short pause, then the caller falls back
    /// to replaying migrations rather than waiting longer.
    async fn clone_template(&self, sql: &str, context: impl Fn() -> String) -> Result<()> {
        let run = || sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&self.inner.admin);
        let result = match run().await {
            Err(err) if sql_state(&err).as_deref() == Some(OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                run().await
            }
            other => other,
        };
        result.map(drop).map_err(|err| Error::server(context())(err))
    }

    /// The tenant a role mark of this catalog names, if it is one.
    fn marked_tenant(&self, mark: Option<&str>) -> Option<TenantId> {
        let rest = mark?.strip_prefix(&format!("tenantdb catalog={} tenant=", self.inner.catalog_id))?;
        TenantId::parse(rest).ok()
    }

    pub(crate) async fn inventory(&self, prefix: &DatabasePrefix, stem: &str) -> Result<Inventory> {
        let context = || "cannot list the databases of the tenant server".to_owned();
        let tenant_marks = format!("tenantdb catalog={} tenant=%", self.inner.catalog_id);
        let template_marks = format!("tenantdb template catalog={} %", self.inner.catalog_id);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{FOUND_DATABASE} WHERE starts_with(d.datname, $1) OR starts_with(d.datname, $2) \
             OR shobj_description(r.oid, 'pg_authid') LIKE $3 \
             OR shobj_description(d.oid, 'pg_database') LIKE $4 \
             OR shobj_description(r.oid, 'pg_authid') = $5 \
             ORDER BY d.datname"
        )))
        .bind(prefix.as_str())
        .bind(stem)
        .bind(&tenant_marks)
        .bind(&template_marks)
        .bind(self.template_owner_marker())
        .fetch_all(&self.inner.admin)
        .await
        .map_err(|err| Error::server(context())(err))?;
        let mut inventory = Inventory::default();
        for found in rows.iter().map(FoundDatabase::from_row) {
            let tenant = self.marked_tenant(found.owner_mark.as_deref());
            if tenant.is_none() {
                let version = match self.classify_template(&found) {
                    TemplateState::Ready(version) => Some(Some(version)),
                    TemplateState::Building => Some(None),
                    TemplateState::Missing | TemplateState::Foreign => None,
                };
                if let Some(version) = version {
                    inventory.templates.push(ServerTemplate {
                        name: found.name,
                        version,
                    });
                    continue;
                }
            }
            inventory.databases.push(ServerDatabase {
                name: found.name,
                tenant,
                owner: Some(found.owner),
            });
        }
        let roles: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
             WHERE shobj_description(oid, 'pg_authid') LIKE $1 OR starts_with(rolname, $2) \
                OR starts_with(rolname, $3) ORDER BY rolname",
        )
        .bind(&tenant_marks)
        .bind(prefix.as_str())
        .bind(stem.trim_end_matches('-'))
        .fetch_all(&self.inner.admin)
        .await
        .map_err(|err| Error::server("cannot list the roles of the tenant server")(err))?;
        let template_owner = self.template_owner_marker();
        for (name, mark) in roles {
            if let Some(tenant) = self.marked_tenant(mark.as_deref()) {
                inventory.roles.push(MarkedRole { name, tenant });
            } else if mark.as_deref() != Some(template_owner.as_str()) {
                inventory.foreign_roles.push(name);
            }
        }
        Ok(inventory)
    }

    /// Drops a role this catalog marked for `tenant`; any other is refused.
    /// A role that still has objects or privileges elsewhere (granted by
    /// hand: PostgreSQL refuses with 2BP01) cannot be dropped without
    /// reaching into other databases: it is locked out (`NOLOGIN`) instead,
    /// and `doctor` reports it as an orphan role.
    pub(crate) async fn drop_role(&self, tenant: TenantId, role: &RoleName) -> Result<()> {
        match self.role_mark(role).await? {
            None => Ok(()),
            Some(mark) if self.marked_tenant(mark.as_deref()) == Some(tenant) => {
                let quoted = quote_ident(role.as_str());
                let sql = format!("DROP ROLE IF EXISTS {quoted}");
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.inner.admin).await {
                    Ok(_) => Ok(()),
                    Err(err) if sql_state(&err).as_deref() == Some(DEPENDENT_OBJECTS) => {
                        tracing::warn!(
                            tenant.id = %tenant, role = %role, error = %err,
                            "the tenant's role still has objects or privileges elsewhere; locking it out instead of dropping it"
                        );
                        let lock = format!("ALTER ROLE {quoted} WITH NOLOGIN");
                        self.exec(&lock, || format!("cannot lock out role '{role}'")).await
                    }
                    Err(err) => Err(Error::server(format!("cannot drop role '{role}'"))(err)),
                }
            }
            Some(_) => Err(Error::NotOurs {
                tenant: tenant.to_string(),
                database: format!("(role) {role}"),
            }),
        }
    }

    pub(crate) async fn open_database(&self, db: &TenantDb) -> Result<()> {
        if self.ownership(db, &db.database).await? != Ownership::Ours {
            return Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: db.database.to_string(),
            });
        }
        let name = quote_ident(db.database.as_str());
        let context = || format!("cannot secure database '{}'", db.database);
        // One simple query is one transaction: the database opens only
        // together with its revoke and mark, at the cost of one commit.
        let sql = format!(
            "REVOKE ALL ON DATABASE {name} FROM PUBLIC; COMMENT ON DATABASE {name} IS {}; \
             ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true",
            quote_literal(&self.marker(db))
        );
        self.exec(&sql, context).await
    }

    pub(crate) async fn drop_tenant(&self, db: &TenantDb) -> Result<()> {
        self.drop_database(db).await?;
        self.drop_role(db.tenant, &db.role).await
    }

    /// Drops the tenant's database if it is ours (its owner is the
    /// tenant's marked role); leaves anything else untouched.
    pub(crate) async fn drop_database(&self, db: &TenantDb) -> Result<()> {
        match self.ownership(db, &db.database).await? {
            Ownership::Foreign => {
                // Somebody else's database under this name (it appeared
                // after our check): nothing of ours to drop there.
                tracing::warn!(
                    tenant.id = %db.tenant, database = %db.database,
                    "leaving a database tenantdb did not create untouched"
                );
            }
            Ownership::Ours => {
                let name = quote_ident(db.database.as_str());
                let context = || format!("cannot drop database '{}'", db.database);
                // A database whose DROP was interrupted is invalid
                // (`datconnlimit = -2`, PostgreSQL 13.12+, 14.9+, 15.4+):
                // every ALTER fails on it, DROP is what is left to do.
                if !self.is_invalid(db.database.as_str()).await? {
                    self.exec(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"), context)
                        .await?;
                }
                // FORCE ends the remaining sessions (PostgreSQL 13+).
                self.exec_retrying(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), context)
                    .await?;
            }
            Ownership::Missing => {}
        }
        Ok(())
    }

    /// Whether an interrupted `DROP DATABASE` left the database invalid.
    pub(crate) async fn is_invalid(&self, name: &str) -> Result<bool> {
        let invalid: Option<bool> = sqlx::query_scalar("SELECT datconnlimit = -2 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot look up database '{name}'")))?;
        Ok(invalid.unwrap_or(false))
    }

    pub(crate) async fn rename(&self, db: &TenantDb, to: &DatabaseName) -> Result<()> {
        let from_state = self.ownership(db, &db.database).await?;
        let to_state = self.ownership(db, to).await?;
        let context = || format!("cannot rename database '{}' to '{to}'", db.database);
        match (from_state, to_state) {
            (Ownership::Ours, Ownership::Missing) => {
                let from = quote_ident(db.database.as_str());
                self.exec(&format!("ALTER DATABASE {from} WITH ALLOW_CONNECTIONS false"), context)
                    .await?;
                self.terminate_sessions(&db.database).await?;
                let sql = format!("ALTER DATABASE {from} RENAME TO {}", quote_ident(to.as_str()));
                if let Err(err) = self.exec_retrying(&sql, context).await {
                    // Leave the old database usable; the caller rolls back.
                    let reopen = format!("ALTER DATABASE {from} WITH ALLOW_CONNECTIONS true");
                    let _ = self.exec(&reopen, context).await;
                    return Err(err);
                }
            }
            // Already renamed by an earlier attempt that died.
            (Ownership::Missing, Ownership::Ours) => {}
            (Ownership::Missing, Ownership::Missing) => {
                return Err(Error::TenantDatabaseNotFound(format!(
                    "{} (database '{}' is missing on the server)",
                    db.tenant, db.database
                )));
            }
            _ => {
                return Err(Error::NotOurs {
                    tenant: db.tenant.to_string(),
                    database: to.to_string(),
                });
            }
        }
        let sql = format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            quote_ident(to.as_str())
        );
        self.exec(&sql, context).await
    }

    async fn terminate_sessions(&self, name: &DatabaseName) -> Result<()> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name.as_str())
        .execute(&self.inner.admin)
        .await
        .map_err(Error::server(format!("cannot end the sessions of database '{name}'")))?;
        Ok(())
    }

    /// Connection options for the tenant's role on its database, derived
    /// from the admin options (never by formatting a URL).
    pub fn tenant_options(&self, db: &TenantDb) -> PgConnectOptions {
        let password = self.inner.secret.password_for(db.tenant);
        self.inner
            .options
            .clone()
            .username(db.role.as_str())
            .password(password.expose_secret())
            .database(db.database.as_str())
            .application_name(TENANT_APPLICATION_NAME)
    }

    pub(crate) async fn connect(&self, db: &TenantDb, max_connections: u32) -> Result<DatabaseConnection> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.tenant_options(db))
            .await
            .map_err(Error::server(format!(
                "cannot connect to database '{}' as role '{}'",
                db.database, db.role
            )))?;
        Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    }

    pub(crate) async fn open_pool(
        &self,
        db: &TenantDb,
        config: &PoolConfig,
        size: u32,
    ) -> Result<(DatabaseConnection, Backends)> {
        let validate_after = config.validate_after_idle;
        let backends = Backends::default();
        // Every new connection checks where it landed and records its
        // backend pid, in one round trip (the simple query protocol: no
        // statement to prepare).
        let expected = (db.database.to_string(), db.role.to_string());
        let wrong: Arc<std::sync::Mutex<Option<(String, String)>>> = Arc::default();
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .test_before_acquire(false)
            .after_connect({
                let backends = backends.clone();
                let wrong = wrong.clone();
                move |conn, _| {
                    let backends = backends.clone();
                    let wrong = wrong.clone();
                    let expected = expected.clone();
                    Box::pin(async move {
                        // `current_catalog` and `current_user` are SQL keywords,
                        // not functions: a fresh backend skips two catalog
                        // lookups (about 0.1 ms of a cold pool's first query).
                        let row = sqlx::raw_sql("SELECT current_catalog, current_user, pg_backend_pid()")
                            .fetch_one(&mut *conn)
                            .await?;
                        let found: (String, String) = (row.try_get(0)?, row.try_get(1)?);
                        if found != expected {
                            *wrong.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
                            return Err(sqlx::Error::Protocol("connected to the wrong database or role".into()));
                        }
                        backends.add(row.try_get(2)?);
                        Ok(())
                    })
                }
            })
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= validate_after {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(self.tenant_options(db))
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(err) => {
                if let Some((found, role)) = wrong.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Err(Error::WrongDatabase {
                        tenant: db.tenant.to_string(),
                        expected: db.database.to_string(),
                        found,
                        role,
                    });
                }
                return Err(Error::server(format!(
                    "cannot connect to database '{}' of tenant '{}'",
                    db.database, db.tenant
                ))(err));
            }
        };
        Ok((SqlxPostgresConnector::from_sqlx_postgres_pool(pool), backends))
    }

    pub(crate) async fn wait_closed(&self, backends: &Backends, max_wait: Duration) {
        let pids = backends.pids();
        if pids.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let left: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&pids)
                .fetch_one(&self.inner.admin)
                .await;
            match left {
                Ok(0) => return,
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Ok(left) => {
                    tracing::warn!(
                        left,
                        "closed tenant connections still on the server; releasing their budget anyway"
                    );
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot check that closed tenant connections are gone");
                    return;
                }
            }
        }
    }

    pub(crate) async fn connection_room(&self, others: u32) -> Result<u32> {
        let (max, reserved): (i32, i32) = sqlx::query_as(
            "SELECT current_setting('max_connections')::int, \
             current_setting('superuser_reserved_connections')::int \
             + coalesce(current_setting('reserved_connections', true)::int, 0)",
        )
        .fetch_one(&self.inner.admin)
        .await
        .map_err(Error::server("cannot read max_connections"))?;
        Ok(u32::try_from(max - reserved).unwrap_or(0).saturating_sub(others))
    }

    pub(crate) async fn close(&self) {
        self.inner.admin.close().await;
    }

    async fn exec(&self, sql: &str, context: impl FnOnce() -> String) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.inner.admin)
            .await
            .map(drop)
            .map_err(|err| Error::server(context())(err))
    }

    /// Runs DDL that PostgreSQL refuses while a session is still on the
    /// database (terminated backends take a moment to exit): retries for up
    /// to five seconds on "object in use".
    async fn exec_retrying(&self, sql: &str, context: impl Fn() -> String) -> Result<()> {
        let mut delay = Duration::from_millis(20);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(&self.inner.admin)
                .await
            {
                Ok(_) => return Ok(()),
                Err(err)
                    if sql_state(&err).as_deref() == Some(OBJECT_IN_USE) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(err) => return Err(Error::server(context())(err)),
            }
        }
    }
}

fn sql_state(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}
