//! Tenant roles: one login role per tenant, made together with the mark
//! (its comment) that says which catalog and tenant it belongs to; only a
//! role with this catalog's mark is ever altered or dropped.

use sqlx::AssertSqlSafe;

use super::{DEPENDENT_OBJECTS, DUPLICATE_OBJECT, PostgresEngine, sql_state};
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::names::{RoleName, TenantId, quote_ident, quote_literal};

impl PostgresEngine {
    /// The mark (comment) of this catalog's role for the tenant.
    pub(super) fn marker(&self, db: &DatabaseSpec) -> String {
        format!("tenantdb catalog={} tenant={}", self.inner.catalog_id, db.tenant)
    }

    /// The tenant a role mark of this catalog names, if it is one.
    pub(super) fn marked_tenant(&self, mark: Option<&str>) -> Option<TenantId> {
        let rest = mark?.strip_prefix(&format!("tenantdb catalog={} tenant=", self.inner.catalog_id))?;
        TenantId::parse(rest).ok()
    }

    /// The role's comment, or `None` when the role does not exist.
    pub(super) async fn role_mark(&self, role: &RoleName) -> Result<Option<Option<String>>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
                .bind(role.as_str())
                .fetch_optional(&self.inner.admin)
                .await
                .map_err(Error::server(format!("cannot look up role '{role}'")))?;
        Ok(row.map(|(mark,)| mark))
    }

    /// `ensure_role` for a role that should not exist yet (a new tenant's):
    /// the create is tried first, one round trip; if a role holds the name
    /// after all, `ensure_role` decides as ever.
    pub(crate) async fn create_role(&self, db: &DatabaseSpec) -> Result<()> {
        match sqlx::raw_sql(AssertSqlSafe(self.create_role_sql(db)))
            .execute(&self.inner.admin)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if sql_state(&err).as_deref() == Some(DUPLICATE_OBJECT) => self.ensure_role(db).await,
            Err(err) => Err(Error::server(format!("cannot create role '{}'", db.role))(err)),
        }
    }

    /// Creates the role with its mark, and lets the admin act as it: one
    /// simple query, so one implicit transaction and one round trip, and
    /// the role never exists without its mark.
    fn create_role_sql(&self, db: &DatabaseSpec) -> String {
        let role = quote_ident(db.role.as_str());
        let password = quote_literal(&self.inner.secret.verifier_for(db.tenant));
        let limit = self.inner.role_connection_limit;
        let create = format!(
            "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {password}"
        );
        let comment = format!("COMMENT ON ROLE {role} IS {}", quote_literal(&self.marker(db)));
        // An admin that is not a superuser (CREATEDB and CREATEROLE only)
        // must be a member of a role to create a database owned by it, and
        // to alter or drop that database later.
        let grant = format!("GRANT {role} TO current_user");
        format!("{create}; {comment}; {grant}")
    }

    pub(crate) async fn ensure_role(&self, db: &DatabaseSpec) -> Result<()> {
        let role = quote_ident(db.role.as_str());
        let password = quote_literal(&self.inner.secret.verifier_for(db.tenant));
        let limit = self.inner.role_connection_limit;
        match self.role_mark(&db.role).await? {
            Some(mark) if mark.as_deref() == Some(self.marker(db).as_str()) => {
                let sql = format!(
                    "ALTER ROLE {role} WITH LOGIN CONNECTION LIMIT {limit} PASSWORD {password}; \
                     GRANT {role} TO current_user"
                );
                self.exec(&sql, || format!("cannot update role '{}'", db.role)).await
            }
            Some(_) => Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: format!("(role) {}", db.role),
            }),
            None => {
                let result = sqlx::raw_sql(AssertSqlSafe(self.create_role_sql(db)))
                    .execute(&self.inner.admin)
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    // Two processes raced to create it: the winner's role
                    // carries the same mark, which the next call checks.
                    Err(err) if sql_state(&err).as_deref() == Some(DUPLICATE_OBJECT) => {
                        Box::pin(self.ensure_role(db)).await
                    }
                    Err(err) => Err(Error::server(format!("cannot create role '{}'", db.role))(err)),
                }
            }
        }
    }

    /// Drops a role this catalog marked for `tenant`; any other is refused.
    /// A role that still has objects or privileges elsewhere (granted by
    /// hand: PostgreSQL refuses with 2BP01) cannot be dropped without
    /// reaching into other databases: it is locked out (`NOLOGIN`) instead,
    /// and `doctor` reports it as an orphan role.
    pub(crate) async fn drop_role(&self, tenant: TenantId, role: &RoleName) -> Result<()> {
        match self.role_mark(role).await? {
            None => Ok(()),
            Some(mark) if self.marked_tenant(mark.as_deref()) == Some(tenant) => {
                let quoted = quote_ident(role.as_str());
                let sql = format!("DROP ROLE IF EXISTS {quoted}");
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.inner.admin).await {
                    Ok(_) => Ok(()),
                    Err(err) if sql_state(&err).as_deref() == Some(DEPENDENT_OBJECTS) => {
                        tracing::warn!(
                            tenant.id = %tenant, role = %role, error = %err,
                            "the tenant's role still has objects or privileges elsewhere; locking it out instead of dropping it"
                        );
                        let lock = format!("ALTER ROLE {quoted} WITH NOLOGIN");
                        self.exec(&lock, || format!("cannot lock out role '{role}'")).await
                    }
                    Err(err) => Err(Error::server(format!("cannot drop role '{role}'"))(err)),
                }
            }
            Some(_) => Err(Error::NotOurs {
                tenant: tenant.to_string(),
                database: format!("(role) {role}"),
            }),
        }
    }
}
