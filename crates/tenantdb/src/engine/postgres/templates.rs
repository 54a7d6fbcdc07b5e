//! Template databases: built once per migration set, immutable, cloned for
//! new tenants.
//!
//! A template is created owned by this catalog's template role
//! (`<prefix>tpl_<catalog id>`, NOLOGIN, made together with its mark in one
//! transaction), so it carries the catalog's mark from the statement that
//! creates it: no moment exists at which a crash leaves an unmarked
//! template. A database is this catalog's template only when its owner is
//! that marked role (or, for templates built before the role existed, when
//! it is a finished template owned by the admin role with this catalog's
//! template comment). Nothing else is ever dropped or replaced as a
//! template, and the check runs right before each statement that would.
//! A tenant's role owns its own database and may comment on it, but can
//! neither give it away nor make it a template.

use sea_orm::SqlxPostgresConnector;
use sqlx::{AssertSqlSafe, Connection};

use super::{DUPLICATE_OBJECT, PostgresEngine, sql_state};
use crate::error::{Error, Result};
use crate::names::{RoleName, quote_ident, quote_literal};

/// What `classify_template` needs to know of a database.
#[derive(Debug)]
pub(super) struct FoundDatabase {
    pub name: String,
    pub owner: String,
    pub owner_mark: Option<String>,
    pub mark: Option<String>,
    pub is_template: bool,
    pub admin_owned: bool,
}

impl FoundDatabase {
    pub(super) fn from_row(row: &sqlx::postgres::PgRow) -> Self {
        use sqlx::Row;
        Self {
            name: row.get("name"),
            owner: row.get("owner"),
            owner_mark: row.get("owner_mark"),
            mark: row.get("mark"),
            is_template: row.get("is_template"),
            admin_owned: row.get("admin_owned"),
        }
    }
}

/// Selects `FoundDatabase` rows (add a `WHERE`).
pub(super) const FOUND_DATABASE: &str = "SELECT d.datname::text AS name, r.rolname::text AS owner, \
     shobj_description(r.oid, 'pg_authid') AS owner_mark, shobj_description(d.oid, 'pg_database') AS mark, \
     d.datistemplate AS is_template, r.rolname = current_user AS admin_owned \
     FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba";

/// What a database of a template's name is to this catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TemplateState {
    /// No database of that name.
    Missing,
    /// Not this catalog's template: never touched.
    Foreign,
    /// This catalog's, left half-built by a crash (or being built).
    Building,
    /// This catalog's, finished at this migration hash.
    Ready(String),
    /// A warm database of this catalog, cloned from this template (see
    /// `warm`).
    Warm(String),
}

impl PostgresEngine {
    fn template_mark_prefix(&self) -> String {
        format!("tenantdb template catalog={} ", self.inner.catalog_id)
    }

    pub(super) fn template_marker(&self, version: &str) -> String {
        format!("{}version={version}", self.template_mark_prefix())
    }

    pub(super) fn template_owner_marker(&self) -> String {
        format!("tenantdb template-owner catalog={}", self.inner.catalog_id)
    }

    /// Decides whose a database is from its owner and comments.
    pub(super) fn classify_template(&self, found: &FoundDatabase) -> TemplateState {
        let mark = found
            .mark
            .as_deref()
            .and_then(|m| m.strip_prefix(&self.template_mark_prefix()));
        let version = mark.and_then(|m| m.strip_prefix("version="));
        if found.owner_mark.as_deref() == Some(self.template_owner_marker().as_str()) {
            if let Some(template) = self.warm_template_of(found.mark.as_deref())
                && !found.is_template
            {
                return TemplateState::Warm(template.to_owned());
            }
            // Made, but its comment never written (a crash or a stop
            // between the two statements): a stale warm database.
            if found.mark.is_none() && !found.is_template && found.name.contains("-wrm-") {
                return TemplateState::Warm(String::new());
            }
            return match version {
                Some(version) if found.is_template => TemplateState::Ready(version.to_owned()),
                _ => TemplateState::Building,
            };
        }
        match version {
            // Built by the admin role before templates had an owner role.
            Some(version) if found.admin_owned && found.is_template => TemplateState::Ready(version.to_owned()),
            _ => TemplateState::Foreign,
        }
    }

    pub(super) async fn template_state(&self, name: &str) -> Result<TemplateState> {
        let found = sqlx::query(AssertSqlSafe(format!("{FOUND_DATABASE} WHERE d.datname = $1")))
            .bind(name)
            .fetch_optional(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot look up template '{name}'")))?
            .as_ref()
            .map(FoundDatabase::from_row);
        Ok(found.map_or(TemplateState::Missing, |found| self.classify_template(&found)))
    }

    /// Makes sure this catalog's template role exists, marked; refuses a
    /// role of that name that is not.
    async fn ensure_template_owner(&self, owner: &RoleName) -> Result<()> {
        let marker = self.template_owner_marker();
        match self.role_mark(owner).await? {
            Some(mark) if mark.as_deref() == Some(marker.as_str()) => Ok(()),
            Some(_) => Err(Error::NotOurs {
                tenant: "(template)".into(),
                database: format!("(role) {owner}"),
            }),
            None => {
                let quoted = quote_ident(owner.as_str());
                let sql = format!(
                    "CREATE ROLE {quoted} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT; \
                     COMMENT ON ROLE {quoted} IS {}; GRANT {quoted} TO current_user",
                    quote_literal(&marker)
                );
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.inner.admin).await {
                    Ok(_) => Ok(()),
                    // Another process made it first: check its mark.
                    Err(err) if sql_state(&err).as_deref() == Some(DUPLICATE_OBJECT) => {
                        Box::pin(self.ensure_template_owner(owner)).await
                    }
                    Err(err) => Err(Error::server(format!("cannot create role '{owner}'"))(err)),
                }
            }
        }
    }

