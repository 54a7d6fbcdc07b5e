//! Migrations: the runner shared by the catalog and the tenant databases, and
//! the tenant migration set the application supplies.
//!
//! Why not `MigratorTrait::up`: sea-orm-migration wraps each migration in a
//! transaction only on PostgreSQL. A failed SQLite migration would leave half
//! its DDL behind. This runner applies every migration in its own
//! transaction on both engines (SQLite DDL is transactional too), records it
//! in SeaORM's own `seaql_migrations` table in that transaction, and so
//! leaves the schema at its last good version when one fails. A migration
//! that opts out (`use_transaction() == Some(false)`, e.g. for
//! `CREATE INDEX CONCURRENTLY`) runs outside a transaction, as SeaORM does.
//!
//! The runner takes no lock: callers hold the tenant's lease (tenant
//! databases) or the catalog's migration lock.

use std::collections::HashSet;
use std::fmt;

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Schema, Set, TransactionTrait,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager, seaql_migrations};

/// The list of migrations of one schema, oldest first.
pub type MigrationList = fn() -> Vec<Box<dyn MigrationTrait>>;

/// The tenant schema, as a list of SeaORM migrations supplied by the
/// application (usually `TenantMigrations::of::<my_app::Migrator>()`).
#[derive(Clone, Copy)]
pub struct TenantMigrations {
    list: MigrationList,
}

impl TenantMigrations {
    /// The migrations of a SeaORM `MigratorTrait`: the usual way to supply the
    /// tenant schema.
    pub fn of<M: MigratorTrait>() -> Self {
        Self { list: M::migrations }
    }

    /// The migrations a function returns, oldest first.
    pub fn from_fn(list: MigrationList) -> Self {
        Self { list }
    }

    /// The tenant migrations, oldest first.
    pub fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        (self.list)()
    }

    /// The migration names, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.migrations().iter().map(|m| m.name().to_owned()).collect()
    }

    /// The version a fully migrated tenant has: the last migration's name.
    pub fn latest_version(&self) -> Option<String> {
        self.names().pop()
    }

    /// The set's identity as the catalog records it: the migration names,
    /// oldest first, one per line.
    pub fn identity(&self) -> String {
        self.names().join("\n")
    }
}

/// How a program's tenant migration set stands against the one the catalog
/// records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetMatch {
    /// The catalog records none yet.
    Unrecorded,
    /// The same migrations.
    Same,
    /// The catalog's migrations, then more: a newer program.
    Extends,
    /// Neither: another application, or an older program.
    Other,
}

/// Compares two set identities (see [`TenantMigrations::identity`]).
pub(crate) fn match_sets(recorded: Option<&str>, ours: &str) -> SetMatch {
    let Some(recorded) = recorded else {
        return SetMatch::Unrecorded;
    };
    if recorded == ours {
        return SetMatch::Same;
    }
    let recorded: Vec<&str> = recorded.split('\n').filter(|n| !n.is_empty()).collect();
    let ours: Vec<&str> = ours.split('\n').filter(|n| !n.is_empty()).collect();
    if ours.len() > recorded.len() && ours[..recorded.len()] == recorded[..] {
        SetMatch::Extends
    } else {
        SetMatch::Other
    }
}

/// A set identity in a few words, for error messages.
pub(crate) fn describe_set(identity: &str) -> String {
    let names: Vec<&str> = identity.split('\n').filter(|n| !n.is_empty()).collect();
    match names.last() {
        None => "no migrations".to_owned(),
        Some(last) => format!("{} migrations ending in '{last}'", names.len()),
    }
}

impl fmt::Debug for TenantMigrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantMigrations")
            .field("latest_version", &self.latest_version())
            .finish()
    }
}

/// What a run applied and where the schema now stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Name of the last applied migration, `None` for an empty schema.
    pub version: Option<String>,
    /// The migrations this run applied, in order.
    pub applied: Vec<String>,
}

/// A migration failed; everything before it stays applied.
#[derive(Debug)]
pub(crate) struct MigrationFailure {
    pub migration: String,
    /// The version the schema is left at.
    pub version: Option<String>,
    /// Whether this run applied any migration before failing (only then
    /// is `version` news to the caller).
    pub applied_any: bool,
    pub error: DbErr,
}

