//! SQLite: one file per tenant, `<dir>/<tenant id>.db`, in WAL mode.
//!
//! Files are named by tenant id, never by database name: a rename changes
//! only the catalog, because moving a file that another process has open
//! corrupts it. Drop removes the `-wal` and `-shm` files too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, SqlxSqliteConnector};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Ownership, TenantDb};
use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::names::TenantId;

#[derive(Debug, Clone)]
pub struct SqliteEngine {
    dir: Arc<PathBuf>,
}

impl SqliteEngine {
    /// Uses (and creates) `dir` for tenant files.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
        Ok(Self {
            dir: Arc::new(dir.to_path_buf()),
        })
    }

    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "dir": self.dir.display().to_string() })
    }

    /// The file of a tenant's database.
    pub fn path(&self, tenant: TenantId) -> PathBuf {
        self.dir.join(format!("{tenant}.db"))
    }

    fn options(&self, tenant: TenantId) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(self.path(tenant))
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
    }

    pub(crate) async fn ownership(&self, db: &TenantDb) -> Result<Ownership> {
        let path = self.path(db.tenant);
        let exists = tokio::fs::try_exists(&path)
            .await
            .map_err(Error::io(format!("cannot check {}", path.display())))?;
        Ok(if exists { Ownership::Ours } else { Ownership::Missing })
    }

    pub(crate) async fn create_database(&self, db: &TenantDb) -> Result<()> {
        // Opening with create_if_missing makes the file and switches it to
        // WAL, which SQLite records in the file itself.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(self.options(db.tenant).create_if_missing(true))
            .await
            .map_err(Error::server(format!("cannot create database '{}'", db.database)))?;
        pool.close().await;
        Ok(())
    }

    pub(crate) async fn drop_tenant(&self, db: &TenantDb) -> Result<()> {
        let path = self.path(db.tenant);
        // The WAL first: a WAL left beside a later file of the same name
        // would be replayed into it.
        for suffix in ["-wal", "-shm", ""] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            match tokio::fs::remove_file(&file).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::io(format!("cannot remove {}", Path::new(&file).display()))(err));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn open_pool(&self, db: &TenantDb, config: &PoolConfig, size: u32) -> Result<DatabaseConnection> {
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .test_before_acquire(false)
            // Opening checks the file is there: a missing one is an error,
            // never a new empty database.
            .connect_with(self.options(db.tenant))
            .await
            .map_err(Error::server(format!(
                "cannot open database '{}' of tenant '{}'",
                db.database, db.tenant
            )))?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    }

    pub(crate) async fn connect(&self, db: &TenantDb, max_connections: u32) -> Result<DatabaseConnection> {
        // No create_if_missing: a missing file is an error, never a silent
        // new empty database.
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options(db.tenant))
            .await
            .map_err(Error::server(format!("cannot open database '{}'", db.database)))?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    }
}
