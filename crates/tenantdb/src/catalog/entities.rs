//! SeaORM entities of the catalog (master database), one module per table.
//! The tables themselves are created by `catalog::migrations`; the two must
//! agree, and the catalog tests exercise every table on both engines.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::status::DbStatus;

/// Status of a tenant: a suspended tenant is refused at the door but its
/// database is still migrated.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    /// `ACTIVE`: its requests are served.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// `SUSPENDED`: refused at the door; its database is still migrated.
    #[sea_orm(string_value = "SUSPENDED")]
    Suspended,
}

impl TenantStatus {
    /// The status as the catalog stores it and docs/API.md shows it
    /// (`ACTIVE`); `FromStr` parses it back.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
/// A user's role in a tenant (`OWNER`, `ADMIN`, `MEMBER`).
pub enum MemberRole {
    /// `OWNER`: the role of the user named when the tenant was created.
    #[sea_orm(string_value = "OWNER")]
    Owner,
    /// `ADMIN`: what it allows beyond `MEMBER` is the application's choice.
    #[sea_orm(string_value = "ADMIN")]
    Admin,
    /// `MEMBER`: an ordinary member.
    #[sea_orm(string_value = "MEMBER")]
    Member,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
/// Status of a tenant's subscription.
pub enum SubscriptionStatus {
    /// `TRIALING`: in its trial; a plan given when the tenant is created starts here.
    #[sea_orm(string_value = "TRIALING")]
    Trialing,
    /// `ACTIVE`: paid up.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// `PAST_DUE`: a payment is overdue.
    #[sea_orm(string_value = "PAST_DUE")]
    PastDue,
    /// `CANCELED`: ended.
    #[sea_orm(string_value = "CANCELED")]
    Canceled,
}

/// The `catalog_info` table: one row (id 1) with the catalog's identity and
/// catalog-wide state.
pub mod catalog_info {
    use sea_orm::entity::prelude::*;

