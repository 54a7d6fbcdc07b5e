//! Database engines: where tenant databases physically live.
//!
//! One interface over PostgreSQL (a database and a login role per tenant)
//! and SQLite (a file per tenant, named by tenant id). Every operation is
//! idempotent, so the provisioner can run the same step again after a crash,
//! and acts only on databases tenantdb created: PostgreSQL databases are
//! owned by the tenant's role, whose comment marks it as tenantdb's for that
//! catalog and tenant; anything else is `Foreign` and never touched.

mod postgres;
mod sqlite;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use postgres::{PostgresEngine, TenantLogin};
pub use sqlite::SqliteEngine;

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, DatabasePrefix, RoleName, TenantId};

/// `application_name` of connections to tenant databases.
pub const TENANT_APPLICATION_NAME: &str = "tenantdb-tenant";

/// The physical identity of one tenant database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub tenant: TenantId,
    pub database: DatabaseName,
    pub role: RoleName,
}

/// Who a database on the server belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Missing,
    /// Created by tenantdb for this tenant.
    Ours,
    /// Exists, but tenantdb did not create it for this tenant.
    Foreign,
}

/// The server processes behind a tenant pool's connections (PostgreSQL
/// backend pids, recorded as each connection opens), so that closing the
/// pool can wait until the server has let them go: only then does the
/// connection budget get their room back.
#[derive(Debug, Clone, Default)]
pub struct Backends(Arc<std::sync::Mutex<Vec<i32>>>);

impl Backends {
    /// Most pids kept: a pool holds a few connections; older entries are
    /// connections long gone (idle timeout, killed).
    const KEEP: usize = 32;

    fn add(&self, pid: i32) {
        let mut pids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pids.len() >= Self::KEEP {
            pids.remove(0);
        }
        pids.push(pid);
    }

    fn pids(&self) -> Vec<i32> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How `create_database` left the tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A clone of the template: every migration of the template's version
    /// is in it.
    Cloned,
    /// A warm database (a clone of the template made ahead), claimed and
    /// opened in one step (PostgreSQL): as `Cloned`, with `open_database`
    /// and `flush` done.
    Claimed,
    /// A new empty database: the migrations must run.
    Empty,
    /// It was there already (a step run again after a crash): its state is
    /// whatever the earlier run left, so the migrations must run.
    Existing,
}

/// What is on the tenant server under this deployment's names, for
/// `doctor`: databases under the prefix or made by this catalog, the
/// catalog's roles, and its templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub databases: Vec<ServerDatabase>,
    /// Roles marked by this catalog (PostgreSQL).
    pub roles: Vec<MarkedRole>,
    /// Roles under the prefix that this catalog did not mark (PostgreSQL).
    pub foreign_roles: Vec<String>,
    pub templates: Vec<ServerTemplate>,
    /// Warm databases of this catalog (see `Engine::make_warm`).
    pub warm: Vec<WarmDatabase>,
}

/// A warm database: made from a template ahead of need, serving nobody
/// until a new tenant claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmDatabase {
    /// Its name (PostgreSQL) or file name (SQLite).
    pub name: String,
    /// The template it was made from: it is stale unless that is the
    /// current one.
    pub template: String,
}

/// A database on the tenant server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDatabase {
    pub name: String,
    /// The tenant this catalog made it for; `None` when tenantdb (this
    /// catalog) did not make it.
    pub tenant: Option<TenantId>,
    /// The owning role (PostgreSQL).
    pub owner: Option<String>,
    /// For the copy a move left in place (`--keep-source`): the server the
    /// tenant moved to, from the database's mark.
    pub moved_to: Option<uuid::Uuid>,
}

/// A login role this catalog made for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedRole {
    pub name: String,
    pub tenant: TenantId,
}

/// A template database (or file) of this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTemplate {
    pub name: String,
    /// The migration hash it was finished at; `None` for one left
    /// half-built.
    pub version: Option<String>,
}

