//! The JSON shapes of a tenant and its database, as API.md defines them and
//! both the CLI (`--json`) and the HTTP service print them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::catalog::{DbStatus, TenantStatus, tenant_database, tenants};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantDatabaseView {
    pub tenant_id: Uuid,
    pub server: String,
    pub database_name: String,
    pub read_database_name: String,
    pub status: DbStatus,
    pub schema_version: Option<String>,
    pub last_migration_at: Option<String>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: String,
    pub database: Option<TenantDatabaseView>,
}

/// RFC 3339 in UTC with a `Z`, as API.md asks.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl TenantDatabaseView {
    pub fn new(row: &tenant_database::Model, server: &str) -> Self {
        Self {
            tenant_id: row.tenant_id,
            server: server.to_owned(),
            database_name: row.database_name.clone(),
            read_database_name: row.read_database_name.clone(),
            status: row.status,
            schema_version: row.schema_version.clone(),
            last_migration_at: row.last_migration_at.map(rfc3339),
            error_message: row.error_message.clone(),
        }
    }
}

impl TenantView {
    pub fn new(tenant: &tenants::Model, database: Option<&tenant_database::Model>, server: &str) -> Self {
        Self {
            id: tenant.id,
            slug: tenant.slug.clone(),
            name: tenant.name.clone(),
            status: tenant.status,
            created_at: rfc3339(tenant.created_at),
            database: database.map(|row| TenantDatabaseView::new(row, server)),
        }
    }
}
