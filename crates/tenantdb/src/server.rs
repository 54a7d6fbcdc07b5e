//! A tenant server as callers see it: where tenant databases live, its
//! connection budget, how many tenants it holds and the instances sharing
//! its budget (what `GET /v1/servers` and `tenantdb servers` show).

use serde::Serialize;
use uuid::Uuid;

use crate::catalog::{database_servers, instance};
use crate::tenant::rfc3339;

/// A tenant server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Server {
    /// Its id in the catalog.
    pub id: Uuid,
    /// Its name in the catalog (`default` for the server of the settings).
    pub name: String,
    /// `postgres` or `sqlite`.
    pub engine: String,
    /// Where it is: `host:port` (PostgreSQL), as recorded in the catalog
    /// (never a password); `None` for SQLite.
    pub address: Option<String>,
    /// `ACCEPTING` (new tenants may be placed on it), `DRAINING`, or
    /// `REPLICA` (a read replica: see `replica`).
    pub status: String,
    /// Connections all instances together may hold on it.
    pub budget: u32,
    /// Tenant databases on it.
    pub tenants: u64,
    /// The instances sharing its budget now (those whose lease is live).
    pub instances: Vec<InstanceShare>,
    /// For a read replica: what it follows and how it keeps up (`None`
    /// for a server that holds tenants).
    pub replica: Option<ReplicaOf>,
}

/// A read replica's primary, lag bound and state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ReplicaOf {
    /// The server it is a streaming standby of.
    pub follows: String,
    /// How far behind it may be and still take reads (milliseconds).
    pub max_lag_ms: u32,
    /// Whether this process sends reads to it now.
    pub usable: bool,
    /// Its lag at the last check this process made (milliseconds; `None`
    /// before one reached it).
    pub lag_ms: Option<u64>,
}

/// One instance's share of a server's budget.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct InstanceShare {
    /// The instance (a process that opened tenant pools).
    pub id: Uuid,
    /// Its host: name, boot id and process id namespace.
    pub host: String,
    /// Its process id there.
    pub pid: i32,
    /// Connections it may hold.
    pub share: u32,
    /// When it joined (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub started_at: String,
    /// When its lease runs out unless it beats again (RFC 3339).
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub lease_expires_at: String,
}

/// `host:port` of a PostgreSQL server's recorded settings.
pub(crate) fn address(settings: &serde_json::Value) -> Option<String> {
    let host = settings.get("host")?.as_str()?;
    let port = settings.get("port").and_then(serde_json::Value::as_u64).unwrap_or(5432);
    Some(if host.is_empty() {
        format!("(socket):{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// A PostgreSQL server to add to the catalog (`Tenancy::add_server`).
#[derive(Clone)]
pub struct AddServer {
    /// Its name: lowercase letters, digits and `-`, 1 to 63 characters.
    pub name: String,
    /// A URL of a superuser (or a role with CREATEDB and CREATEROLE):
    /// `postgres://user:password@host:port/postgres`. The catalog keeps it
    /// without its password; the password is sealed with the deployment
    /// secret.
    pub admin_url: secrecy::SecretString,
    /// Connections all instances together may hold on it.
    pub budget: u32,
    /// Connections one tenant's pool may hold there (the settings' value
    /// when `None`).
    pub max_per_tenant: Option<u32>,
}

/// A read replica to add to the catalog (`Tenancy::add_replica`): a
/// streaming standby of a tenant server (`pg_basebackup -R`, or your
/// provider's read replica).
#[derive(Clone)]
pub struct AddReplica {
    /// The server it follows.
    pub primary: String,
    /// Its name (`<primary>-replica` when `None`).
    pub name: Option<String>,
    /// A URL of a superuser (or a role that may read replay state) on the
    /// standby; kept like [`AddServer::admin_url`].
    pub admin_url: secrecy::SecretString,
    /// Connections all instances together may hold on it (its own budget,
    /// apart from its primary's).
    pub budget: u32,
    /// Connections one tenant's pool may hold there.
    pub max_per_tenant: Option<u32>,
    /// How far behind its primary it may be and still take reads, in
    /// milliseconds (1000 when `None`; at least 100).
    pub max_lag_ms: Option<u32>,
}

impl std::fmt::Debug for AddReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddReplica")
            .field("primary", &self.primary)
            .field("name", &self.name)
            .field("admin_url", &"[redacted]")
            .field("budget", &self.budget)
            .field("max_lag_ms", &self.max_lag_ms)
            .finish()
    }
}

impl std::fmt::Debug for AddServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddServer")
            .field("name", &self.name)
            .field("admin_url", &"[redacted]")
            .field("budget", &self.budget)
            .field("max_per_tenant", &self.max_per_tenant)
            .finish()
    }
}

/// Checks a server name: a DNS label (lowercase letters, digits, `-`; 1 to
/// 63 characters; not starting or ending with `-`).
pub(crate) fn check_server_name(name: &str) -> crate::Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            "server name",
            name,
            "must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
        ))
    }
}

impl Server {
    pub(crate) fn new(row: &database_servers::Model, tenants: u64, instances: &[instance::Model]) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            engine: row.engine.clone(),
            address: address(&row.settings),
            status: if row.role == database_servers::REPLICA {
                "REPLICA"
            } else if row.accepts_new_tenants {
                "ACCEPTING"
            } else {
                "DRAINING"
            }
            .to_owned(),
            budget: u32::try_from(row.connection_budget).unwrap_or(0),
            tenants,
            instances: instances
                .iter()
                .map(|i| InstanceShare {
                    id: i.id,
                    host: i.host.clone(),
                    pid: i.pid,
                    share: u32::try_from(i.share).unwrap_or(0),
                    started_at: rfc3339(i.started_at),
                    lease_expires_at: rfc3339(i.lease_expires_at),
                })
                .collect(),
            replica: None,
        }
    }
}