/// Applies every pending migration of `list`, each in its own transaction,
/// checking `keep_going` before each one (the caller's lock still held).
/// Refuses a database that holds migrations `list` does not know: it was
/// migrated by newer code, and recording an older version would be a lie.
pub(crate) async fn apply_pending(
    db: &DatabaseConnection,
    list: Vec<Box<dyn MigrationTrait>>,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Result<Applied, MigrationFailure> {
    let fail = |migration: &str, version: Option<String>, applied_any: bool| {
        let migration = migration.to_owned();
        move |error| MigrationFailure {
            migration,
            version,
            applied_any,
            error,
        }
    };
    install(db)
        .await
        .map_err(fail("(install migration table)", None, false))?;
    let done = applied_names(db)
        .await
        .map_err(fail("(read migration table)", None, false))?;
    let mut version = current_version(&list, &done);
    let known: HashSet<&str> = list.iter().map(|m| m.name()).collect();
    if let Some(unknown) = done.iter().find(|name| !known.contains(name.as_str())) {
        return Err(MigrationFailure {
            migration: unknown.clone(),
            version,
            applied_any: false,
            error: DbErr::Migration(format!(
                "the database has migration '{unknown}' that this program does not know: it was migrated by newer code"
            )),
        });
    }

    let mut applied = Vec::new();
    for migration in &list {
        let name = migration.name();
        if done.contains(name) {
            continue;
        }
        if !keep_going() {
            return Err(MigrationFailure {
                migration: name.to_owned(),
                version,
                applied_any: !applied.is_empty(),
                error: DbErr::Migration("stopped: the tenant's lease was lost".into()),
            });
        }
        tracing::debug!(migration = name, "applying migration");
        apply_one(db, migration.as_ref())
            .await
            .map_err(fail(name, version.clone(), !applied.is_empty()))?;
        version = Some(name.to_owned());
        applied.push(name.to_owned());
    }
    Ok(Applied { version, applied })
}

/// The names of the migrations applied to a database, read without
/// changing anything (empty when it has no migration table).
pub(crate) async fn read_applied(db: &DatabaseConnection) -> Result<HashSet<String>, DbErr> {
    if !SchemaManager::new(db).has_table("seaql_migrations").await? {
        return Ok(HashSet::new());
    }
    applied_names(db).await
}

async fn install(db: &DatabaseConnection) -> Result<(), DbErr> {
    let mut stmt = Schema::new(db.get_database_backend()).create_table_from_entity(seaql_migrations::Entity);
    stmt.if_not_exists();
    db.execute(&stmt).await.map(drop)
}

async fn applied_names(db: &DatabaseConnection) -> Result<HashSet<String>, DbErr> {
    let rows = seaql_migrations::Entity::find().all(db).await?;
    Ok(rows.into_iter().map(|row| row.version).collect())
}

/// The last migration of the list that is applied. Migrations are applied in
/// order, so that is the schema's version.
fn current_version(list: &[Box<dyn MigrationTrait>], done: &HashSet<String>) -> Option<String> {
    list.iter()
        .rev()
        .map(|m| m.name())
        .find(|name| done.contains(*name))
        .map(str::to_owned)
}

async fn apply_one(db: &DatabaseConnection, migration: &dyn MigrationTrait) -> Result<(), DbErr> {
    let record = seaql_migrations::ActiveModel {
        version: Set(migration.name().to_owned()),
        applied_at: Set(chrono::Utc::now().timestamp()),
    };
    if migration.use_transaction() == Some(false) {
        migration.up(&SchemaManager::new(db)).await?;
        record.insert(db).await?;
        return Ok(());
    }
    let txn = db.begin().await?;
    migration.up(&SchemaManager::new(&txn)).await?;
    record.insert(&txn).await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_matches_itself_an_extension_or_nothing() {
        assert_eq!(match_sets(None, "a\nb"), SetMatch::Unrecorded);
        assert_eq!(match_sets(Some("a\nb"), "a\nb"), SetMatch::Same);
        assert_eq!(match_sets(Some("a\nb"), "a\nb\nc"), SetMatch::Extends);
        assert_eq!(match_sets(Some(""), "a"), SetMatch::Extends);
        // An older program, another application, a reordered set.
        assert_eq!(match_sets(Some("a\nb\nc"), "a\nb"), SetMatch::Other);
        assert_eq!(match_sets(Some("a\nb"), "x\ny\nz"), SetMatch::Other);
        assert_eq!(match_sets(Some("a\nb"), "b\na\nc"), SetMatch::Other);
        assert_eq!(match_sets(Some("a"), "ab"), SetMatch::Other);
    }

    #[test]
    fn sets_are_described_by_size_and_last_name() {
        assert_eq!(describe_set(""), "no migrations");
        assert_eq!(describe_set("m1\nm2"), "2 migrations ending in 'm2'");
    }
}
