//! The provisioner: create, retry, rename, delete and migrate tenant
//! databases, and reconcile what a dead process left half-done.
//!
//! Every operation follows the same shape:
//! 1. validate, then claim the row (a conditional UPDATE into a working
//!    status that takes the row's lease);
//! 2. run idempotent engine steps in a task owned by the provisioner, so a
//!    caller that goes away (a client hanging up, a request timeout) never
//!    cancels DDL half-way, and [`Provisioner::shutdown`] waits for it;
//! 3. finish the row (status, versions, error message; lease released).
//!
//! A process that dies between steps leaves the row in its working status
//! with a lease that expires; [`Provisioner::reconcile`] then runs the same
//! steps again, which finishes the work.

mod create;
mod delete;
mod lease;
mod migrate;
mod moves;
mod names;
mod placement;
mod reconcile;
mod rename;
mod steps;
mod warm;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sea_orm::Set;
use uuid::Uuid;

use crate::catalog::{Catalog, TenantStatus, tenant_database, tenants};
use crate::engine::{DatabaseSpec, Engine};
use crate::error::{Error, Result};
use crate::migrate::TenantMigrations;
use crate::names::{DatabaseName, DatabasePrefix, RoleName, TenantId, TenantRef, TenantSlug};
use crate::sites::{Site, Sites};
use crate::templates::Templates;
use crate::tenant::TenantDatabase;

pub use delete::Purged;
pub use moves::MoveTenant;
pub use placement::{Candidate, FewestTenants, Placement};
pub use reconcile::{ReconcileOutcome, Reconciled};
pub use warm::WarmStock;

/// How long a rename or delete waits for this process's borrowed
/// connections to come back before going ahead (PostgreSQL then ends the
/// remaining sessions itself).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Longest display name of a tenant.
pub(crate) const MAX_TENANT_NAME_LEN: usize = 200;

pub(crate) use crate::faults::Step;

/// What `create_tenant` needs.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    /// The tenant's slug: a DNS label, unique (see [`TenantSlug`](crate::TenantSlug)).
    pub slug: String,
    /// Display name; the slug when empty.
    pub name: Option<String>,
    /// Requested database name; generated from the prefix and slug if none.
    pub database_name: Option<String>,
    /// A user made OWNER, in the same transaction as the tenant (so a failed
    /// provisioning or a caller that goes away cannot lose it).
    pub owner_user_id: Option<Uuid>,
    /// A plan: the tenant's subscription starts TRIALING on it (same
    /// transaction).
    pub plan: Option<String>,
    /// The tenant server its database goes to, by name; the deployment's
    /// [`Placement`] chooses when `None`.
    pub server: Option<String>,
}

/// Creates, retries, renames, deletes and migrates tenant databases, and
/// reconciles work a dead process left half-done (see the module docs).
/// Reached from `Tenancy::provisioner`; cheap to clone.
#[derive(Clone)]
pub struct Provisioner {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    /// The tenant servers: engine, template and this process's pools
    /// (closed before a rename or delete) of each.
    sites: Sites,
    placement: std::sync::RwLock<Arc<dyn Placement>>,
    migrations: TenantMigrations,
    prefix: DatabasePrefix,
    /// Names no tenant may take besides the system ones (the catalog's own
    /// database when it lives on the tenant server).
    reserved: Vec<String>,
    secret_version: i32,
    /// Identifies this process in lease owners; each claim adds a token of
    /// its own, so two operations of one process never share a lease.
    lease_prefix: String,
    lease_ttl: Duration,
    shutdown_deadline: Duration,
    deleted_retention: Duration,
    warm_databases: usize,
    warm_wanted: tokio::sync::Notify,
    /// Tenants per server as placement last read them (see
    /// `placement::TenantCounts`).
    counts: placement::TenantCounts,
    tasks: tokio_util::task::TaskTracker,
    crash_after: Mutex<Option<Step>>,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("servers", &self.inner.sites.all_opened().len())
            .field("lease_prefix", &self.inner.lease_prefix)
            .finish_non_exhaustive()
    }
}

