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
//!
//! This file holds the engine and its admin pool; the parts are
//! `roles`, `databases`, `templates`, `inventory` (for `doctor`) and
//! `options` (connections as a tenant's role).

mod databases;
mod export;
mod inventory;
mod moves;
mod options;
mod replication;
mod roles;
mod templates;
mod tools;
mod warm;

pub use options::TenantLogin;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{AssertSqlSafe, ConnectOptions};
use uuid::Uuid;

use super::Backends;
use crate::error::{Error, Result};
use crate::pool_options;
use crate::secret::TenantSecret;

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

/// A PostgreSQL tenant server, reached through an admin pool.
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
    /// The admin URL (with its password): handed only to `pg_dump` (the
    /// password in its environment) and to a target server's subscription
    /// while a tenant moves (see `moves`).
    url: SecretString,
    /// Where `pg_dump` and `pg_restore` are (`None`: the `PATH`).
    pg_bin: Option<std::path::PathBuf>,
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
        pg_bin: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(Error::server("invalid tenant server URL"))?
            .application_name("tenantdb-admin");
        let admin = pool_options::postgres_job(max_connections)
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
                url: url.clone(),
                pg_bin,
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

    /// The cluster's system identifier (unique per `initdb`): the same for
    /// every URL that reaches this cluster. `None` if it cannot be read.
    pub(crate) async fn system_identifier(&self) -> Option<String> {
        sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
            .fetch_one(&self.inner.admin)
            .await
            .ok()
    }

    /// Whether the server answers a query on the admin pool.
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::raw_sql("SELECT 1")
            .execute(&self.inner.admin)
            .await
            .map(drop)
            .map_err(Error::server("the tenant server does not answer"))
    }

    /// Where the server is (no secrets).
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

    /// Waits (up to `max_wait`) until the backends of a closed pool have
    /// left `pg_stat_activity`.
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

/// One simple query on `conn`.
pub(super) async fn run(conn: &mut sqlx::PgConnection, sql: &str) -> std::result::Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(drop)
}
