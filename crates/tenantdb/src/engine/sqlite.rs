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

    /// Where templates live: beside the tenant directory, never in it.
    fn template_path(&self, name: &str) -> PathBuf {
        let mut dir = self.dir.as_os_str().to_owned();
        dir.push("-templates");
        PathBuf::from(dir).join(format!("{name}.db"))
    }

    /// A template file at the latest version: migrated in a scratch file,
    /// then written whole with `VACUUM INTO` (so a crash never leaves a
    /// half-made template under the final name). Builders are serialised by
    /// a lock file.
    pub(crate) async fn ensure_template(
        &self,
        name: &str,
        migrations: Vec<Box<dyn sea_orm_migration::MigrationTrait>>,
    ) -> Result<()> {
        let path = self.template_path(name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(format!("cannot open {}", lock_path.display())))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|err| Error::Task(err.to_string()))?
            .map_err(Error::io("cannot lock the template"))?;
        let result = self
            .build_template(&path, &dir.join(format!("{name}.building.db")), migrations)
            .await;
        let _ = lock.unlock();
        result
    }

    async fn build_template(
        &self,
        path: &Path,
        scratch: &Path,
        migrations: Vec<Box<dyn sea_orm_migration::MigrationTrait>>,
    ) -> Result<()> {
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Ok(());
        }
        let _ = std::fs::remove_file(scratch);
        let options = SqliteConnectOptions::new().filename(scratch).create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(Error::server("cannot build the template"))?;
        let db = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
        let applied = crate::migrate::apply_pending(&db, migrations, &|| true).await;
        let result = match applied {
            Err(failure) => Err(Error::MigrationFailed {
                tenant: "(template)".into(),
                database: path.display().to_string(),
                migration: failure.migration,
                message: failure.error.to_string(),
            }),
            Ok(_) => {
                let target = path.display().to_string().replace('\'', "''");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(Error::server("cannot write the template"))
            }
        };
        pool.close().await;
        let _ = std::fs::remove_file(scratch);
        result
    }

    pub(crate) async fn create_database(&self, db: &TenantDb, template: Option<&str>) -> Result<()> {
        let path = self.path(db.tenant);
        if let Some(name) = template
            && !tokio::fs::try_exists(&path).await.unwrap_or(false)
        {
            // Copy to a side name, then rename: a crash never leaves a
            // half-copied file under the tenant's name.
            let partial = path.with_extension("db.partial");
            match std::fs::copy(self.template_path(name), &partial) {
                Ok(_) => {
                    std::fs::rename(&partial, &path).map_err(Error::io(format!("cannot create {}", path.display())))?;
                    return Ok(());
                }
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    tracing::warn!(template = name, error = %err, "copying the template failed; replaying migrations");
                }
            }
        }
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
