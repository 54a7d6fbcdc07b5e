//! Create: the steps that make a tenant's role and database, migrate it
//! and open it; a failure cleans up and leaves the row FAILED, which
//! `retry` provisions again.

use chrono::Utc;
use sea_orm::Set;
use uuid::Uuid;

use super::lease::LeaseKeeper;
use super::steps::{Change, Row, is_crash};
use super::{Provisioner, Step};
use crate::catalog::{DbStatus, tenant_database};
use crate::engine::{Created, DatabaseSpec};
use crate::error::{Error, Result};
use crate::names::{DatabaseName, RoleName, TenantId, TenantRef};
use crate::sites::Site;
use crate::tenant::TenantDatabase;

/// Where an import's database comes from.
#[derive(Debug, Clone)]
pub(super) struct Import {
    pub(super) file: std::path::PathBuf,
    /// Where the database begins in the file (after the export's header).
    pub(super) offset: u64,
    /// `postgres` or `sqlite`, from the header.
    pub(super) engine: String,
}

/// The key of `move_state` that marks a row being imported.
const IMPORT_MARK: &str = "import";

/// Whether `row` is as its insert left it (every claim and change of a row
/// adds one to its `version`): nothing of its tenant was made yet.
fn is_new(row: &Row) -> bool {
    row.version == 0
}

/// Whether the row is an import under way.
fn is_import(row: &Row) -> bool {
    row.move_state
        .as_ref()
        .is_some_and(|state| state.get(IMPORT_MARK).is_some())
}

