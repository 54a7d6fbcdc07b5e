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
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "SUSPENDED")]
    Suspended,
}

impl TenantStatus {
    /// The status as the catalog stores it and API.md shows it
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
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
/// A user's role in a tenant (`OWNER`, `ADMIN`, `MEMBER`).
pub enum MemberRole {
    #[sea_orm(string_value = "OWNER")]
    Owner,
    #[sea_orm(string_value = "ADMIN")]
    Admin,
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
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
/// Status of a tenant's subscription.
pub enum SubscriptionStatus {
    #[sea_orm(string_value = "TRIALING")]
    Trialing,
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "PAST_DUE")]
    PastDue,
    #[sea_orm(string_value = "CANCELED")]
    Canceled,
}

pub mod catalog_info {
    use sea_orm::entity::prelude::*;

    /// One row: the catalog's own id, written into the marker of every
    /// database this catalog creates.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_info")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
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
        pub created_at: DateTimeUtc,
    }

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

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Always lower case; unique.
        pub email: String,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_tokens {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub name: String,
        /// Hex SHA-256 of the token; the token itself is never stored.
        pub token_sha256: String,
        pub created_at: DateTimeUtc,
        pub last_used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tenants {
    use super::TenantStatus;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub slug: String,
        pub name: String,
        pub status: TenantStatus,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
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

pub mod memberships {
    use super::MemberRole;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub role: MemberRole,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscriptions {
    use super::SubscriptionStatus;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        pub plan: String,
        pub status: SubscriptionStatus,
        pub seats: i32,
        pub current_period_end: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod database_servers {
    use sea_orm::entity::prelude::*;

    /// A server that holds tenant databases. Connection settings are stored
    /// without secrets: the password comes from the deployment's settings.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "database_servers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        /// `postgres`, `sqlite` or (later) `mysql`.
        pub engine: String,
        /// Host, port, admin database and user (PostgreSQL) or directory
        /// (SQLite) as JSON; never a password.
        pub settings: Json,
        /// `primary` or `replica`.
        pub role: String,
        pub primary_id: Option<Uuid>,
        pub connection_budget: i32,
        pub accepts_new_tenants: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tenant_databases {
    use super::DbStatus;
    use sea_orm::entity::prelude::*;

    /// The seed's TenantDatabase entity, extended with the server, the role,
    /// a pending name during a rename, a lease and a row version.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_databases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub server_id: Uuid,
        pub database_name: String,
        /// The new name while a rename is under way.
        pub pending_database_name: Option<String>,
        pub read_server_id: Uuid,
        pub read_database_name: String,
        /// The tenant's own login role (PostgreSQL); derived from the tenant
        /// id when the row is made, stored so a prefix change cannot orphan it.
        pub role_name: String,
        /// Version of the deployment secret its password derives from.
        pub secret_version: i32,
        pub status: DbStatus,
        /// Name of the last applied tenant migration.
        pub schema_version: Option<String>,
        pub last_migration_at: Option<DateTimeUtc>,
        pub error_message: Option<String>,
        /// Set with DELETING when the tenant itself goes too, so a crash
        /// between dropping the database and removing the rows is finished
        /// the same way.
        pub purge_tenant: bool,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<DateTimeUtc>,
        /// Bumped by every update; conditional updates compare it.
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
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

pub mod settings {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: Json,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod migration_runs {
    use sea_orm::entity::prelude::*;

    /// A fleet migration run (`tenantdb migrate`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "migration_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// RUNNING, SUCCEEDED, FAILED (some tenant failed) or STOPPED
        /// (canary or max failures stopped it early).
        pub status: String,
        pub target_version: Option<String>,
        pub total: i32,
        pub succeeded: i32,
        pub failed: i32,
        /// Tenants another process was migrating, or no longer there.
        pub skipped: i32,
        pub started_at: DateTimeUtc,
        pub finished_at: Option<DateTimeUtc>,
        /// The process running it, while it runs; renewed like a tenant's
        /// lease. A RUNNING run whose lease expired was abandoned.
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