/// The tenant server of a deployment.
#[derive(Debug, Clone)]
pub enum Engine {
    Postgres(PostgresEngine),
    Sqlite(SqliteEngine),
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Settings the catalog may record about this server (no secrets).
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Self::Postgres(pg) => pg.describe(),
            Self::Sqlite(sqlite) => sqlite.describe(),
        }
    }

    /// Whether any database by this name exists on the server. SQLite files
    /// are named by tenant id, so names exist only in the catalog there.
    pub async fn name_in_use(&self, name: &DatabaseName) -> Result<bool> {
        match self {
            Self::Postgres(pg) => pg.name_in_use(name).await,
            Self::Sqlite(_) => Ok(false),
        }
    }

    /// Who owns the database `name` (for SQLite: the tenant's file).
    pub async fn ownership(&self, db: &DatabaseSpec, name: &DatabaseName) -> Result<Ownership> {
        match self {
            Self::Postgres(pg) => pg.ownership(db, name).await,
            Self::Sqlite(sqlite) => sqlite.ownership(db).await,
        }
    }

    /// Creates the tenant's role (PostgreSQL), or updates it if it exists.
    pub async fn ensure_role(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.ensure_role(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// `ensure_role` for a new tenant, whose role should not exist yet: one
    /// round trip fewer when it does not (PostgreSQL).
    pub(crate) async fn create_role(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.create_role(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// Creates the tenant's database owned by its role, accepting no
    /// connections yet (PostgreSQL); nothing to do if it exists and is ours.
    /// With a `template` (see `ensure_template`) it is a clone of it; if
    /// cloning fails (the template is gone, or still busy after one retry)
    /// the database is made empty and the migrations replay.
    pub async fn create_database(&self, db: &DatabaseSpec, template: Option<&str>) -> Result<Created> {
        self.create_database_from(db, template, true).await
    }

    /// `create_database`, looking for a warm database of the template
    /// first only if `warm` (the deployment keeps a stock: else the look
    /// is a wasted round trip).
    pub(crate) async fn create_database_from(
        &self,
        db: &DatabaseSpec,
        template: Option<&str>,
        warm: bool,
    ) -> Result<Created> {
        match self {
            Self::Postgres(pg) => pg.create_database(db, template, warm).await,
            Self::Sqlite(sqlite) => sqlite.create_database(db, template, warm).await,
        }
    }

    /// Makes sure the template `name` holds `migrations` applied (built
    /// once, immutable, shared by all processes). Only a template this
    /// catalog marked is ever replaced: a foreign database of that name is
    /// left alone and the build refused.
    pub async fn ensure_template(
        &self,
        name: &str,
        owner: &RoleName,
        version: &str,
        migrations: Vec<Box<dyn sea_orm_migration::MigrationTrait>>,
    ) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.ensure_template(name, owner, version, migrations).await,
            Self::Sqlite(sqlite) => sqlite.ensure_template(name, migrations).await,
        }
    }

    /// Closes the database to everybody but its owner, marks it, then lets
    /// the owner connect (PostgreSQL). Idempotent.
    /// Makes the tenant's database from an export (the bytes of `file`
    /// from `offset`): PostgreSQL, an empty database opened to its owner
    /// and the archive restored as the tenant's role; SQLite, the file
    /// copied into place.
    pub(crate) async fn import(&self, db: &DatabaseSpec, file: &std::path::Path, offset: u64) -> Result<()> {
        match self {
            Self::Postgres(pg) => {
                if pg.create_database(db, None, false).await? == Created::Existing {
                    return Err(Error::AlreadyExists(format!(
                        "database '{}' exists already: an import only fills a new one",
                        db.database
                    )));
                }
                pg.open_database(db).await?;
                pg.restore_from(db, file, offset).await
            }
            Self::Sqlite(sqlite) => match sqlite.create_from(db, file, offset).await? {
                Created::Existing => Err(Error::AlreadyExists(format!(
                    "database '{}' exists already: an import only fills a new one",
                    db.database
                ))),
                _ => Ok(()),
            },
        }
    }

    /// Lets connections into the tenant's database, refused unless it is
    /// ours (PostgreSQL: closed to PUBLIC, marked and `ALLOW_CONNECTIONS
    /// true` in one transaction committed durably, so that the role and
    /// database made before it are durable too, as after `flush`).
    pub async fn open_database(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.open_database(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// `open_database` for one `create_database` just made (`Cloned` or
    /// `Empty`: created owned by the tenant's role, so certainly ours): the
    /// ownership is not looked up again. Like `open_database`, it leaves
    /// the role and database durable (as `flush`).
    pub(crate) async fn open_new_database(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.secure_database(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// Drops the tenant's database (ending its sessions first) and role.
    pub async fn drop_tenant(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.drop_tenant(db).await,
            Self::Sqlite(sqlite) => sqlite.drop_tenant(db).await,
        }
    }

    /// Drops the tenant's database only (its role stays; PostgreSQL).
    pub async fn drop_database(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.drop_database(db).await,
            Self::Sqlite(sqlite) => sqlite.drop_tenant(db).await,
        }
    }

    /// Renames `db.database` to `to`, ending the database's sessions and
    /// refusing new ones meanwhile. Finishes a half-done rename.
    pub async fn rename(&self, db: &DatabaseSpec, to: &DatabaseName) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.rename(db, to).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// Refuses the tenant's role new logins and ends its sessions
    /// (PostgreSQL; SQLite has no roles: the catalog's status is the lock).
    pub(crate) async fn lock_out(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.lock_out(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// Lets the tenant's role log in again (PostgreSQL; a missing role is
    /// left missing).
    pub(crate) async fn let_in(&self, db: &DatabaseSpec) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.let_in(db).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// What exists on the server under `prefix` and the template `stem`
    /// (see `Inventory`). Read-only.
    pub async fn inventory(&self, prefix: &DatabasePrefix, stem: &str) -> Result<Inventory> {
        match self {
            Self::Postgres(pg) => pg.inventory(prefix, stem).await,
            Self::Sqlite(sqlite) => sqlite.inventory(stem).await,
        }
    }

    /// Drops a role this catalog made for `tenant` (refuses any other).
    pub(crate) async fn drop_role(&self, tenant: TenantId, role: &RoleName) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.drop_role(tenant, role).await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// This catalog's warm databases on the server (templates under `stem`
    /// on SQLite).
    pub(crate) async fn warm_databases(&self, stem: &str) -> Result<Vec<WarmDatabase>> {
        match self {
            Self::Postgres(pg) => pg.warm_databases().await,
            Self::Sqlite(sqlite) => sqlite.warm_databases(stem),
        }
    }

    /// Makes one more warm database from `template` (owned by the template
    /// role `owner` on PostgreSQL); returns its name. `create_database`
    /// claims one before it clones.
    pub(crate) async fn make_warm(&self, template: &str, owner: &RoleName) -> Result<String> {
        match self {
            Self::Postgres(pg) => pg.make_warm(template, owner).await,
            Self::Sqlite(sqlite) => sqlite.make_warm(template).await,
        }
    }

    /// Drops a warm database found by `warm_databases` or `inventory`;
    /// `false` when it was left alone because another process is making it
    /// now (PostgreSQL).
    pub(crate) async fn drop_warm(&self, name: &str) -> Result<bool> {
        match self {
            Self::Postgres(pg) => pg.drop_warm(name).await,
            Self::Sqlite(sqlite) => sqlite.drop_warm(name).await.map(|()| true),
        }
    }

    /// Drops a template found by `inventory` (a half-built one too).
    pub(crate) async fn drop_template(&self, name: &str) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.drop_template(name).await,
            Self::Sqlite(sqlite) => sqlite.drop_template(name).await,
        }
    }

    /// Makes the DDL done so far durable before the catalog records its
    /// result (PostgreSQL runs admin DDL with asynchronous commit).
    pub async fn flush(&self) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.flush().await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    /// A pool on the tenant's database, logged in as the tenant's role.
    pub async fn connect(&self, db: &DatabaseSpec, max_connections: u32) -> Result<DatabaseConnection> {
        match self {
            Self::Postgres(pg) => pg.connect(db, max_connections).await,
            Self::Sqlite(sqlite) => sqlite.connect(db, max_connections).await,
        }
    }

    /// A tenant pool of `size` connections, logged in as the tenant's role,
    /// checked to have reached the tenant's own database. Opens one
    /// connection now; connections idle longer than
    /// `validate_after_idle` are pinged before reuse.
    pub async fn open_pool(
        &self,
        db: &DatabaseSpec,
        config: &PoolConfig,
        size: u32,
    ) -> Result<(DatabaseConnection, Backends)> {
        match self {
            Self::Postgres(pg) => pg.open_pool(db, config, size).await,
            Self::Sqlite(sqlite) => Ok((sqlite.open_pool(db, config, size).await?, Backends::default())),
        }
    }

    /// Waits (up to `max_wait`) until the server no longer has the
    /// processes of a closed pool: a closed connection's backend leaves
    /// `pg_stat_activity` a moment after the client hung up.
    pub async fn wait_closed(&self, backends: &Backends, max_wait: std::time::Duration) {
        if let Self::Postgres(pg) = self {
            pg.wait_closed(backends, max_wait).await;
        }
    }

    /// Connections tenant pools may use on this server at most, given its
    /// own limit: PostgreSQL's `max_connections` less reserved slots and
    /// tenantdb's other connections (`others`). `None` when unlimited.
    pub async fn connection_room(&self, others: u32) -> Result<Option<u32>> {
        match self {
            Self::Postgres(pg) => pg.connection_room(others).await.map(Some),
            Self::Sqlite(_) => Ok(None),
        }
    }

    /// Whether the server answers (PostgreSQL: a query on the admin pool).
    pub async fn ping(&self) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.ping().await,
            Self::Sqlite(_) => Ok(()),
        }
    }

    pub async fn close(&self) {
        if let Self::Postgres(pg) = self {
            pg.close().await;
        }
    }
}