impl Provisioner {
    /// A PROVISIONING row for a new database, leased to us.
    pub(super) fn new_row(
        &self,
        server: Uuid,
        tenant: TenantId,
        database: &DatabaseName,
        import: bool,
    ) -> tenant_database::ActiveModel {
        let now = Utc::now();
        let lease = self.new_lease();
        tenant_database::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant.as_uuid()),
            server_id: Set(server),
            database_name: Set(database.as_str().to_owned()),
            pending_database_name: Set(None),
            read_server_id: Set(server),
            read_database_name: Set(database.as_str().to_owned()),
            role_name: Set(RoleName::for_tenant(&self.inner.prefix, tenant).as_str().to_owned()),
            secret_version: Set(self.inner.secret_version),
            status: Set(DbStatus::Provisioning),
            schema_version: Set(None),
            last_migration_at: Set(None),
            error_message: Set(None),
            purge_tenant: Set(false),
            // An import says so on its row: a process that takes it over
            // cannot read the file, and must not finish it empty.
            move_state: Set(import.then(|| serde_json::json!({ IMPORT_MARK: true }))),
            deleted_at: Set(None),
            purge_after: Set(None),
            lease_owner: Set(Some(lease.owner)),
            lease_expires_at: Set(Some(now + chrono::Duration::from_std(lease.ttl).unwrap_or_default())),
            version: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }

    /// Runs the create steps on a PROVISIONING row we hold.
    pub(super) async fn provision(&self, row: Row) -> Result<Row> {
        self.provision_with(row, None).await
    }

    /// `provision`, restoring `import` into the new database.
    pub(super) async fn provision_with(&self, row: Row, import: Option<&Import>) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let keeper = self.keep(&row);
        let started = std::time::Instant::now();
        let interrupted = import.is_none() && is_import(&row);
        let (site, outcome) = match self.site_of(&row).await {
            Ok(_) if interrupted => (
                None,
                Err(Error::Config(
                    "an import was interrupted (its file is not at hand here): delete the tenant and import it again"
                        .into(),
                )),
            ),
            Ok(site) => {
                let outcome = self.provision_steps(&site, &spec, &keeper, import, is_new(&row)).await;
                (Some(site), outcome)
            }
            Err(err) => (None, Err(err)),
        };
        match outcome {
            Ok(version) => {
                let change = Change {
                    schema_version: Set(version),
                    last_migration_at: Set(Some(Utc::now())),
                    error_message: Set(None),
                    move_state: Set(None),
                    ..Default::default()
                };
                let row = self.finish(&row, DbStatus::Active, change).await?;
                metrics::counter!("tenantdb_provisioning_total", "outcome" => "active").increment(1);
                metrics::histogram!("tenantdb_provisioning_seconds").record(started.elapsed().as_secs_f64());
                tracing::info!(
                    tenant.id = %row.tenant_id,
                    database = %row.database_name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "tenant database is active"
                );
                Ok(row)
            }
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => Err(self
                .provisioning_failed(row, site.as_deref(), &spec, &keeper, err)
                .await),
        }
    }

    /// After a failed create: drops what was made (while the lease is
    /// still ours) and marks the row FAILED with the reason.
    async fn provisioning_failed(
        &self,
        row: Row,
        site: Option<&Site>,
        spec: &DatabaseSpec,
        keeper: &LeaseKeeper,
        err: Error,
    ) -> Error {
        let mut message = err.chain();
        // Clean up only what is still certainly ours: if the lease
        // lapsed, another process may own (and have finished) it.
        let lease = self.lease_of(&row);
        let still_ours = keeper.held()
            && self
                .inner
                .catalog
                .tenant_databases()
                .renew(row.id, &lease)
                .await
                .unwrap_or(false);
        if !still_ours {
            return Error::LeaseLost {
                tenant: row.tenant_id.to_string(),
            };
        }
        // Leave nothing half-made; if cleanup fails too, retry
        // finishes the same (idempotent) steps.
        // (A server that could not be reached has nothing of it to drop
        // that retry would not finish.)
        let cleanup = match site {
            Some(site) => match site.engine.drop_tenant(spec).await {
                Ok(()) => site.engine.flush().await,
                Err(err) => Err(err),
            },
            None => Ok(()),
        };
        if let Err(cleanup) = cleanup {
            message.push_str(&format!("; cleanup failed too: {}", cleanup.chain()));
        }
        tracing::warn!(tenant.id = %row.tenant_id, database = %row.database_name, error = %message, "provisioning failed");
        metrics::counter!("tenantdb_provisioning_total", "outcome" => "failed").increment(1);
        let change = Change {
            error_message: Set(Some(message.clone())),
            ..Default::default()
        };
        if let Err(finish) = self.finish(&row, DbStatus::Failed, change).await {
            tracing::error!(tenant.id = %row.tenant_id, error = %finish.chain(), "cannot mark the row FAILED");
        }
        Error::ProvisioningFailed {
            tenant: row.tenant_id.to_string(),
            database: row.database_name,
            message,
        }
    }

    async fn provision_steps(
        &self,
        site: &Site,
        spec: &DatabaseSpec,
        keeper: &LeaseKeeper,
        import: Option<&Import>,
        new: bool,
    ) -> Result<Option<String>> {
        let tenant = spec.tenant.as_uuid();
        if new {
            site.engine.create_role(spec).await?;
        } else {
            site.engine.ensure_role(spec).await?;
        }
        self.step(Step::RoleCreated, tenant)?;
        keeper.check()?;
        if let Some(import) = import {
            site.engine.import(spec, &import.file, import.offset).await?;
            site.engine.flush().await?;
            keeper.check()?;
            // An older export is brought up to this program's version.
            let version = self
                .apply_migrations(site, spec, &|| keeper.held())
                .await?
                .map_err(|failure| Self::migration_error(spec, failure))?
                .version;
            keeper.check()?;
            return Ok(version);
        }
        let template = site.templates.ready().await;
        let created = site
            .engine
            .create_database_from(spec, template.as_deref(), self.inner.warm_databases > 0)
            .await?;
        if matches!(created, Created::Cloned | Created::Claimed) {
            // Perhaps a warm one: the stock is looked at again.
            self.warm_used();
        }
        if template.is_some() && created == Created::Empty {
            site.templates.forget();
        }
        self.step(Step::DatabaseCreated, tenant)?;
        keeper.check()?;
        // The role and database are durable before anything is recorded:
        // opening (or the claim, which opened) commits durably, which
        // covers everything made before it.
        match created {
            Created::Claimed => {}
            Created::Cloned | Created::Empty => site.engine.open_new_database(spec).await?,
            Created::Existing => site.engine.open_database(spec).await?,
        }
        self.step(Step::DatabaseOpened, tenant)?;
        keeper.check()?;
        let version = if matches!(created, Created::Cloned | Created::Claimed) {
            // The template holds every migration of this version (it is
            // marked only once they all applied): no connection needed.
            self.inner.migrations.latest_version()
        } else {
            self.apply_migrations(site, spec, &|| keeper.held())
                .await?
                .map_err(|failure| Self::migration_error(spec, failure))?
                .version
        };
        self.step(Step::Migrated, tenant)?;
        keeper.check()?;
        Ok(version)
    }

    /// Provisions a FAILED tenant database again.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn retry(&self, tenant: &TenantRef) -> Result<TenantDatabase> {
        let (_, row) = self.load(tenant).await?;
        self.expect(&row, &[DbStatus::Failed], "retry")?;
        self.check_migration_set().await?;
        let change = Change {
            error_message: Set(None),
            secret_version: Set(self.inner.secret_version),
            ..Default::default()
        };
        let row = self.claim(&row, DbStatus::Provisioning, change).await?;
        self.step(Step::RetryClaimed, row.tenant_id)?;
        let row = self.run(move |this| async move { this.provision(row).await }).await?;
        Ok(self.public(&row))
    }
}
