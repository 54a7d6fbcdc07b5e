//! SQLite: one file per tenant, `<dir>/<tenant id>.db`, in WAL mode.
//!
//! Files are named by tenant id, never by database name: a rename changes
//! only the catalog, because moving a file that another process has open
//! corrupts it. Drop removes the `-wal` and `-shm` files too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, SqlxSqliteConnector};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use super::{Created, DatabaseSpec, Inventory, Ownership, ServerDatabase, ServerTemplate, WarmDatabase};
use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::file_lock::FileLock;
use crate::names::TenantId;
use crate::pool_options;
use crate::private_files;

#[derive(Debug, Clone)]
pub struct SqliteEngine {
    dir: Arc<PathBuf>,
}

impl SqliteEngine {
    /// Uses (and creates) `dir` for tenant files.
    pub fn open(dir: &Path) -> Result<Self> {
        private_files::create_dir_all(dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
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

    pub(crate) async fn ownership(&self, db: &DatabaseSpec) -> Result<Ownership> {
        let path = self.path(db.tenant);
        let exists = tokio::fs::try_exists(&path)
            .await
            .map_err(Error::io(format!("cannot check {}", path.display())))?;
        Ok(if exists { Ownership::Ours } else { Ownership::Missing })
    }

    /// The directory of tenant files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where templates live: beside the tenant directory, never in it.
    pub fn template_dir(&self) -> PathBuf {
        let mut dir = self.dir.as_os_str().to_owned();
        dir.push("-templates");
        PathBuf::from(dir)
    }

    fn template_path(&self, name: &str) -> PathBuf {
        self.template_dir().join(format!("{name}.db"))
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
        private_files::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let _lock = FileLock::acquire(&dir.join(format!("{name}.lock"))).await?;
        self.build_template(&path, &dir.join(format!("{name}.building.db")), migrations)
            .await
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
        private_files::create_file(scratch).map_err(Error::io(format!("cannot create {}", scratch.display())))?;
        let options = SqliteConnectOptions::new().filename(scratch);
        let pool = pool_options::sqlite_job(1)
            .connect_with(options)
            .await
            .map_err(Error::server("cannot build the template"))?;
        crate::faults::reached(crate::faults::Step::TemplateCreated);
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
                crate::faults::reached(crate::faults::Step::TemplateMigrated);
                // VACUUM INTO writes in place: write a side file, then
                // rename it, so the final name only ever holds a whole one.
                // The side file is made owner-only first: VACUUM INTO fills
                // an empty file it is given.
                let written = path.with_extension("vacuum.db");
                let _ = std::fs::remove_file(&written);
                let target = written.display().to_string().replace('\'', "''");
                let vacuum = match private_files::create_file(&written) {
                    Ok(_) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
                        .execute(&pool)
                        .await
                        .map(drop)
                        .map_err(Error::server("cannot write the template")),
                    Err(err) => Err(Error::io(format!("cannot create {}", written.display()))(err)),
                };
                vacuum.and_then(|()| {
                    std::fs::rename(&written, path).map_err(Error::io(format!("cannot write {}", path.display())))
                })
            }
        };
        pool.close().await;
        let _ = std::fs::remove_file(scratch);
        result
    }