    /// Makes sure the template `name` exists at `version` (the tenant
    /// migrations applied, every object owned by `pg_database_owner` so a
    /// clone's owner has full rights with no fix-up), immutable (a template
    /// that accepts no connections) and marked. Builders in several
    /// processes are serialised by an advisory lock; a half-built template
    /// left by a crash is dropped and built again. Older templates of this
    /// catalog are dropped once this one is ready. A foreign database under
    /// the name is left alone and the build refused.
    pub(crate) async fn ensure_template(
        &self,
        name: &str,
        owner: &RoleName,
        version: &str,
        migrations: Vec<Box<dyn sea_orm_migration::MigrationTrait>>,
    ) -> Result<()> {
        let ready = TemplateState::Ready(version.to_owned());
        if self.template_state(name).await? == ready {
            return Ok(());
        }
        let _local = self.inner.template_build.lock().await;
        if self.template_state(name).await? == ready {
            return Ok(());
        }
        // Across processes: an advisory lock on a connection of its own (a
        // pooled one would starve the build of admin connections).
        let mut lock = sqlx::PgConnection::connect_with(&self.inner.options)
            .await
            .map_err(Error::server("cannot take the template lock"))?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(name)
            .execute(&mut lock)
            .await
            .map_err(Error::server("cannot take the template lock"))?;
        let built = async {
            self.ensure_template_owner(owner).await?;
            self.build_template(name, owner, version, migrations).await
        }
        .await;
        // Clean up while the lock is held: after it, another builder may
        // already be building under the same name.
        match &built {
            Err(Error::NotOurs { .. }) => {}
            Err(_) => {
                let _ = self.drop_template(name).await;
            }
            Ok(()) => self.drop_old_templates(name).await,
        }
        // Closing the connection releases the lock.
        let _ = lock.close().await;
        built?;
        self.flush().await
    }

    async fn build_template(
        &self,
        name: &str,
        owner: &RoleName,
        version: &str,
        migrations: Vec<Box<dyn sea_orm_migration::MigrationTrait>>,
    ) -> Result<()> {
        match self.template_state(name).await? {
            TemplateState::Ready(found) if found == version => return Ok(()),
            TemplateState::Missing => {}
            _ => self.drop_template(name).await?,
        }
        let quoted = quote_ident(name);
        let context = || format!("cannot build template '{name}'");
        let create = format!(
            "CREATE DATABASE {quoted} WITH OWNER {} TEMPLATE template0",
            quote_ident(owner.as_str())
        );
        self.exec_retrying(&create, context).await?;
        crate::faults::reached(crate::faults::Step::TemplateCreated);
        // Objects made as pg_database_owner belong to whoever owns the
        // database: in a clone, the tenant's role.
        let pool = crate::pool_options::postgres_job(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("SET ROLE pg_database_owner").execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_with(self.inner.options.clone().database(name))
            .await
            .map_err(Error::server(context()))?;
        let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
        let applied = crate::migrate::apply_pending(&db, migrations, &|| true).await;
        let _ = db.close().await;
        if let Err(failure) = applied {
            return Err(Error::MigrationFailed {
                tenant: "(template)".into(),
                database: name.to_owned(),
                migration: failure.migration,
                message: failure.error.to_string(),
            });
        }
        crate::faults::reached(crate::faults::Step::TemplateMigrated);
        let marker = self.template_marker(version);
        // One simple query, one transaction: the template is marked ready
        // only together with its revoke and its closing.
        let sql = format!(
            "REVOKE ALL ON DATABASE {quoted} FROM PUBLIC; COMMENT ON DATABASE {quoted} IS {}; \
             ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
            quote_literal(&marker)
        );
        self.exec(&sql, context).await
    }

    /// Drops a template of this catalog (a half-built one too); refuses
    /// anything else with `NotOurs`.
    pub(crate) async fn drop_template(&self, name: &str) -> Result<()> {
        match self.template_state(name).await? {
            TemplateState::Missing => Ok(()),
            TemplateState::Foreign => Err(Error::NotOurs {
                tenant: "(template)".into(),
                database: name.to_owned(),
            }),
            TemplateState::Building | TemplateState::Ready(_) | TemplateState::Warm(_) => {
                let quoted = quote_ident(name);
                let context = || format!("cannot drop template '{name}'");
                // A template whose DROP was interrupted is invalid: every
                // ALTER fails on it, and DROP is what is left to do.
                if !self.is_invalid(name).await? {
                    self.exec(&format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"), context)
                        .await?;
                }
                self.exec_retrying(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"), context)
                    .await
            }
        }
    }

    /// Drops this catalog's finished templates other than `keep` (older
    /// migration sets, and templates named before the template name
    /// space carried the catalog's id).
    async fn drop_old_templates(&self, keep: &str) {
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE datistemplate AND datname <> $1 \
             AND starts_with(shobj_description(oid, 'pg_database'), $2)",
        )
        .bind(keep)
        .bind(self.template_mark_prefix())
        .fetch_all(&self.inner.admin)
        .await
        .unwrap_or_default();
        for name in old {
            if let Err(err) = self.drop_template(&name).await {
                tracing::warn!(template = %name, error = %err.chain(), "dropping an old template failed");
            }
        }
    }
}
