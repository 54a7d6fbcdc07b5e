//! Fleet migrations: bring every tenant that is behind up to the latest
//! tenant migration.
//!
//! - Who is behind comes from `schema_version` in the catalog: up-to-date
//!   tenants are never connected to.
//! - Work is handed out from one queue to `concurrency` workers (a slow
//!   tenant holds up one worker, not a chunk). Each tenant is migrated by
//!   the provisioner's `migrate_tenant`: its lease is the per-tenant lock (a
//!   tenant another process is migrating is skipped, never run twice), its
//!   status is MIGRATING meanwhile and ACTIVE after (it keeps serving), and a
//!   failure stays on that tenant (`error_message`, previous version).
//! - `canary` migrates that many tenants first and stops if any failed;
//!   `max_failures` stops handing out work after that many failures.
//! - Each run is a row in `migration_runs`; running again finishes what is
//!   left, since finished tenants are no longer behind.

mod run;

use run::AbortOnDrop;
use uuid::Uuid;

use crate::catalog::MigrationRun;
use crate::error::{Error, Result};
use crate::names::TenantRef;
use crate::provisioner::Provisioner;
use crate::status::RunStatus;

/// What a fleet run should do.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Tenants migrated at once on each tenant server (servers migrate
    /// side by side).
    pub concurrency: usize,
    /// Only these tenants (all that are behind when empty).
    pub tenants: Vec<TenantRef>,
    /// Only tenants on these servers, by name (every server when empty).
    pub servers: Vec<String>,
    /// Stop handing out work after this many failures.
    pub max_failures: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    pub canary: Option<usize>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            tenants: Vec::new(),
            servers: Vec::new(),
            max_failures: None,
            canary: None,
        }
    }
}

/// One tenant that is behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// The row as planned: migrating it claims exactly this version of it.
    row: crate::catalog::tenant_database::Model,
    /// The tenant's id.
    pub tenant_id: Uuid,
    /// Its database's name.
    pub database_name: String,
    /// Its version now (`None`: nothing applied).
    pub from: Option<String>,
    /// The migrations it would get, in order.
    pub pending: Vec<String>,
}

/// What happened to one tenant, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    /// Migrated to the latest version.
    Migrated {
        /// The tenant's id.
        tenant_id: Uuid,
        /// The version it has now (the last migration applied).
        version: Option<String>,
    },
    /// Its migration failed; it stays at its previous version.
    Failed {
        /// The tenant's id.
        tenant_id: Uuid,
        /// The error, in one line.
        error: String,
    },
    /// Another process holds it, or it changed status meanwhile.
    Skipped {
        /// The tenant's id.
        tenant_id: Uuid,
        /// Why, as the error's message.
        reason: String,
    },
}

/// The outcome of a fleet run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetReport {
    /// The run's id (its row in `migration_runs`).
    pub run_id: Uuid,
    /// The version tenants were brought to (`None` for an empty set).
    pub target: Option<String>,
    /// Tenants that were behind when the run started.
    pub total: usize,
    /// Tenants migrated.
    pub succeeded: usize,
    /// Tenants skipped (another process held them, or they changed status).
    pub skipped: usize,
    /// Tenant id and error of each failure.
    pub failures: Vec<(Uuid, String)>,
    /// Stopped early by `canary` or `max_failures`.
    pub stopped: bool,
}

impl FleetReport {
    /// `STOPPED`, `SUCCEEDED` or `FAILED` (some tenant failed), as the run's
    /// row records it.
    pub fn status(&self) -> RunStatus {
        match (self.stopped, self.failures.is_empty()) {
            (true, _) => RunStatus::Stopped,
            (false, true) => RunStatus::Succeeded,
            (false, false) => RunStatus::Failed,
        }
    }
}

/// Fleet migrations and their runs (see the module docs). Reached from
/// `Tenancy::fleet`.
#[derive(Debug, Clone)]
pub struct Fleet {
    provisioner: Provisioner,
}

impl Fleet {
    pub(crate) fn new(provisioner: Provisioner) -> Self {
        Self { provisioner }
    }

