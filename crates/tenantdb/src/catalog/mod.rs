//! The catalog (master database): users, tokens, tenants, memberships,
//! subscriptions, database servers, tenant databases and settings.
//!
//! `Catalog::connect` builds the sqlx pool itself (so tenantdb controls its
//! size and `application_name`), wraps it as a SeaORM connection, and
//! migrates the schema under a lock so that several processes starting at
//! once apply each migration exactly once.

mod entities;
mod instances;
mod migrations;
mod repos;
mod runs;
mod tenant_databases;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    SqlxPostgresConnector, SqlxSqliteConnector,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use uuid::Uuid;

pub use entities::instances as instance;
pub use entities::{
    DbStatus, MemberRole, SubscriptionStatus, TenantStatus, api_tokens, catalog_info, database_servers, memberships,
    migration_runs, settings, subscriptions, tenant_databases as tenant_database, tenants, users,
};
pub use instances::{Beat, InstanceIdentity, Instances};
pub use repos::{ApiTokens, Memberships, NewServer, Servers, Settings, Subscriptions, Tenants, Users};
pub use runs::{MigrationRun, MigrationRuns, RunCounts};
pub use tenant_databases::{Lease, TenantDatabases, TenantExtras};

use crate::error::{Error, Result};
use crate::file_lock::FileLock;
use crate::pool_options;
use crate::private_files;

/// The catalog's own migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
    migrations::all()
}

/// `application_name` of catalog connections, so operators can count them
/// in `pg_stat_activity`.
pub const CATALOG_APPLICATION_NAME: &str = "tenantdb-catalog";
/// Key of the advisory lock that serialises catalog migrations on PostgreSQL
/// (the first eight bytes of "tenantdb").
const MIGRATION_LOCK_KEY: i64 = 0x7465_6e61_6e74_6462;

/// The PostgreSQL channel a routing change is notified on (notifications
/// stay within the catalog's database).
pub(crate) const CHANGES_CHANNEL: &str = "tenantdb_catalog_changes";

/// The PostgreSQL channel an instance tells the others on that the
/// budget's shares should be looked at now (it joined, gave back, or left):
/// see `Instances::beat`.
pub(crate) const INSTANCES_CHANNEL: &str = "tenantdb_instances";

/// Counts catalog writes that change routing, in this process. Bumping it
/// also bumps `catalog_info.generation`, which other processes poll.
#[derive(Debug, Default)]
pub struct ChangeStamp {
    local: AtomicU64,
    /// The catalog lives on the tenant server itself (one write-ahead
    /// log): a row inserted before a tenant's role and database is then
    /// made durable by the same flush that makes them durable. Only for
    /// tenants on that server: the server id, when there is one.
    shares_log: std::sync::Mutex<Option<uuid::Uuid>>,
}

impl ChangeStamp {
    /// Records a routing change: in the catalog for other processes (after
    /// the change itself is committed) and locally for this one.
    pub(crate) async fn bump(&self, db: &impl ConnectionTrait) -> Result<()> {
        Self::record(db).await?;
        self.mark();
        Ok(())
    }

    /// Bumps the catalog's generation inside the caller's transaction, so
    /// the change and its bump commit together (one commit, one flush).
    /// The caller calls `mark` once the transaction committed: marking
    /// earlier could let a reader in this process cache the old state under
    /// the new mark.
    /// On PostgreSQL it also notifies `CHANGES_CHANNEL`, delivered to the
    /// other processes' listeners when (and only if) the transaction
    /// commits: they look at the generation at once instead of at their
    /// next poll.
    pub(crate) async fn record(txn: &impl ConnectionTrait) -> Result<()> {
        Self::record_with(txn, "").await
    }

    /// `record` for a transaction whose commit need not wait for the disk
    /// (PostgreSQL: `synchronous_commit = off` for it, set in the same
    /// round trip). The caller says why that is safe.
    pub(crate) async fn record_without_waiting(txn: &impl ConnectionTrait) -> Result<()> {
        Self::record_with(txn, "SET LOCAL synchronous_commit = off; ").await
    }

