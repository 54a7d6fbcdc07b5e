//! Connections as a tenant's role: their options, derived from the admin
//! options, and the pools opened with them.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Row};

use super::PostgresEngine;
use crate::config::PoolConfig;
use crate::engine::{Backends, TENANT_APPLICATION_NAME, TenantDb};
use crate::error::{Error, Result};

impl PostgresEngine {
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
}