    /// Tenant files are `<tenant id>.db` (with their `-wal` and `-shm`);
    /// anything else in the directory is somebody else's. Templates are
    /// `<stem><hash>.db` in the template directory; a `.building.db` file
    /// is a build that did not finish.
    pub(crate) async fn inventory(&self, stem: &str) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        for name in list_dir(&self.dir)? {
            // A database's WAL files, and a copy cut short by a crash
            // (made again by the next create).
            if name.ends_with(".db-wal") || name.ends_with(".db-shm") || name.ends_with(".db.partial") {
                continue;
            }
            let tenant = name.strip_suffix(".db").and_then(|id| TenantId::parse(id).ok());
            inventory.databases.push(ServerDatabase {
                moved_to: None,
                name,
                tenant,
                owner: None,
            });
        }
        let template_dir = self.template_dir();
        if template_dir.exists() {
            for name in list_dir(&template_dir)? {
                let Some(rest) = name.strip_prefix(stem) else { continue };
                let half_built = rest
                    .strip_suffix(".building.db")
                    .or_else(|| rest.strip_suffix(".vacuum.db"));
                if let Some(hash) = half_built {
                    inventory.templates.push(ServerTemplate {
                        name: format!("{stem}{hash}"),
                        version: None,
                    });
                } else if let Some(hash) = rest.strip_suffix(".db") {
                    inventory.templates.push(ServerTemplate {
                        name: format!("{stem}{hash}"),
                        version: Some(hash.to_owned()),
                    });
                }
            }
        }
        inventory.databases.sort_by(|a, b| a.name.cmp(&b.name));
        inventory.templates.sort_by(|a, b| a.name.cmp(&b.name));
        inventory.warm = self.warm_databases(stem)?;
        Ok(inventory)
    }

    /// Where warm databases live: beside the tenant directory.
    fn warm_dir(&self) -> PathBuf {
        let mut dir = self.dir.as_os_str().to_owned();
        dir.push("-warm");
        PathBuf::from(dir)
    }

    /// The warm files (`<template>.<6 hex>.db`) of templates under `stem`;
    /// a copy a crash cut short (`.db.partial`) has no template (stale).
    pub(crate) fn warm_databases(&self, stem: &str) -> Result<Vec<WarmDatabase>> {
        let dir = self.warm_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut warm = Vec::new();
        for name in list_dir(&dir)? {
            if !name.starts_with(stem) {
                continue;
            }
            let template = match name.strip_suffix(".db") {
                Some(rest) => rest
                    .rsplit_once('.')
                    .map(|(template, _)| template.to_owned())
                    .unwrap_or_default(),
                None => String::new(),
            };
            warm.push(WarmDatabase { name, template });
        }
        warm.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(warm)
    }

    /// Copies the template into one more warm file; returns its name.
    pub(crate) async fn make_warm(&self, template: &str) -> Result<String> {
        let dir = self.warm_dir();
        private_files::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let name = format!("{template}.{:06x}.db", rand::random::<u32>() & 0xff_ffff);
        let path = dir.join(&name);
        let partial = path.with_extension("db.partial");
        let source = self.template_path(template);
        let copied = tokio::task::spawn_blocking(move || private_files::copy(&source, &partial).map(|()| partial))
            .await
            .map_err(|err| Error::Task(err.to_string()))?;
        let partial = copied.map_err(Error::io(format!("cannot make warm database {}", path.display())))?;
        std::fs::rename(&partial, &path).map_err(Error::io(format!("cannot make warm database {}", path.display())))?;
        Ok(name)
    }

    /// Moves a warm file of `template` to the tenant's file name (a rename:
    /// only one claimer of a file can succeed). `false` when none is left.
    fn claim_warm(&self, db: &DatabaseSpec, template: &str) -> bool {
        let dir = self.warm_dir();
        let Ok(names) = list_dir(&dir) else { return false };
        let prefix = format!("{template}.");
        for name in names.iter().filter(|n| n.starts_with(&prefix) && n.ends_with(".db")) {
            match std::fs::rename(dir.join(name), self.path(db.tenant)) {
                Ok(()) => return true,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    tracing::warn!(tenant.id = %db.tenant, warm = %name, error = %err, "claiming a warm database failed");
                    return false;
                }
            }
        }
        false
    }

    /// Removes a warm file found by `warm_databases`.
    pub(crate) async fn drop_warm(&self, name: &str) -> Result<()> {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::Config(format!("'{name}' is not a warm database")));
        }
        let file = self.warm_dir().join(name);
        match tokio::fs::remove_file(&file).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(Error::io(format!("cannot remove {}", file.display()))(err)),
        }
    }

    /// Removes a template file (and a half-built one of that name).
    pub(crate) async fn drop_template(&self, name: &str) -> Result<()> {
        let path = self.template_path(name);
        let building = path.with_extension("building.db");
        let written = path.with_extension("vacuum.db");
        for file in [path, building, written] {
            match tokio::fs::remove_file(&file).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("cannot remove {}", file.display()))(err)),
            }
        }
        Ok(())
    }

    pub(crate) async fn create_database(
        &self,
        db: &DatabaseSpec,
        template: Option<&str>,
        warm: bool,
    ) -> Result<Created> {
        let path = self.path(db.tenant);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Created::Existing);
        }
        if let Some(name) = template
            && warm
            && self.claim_warm(db, name)
        {
            return Ok(Created::Cloned);
        }
        if let Some(name) = template {
            // Copy to a side name, then rename: a crash never leaves a
            // half-copied file under the tenant's name.
            let partial = path.with_extension("db.partial");
            match private_files::copy(&self.template_path(name), &partial) {
                Ok(()) => {
                    std::fs::rename(&partial, &path).map_err(Error::io(format!("cannot create {}", path.display())))?;
                    return Ok(Created::Cloned);
                }
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    tracing::warn!(template = name, error = %err, "copying the template failed; replaying migrations");
                }
            }
        }
        // An empty file is an empty database: made here, it is owner-only
        // (and so are the WAL files SQLite makes beside it). Opening switches
        // it to WAL, which SQLite records in the file itself.
        private_files::create_file(&path).map_err(Error::io(format!("cannot create {}", path.display())))?;
        let pool = pool_options::sqlite_job(1)
            .connect_with(self.options(db.tenant))
            .await
            .map_err(Error::server(format!("cannot create database '{}'", db.database)))?;
        pool.close().await;
        Ok(Created::Empty)
    }

    pub(crate) async fn drop_tenant(&self, db: &DatabaseSpec) -> Result<()> {
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

    pub(crate) async fn open_pool(
        &self,
        db: &DatabaseSpec,
        config: &PoolConfig,
        size: u32,
    ) -> Result<DatabaseConnection> {
        let pool = pool_options::tenant::<Sqlite>(config, size)
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

    /// Makes the tenant's database from an export's SQLite file (the bytes
    /// of `file` from `offset`), unless it exists; copied under a side name
    /// and renamed, owner-only.
    pub(crate) async fn create_from(&self, db: &DatabaseSpec, file: &Path, offset: u64) -> Result<Created> {
        use std::io::{Read, Seek, Write};
        let path = self.path(db.tenant);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Created::Existing);
        }
        let partial = path.with_extension("db.partial");
        let copied = (|| -> std::io::Result<()> {
            let mut from = std::fs::File::open(file)?;
            from.seek(std::io::SeekFrom::Start(offset))?;
            let mut header = [0u8; 16];
            from.read_exact(&mut header)?;
            if &header != b"SQLite format 3\0" {
                return Err(std::io::Error::other("the export does not hold a SQLite database"));
            }
            from.seek(std::io::SeekFrom::Start(offset))?;
            let _ = std::fs::remove_file(&partial);
            private_files::create_file(&partial)?;
            let mut to = std::fs::OpenOptions::new().write(true).open(&partial)?;
            std::io::copy(&mut from, &mut to)?;
            to.flush()?;
            to.sync_all()
        })();
        if let Err(err) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::Config(format!("cannot import {}: {err}", file.display())));
        }
        std::fs::rename(&partial, &path).map_err(Error::io(format!("cannot create {}", path.display())))?;
        Ok(Created::Cloned)
    }

    /// Writes a consistent copy of the tenant's database to `to` (a new
    /// file; `VACUUM INTO`, which readers and writers do not wait for).
    pub(crate) async fn snapshot_to(&self, db: &DatabaseSpec, to: &Path) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect_with(&self.options(db.tenant))
            .await
            .map_err(Error::server(format!("cannot open database '{}'", db.database)))?;
        let target = to.to_string_lossy().replace('\'', "''");
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(Error::server(format!("cannot copy database '{}'", db.database)));
        let _ = conn.close().await;
        result
    }

    pub(crate) async fn connect(&self, db: &DatabaseSpec, max_connections: u32) -> Result<DatabaseConnection> {
        // No create_if_missing: a missing file is an error, never a silent
        // new empty database.
        let pool = pool_options::sqlite_job(max_connections)
            .connect_with(self.options(db.tenant))
            .await
            .map_err(Error::server(format!("cannot open database '{}'", db.database)))?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    }
}

/// The file names in `dir`.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("cannot list {}", dir.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("cannot list {}", dir.display())))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}
