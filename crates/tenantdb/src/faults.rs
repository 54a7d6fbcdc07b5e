//! Fault points: the named places between two steps of an operation where
//! a process may die, so that tests can kill it there and check that the
//! next instance finishes the work (see `tests/core/crash_points.rs`).
//!
//! A leaf module: it imports nothing from the crate. Two hooks use it:
//! `Provisioner::crash_after` stops one operation of one provisioner with
//! an error (in-process tests), and [`abort_at`] makes the whole process
//! abort at a point (`std::process::abort`: no destructor, no cleanup, no
//! lease released), as a `kill -9` would.

use std::sync::Mutex;

/// A point between two steps of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sea_orm::EnumIter)]
#[non_exhaustive]
pub enum Step {
    /// create: the tenant and its PROVISIONING row are in the catalog.
    RowInserted,
    /// create: the tenant's role exists.
    RoleCreated,
    /// create: the database exists, accepting no connections yet.
    DatabaseCreated,
    /// create: the database is closed to everybody but its owner, who may
    /// now connect.
    DatabaseOpened,
    /// create: the migrations ran; the row is not ACTIVE yet.
    Migrated,
    /// retry: the FAILED row is PROVISIONING again, under our lease.
    RetryClaimed,
    /// rename: the row is RENAMING with the new name pending.
    RenameClaimed,
    /// rename: this process's pools are closed; the database not renamed.
    RenameDrained,
    /// rename: the database has its new name; the row still the old one.
    DatabaseRenamed,
    /// delete: the row is DELETING.
    DeleteClaimed,
    /// delete: the database is gone, the role not yet.
    DeleteDatabaseDropped,
    /// delete: database and role are gone; the rows are still there.
    DatabaseDropped,
    /// delete with retention: the row is DELETING with its trash name
    /// pending.
    TrashClaimed,
    /// delete with retention: the role is locked out and this process's
    /// pools are closed; the database still has its name.
    TrashLockedOut,
    /// delete with retention: the database has its trash name; the row is
    /// still DELETING.
    DatabaseTrashed,
    /// restore: the DELETED row is RENAMING back to its name.
    RestoreClaimed,
    /// restore: the database has its name back; its role is still locked
    /// out.
    DatabaseRestored,
    /// purge: the DELETED row is DELETING (the delete's points follow).
    PurgeClaimed,
    /// tenant migrate: the row is MIGRATING under our lease.
    MigrateClaimed,
    /// tenant migrate: the migrations ran; the row is not ACTIVE yet.
    MigrationApplied,
    /// fleet run: the run is recorded, no tenant migrated yet.
    FleetStarted,
    /// fleet run: one tenant was migrated, the run not finished.
    FleetTenantDone,
    /// template build: the template database exists, empty.
    TemplateCreated,
    /// template build: the migrations ran in it; it is not marked ready.
    TemplateMigrated,
    /// move: the row is MOVING (or SWITCHING, offline); nothing made yet.
    MoveClaimed,
    /// move: the tenant's role and an empty database exist on the target.
    MoveTargetCreated,
    /// move: the publication and subscription exist; rows are copying.
    MoveCopying,
    /// move: every row is copied and the target is close behind.
    MoveCaughtUp,
    /// move: the row is SWITCHING, the role locked out of the source.
    MovePaused,
    /// move: the row names the target (MOVING, cleaning); the source's copy
    /// and the replication objects are still there.
    MoveSwitched,
    /// move: the replication objects are gone; the source's copy not yet.
    MoveReplicationDropped,
}

static ABORT_AT: Mutex<Option<Step>> = Mutex::new(None);

/// Test hook: the process aborts when any operation reaches `step`.
#[doc(hidden)]
pub fn abort_at(step: Step) {
    *ABORT_AT.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
}

/// Marks that an operation reached `step`: aborts the process if a test
/// armed this point.
pub(crate) fn reached(step: Step) {
    if *ABORT_AT.lock().unwrap_or_else(|e| e.into_inner()) == Some(step) {
        eprintln!("fault point {step:?} reached: aborting (test hook)");
        std::process::abort();
    }
}