    async fn record_with(txn: &impl ConnectionTrait, postgres_first: &str) -> Result<()> {
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // One round trip (sign-up time is mostly round trips).
            txn.execute_unprepared(&format!(
                "{postgres_first}UPDATE catalog_info SET generation = generation + 1 WHERE id = 1; \
                 NOTIFY {CHANGES_CHANNEL}"
            ))
            .await?;
            return Ok(());
        }
        catalog_info::Entity::update_many()
            .col_expr(
                catalog_info::Column::Generation,
                Expr::col(catalog_info::Column::Generation).add(1),
            )
            .filter(catalog_info::Column::Id.eq(1))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Whether the catalog shares its write-ahead log with tenant server
    /// `server`.
    pub(crate) fn shares_log_with(&self, server: uuid::Uuid) -> bool {
        *self.shares_log.lock().unwrap_or_else(|e| e.into_inner()) == Some(server)
    }

    /// Records that something changed elsewhere (seen by polling).
    pub fn mark(&self) {
        self.local.fetch_add(1, Ordering::Release);
    }

    /// Moves whenever this process wrote, or saw, a routing change: caches
    /// tag entries with it and treat older ones as stale.
    pub fn current(&self) -> u64 {
        self.local.load(Ordering::Acquire)
    }
}

/// The master database and its repositories.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    id: Uuid,
    changes: Arc<ChangeStamp>,
    /// Per server, counts the `INSTANCES_CHANNEL` notifications this
    /// process heard about it.
    instance_news: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, tokio::sync::watch::Sender<u64>>>>,
}

impl Catalog {
    /// Connects, migrates the catalog schema (serialised between processes)
    /// and reads the catalog's id.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self> {
        let url = url.expose_secret();
        let max_connections = Ord::max(max_connections, 2);
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(Error::server("invalid catalog SQLite URL"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            if on_disk(url) {
                // Made here rather than by SQLite: owner-only (private_files).
                let file = options.get_filename();
                if let Some(dir) = file.parent() {
                    private_files::create_dir_all(dir)
                        .map_err(Error::io(format!("cannot create {}", dir.display())))?;
                }
                private_files::create_file(file).map_err(Error::io(format!("cannot create {}", file.display())))?;
            }
            // Processes opening a new catalog file together: switching it
            // to WAL takes an exclusive lock, and SQLite answers "database
            // is locked" at once (no busy wait) to all but one of them.
            let mut attempt = 0;
            let pool = loop {
                match pool_options::sqlite_job(max_connections)
                    .connect_with(options.clone())
                    .await
                {
                    Err(err) if attempt < 50 && sqlite_busy(&err) => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => break other.map_err(Error::server("cannot open the catalog SQLite database"))?,
                }
            };
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(Error::server("invalid catalog PostgreSQL URL"))?
                .application_name(CATALOG_APPLICATION_NAME);
            let pool = pool_options::postgres_job(max_connections)
                .connect_with(options)
                .await
                .map_err(Error::server("cannot connect to the catalog PostgreSQL database"))?;
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        };
        let id = migrate(&db).await?;
        Ok(Self {
            db,
            id,
            changes: Arc::new(ChangeStamp::default()),
            instance_news: Arc::default(),
        })
    }

