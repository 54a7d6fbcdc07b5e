//! A tenant and its database as callers see them (no leases, counters or
//! secret versions): what the provisioner and `Tenancy` return, and the
//! JSON shapes docs/API.md defines, printed by the CLI (`--json`) and the HTTP
//! service.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::catalog::{DbStatus, TenantStatus, tenant_database, tenants};

/// A tenant's database: where it is, its status and schema version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TenantDatabase {
    /// The tenant it belongs to.
    pub tenant_id: Uuid,
    /// The tenant server it lives on (its name in the catalog).
    pub server: String,
    /// Its name on the server.
    pub database_name: String,
    /// The database reads go to (the same one until replicas exist).
    pub read_database_name: String,
    /// Where it is in the status machine; ACTIVE and MIGRATING serve.
    pub status: DbStatus,
    /// The last tenant migration applied (`None`: none yet).
    pub schema_version: Option<String>,
    /// When a migration last finished on it (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub last_migration_at: Option<String>,
    /// Why its last operation failed, if it did.
    pub error_message: Option<String>,
    /// While it moves to another server (MOVING, SWITCHING): from where,
    /// to where, how, and how far.
    pub moving: Option<TenantMove>,
    /// When the tenant was deleted (DELETED: its database is kept for a
    /// restore until the retention period after this ends; RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub deleted_at: Option<String>,
    /// When a DELETED tenant's retention period ends: it is purged (for
    /// good) after this unless restored (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub purge_after: Option<String>,
}

/// A move under way.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TenantMove {
    /// The server it is served from until the switch.
    #[serde(rename(deserialize = "from_name"))]
    pub from: String,
    /// The server it moves to.
    #[serde(rename(deserialize = "to_name"))]
    pub to: String,
    /// Copied with `pg_dump | pg_restore` while refused (true), or online
    /// with logical replication.
    pub offline: bool,
    /// `COPYING` (served from `from`), `SWITCHING` (writes paused), or
    /// `CLEANING` (served from `to`; the old copy is being removed).
    pub phase: String,
    /// When it began (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub started_at: String,
}

/// A tenant, with its database if it has one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Its id.
    pub id: Uuid,
    /// Its slug: a DNS label, unique.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// ACTIVE, or SUSPENDED (refused at the door, still migrated).
    pub status: TenantStatus,
    /// When it was created (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub created_at: String,
    /// Its database.
    pub database: Option<TenantDatabase>,
}

/// RFC 3339 in UTC with a `Z`, as docs/API.md asks.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl TenantDatabase {
    pub(crate) fn new(row: &tenant_database::Model, server: &str) -> Self {
        Self {
            tenant_id: row.tenant_id,
            server: server.to_owned(),
            database_name: row.database_name.clone(),
            read_database_name: row.read_database_name.clone(),
            status: row.status,
            schema_version: row.schema_version.clone(),
            last_migration_at: row.last_migration_at.map(rfc3339),
            error_message: row.error_message.clone(),
            moving: row
                .move_state
                .clone()
                .and_then(|state| serde_json::from_value::<TenantMove>(state).ok()),
            deleted_at: row.deleted_at.map(rfc3339),
            purge_after: row.purge_after.map(rfc3339),
        }
    }
}

impl Tenant {
    pub(crate) fn new(tenant: &tenants::Model, database: Option<&tenant_database::Model>, server: &str) -> Self {
        Self {
            id: tenant.id,
            slug: tenant.slug.clone(),
            name: tenant.name.clone(),
            status: tenant.status,
            created_at: rfc3339(tenant.created_at),
            database: database.map(|row| TenantDatabase::new(row, server)),
        }
    }
}