    /// Those of `behind` on the servers named `servers` (all when empty);
    /// an unknown name is `Error::ServerNotFound`.
    pub async fn on_servers(&self, behind: Vec<Behind>, servers: &[String]) -> Result<Vec<Behind>> {
        if servers.is_empty() {
            return Ok(behind);
        }
        let mut ids = Vec::new();
        for name in servers {
            let row = self.provisioner.catalog().servers().named(name).await?;
            ids.push(row.ok_or_else(|| Error::ServerNotFound(name.clone()))?.id);
        }
        Ok(behind.into_iter().filter(|b| ids.contains(&b.row.server_id)).collect())
    }

    /// The tenants that are behind the latest tenant migration, from the
    /// catalog alone. Only ACTIVE databases are migrated (suspended tenants
    /// included); others are provisioning, failed or being worked on.
    pub async fn behind(&self, only: &[TenantRef]) -> Result<Vec<Behind>> {
        let names: Vec<String> = self.provisioner.migrations().names();
        let latest = names.last().cloned();
        let mut wanted = Vec::new();
        for tenant in only {
            wanted.push(self.provisioner.catalog().tenants().get(tenant).await?.id);
        }
        let rows = self
            .provisioner
            .catalog()
            .tenant_databases()
            .active_behind(latest.as_deref())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| wanted.is_empty() || wanted.contains(&row.tenant_id))
            .filter(|row| row.schema_version != latest)
            .map(|row| {
                let done = row
                    .schema_version
                    .as_ref()
                    .and_then(|v| names.iter().position(|n| n == v))
                    .map_or(0, |i| i + 1);
                Behind {
                    tenant_id: row.tenant_id,
                    database_name: row.database_name.clone(),
                    from: row.schema_version.clone(),
                    pending: names[done..].to_vec(),
                    row,
                }
            })
            .collect())
    }

    /// Migrates every tenant that is behind (see the module docs), telling
    /// `on_event` about each tenant as it finishes.
    pub async fn migrate(
        &self,
        options: &FleetOptions,
        on_event: impl Fn(&FleetEvent) + Send + Sync + 'static,
    ) -> Result<FleetReport> {
        let (_, run) = self.start(options, on_event).await?;
        run.await.map_err(|err| Error::Task(err.to_string()))?
    }

    /// Records a new run (its id is returned at once) and runs it in a task
    /// the provisioner owns: shutdown waits for it, and a caller that goes
    /// away does not stop it. Progress is written to its `migration_runs` row
    /// after every tenant.
    pub async fn start(
        &self,
        options: &FleetOptions,
        on_event: impl Fn(&FleetEvent) + Send + Sync + 'static,
    ) -> Result<(Uuid, tokio::task::JoinHandle<Result<FleetReport>>)> {
        self.provisioner.check_migration_set().await?;
        let behind = self
            .on_servers(self.behind(&options.tenants).await?, &options.servers)
            .await?;
        let target = self.provisioner.migrations().latest_version();
        let run_id = Uuid::now_v7();
        let lease = self.provisioner.run_lease();
        self.provisioner
            .catalog()
            .migration_runs()
            .start(run_id, target.clone(), behind.len(), &lease)
            .await?;
        let (this, options) = (self.clone(), options.clone());
        let run = self.provisioner.spawn_tracked(async move {
            // The run's lease lives as long as the run: a process that dies
            // leaves a run that readers see as ABANDONED.
            let catalog = this.provisioner.catalog().clone();
            let renew_every = lease.ttl / 3;
            let renewer = AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(renew_every).await;
                    match catalog.migration_runs().renew(run_id, &lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(run.id = %run_id, "the run's lease was taken (doctor --fix closed it)");
                            return;
                        }
                        Err(err) => tracing::warn!(run.id = %run_id, error = %err, "renewing the run's lease failed"),
                    }
                }
            }));
            let report = this.run_fleet(run_id, target, behind, &options, on_event).await;
            drop(renewer);
            report
        });
        Ok((run_id, run))
    }

    /// One fleet run (a RUNNING run whose process died reads ABANDONED).
    pub async fn run(&self, id: Uuid) -> Result<Option<MigrationRun>> {
        self.provisioner.catalog().migration_runs().get(id).await
    }

    /// The most recent fleet runs, newest first.
    pub async fn runs(&self, limit: u64) -> Result<Vec<MigrationRun>> {
        self.provisioner.catalog().migration_runs().recent(limit).await
    }
}
