//! Connections as a tenant's role: their options, derived from the admin
//! options, and the pools opened with them.

use std::sync::{Arc, Mutex};

use sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, Postgres};
use sqlx::{Connection, PgConnection, Row};

use super::PostgresEngine;
use crate::config::PoolConfig;
use crate::engine::{Backends, DatabaseSpec, TENANT_APPLICATION_NAME};
use crate::error::{Error, Result};
use crate::pool_options;

/// See [`PostgresEngine::tenant_login`].
#[derive(Debug, Clone)]
pub struct TenantLogin {
    /// Host name, address, or the directory of a Unix socket.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The tenant's role.
    pub role: String,
    /// The tenant's database.
    pub database: String,
    /// The role's password (hex digits: safe in a URL as it is).
    pub password: secrecy::SecretString,
}

impl TenantLogin {
    /// `postgres://role[:password]@host:port/database`; the password only
    /// when asked for. A socket directory goes in `host=` of the query.
    pub fn url(&self, with_password: bool) -> String {
        let password = if with_password {
            format!(":{}", self.password.expose_secret())
        } else {
            String::new()
        };
        if self.host.starts_with('/') {
            return format!(
                "postgres://{}{password}@/{}?host={}&port={}",
                self.role, self.database, self.host, self.port
            );
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{}{password}@{host}:{}/{}",
            self.role, self.port, self.database
        )
    }
}

impl PostgresEngine {
    /// Connection options for the tenant's role on its database, derived
    /// from the admin options (never by formatting a URL).
    pub fn tenant_options(&self, db: &DatabaseSpec) -> PgConnectOptions {
        let password = self.inner.secret.password_for(db.tenant);
        self.inner
            .options
            .clone()
            .username(db.role.as_str())
            .password(password.expose_secret())
            .database(db.database.as_str())
            .application_name(TENANT_APPLICATION_NAME)
    }

    /// How a tool (psql, an operator's URL) logs in as the tenant's role on
    /// its database: the server's host (or socket directory) and port, the
    /// role, the database and the role's password under the current
    /// secret.
    pub fn tenant_login(&self, db: &DatabaseSpec) -> TenantLogin {
        let options = &self.inner.options;
        let host = match options.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => options.get_host().to_owned(),
        };
        TenantLogin {
            host,
            port: options.get_port(),
            role: db.role.to_string(),
            database: db.database.to_string(),
            password: self.inner.secret.password_for(db.tenant),
        }
    }

    /// A pool of at most `max_connections` on the tenant's database, as the
    /// tenant's role, for one job (a migration run).
    pub(crate) async fn connect(&self, db: &DatabaseSpec, max_connections: u32) -> Result<DatabaseConnection> {
        let pool = pool_options::postgres_job(max_connections)
            .connect_with(self.tenant_options(db))
            .await
            .map_err(Error::server(format!(
                "cannot connect to database '{}' as role '{}'",
                db.database, db.role
            )))?;
        Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    }

    /// A tenant pool of `size` connections whose every connection checks
    /// where it landed (see `Landing`); connections idle longer than
    /// `validate_after_idle` are pinged before reuse.
    pub(crate) async fn open_pool(
        &self,
        db: &DatabaseSpec,
        config: &PoolConfig,
        size: u32,
    ) -> Result<(DatabaseConnection, Backends)> {
        let validate_after = config.validate_after_idle;
        let landing = Arc::new(Landing {
            expected: (db.database.to_string(), db.role.to_string()),
            wrong: Mutex::default(),
            backends: Backends::default(),
        });
        let pool = pool_options::tenant::<Postgres>(config, size)
            .after_connect({
                let landing = landing.clone();
                move |conn, _| {
                    let landing = landing.clone();
                    Box::pin(async move { landing.check(conn).await })
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
        match pool {
            Ok(pool) => Ok((
                SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
                landing.backends.clone(),
            )),
            Err(err) => Err(landing.error(db, err)),
        }
    }
}

/// What every new connection of a tenant pool checks: that it reached the
/// tenant's own database as the tenant's role. It records the backend's
/// pid for `wait_closed`.
struct Landing {
    /// The database and role a connection must find.
    expected: (String, String),
    /// What a connection found instead, if it landed elsewhere.
    wrong: Mutex<Option<(String, String)>>,
    backends: Backends,
}

impl Landing {
    /// Checks a new connection and records its pid, in one round trip (the
    /// simple query protocol: no statement to prepare).
    async fn check(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        // `current_catalog` and `current_user` are SQL keywords, not
        // functions: a fresh backend skips two catalog lookups (about
        // 0.1 ms of a cold pool's first query).
        let row = sqlx::raw_sql("SELECT current_catalog, current_user, pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        let found: (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if found != self.expected {
            *self.wrong.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
            return Err(sqlx::Error::Protocol("connected to the wrong database or role".into()));
        }
        self.backends.add(row.try_get(2)?);
        Ok(())
    }

    /// The error of a pool that did not open: `WrongDatabase` when a
    /// connection landed elsewhere.
    fn error(&self, db: &DatabaseSpec, err: sqlx::Error) -> Error {
        if let Some((found, role)) = self.wrong.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Error::WrongDatabase {
                tenant: db.tenant.to_string(),
                expected: db.database.to_string(),
                found,
                role,
            };
        }
        Error::server(format!(
            "cannot connect to database '{}' of tenant '{}'",
            db.database, db.tenant
        ))(err)
    }
}
