//! Templates: one database per deployment and migration set, migrated once,
//! that new tenant databases are cloned from (PostgreSQL's `CREATE DATABASE
//! ... TEMPLATE`, a file copy on SQLite) instead of replaying every
//! migration.
//!
//! A template is named `<prefix>-tpl-<catalog id>-<hash of the migration
//! names>` (see `names::template_stem`): every process with the
//! same catalog and migrations agrees on it, and no tenant database name can
//! be one. It is owned by the deployment's NOLOGIN template role, which
//! marks it as this catalog's from the statement that creates it.

use std::sync::{Arc, Mutex};

use crate::catalog::Catalog;
use crate::engine::Engine;
use crate::migrate::TenantMigrations;
use crate::names::{DatabasePrefix, RoleName};

/// The name of this deployment's template and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName {
    /// The whole name.
    pub name: String,
    /// What every template name of this deployment starts with.
    pub stem: String,
    /// The hash of the migration names.
    pub version: String,
}

/// This deployment's templates: which one is current, and building it.
#[derive(Clone)]
pub struct Templates {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    engine: Engine,
    migrations: TenantMigrations,
    prefix: DatabasePrefix,
    enabled: bool,
    /// The template this process built or found ready: later creates clone
    /// it without asking the server first. Forgotten when a clone fails.
    ready: Mutex<Option<String>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("enabled", &self.inner.enabled)
            .field("current", &self.current().map(|t| t.name))
            .finish_non_exhaustive()
    }
}

impl Templates {
    pub(crate) fn new(
        catalog: Catalog,
        engine: Engine,
        migrations: TenantMigrations,
        prefix: DatabasePrefix,
        enabled: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                engine,
                migrations,
                prefix,
                enabled,
                ready: Mutex::new(None),
            }),
        }
    }

    /// The current template's name. `None` when templates are off or there
    /// are no migrations.
    pub fn current(&self) -> Option<TemplateName> {
        let identity = self.inner.migrations.identity();
        if !self.inner.enabled || identity.is_empty() {
            return None;
        }
        let version = crate::digest::sha256_hex(&identity)[..12].to_owned();
        let stem = self.stem();
        Some(TemplateName {
            name: format!("{stem}{version}"),
            stem,
            version,
        })
    }

    /// What every template name of this deployment starts with.
    pub(crate) fn stem(&self) -> String {
        crate::names::template_stem(&self.inner.prefix, self.inner.catalog.id())
    }

    /// The template for new databases, built if needed (and the catalog
    /// pointed at it). `None` (replay the migrations) when templates are
    /// off, this program's migration set is not the catalog's, or it cannot
    /// be built.
    pub async fn ready(&self) -> Option<String> {
        let template = self.current()?;
        if self.cached().as_deref() == Some(template.name.as_str()) {
            return Some(template.name);
        }
        if let Err(err) = crate::migration_set::check(&self.inner.catalog, &self.inner.migrations).await {
            tracing::warn!(template = %template.name, error = %err.chain(), "not building a template");
            return None;
        }
        let built = self
            .inner
            .engine
            .ensure_template(
                &template.name,
                &RoleName::for_templates(&self.inner.prefix, self.inner.catalog.id()),
                &template.version,
                self.inner.migrations.migrations(),
            )
            .await;
        if let Err(err) = built {
            tracing::warn!(template = %template.name, error = %err.chain(), "no template; replaying migrations");
            return None;
        }
        self.point_catalog_at(&template.name).await;
        *self.inner.ready.lock().unwrap_or_else(|e| e.into_inner()) = Some(template.name.clone());
        Some(template.name)
    }

    /// Builds the current template and drops this deployment's others
    /// (older versions, half-built ones): what a fleet migration to a new
    /// migration set leaves behind. Failures are logged; `doctor` reports
    /// what is left.
    pub(crate) async fn refresh(&self) {
        let Some(current) = self.ready().await else {
            return;
        };
        let engine = &self.inner.engine;
        let inventory = match engine.inventory(&self.inner.prefix, &self.stem()).await {
            Ok(inventory) => inventory,
            Err(err) => {
                tracing::warn!(error = %err.chain(), "cannot list templates to drop stale ones");
                return;
            }
        };
        for stale in inventory.templates.iter().filter(|t| t.name != current) {
            match engine.drop_template(&stale.name).await {
                Ok(()) => tracing::info!(template = %stale.name, "dropped a stale template"),
                Err(err) => {
                    tracing::warn!(template = %stale.name, error = %err.chain(), "cannot drop a stale template")
                }
            }
        }
    }

    async fn point_catalog_at(&self, name: &str) {
        let catalog = &self.inner.catalog;
        match catalog.template().await {
            Ok(current) if current.as_deref() == Some(name) => {}
            _ => {
                if let Err(err) = catalog.set_template(Some(name)).await {
                    tracing::warn!(template = %name, error = %err.chain(), "cannot point the catalog at the template");
                }
            }
        }
    }

    fn cached(&self) -> Option<String> {
        self.inner.ready.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the ready template (a clone of it failed, or it was dropped):
    /// the next create checks the server again and rebuilds it if it is
    /// gone.
    pub(crate) fn forget(&self) {
        *self.inner.ready.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