    /// One row: the catalog's own id, written into the marker of every
    /// database this catalog creates.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_info")]
    pub struct Model {
        /// Always 1: the table holds one row.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// This catalog's id (UUIDv7), made by the first process that migrated it.
        pub catalog_id: Uuid,
        /// Bumped by every write that changes routing; polled by every
        /// process to flush its caches.
        pub generation: i64,
        /// The template new tenant databases are cloned from, once built.
        pub template: Option<String>,
        /// The tenant migration set this catalog serves: its migration
        /// names, oldest first, one per line. Recorded by the first program
        /// that creates or migrates a tenant; a program whose set is neither
        /// this one nor a strict extension of it refuses to change tenants.
        pub tenant_migrations: Option<String>,
        /// When the row was written, i.e. when the catalog was first set up (UTC).
        pub created_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(super) mod database_names {
    use sea_orm::entity::prelude::*;

    /// A database name in use, or pending as a rename's target, on a
    /// server: reserved for one tenant before any DDL uses it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "database_names")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub server_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub tenant_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `users` table: the people who hold API tokens and tenant memberships.
pub mod users {
    use sea_orm::entity::prelude::*;

    /// A user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// The user's id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Always lower case; unique.
        pub email: String,
        /// Display name (at most 200 characters).
        pub name: String,
        /// When the user was created (UTC).
        pub created_at: DateTimeUtc,
        /// When the row last changed (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `api_tokens` table: users' API tokens, stored as SHA-256 hashes.
pub mod api_tokens {
    use sea_orm::entity::prelude::*;

    /// An API token of a user: its hash and lifecycle, never the token itself.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        /// The token's id (UUIDv7); not a secret.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The user it acts for (`users.id`); deleting the user deletes their tokens.
        pub user_id: Uuid,
        /// A label the user gave it (at most 200 characters).
        pub name: String,
        /// Hex SHA-256 of the token; the token itself is never stored.
        pub token_sha256: String,
        /// When it was issued (UTC).
        pub created_at: DateTimeUtc,
        /// When it was last used (UTC); `None` if never.
        pub last_used_at: Option<DateTimeUtc>,
        /// When it was revoked (UTC); `None` while it is valid.
        pub revoked_at: Option<DateTimeUtc>,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tenants` table: one row per tenant.
pub mod tenants {
    use super::TenantStatus;
    use sea_orm::entity::prelude::*;

    /// A tenant: its slug, display name and status.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        /// The tenant's id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Unique slug, a DNS label (see [`TenantSlug`](crate::TenantSlug)).
        pub slug: String,
        /// Display name (at most 200 characters; the slug when none was given).
        pub name: String,
        /// ACTIVE, or SUSPENDED (refused at the door, still migrated).
        pub status: TenantStatus,
        /// When the tenant was created (UTC).
        pub created_at: DateTimeUtc,
        /// When the row last changed (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The tenant's row in `tenant_databases` (at most one).
        #[sea_orm(has_one = "super::tenant_databases::Entity")]
        TenantDatabase,
    }

    impl Related<super::tenant_databases::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::TenantDatabase.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `memberships` table: which users belong to which tenant, and in what
/// role.
pub mod memberships {
    use super::MemberRole;
    use sea_orm::entity::prelude::*;

    /// A user's membership in a tenant.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        /// The tenant (`tenants.id`); with `user_id`, the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        /// The member (`users.id`); with `tenant_id`, the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// The user's role in the tenant.
        pub role: MemberRole,
        /// When the user was added to the tenant (UTC); a role change keeps it.
        pub created_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `subscriptions` table: at most one subscription per tenant.
pub mod subscriptions {
    use super::SubscriptionStatus;
    use sea_orm::entity::prelude::*;

    /// A tenant's subscription: plan, status and seats.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        /// The tenant (`tenants.id`), also the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        /// The plan's name (at most 100 characters), as the application names it.
        pub plan: String,
        /// Where the subscription stands.
        pub status: SubscriptionStatus,
        /// Number of seats (1 for a subscription made with the tenant).
        pub seats: i32,
        /// When the current billing period ends (UTC), if known.
        pub current_period_end: Option<DateTimeUtc>,
        /// When the subscription was created (UTC).
        pub created_at: DateTimeUtc,
        /// When the row last changed (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `database_servers` table: the servers that hold tenant databases.
pub mod database_servers {
    use sea_orm::entity::prelude::*;

    /// A server that holds tenant databases. Connection settings are stored
    /// without secrets: the password comes from the deployment's settings.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "database_servers")]
    pub struct Model {
        /// The server's id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Unique name, from the deployment's settings (`Config::server_name`).
        pub name: String,
        /// `postgres`, `sqlite` or (later) `mysql`.
        pub engine: String,
        /// Host, port, admin database and user (PostgreSQL) or directory
        /// (SQLite) as JSON; never a password.
        pub settings: Json,
        /// `primary` or `replica`.
        pub role: String,
        /// For a replica, the server it follows; `None` for a primary.
        pub primary_id: Option<Uuid>,
        /// Connections all tenant pools on this server may hold, across every
        /// instance (each holds its share: see `instances`). Recorded from the
        /// deployment's `PoolConfig::budget` by each process that starts.
        pub connection_budget: i32,
        /// Whether new tenant databases may be placed on it (true when recorded).
        pub accepts_new_tenants: bool,
        /// When the server was first recorded (UTC).
        pub created_at: DateTimeUtc,
        /// When its settings were last recorded (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// `role` of a server that holds tenant databases.
    pub const PRIMARY: &str = "primary";
    /// `role` of a read replica (a streaming standby of `primary_id`).
    pub const REPLICA: &str = "replica";
}

/// The `tenant_databases` table (exported as `tenant_database`): each
/// tenant's database, its place in the status machine, its lease and its row
/// version.
pub mod tenant_databases {
    use super::DbStatus;
    use sea_orm::entity::prelude::*;

    /// The seed's TenantDatabase entity, extended with the server, the role,
    /// a pending name during a rename, a lease and a row version.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_databases")]
    pub struct Model {
        /// The row's id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The tenant (`tenants.id`); unique: a tenant has at most one database.
        pub tenant_id: Uuid,
        /// The server it lives on (`database_servers.id`).
        pub server_id: Uuid,
        /// Its name on the server; unique per server, together with the pending
        /// names of renames under way.
        pub database_name: String,
        /// The new name while a rename is under way.
        pub pending_database_name: Option<String>,
        /// The server reads go to (the same as `server_id` until replicas exist).
        pub read_server_id: Uuid,
        /// The database reads go to (the same as `database_name` until replicas
        /// exist).
        pub read_database_name: String,
        /// The tenant's own login role (PostgreSQL); derived from the tenant
        /// id when the row is made, stored so a prefix change cannot orphan it.
        pub role_name: String,
        /// Version of the deployment secret its password derives from.
        pub secret_version: i32,
        /// Where it is in the status machine; ACTIVE and MIGRATING serve traffic.
        pub status: DbStatus,
        /// Name of the last applied tenant migration.
        pub schema_version: Option<String>,
        /// When a migration last finished on it (UTC).
        pub last_migration_at: Option<DateTimeUtc>,
        /// Why its last operation failed (the error's chain in one line); `None`
        /// after a success.
        pub error_message: Option<String>,
        /// Set with DELETING when the tenant itself goes too, so a crash
        /// between dropping the database and removing the rows is finished
        /// the same way.
        pub purge_tenant: bool,
        /// While its database moves to another server (MOVING, SWITCHING):
        /// from where to where, how and how far (see `provisioner::moves`).
        pub move_state: Option<Json>,
        /// When the tenant was deleted with a way back (DELETED, and while
        /// a restore runs); `None` otherwise.
        pub deleted_at: Option<DateTimeUtc>,
        /// When a DELETED tenant's retention period ends (set by the
        /// process that deleted it): the sweep purges it after this.
        pub purge_after: Option<DateTimeUtc>,
        /// Who holds the lease while an operation works on the row: the process
        /// id and a token per operation (`<pid>:<token>`).
        pub lease_owner: Option<String>,
        /// When the lease expires unless renewed (UTC); after that, another
        /// process may take the work over.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// Bumped by every update; conditional updates compare it.
        pub version: i64,
        /// When the row was created (UTC).
        pub created_at: DateTimeUtc,
        /// When the row last changed (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The tenant the database belongs to (`tenant_id` to `tenants.id`).
        #[sea_orm(
            belongs_to = "super::tenants::Entity",
            from = "Column::TenantId",
            to = "super::tenants::Column::Id"
        )]
        Tenant,
    }

    impl Related<super::tenants::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Tenant.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `settings` table: global configuration, one JSON value per key.
pub mod settings {
    use sea_orm::entity::prelude::*;

    /// One global setting.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        /// The setting's name (at most 200 characters).
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Its value, as JSON.
        pub value: Json,
        /// When it was last written (UTC).
        pub updated_at: DateTimeUtc,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `migration_runs` table: one row per fleet migration run.
pub mod migration_runs {
    use sea_orm::entity::prelude::*;

    /// A fleet migration run (`tenantdb migrate`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "migration_runs")]
    pub struct Model {
        /// The run's id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// RUNNING, SUCCEEDED, FAILED (some tenant failed) or STOPPED
        /// (canary or max failures stopped it early).
        pub status: String,
        /// The migration every tenant is brought to (the last of the set); `None`
        /// for an empty set.
        pub target_version: Option<String>,
        /// Tenants that were behind when the run started.
        pub total: i32,
        /// Tenants migrated so far.
        pub succeeded: i32,
        /// Tenants that failed so far (each stays at its previous version).
        pub failed: i32,
        /// Tenants another process was migrating, or no longer there.
        pub skipped: i32,
        /// When the run started (UTC).
        pub started_at: DateTimeUtc,
        /// When the run ended (UTC); `None` while it runs, or if abandoned.
        pub finished_at: Option<DateTimeUtc>,
        /// The process running it, while it runs; renewed like a tenant's
        /// lease. A RUNNING run whose lease expired was abandoned.
        pub lease_owner: Option<String>,
        /// When the run's lease expires unless renewed (UTC).
        pub lease_expires_at: Option<DateTimeUtc>,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `instances` table: each running process that holds tenant pools on
/// a server, its lease and its share of the server's connection budget.
pub mod instances {
    use sea_orm::entity::prelude::*;

    /// One process on one server.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        /// The process's instance id (UUIDv7, made at start).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The server whose budget it shares.
        #[sea_orm(primary_key, auto_increment = false)]
        pub server_id: Uuid,
        /// The machine it runs on (its host name).
        pub host: String,
        /// Its process id on that machine.
        pub pid: i32,
        /// When it joined.
        pub started_at: DateTimeUtc,
        /// Its lease: renewed by its heartbeat; once past, it counts as gone
        /// and its share returns to the others.
        pub lease_expires_at: DateTimeUtc,
        /// The connections it may hold on the server. It raises this only
        /// within what the others do not hold, and lowers it only once its
        /// pools hold no more: the shares of live instances never add up
        /// to more than the server's budget.
        pub share: i32,
    }

    /// Relations to other tables (none declared).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
