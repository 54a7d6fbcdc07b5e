//! The error type of the core crate.
//!
//! Policy: every message is lower case and names the tenant and database it
//! is about; variants that callers branch on (already exists, not found, not
//! serving, conflict) are their own variants; errors from the database
//! drivers are kept as sources so the binary can log the chain once, and
//! never carry a password (connection options are never formatted into
//! messages).

use crate::status::DbStatus;

/// The result of the core crate's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core crate (see the module docs for
/// the policy).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, id or setting broke a validation rule; nothing was changed.
    #[error("invalid {kind} '{value}': {rule}")]
    Invalid {
        /// What was being validated (`slug`, `database name`, ...).
        kind: &'static str,
        /// The value as given.
        value: String,
        /// The rule it broke, in words.
        rule: String,
    },

    /// The configuration is unusable (missing secret, bad URL, ...).
    #[error("configuration: {0}")]
    Config(String),

    /// No tenant has this id or slug (the string holds it as given).
    #[error("tenant '{0}' not found")]
    TenantNotFound(String),

    /// The tenant exists but has no database: the tenant by slug, or its id
    /// and the database's name when the database is missing on the server.
    #[error("tenant '{0}' has no database")]
    TenantDatabaseNotFound(String),

    /// A unique value is taken: a slug, a database name in the catalog, or a
    /// database on the server.
    #[error("{0}")]
    AlreadyExists(String),

    /// The requested change is not allowed from the row's current status
    /// (for example retrying a tenant that is ACTIVE).
    #[error("tenant '{tenant}' database '{database}' is {status}: cannot {action}")]
    IllegalState {
        /// The tenant, by id.
        tenant: String,
        /// The tenant's database name.
        database: String,
        /// The status that forbids it.
        status: DbStatus,
        /// What was refused, as a verb phrase (`rename its database`).
        action: &'static str,
    },

    /// The tenant server is DRAINING: it takes no new tenant databases.
    #[error("server '{0}' is DRAINING: it takes no new tenants (`servers accept` lets it take them again)")]
    ServerDraining(String),

    /// No tenant server has this name (or id).
    #[error("server '{0}' not found")]
    ServerNotFound(String),

    /// The server cannot be removed: it still holds tenant databases or
    /// templates, or it is the server of the settings.
    #[error("server '{server}' cannot be removed: {reason}")]
    ServerInUse {
        /// The server's name.
        server: String,
        /// Why, in words.
        reason: String,
    },

    /// A tenant server cannot be used by this process: its admin URL or
    /// password cannot be had (sealed under a secret version this process
    /// lacks, no secret, not recorded).
    #[error("server '{server}' cannot be used: {reason}")]
    ServerUnusable {
        /// The server's name.
        server: String,
        /// Why, in words (never a password).
        reason: String,
    },

    /// A tenant server did not answer in time.
    #[error("server '{0}' did not answer in time")]
    ServerUnreachable(String),

    /// No tenant server may take a new tenant now: none is ACCEPTING, or
    /// none of those answers.
    #[error("no server can take a new tenant: {0}")]
    NoServerAvailable(String),

    /// The tenant is suspended: refused at the door.
    #[error("tenant '{0}' is suspended")]
    TenantSuspended(String),

    /// The tenant was deleted (its database kept for a restore until the
    /// retention period ends): refused at the door, like a suspended one.
    #[error("tenant '{0}' is deleted")]
    TenantDeleted(String),

    /// The tenant's database does not serve traffic in its status
    /// (PROVISIONING, RENAMING, FAILED, DELETING).
    #[error("tenant '{tenant}' database is {status}: not serving")]
    TenantUnavailable {
        /// The tenant, by slug (by id when its pool is being replaced).
        tenant: String,
        /// The database's status.
        status: DbStatus,
    },

    /// No connection could be had within the acquire timeout (the server's
    /// connection budget is in use).
    #[error("tenant '{tenant}': no connection within {waited_ms} ms, the connection budget is in use")]
    Busy {
        /// The tenant, by id.
        tenant: String,
        /// How long the caller waited: the acquire timeout, in milliseconds.
        waited_ms: u64,
    },

    /// A new pool reached a database that is not the tenant's.
    #[error("tenant '{tenant}': connected to database '{found}' as '{role}', expected '{expected}'")]
    WrongDatabase {
        /// The tenant, by id.
        tenant: String,
        /// The tenant's database name, from the catalog.
        expected: String,
        /// The database the connection reached (`current_database()`).
        found: String,
        /// The role the connection logged in as (`current_user`).
        role: String,
    },

    /// `TenantContext::current()` outside a tenant scope.
    #[error("no tenant in scope: wrap the work in TenantContext::scope (a spawned task must open its own scope)")]
    NoTenantContext,

    /// Another process holds the tenant's lease (it is creating, renaming,
    /// deleting or migrating it right now).
    #[error("tenant '{tenant}' is being worked on by another process; try again later")]
    Locked {
        /// The tenant, by id.
        tenant: String,
    },

    /// A database exists on the server that tenantdb did not create (or that
    /// belongs to another tenant); tenantdb never adopts or drops it.
    #[error("database '{database}' exists on the server and was not created by tenantdb for tenant '{tenant}'")]
    NotOurs {
        /// The tenant, by id (`(template)` for a template).
        tenant: String,
        /// The database, or `(role) <name>` when the object is a role.
        database: String,
    },

    /// Creating the tenant's database failed; the row is FAILED with the
    /// message and `retry` can finish it.
    #[error("provisioning tenant '{tenant}' database '{database}' failed: {message}")]
    ProvisioningFailed {
        /// The tenant, by id.
        tenant: String,
        /// The database being made.
        database: String,
        /// The cause, as recorded in the row's `error_message`.
        message: String,
    },

    /// A tenant migration failed; the schema stays at its last good version.
    #[error("migrating tenant '{tenant}' database '{database}' failed in '{migration}': {message}")]
    MigrationFailed {
        /// The tenant, by id (`(template)` while building a template).
        tenant: String,
        /// The database being migrated (a file path for a SQLite template).
        database: String,
        /// The name of the migration that failed.
        migration: String,
        /// The migration's error.
        message: String,
    },

    /// This program's tenant migration set is neither the one the catalog
    /// serves nor an extension of it (another application's binary, or an
    /// older one): it may read, but not create, migrate, build templates or
    /// repair.
    #[error(
        "this program's tenant migrations ({ours}) are not the catalog's ({recorded}) nor an extension of them: \
         it may read but not create, migrate, build templates or repair tenants; use the program built with \
         the catalog's tenant migrations"
    )]
    MigrationSetMismatch {
        /// The catalog's set, described (`3 migrations ending in '...'`).
        recorded: String,
        /// This program's set, described the same way.
        ours: String,
    },

    /// Work stopped on purpose at a step (test hook that simulates a crash).
    #[error("tenant '{tenant}': stopped after step {step:?} (simulated crash)")]
    Interrupted {
        /// The tenant, by id.
        tenant: String,
        /// The step it stopped after.
        step: crate::faults::Step,
    },

    /// The lease was lost while working (the process stalled longer than the
    /// lease and another one took over).
    #[error("tenant '{tenant}': lease lost while working")]
    LeaseLost {
        /// The tenant, by id (when a row is being finished, the row's id).
        tenant: String,
    },

    /// A catalog query failed (SeaORM's error).
    #[error("catalog: {0}")]
    Catalog(#[from] sea_orm::DbErr),

    /// A statement or connection on a database server failed (the tenant
    /// server, or the catalog when tenantdb talks to it through sqlx).
    #[error("database server: {context}")]
    Server {
        /// What tenantdb was doing, in words.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A file system operation failed (SQLite files, directories, lock files).
    #[error("{context}")]
    Io {
        /// What tenantdb was doing, naming the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A task that ran the work panicked or was cancelled (the join error,
    /// as text).
    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether a database could not be reached or the connection broke (the
    /// server is down or restarting, the session was ended by a rename):
    /// worth a retry, and nothing about the data.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Server { source, .. } => is_connection_error(source),
            Self::Catalog(err) => is_unreachable_db_err(err),
            Self::ServerUnreachable(_) => true,
            _ => false,
        }
    }

    /// Whether the error means "try again shortly": no connection within the
    /// acquire timeout, from the budget or from the tenant's own pool.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Busy { .. } => true,
            Self::Catalog(err) => is_busy_db_err(err),
            Self::Server { source, .. } => matches!(source, sqlx::Error::PoolTimedOut),
            _ => false,
        }
    }

    /// Whether a database refused a text value it cannot store (PostgreSQL:
    /// a NUL character, SQLSTATE 22021 / 22P05): bad input, not a fault.
    /// The HTTP layer validates text first; this is the safety net.
    pub fn is_invalid_text(&self) -> bool {
        let state = match self {
            Self::Server { source, .. } => sql_state(source),
            Self::Catalog(err) => db_err_sqlx(err).and_then(sql_state),
            _ => None,
        };
        matches!(state.as_deref(), Some("22021" | "22P05"))
    }

    pub(crate) fn invalid(kind: &'static str, value: &str, rule: &str) -> Self {
        Self::Invalid {
            kind,
            value: value.to_owned(),
            rule: rule.to_owned(),
        }
    }

    pub(crate) fn server(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let context = context.into();
        move |source| Self::Server { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// The full chain of causes in one line, for `error_message` columns and
    /// logs. Driver errors name SQL states and objects, never passwords.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            out.push_str(": ");
            out.push_str(&err.to_string());
            source = err.source();
        }
        out
    }
}

/// Whether a SeaORM error is a pool acquire timeout (the tenant's pool had no
/// free connection within the acquire timeout).
pub fn is_busy_db_err(err: &sea_orm::DbErr) -> bool {
    matches!(
        err,
        sea_orm::DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)
    )
}

/// A broken or refused connection: the transport failed, or the server
/// said it is shutting down, starting up or gone (SQLSTATE 57P01 admin
/// shutdown, 57P02 crash shutdown, 57P03 cannot connect now, class 08
/// connection exception).
fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(_) => sql_state(err)
            .is_some_and(|state| matches!(state.as_str(), "57P01" | "57P02" | "57P03") || state.starts_with("08")),
        _ => false,
    }
}

fn sql_state(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

fn db_err_sqlx(err: &sea_orm::DbErr) -> Option<&sqlx::Error> {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

fn is_unreachable_db_err(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::Conn(_) => true,
        DbErr::ConnectionAcquire(reason) => !matches!(reason, sea_orm::error::ConnAcquireErr::Timeout),
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => is_connection_error(e),
        _ => false,
    }
}
