//! The inventory: what is on the server under this deployment's prefix,
//! template stem and marks, for `doctor`. Read-only.

use sqlx::AssertSqlSafe;

use super::PostgresEngine;
use super::templates::{FOUND_DATABASE, FoundDatabase, TemplateState};
use crate::engine::{Inventory, MarkedRole, ServerDatabase, ServerTemplate};
use crate::error::{Error, Result};
use crate::names::DatabasePrefix;

impl PostgresEngine {
    /// What exists on the server under `prefix` and the template `stem`,
    /// or marked by this catalog.
    pub(crate) async fn inventory(&self, prefix: &DatabasePrefix, stem: &str) -> Result<Inventory> {
        let context = || "cannot list the databases of the tenant server".to_owned();
        let tenant_marks = format!("tenantdb catalog={} tenant=%", self.inner.catalog_id);
        let template_marks = format!("tenantdb template catalog={} %", self.inner.catalog_id);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{FOUND_DATABASE} WHERE starts_with(d.datname, $1) OR starts_with(d.datname, $2) \
             OR shobj_description(r.oid, 'pg_authid') LIKE $3 \
             OR shobj_description(d.oid, 'pg_database') LIKE $4 \
             OR shobj_description(r.oid, 'pg_authid') = $5 \
             ORDER BY d.datname"
        )))
        .bind(prefix.as_str())
        .bind(stem)
        .bind(&tenant_marks)
        .bind(&template_marks)
        .bind(self.template_owner_marker())
        .fetch_all(&self.inner.admin)
        .await
        .map_err(|err| Error::server(context())(err))?;
        let mut inventory = Inventory::default();
        for found in rows.iter().map(FoundDatabase::from_row) {
            let tenant = self.marked_tenant(found.owner_mark.as_deref());
            if tenant.is_none() {
                let version = match self.classify_template(&found) {
                    TemplateState::Ready(version) => Some(Some(version)),
                    TemplateState::Building => Some(None),
                    TemplateState::Warm(template) => {
                        inventory.warm.push(crate::engine::WarmDatabase {
                            name: found.name,
                            template,
                        });
                        continue;
                    }
                    TemplateState::Missing | TemplateState::Foreign => None,
                };
                if let Some(version) = version {
                    inventory.templates.push(ServerTemplate {
                        name: found.name,
                        version,
                    });
                    continue;
                }
            }
            let moved_to = tenant.and_then(|tenant| self.moved_mark_of(tenant, found.mark.as_deref()));
            inventory.databases.push(ServerDatabase {
                name: found.name,
                tenant,
                owner: Some(found.owner),
                moved_to,
            });
        }
        let roles: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
             WHERE shobj_description(oid, 'pg_authid') LIKE $1 OR starts_with(rolname, $2) \
                OR starts_with(rolname, $3) ORDER BY rolname",
        )
        .bind(&tenant_marks)
        .bind(prefix.as_str())
        .bind(stem.trim_end_matches('-'))
        .fetch_all(&self.inner.admin)
        .await
        .map_err(|err| Error::server("cannot list the roles of the tenant server")(err))?;
        let template_owner = self.template_owner_marker();
        for (name, mark) in roles {
            if let Some(tenant) = self.marked_tenant(mark.as_deref()) {
                inventory.roles.push(MarkedRole { name, tenant });
            } else if mark.as_deref() != Some(template_owner.as_str()) {
                inventory.foreign_roles.push(name);
            }
        }
        Ok(inventory)
    }
}