    /// The SeaORM connection, for queries the repositories do not cover.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// This catalog's id; every database it creates is marked with it.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The catalog's own database name on PostgreSQL (never a tenant).
    pub async fn postgres_database_name(&self) -> Result<Option<String>> {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(None);
        }
        let name: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(self.db.get_postgres_connection_pool())
            .await
            .map_err(Error::server("cannot read the catalog's database name"))?;
        Ok(Some(name))
    }

    /// Routing changes this process wrote or saw (see [`ChangeStamp`]).
    pub fn changes(&self) -> &ChangeStamp {
        &self.changes
    }

    /// Records that the catalog shares tenant server `server`'s log (see
    /// `ChangeStamp::shares_log`).
    pub(crate) fn set_shares_log_with(&self, server: uuid::Uuid) {
        *self.changes.shares_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
    }

    /// The catalog-wide generation counter (one cheap query).
    pub async fn generation(&self) -> Result<i64> {
        let info = catalog_info::Entity::find_by_id(1).one(&self.db).await?;
        Ok(info.map_or(0, |row| row.generation))
    }

    /// The template the catalog points new tenant databases at.
    pub async fn template(&self) -> Result<Option<String>> {
        let info = catalog_info::Entity::find_by_id(1).one(&self.db).await?;
        Ok(info.and_then(|row| row.template))
    }

    /// The tenant migration set this catalog serves (see
    /// `catalog_info.tenant_migrations`).
    pub async fn tenant_migrations(&self) -> Result<Option<String>> {
        let info = catalog_info::Entity::find_by_id(1).one(&self.db).await?;
        Ok(info.and_then(|row| row.tenant_migrations))
    }

    /// Records `set` as the tenant migration set, if the catalog still
    /// records `expected`; false when another process changed it first.
    pub async fn record_tenant_migrations(&self, expected: Option<&str>, set: &str) -> Result<bool> {
        let expected = match expected {
            Some(found) => catalog_info::Column::TenantMigrations.eq(found),
            None => catalog_info::Column::TenantMigrations.is_null(),
        };
        let result = catalog_info::Entity::update_many()
            .col_expr(catalog_info::Column::TenantMigrations, Expr::value(set.to_owned()))
            .filter(catalog_info::Column::Id.eq(1))
            .filter(expected)
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Points the catalog at a (built) template.
    pub async fn set_template(&self, name: Option<&str>) -> Result<()> {
        catalog_info::Entity::update_many()
            .col_expr(catalog_info::Column::Template, Expr::value(name.map(str::to_owned)))
            .filter(catalog_info::Column::Id.eq(1))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The `users` table.
    pub fn users(&self) -> Users<'_> {
        Users::new(&self.db, &self.changes)
    }
    /// The `api_tokens` table.
    pub fn tokens(&self) -> ApiTokens<'_> {
        ApiTokens::new(&self.db, &self.changes)
    }
    /// The `tenants` table.
    pub fn tenants(&self) -> Tenants<'_> {
        Tenants::new(&self.db, &self.changes)
    }
    /// The `memberships` table.
    pub fn memberships(&self) -> Memberships<'_> {
        Memberships::new(&self.db, &self.changes)
    }
    /// The `subscriptions` table.
    pub fn subscriptions(&self) -> Subscriptions<'_> {
        Subscriptions::new(&self.db, &self.changes)
    }
    /// The `database_servers` table.
    pub fn servers(&self) -> Servers<'_> {
        Servers::new(&self.db, &self.changes)
    }
    /// The `instances` table: processes sharing the servers' budgets.
    pub fn instances(&self) -> Instances<'_> {
        Instances::new(&self.db)
    }

    /// Changes each time an instance says the shares of `server` should be
    /// looked at now (heard on `INSTANCES_CHANNEL`; never on SQLite, where
    /// the heartbeats' own interval is the bound).
    pub(crate) fn instance_news(&self, server: Uuid) -> tokio::sync::watch::Receiver<u64> {
        let mut news = self.instance_news.lock().unwrap_or_else(|e| e.into_inner());
        news.entry(server)
            .or_insert_with(|| tokio::sync::watch::Sender::new(0))
            .subscribe()
    }

    /// A notification on `INSTANCES_CHANNEL` was heard; `payload` is the
    /// server's id.
    pub(crate) fn heard_instance_news(&self, payload: &str) {
        let Ok(server) = payload.parse::<Uuid>() else {
            return;
        };
        let news = self.instance_news.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = news.get(&server) {
            sender.send_modify(|heard| *heard += 1);
        }
    }
    /// The `migration_runs` table (fleet migration runs).
    pub fn migration_runs(&self) -> MigrationRuns<'_> {
        MigrationRuns::new(&self.db)
    }
    /// The `tenant_databases` table: the status machine and the leases.
    pub fn tenant_databases(&self) -> TenantDatabases<'_> {
        TenantDatabases::new(&self.db, &self.changes)
    }
    /// The `settings` table (global configuration).
    pub fn settings(&self) -> Settings<'_> {
        Settings::new(&self.db, &self.changes)
    }

    /// Closes the catalog's connection pool; a failure is logged, not returned.
    pub async fn close(&self) {
        if let Err(err) = self.db.clone().close().await {
            tracing::warn!(error = %err, "closing the catalog pool failed");
        }
    }
}