/// Settings of a provisioner (built by `Tenancy`).
#[derive(Debug, Clone)]
pub(crate) struct ProvisionerSettings {
    pub(crate) prefix: DatabasePrefix,
    pub(crate) reserved: Vec<String>,
    pub(crate) secret_version: i32,
    pub(crate) lease_ttl: Duration,
    /// How long `shutdown` waits for work under way.
    pub(crate) shutdown_deadline: Duration,
    /// How long a deleted tenant's database is kept (zero: not kept).
    pub(crate) deleted_retention: Duration,
    /// Warm databases each server keeps (zero: none).
    pub(crate) warm_databases: usize,
}

impl Provisioner {
    /// A provisioner over these parts (built by `Tenancy::connect`).
    pub(crate) fn new(
        catalog: Catalog,
        sites: Sites,
        migrations: TenantMigrations,
        settings: ProvisionerSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                sites,
                placement: std::sync::RwLock::new(Arc::new(FewestTenants)),
                migrations,
                prefix: settings.prefix,
                reserved: settings.reserved,
                secret_version: settings.secret_version,
                lease_prefix: std::process::id().to_string(),
                lease_ttl: settings.lease_ttl,
                shutdown_deadline: settings.shutdown_deadline,
                deleted_retention: settings.deleted_retention,
                warm_databases: settings.warm_databases,
                warm_wanted: tokio::sync::Notify::new(),
                counts: placement::TenantCounts::default(),
                tasks: tokio_util::task::TaskTracker::new(),
                crash_after: Mutex::new(None),
            }),
        }
    }

    /// The catalog it records tenants in.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The engine of the server of the settings (hidden `engine` module;
    /// not part of the API).
    #[doc(hidden)]
    pub fn engine(&self) -> &Engine {
        &self.inner.sites.home().engine
    }

    /// The tenant migration set it applies.
    pub fn migrations(&self) -> &TenantMigrations {
        &self.inner.migrations
    }

    /// The id of the server of the settings (`database_servers.id`).
    pub fn server_id(&self) -> Uuid {
        self.inner.sites.home().id
    }

    /// Chooses the server of each new tenant from now on (the default is
    /// [`FewestTenants`]).
    pub fn set_placement(&self, placement: Arc<dyn Placement>) {
        *self.inner.placement.write().unwrap_or_else(|e| e.into_inner()) = placement;
    }

    fn placement(&self) -> Arc<dyn Placement> {
        self.inner.placement.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The tenant servers of this process.
    pub(crate) fn sites(&self) -> &Sites {
        &self.inner.sites
    }

    /// The site of a row's server, opened if it was not.
    pub(crate) async fn site_of(&self, row: &tenant_database::Model) -> Result<Arc<Site>> {
        self.inner.sites.get(row.server_id).await
    }

    /// A row as callers see it.
    pub(crate) fn public(&self, row: &tenant_database::Model) -> TenantDatabase {
        TenantDatabase::new(row, &self.inner.sites.name_of(row.server_id))
    }

    pub(crate) fn prefix(&self) -> &DatabasePrefix {
        &self.inner.prefix
    }

    /// Names no tenant database may take besides the system ones.
    pub(crate) fn reserved(&self) -> &[String] {
        &self.inner.reserved
    }

    pub(crate) fn secret_version(&self) -> i32 {
        self.inner.secret_version
    }

    /// Test hook: the next operation that reaches `step` stops there as if
    /// the process died (no cleanup, lease left to expire). One-shot.
    #[doc(hidden)]
    pub fn crash_after(&self, step: Step) {
        *self.inner.crash_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
    }

    fn step(&self, step: Step, tenant: Uuid) -> Result<()> {
        crate::faults::reached(step);
        let mut crash = self.inner.crash_after.lock().unwrap_or_else(|e| e.into_inner());
        if *crash == Some(step) {
            *crash = None;
            tracing::warn!(tenant.id = %tenant, ?step, "stopping on purpose (test hook)");
            return Err(Error::Interrupted {
                tenant: tenant.to_string(),
                step,
            });
        }
        Ok(())
    }

    /// Refuses to change tenants unless this program's tenant migration set
    /// is the one the catalog serves or an extension of it (see
    /// `migration_set`).
    pub(crate) async fn check_migration_set(&self) -> Result<()> {
        crate::migration_set::check(&self.inner.catalog, &self.inner.migrations).await
    }

    /// The physical identity of a row's database (under its current name).
    #[doc(hidden)]
    pub fn tenant_db(&self, row: &tenant_database::Model) -> DatabaseSpec {
        DatabaseSpec {
            tenant: TenantId::from(row.tenant_id),
            database: DatabaseName::from_catalog(row.database_name.clone()),
            role: RoleName::from_catalog(row.role_name.clone()),
        }
    }

    /// Creates a tenant and its database; returns once the database is
    /// ACTIVE. On failure the tenant stays with a FAILED row and
    /// `Error::ProvisioningFailed`; `retry` finishes it.
    #[tracing::instrument(skip_all, fields(tenant.slug = %new.slug))]
    pub async fn create_tenant(&self, new: NewTenant) -> Result<TenantDatabase> {
        self.create_with(new, None).await
    }

    /// Creates a tenant from an export (`Tenancy::export_tenant`): its own
    /// role and database, the export restored into it as that role
    /// (`pg_restore`; the SQLite file copied), then every tenant migration
    /// newer than the export's version applied. Refused before anything is
    /// made: an export at a migration this program does not have (a newer
    /// version, or another application's), or of another engine than the
    /// server it would go to. A failed import leaves a FAILED tenant with
    /// nothing made (delete it and import again); so does one whose process
    /// died (`reconcile` cannot read the file it was reading).
    #[tracing::instrument(skip_all, fields(tenant.slug = %new.slug))]
    pub async fn import_tenant(&self, new: NewTenant, input: &std::path::Path) -> Result<TenantDatabase> {
        let (header, offset) = crate::export::read_export(input)?;
        if let Some(version) = &header.schema_version
            && !self.inner.migrations.names().contains(version)
        {
            return Err(Error::invalid(
                "export",
                &input.display().to_string(),
                &format!(
                    "it is at tenant migration '{version}', which this program does not have \
                     (a newer version, or another application's)"
                ),
            ));
        }
        let source = create::Import {
            file: input.to_owned(),
            offset,
            engine: header.engine,
        };
        self.create_with(new, Some(source)).await
    }

    /// How many times a create is placed when the server placement chose
    /// is drained before the tenant's row is in (see `placed`).
    const PLACEMENT_ATTEMPTS: u32 = 3;

    /// Runs `place_and_insert` (placement, then the insert of the row),
    /// again while the insert finds the chosen server drained since
    /// placement read it (up to `PLACEMENT_ATTEMPTS`; never when `new`
    /// names the server: then that is the answer).
    async fn placed<F, Fut>(new: &NewTenant, mut place_and_insert: F) -> Result<tenant_database::Model>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tenant_database::Model>>,
    {
        let mut attempt = 1;
        loop {
            match place_and_insert().await {
                Err(Error::ServerDraining(server)) if new.server.is_none() && attempt < Self::PLACEMENT_ATTEMPTS => {
                    tracing::info!(%server, "the server was drained after placement chose it: placing the tenant again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn create_with(&self, new: NewTenant, import: Option<create::Import>) -> Result<TenantDatabase> {
        let slug = TenantSlug::parse(&new.slug)?;
        let name = crate::names::plain_text(
            "tenant name",
            new.name.as_deref().unwrap_or(slug.as_str()),
            MAX_TENANT_NAME_LEN,
        )?;
        // Bad input is refused before anything is asked of a server (a
        // malformed name is a 400 even when no server answers).
        if let Some(requested) = new.database_name.as_deref() {
            self.parse_database_name(requested)?;
        }
        let id = TenantId::new();
        let row = Self::placed(&new, || self.place_and_insert(&new, &slug, id, &name, import.as_ref())).await?;
        self.inner.counts.placed(row.server_id);
        self.step(Step::RowInserted, row.tenant_id)?;
        let row = self
            .run(move |this| async move { this.provision_with(row, import.as_ref()).await })
            .await?;
        Ok(self.public(&row))
    }

    /// `create_with`'s reads, placement and the insert of the tenant and
    /// its PROVISIONING row (one attempt).
    async fn place_and_insert(
        &self,
        new: &NewTenant,
        slug: &TenantSlug,
        id: TenantId,
        name: &str,
        import: Option<&create::Import>,
    ) -> Result<tenant_database::Model> {
        let slug_ref = TenantRef::Slug(slug.clone());
        let tenants = self.inner.catalog.tenants();
        // Three independent reads at once (sign-up time is mostly round
        // trips), their errors judged in this order; placement finds the
        // database name on the server it chose too.
        let (set, existing, placed) = tokio::join!(
            self.check_migration_set(),
            tenants.find(&slug_ref),
            self.place_named(new, slug, id)
        );
        set?;
        if existing?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "a tenant with slug '{slug}' already exists"
            )));
        }
        let (site, database) = placed?;
        if let Some(import) = import
            && import.engine != site.engine.name()
        {
            return Err(Error::invalid(
                "export",
                &import.file.display().to_string(),
                &format!(
                    "it holds a {} database; the tenant would go to a {} server",
                    import.engine,
                    site.engine.name()
                ),
            ));
        }
        let now = Utc::now();
        let tenant = tenants::ActiveModel {
            id: Set(id.as_uuid()),
            slug: Set(slug.as_str().to_owned()),
            name: Set(name.to_owned()),
            status: Set(TenantStatus::Active),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let extras = crate::catalog::TenantExtras {
            owner_user_id: new.owner_user_id,
            plan: new.plan.clone(),
        };
        self.inner
            .catalog
            .tenant_databases()
            .insert_with_tenant(tenant, self.new_row(site.id, id, &database, import.is_some()), extras)
            .await
    }

    /// Creates the database of an existing tenant that has none.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn create_tenant_database(
        &self,
        tenant: &TenantRef,
        database_name: Option<&str>,
    ) -> Result<TenantDatabase> {
        let tenant = self.inner.catalog.tenants().get(tenant).await?;
        self.check_migration_set().await?;
        let id = TenantId::from(tenant.id);
        let slug = TenantSlug::parse(&tenant.slug)?;
        let new = NewTenant {
            slug: tenant.slug.clone(),
            database_name: database_name.map(str::to_owned),
            ..Default::default()
        };
        let row = Self::placed(&new, || async {
            let (site, database) = self.place_named(&new, &slug, id).await?;
            self.inner
                .catalog
                .tenant_databases()
                .insert(self.new_row(site.id, id, &database, false))
                .await
        })
        .await?;
        self.inner.counts.placed(row.server_id);
        self.step(Step::RowInserted, row.tenant_id)?;
        let row = self.run(move |this| async move { this.provision(row).await }).await?;
        Ok(self.public(&row))
    }

    /// The templates of the server of the settings.
    pub fn templates(&self) -> &Templates {
        &self.inner.sites.home().templates
    }

    /// Runs work in a task the provisioner owns: dropping the returned
    /// future does not cancel it, and `shutdown` waits for it.
    async fn run<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Provisioner) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.inner.tasks.spawn(work(self.clone()));
        handle.await.map_err(|err| Error::Task(err.to_string()))?
    }

    /// Runs `work` in a task the provisioner owns (see `run`), returning
    /// its handle without waiting: for long work such as a fleet run.
    pub(crate) fn spawn_tracked<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.inner.tasks.spawn(work)
    }

    /// Waits for every operation under way (call after the service stops
    /// taking requests), at most the shutdown deadline. Work still running
    /// then (DDL stuck behind a lock) keeps its lease, which expires:
    /// another instance, or this one's next start, finishes it.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        let deadline = self.inner.shutdown_deadline;
        if tokio::time::timeout(deadline, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!(
                waited_ms = deadline.as_millis() as u64,
                left = self.inner.tasks.len(),
                "provisioning work still running at shutdown; its leases will expire and it will be finished later"
            );
        }
    }
}
