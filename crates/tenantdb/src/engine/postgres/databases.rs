//! Tenant databases: created owned by the tenant's role and closed to
//! everybody else before anyone can connect, renamed and dropped only when
//! they are ours (owned by the tenant's marked role).

use std::time::Duration;

use sqlx::Row;

use super::{DUPLICATE_DATABASE, OBJECT_IN_USE, PostgresEngine, run, sql_state};
use crate::engine::{Created, DatabaseSpec, Ownership};
use crate::error::{Error, Result};
use crate::names::{DatabaseName, quote_ident, quote_literal};

impl PostgresEngine {
    pub(crate) async fn name_in_use(&self, name: &DatabaseName) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name.as_str())
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot look up database '{name}'")))
    }

    pub(crate) async fn ownership(&self, db: &DatabaseSpec, name: &DatabaseName) -> Result<Ownership> {
        let row = sqlx::query(
            "SELECT r.rolname::text AS owner, shobj_description(r.oid, 'pg_authid') AS mark
             FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.inner.admin)
        .await
        .map_err(Error::server(format!("cannot look up database '{name}'")))?;
        let Some(row) = row else {
            return Ok(Ownership::Missing);
        };
        let owner: String = row.get("owner");
        let mark: Option<String> = row.get("mark");
        let ours = owner == db.role.as_str() && mark.as_deref() == Some(self.marker(db).as_str());
        Ok(if ours { Ownership::Ours } else { Ownership::Foreign })
    }

    pub(crate) async fn create_database(
        &self,
        db: &DatabaseSpec,
        template: Option<&str>,
        warm: bool,
    ) -> Result<Created> {
        let name = quote_ident(db.database.as_str());
        // A warm database of this template, if one is in stock: a rename
        // instead of a copy. Tried first: its rename fails, changing
        // nothing, when the name is taken (by whatever holds it).
        if let Some(from) = template
            && warm
        {
            match self.claim_warm(db, from).await {
                Ok(true) => return Ok(Created::Claimed),
                Ok(false) => {}
                // The clone path says what is wrong, if anything is.
                Err(err) => {
                    tracing::warn!(database = %db.database, error = %err.chain(), "claiming a warm database failed; cloning")
                }
            }
        }
        // Created first, looked at only if that fails: a new tenant's name
        // is free (checked when it was reserved), so the lookup would cost
        // every create a round trip to help only a retry. PostgreSQL checks
        // the name before it copies anything.
        let create = |from: &str| {
            format!(
                "CREATE DATABASE {name} WITH OWNER {} TEMPLATE {} ALLOW_CONNECTIONS false",
                quote_ident(db.role.as_str()),
                quote_ident(from)
            )
        };
        let context = || format!("cannot create database '{}'", db.database);
        let is_duplicate = |err: &Error| matches!(err, Error::Server { source, .. } if sql_state(source).as_deref() == Some(DUPLICATE_DATABASE));
        if let Some(from) = template {
            let mut conn = self.inner.admin.acquire().await.map_err(Error::server(context()))?;
            let cloned = clone_template(&mut conn, &create(from), context).await;
            drop(conn);
            let Err(err) = cloned else {
                return Ok(Created::Cloned);
            };
            if let Some(held) = self.holder(db).await? {
                return held;
            }
            if is_duplicate(&err) {
                return Err(err);
            }
            // The template is gone (a newer deploy replaced it) or busy:
            // the migrations replayed on template0 give the same schema,
            // only slower.
            tracing::warn!(template = from, error = %err.chain(), "cloning the template failed; replaying migrations");
        }
        // template0, not template1: nobody can connect to template0, so no
        // session can block the copy and no role can have planted objects
        // in it.
        match self.exec_retrying(&create("template0"), context).await {
            Ok(()) => Ok(Created::Empty),
            Err(err) => self.holder(db).await?.unwrap_or(Err(err)),
        }
    }

    /// After a failed `CREATE DATABASE`: what holds the tenant's name.
    /// Ours (a retry, or a race lost to another creator): it exists.
    /// Foreign: refused. `None` when nothing does.
    async fn holder(&self, db: &DatabaseSpec) -> Result<Option<Result<Created>>> {
        Ok(match self.ownership(db, &db.database).await? {
            Ownership::Ours => Some(Ok(Created::Existing)),
            Ownership::Foreign => Some(Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: db.database.to_string(),
            })),
            Ownership::Missing => None,
        })
    }

    pub(crate) async fn open_database(&self, db: &DatabaseSpec) -> Result<()> {
        if self.ownership(db, &db.database).await? != Ownership::Ours {
            return Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: db.database.to_string(),
            });
        }
        self.secure_database(db).await
    }

    /// Closes the tenant's database to PUBLIC, marks it and lets
    /// connections in (its ownership already checked), committed durably:
    /// the log is flushed up to this commit, which covers the role and the
    /// database made before it (as `flush`).
    pub(crate) async fn secure_database(&self, db: &DatabaseSpec) -> Result<()> {
        let name = quote_ident(db.database.as_str());
        let context = || format!("cannot secure database '{}'", db.database);
        // One simple query is one transaction: the database opens only
        // together with its revoke and mark, at the cost of one commit.
        let sql = format!(
            "SET LOCAL synchronous_commit = on; \
             REVOKE ALL ON DATABASE {name} FROM PUBLIC; COMMENT ON DATABASE {name} IS {}; \
             ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true",
            quote_literal(&self.marker(db))
        );
        self.exec(&sql, context).await
    }

    pub(crate) async fn drop_tenant(&self, db: &DatabaseSpec) -> Result<()> {
        self.drop_database(db).await?;
        self.drop_role(db.tenant, &db.role).await
    }

    /// Drops the tenant's database if it is ours (its owner is the
    /// tenant's marked role); leaves anything else untouched.
    pub(crate) async fn drop_database(&self, db: &DatabaseSpec) -> Result<()> {
        match self.ownership(db, &db.database).await? {
            Ownership::Foreign => {
                // Somebody else's database under this name (it appeared
                // after our check): nothing of ours to drop there.
                tracing::warn!(
                    tenant.id = %db.tenant, database = %db.database,
                    "leaving a database tenantdb did not create untouched"
                );
            }
            Ownership::Ours => {
                let name = quote_ident(db.database.as_str());
                let context = || format!("cannot drop database '{}'", db.database);
                // A database whose DROP was interrupted is invalid
                // (`datconnlimit = -2`, PostgreSQL 13.12+, 14.9+, 15.4+):
                // every ALTER fails on it, DROP is what is left to do.
                if !self.is_invalid(db.database.as_str()).await? {
                    self.exec(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"), context)
                        .await?;
                }
                // FORCE ends the remaining sessions (PostgreSQL 13+).
                self.exec_retrying(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), context)
                    .await?;
            }
            Ownership::Missing => {}
        }
        Ok(())
    }

    /// Whether an interrupted `DROP DATABASE` left the database invalid.
    pub(crate) async fn is_invalid(&self, name: &str) -> Result<bool> {
        let invalid: Option<bool> = sqlx::query_scalar("SELECT datconnlimit = -2 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot look up database '{name}'")))?;
        Ok(invalid.unwrap_or(false))
    }

    pub(crate) async fn rename(&self, db: &DatabaseSpec, to: &DatabaseName) -> Result<()> {
        let from_state = self.ownership(db, &db.database).await?;
        let to_state = self.ownership(db, to).await?;
        let context = || format!("cannot rename database '{}' to '{to}'", db.database);
        match (from_state, to_state) {
            (Ownership::Ours, Ownership::Missing) => {
                let from = quote_ident(db.database.as_str());
                self.exec(&format!("ALTER DATABASE {from} WITH ALLOW_CONNECTIONS false"), context)
                    .await?;
                self.terminate_sessions(&db.database).await?;
                let sql = format!("ALTER DATABASE {from} RENAME TO {}", quote_ident(to.as_str()));
                if let Err(err) = self.exec_retrying(&sql, context).await {
                    // Leave the old database usable; the caller rolls back.
                    let reopen = format!("ALTER DATABASE {from} WITH ALLOW_CONNECTIONS true");
                    let _ = self.exec(&reopen, context).await;
                    return Err(err);
                }
            }
            // Already renamed by an earlier attempt that died.
            (Ownership::Missing, Ownership::Ours) => {}
            (Ownership::Missing, Ownership::Missing) => {
                return Err(Error::TenantDatabaseNotFound(format!(
                    "{} (database '{}' is missing on the server)",
                    db.tenant, db.database
                )));
            }
            _ => {
                return Err(Error::NotOurs {
                    tenant: db.tenant.to_string(),
                    database: to.to_string(),
                });
            }
        }
        let sql = format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            quote_ident(to.as_str())
        );
        self.exec(&sql, context).await
    }

    async fn terminate_sessions(&self, name: &DatabaseName) -> Result<()> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name.as_str())
        .execute(&self.inner.admin)
        .await
        .map_err(Error::server(format!("cannot end the sessions of database '{name}'")))?;
        Ok(())
    }
}

/// Clones a template on `conn`: PostgreSQL refuses while anyone is
/// connected to it (nobody should be: templates accept no connections),
/// after waiting up to 5 s itself for the sessions to leave. A busy
/// template is tried once more after a short pause, then the caller falls
/// back (to replaying migrations, or to no warm database) rather than
/// waiting longer.
pub(super) async fn clone_template(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    context: impl Fn() -> String,
) -> Result<()> {
    let mut result = run(conn, sql).await;
    if let Err(err) = &result
        && sql_state(err).as_deref() == Some(OBJECT_IN_USE)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        result = run(conn, sql).await;
    }
    result.map_err(|err| Error::server(context())(err))
}