/// Applies the catalog migrations under a cross-process lock and returns the
/// catalog id (made by the first process that migrates).
async fn migrate(db: &DatabaseConnection) -> Result<Uuid> {
    let _lock = MigrationLock::acquire(db).await?;
    crate::migrate::apply_pending(db, migrations::all(), &|| true)
        .await
        .map_err(|failure| {
            Error::Config(format!(
                "catalog migration '{}' failed: {}",
                failure.migration, failure.error
            ))
        })?;
    if let Some(info) = catalog_info::Entity::find_by_id(1).one(db).await? {
        return Ok(info.catalog_id);
    }
    let id = Uuid::now_v7();
    catalog_info::ActiveModel {
        id: Set(1),
        catalog_id: Set(id),
        generation: Set(0),
        template: Set(None),
        tenant_migrations: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(id)
}

/// Held while the catalog migrates. PostgreSQL: a session advisory lock on a
/// connection taken out of the pool (a crashed process's lock dies with its
/// connection). SQLite: an exclusive lock on a file beside the database.
enum MigrationLock {
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    File { _held: FileLock },
    None,
}

impl MigrationLock {
    async fn acquire(db: &DatabaseConnection) -> Result<Self> {
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let mut conn = db
                    .get_postgres_connection_pool()
                    .acquire()
                    .await
                    .map_err(Error::server("cannot take the catalog migration lock"))?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .map_err(Error::server("cannot take the catalog migration lock"))?;
                Ok(Self::Postgres(conn))
            }
            _ => {
                let Some(path) = sqlite_lock_path(db) else {
                    return Ok(Self::None);
                };
                Ok(Self::File {
                    _held: FileLock::acquire(&path).await?,
                })
            }
        }
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        match self {
            Self::Postgres(conn) => {
                // Unlocking needs a round trip; closing the connection
                // releases the lock just as surely and cannot be forgotten.
                conn.close_on_drop();
            }
            // Dropping a file lock releases it.
            Self::File { .. } | Self::None => {}
        }
    }
}

fn sqlite_lock_path(db: &DatabaseConnection) -> Option<PathBuf> {
    let options = db.get_sqlite_connection_pool().connect_options();
    let file = options.get_filename();
    let name = file.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return None;
    }
    let mut lock = file.as_os_str().to_owned();
    lock.push(".migrate-lock");
    Some(PathBuf::from(lock))
}

/// Whether a SQLite URL names a file rather than an in-memory database
/// (read the way sqlx reads it).
fn on_disk(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    !database.is_empty() && database != ":memory:" && !params.split('&').any(|param| param == "mode=memory")
}

/// SQLITE_BUSY or SQLITE_LOCKED (any extended code of them).
fn sqlite_busy(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_urls_are_on_disk() {
        assert!(on_disk("sqlite://data/catalog.db?mode=rwc"));
        assert!(on_disk("sqlite:///data/catalog.db"));
        assert!(on_disk("sqlite:catalog.db"));
        assert!(!on_disk("sqlite::memory:"));
        assert!(!on_disk("sqlite://:memory:"));
        assert!(!on_disk("sqlite://catalog?mode=memory"));
        assert!(!on_disk("sqlite://catalog?cache=shared&mode=memory"));
    }
}
