//! Fleet migrations: bring every tenant that is behind up to the latest
//! tenant migration.
//!
//! - Who is behind comes from `schema_version` in the catalog: up-to-date
//!   tenants are never connected to.
//! - Work is handed out from one queue to `concurrency` workers (a slow
//!   tenant holds up one worker, not a chunk). Each tenant is migrated by
//!   `Provisioner::migrate_tenant`: its lease is the per-tenant lock (a
//!   tenant another process is migrating is skipped, never run twice), its
//!   status is MIGRATING meanwhile and ACTIVE after (it keeps serving), and a
//!   failure stays on that tenant (`error_message`, previous version).
//! - `canary` migrates that many tenants first and stops if any failed;
//!   `max_failures` stops handing out work after that many failures.
//! - Each run is a row in `migration_runs`; running again finishes what is
//!   left, since finished tenants are no longer behind.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sea_orm::Set;
use uuid::Uuid;

use crate::catalog::{DbStatus, migration_runs};
use crate::error::{Error, Result};
use crate::names::TenantRef;
use crate::provisioner::Provisioner;

/// What a fleet run should do.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Tenants migrated at once (on the one tenant server).
    pub concurrency: usize,
    /// Only these tenants (all that are behind when empty).
    pub tenants: Vec<TenantRef>,
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
    pub tenant_id: Uuid,
    pub database_name: String,
    /// Its version now (`None`: nothing applied).
    pub from: Option<String>,
    /// The migrations it would get, in order.
    pub pending: Vec<String>,
}

/// What happened to one tenant, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    Migrated {
        tenant_id: Uuid,
        version: Option<String>,
    },
    Failed {
        tenant_id: Uuid,
        error: String,
    },
    /// Another process holds it, or it changed status meanwhile.
    Skipped {
        tenant_id: Uuid,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetReport {
    pub run_id: Uuid,
    pub target: Option<String>,
    pub total: usize,
    pub succeeded: usize,
    pub skipped: usize,
    /// Tenant id and error of each failure.
    pub failures: Vec<(Uuid, String)>,
    /// Stopped early by `canary` or `max_failures`.
    pub stopped: bool,
}

impl FleetReport {
    pub fn status(&self) -> &'static str {
        match (self.stopped, self.failures.is_empty()) {
            (true, _) => "STOPPED",
            (false, true) => "SUCCEEDED",
            (false, false) => "FAILED",
        }
    }
}

impl Provisioner {
    /// The tenants that are behind the latest tenant migration, from the
    /// catalog alone. Only ACTIVE databases are migrated (suspended tenants
    /// included); others are provisioning, failed or being worked on.
    pub async fn behind(&self, only: &[TenantRef]) -> Result<Vec<Behind>> {
        let names: Vec<String> = self
            .migrations()
            .migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let latest = names.last().cloned();
        let mut wanted = Vec::new();
        for tenant in only {
            wanted.push(self.catalog().tenants().get(tenant).await?.id);
        }
        let rows = self.catalog().tenant_databases().list(Some(DbStatus::Active)).await?;
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
    pub async fn migrate_fleet(
        &self,
        options: &FleetOptions,
        on_event: impl Fn(&FleetEvent) + Send + Sync + 'static,
    ) -> Result<FleetReport> {
        let (_, run) = self.start_fleet(options, on_event).await?;
        run.await.map_err(|err| Error::Task(err.to_string()))?
    }

    /// Records a new run (its id is returned at once) and runs it in a task
    /// the provisioner owns: shutdown waits for it, and a caller that goes
    /// away does not stop it. Progress is written to its `migration_runs` row
    /// after every tenant.
    pub async fn start_fleet(
        &self,
        options: &FleetOptions,
        on_event: impl Fn(&FleetEvent) + Send + Sync + 'static,
    ) -> Result<(Uuid, tokio::task::JoinHandle<Result<FleetReport>>)> {
        self.check_migration_set().await?;
        let behind = self.behind(&options.tenants).await?;
        let target = self.migrations().latest_version();
        let run_id = Uuid::now_v7();
        let lease = self.run_lease();
        self.catalog()
            .migration_runs()
            .start(run_id, target.clone(), behind.len(), &lease)
            .await?;
        let (this, options) = (self.clone(), options.clone());
        let run = self.spawn_tracked(async move {
            // The run's lease lives as long as the run: a process that dies
            // leaves a run that readers see as ABANDONED.
            let catalog = this.catalog().clone();
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

    async fn run_fleet(
        &self,
        run_id: Uuid,
        target: Option<String>,
        behind: Vec<Behind>,
        options: &FleetOptions,
        on_event: impl Fn(&FleetEvent) + Send + Sync + 'static,
    ) -> Result<FleetReport> {
        let total = behind.len();
        let canary = options.canary.unwrap_or(0).min(total);
        let mut queue: VecDeque<_> = behind.into_iter().map(|b| b.row).collect();
        let rest = queue.split_off(canary);
        let state = Arc::new(RunState::new(run_id, options.max_failures, on_event));
        crate::faults::reached(crate::faults::Step::FleetStarted);
        if canary > 0 {
            self.work(queue, options.concurrency, &state).await?;
            if !state.failures().is_empty() {
                state.stop.store(true, Ordering::SeqCst);
            }
        }
        if !state.stop.load(Ordering::SeqCst) {
            self.work(rest, options.concurrency, &state).await?;
        }
        let report = FleetReport {
            run_id,
            target,
            total,
            succeeded: state.succeeded.load(Ordering::SeqCst),
            skipped: state.skipped.load(Ordering::SeqCst),
            stopped: state.stop.load(Ordering::SeqCst),
            failures: state.failures(),
        };
        self.catalog()
            .migration_runs()
            .record(state.counts(), Some(report.status()))
            .await?;
        Ok(report)
    }

    /// Runs `queue` on up to `concurrency` workers that each take the next
    /// tenant when done with the last.
    async fn work<F>(
        &self,
        queue: VecDeque<crate::catalog::tenant_database::Model>,
        concurrency: usize,
        state: &Arc<RunState<F>>,
    ) -> Result<()>
    where
        F: Fn(&FleetEvent) + Send + Sync + 'static,
    {
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (this, queue, state) = (self.clone(), queue.clone(), state.clone());
            workers.spawn(async move {
                loop {
                    if state.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some(row) = next else {
                        return;
                    };
                    let tenant_id = row.tenant_id;
                    let result = this.migrate_row(row).await;
                    state.record(tenant_id, result);
                    crate::faults::reached(crate::faults::Step::FleetTenantDone);
                    // Progress for GET /v1/migrations/{id}; a failed write
                    // only delays what readers see.
                    if let Err(err) = this.catalog().migration_runs().record(state.counts(), None).await {
                        tracing::warn!(error = %err, "recording fleet progress failed");
                    }
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|err| Error::Task(err.to_string()))?;
        }
        Ok(())
    }

    /// One fleet run (a RUNNING run whose process died reads ABANDONED).
    pub async fn migration_run(&self, id: Uuid) -> Result<Option<migration_runs::Model>> {
        self.catalog().migration_runs().get(id).await
    }

    /// The most recent fleet runs, newest first.
    pub async fn migration_runs(&self, limit: u64) -> Result<Vec<migration_runs::Model>> {
        self.catalog().migration_runs().recent(limit).await
    }
}

/// Aborts its task when dropped (also when the run panics).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct RunState<F> {
    run_id: Uuid,
    succeeded: AtomicUsize,
    skipped: AtomicUsize,
    failures: Mutex<Vec<(Uuid, String)>>,
    stop: AtomicBool,
    max_failures: Option<usize>,
    on_event: F,
}

impl<F: Fn(&FleetEvent)> RunState<F> {
    fn new(run_id: Uuid, max_failures: Option<usize>, on_event: F) -> Self {
        Self {
            run_id,
            succeeded: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            max_failures,
            on_event,
        }
    }

    /// The run's row with its counts so far.
    fn counts(&self) -> migration_runs::ActiveModel {
        let count = |n: usize| Set(i32::try_from(n).unwrap_or(i32::MAX));
        migration_runs::ActiveModel {
            id: sea_orm::Unchanged(self.run_id),
            succeeded: count(self.succeeded.load(Ordering::SeqCst)),
            failed: count(self.failures().len()),
            skipped: count(self.skipped.load(Ordering::SeqCst)),
            ..Default::default()
        }
    }

    fn failures(&self) -> Vec<(Uuid, String)> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, tenant_id: Uuid, result: Result<crate::catalog::tenant_database::Model>) {
        let event = match result {
            Ok(row) => {
                self.succeeded.fetch_add(1, Ordering::SeqCst);
                FleetEvent::Migrated {
                    tenant_id,
                    version: row.schema_version,
                }
            }
            Err(err @ (Error::Locked { .. } | Error::IllegalState { .. } | Error::TenantNotFound(_))) => {
                self.skipped.fetch_add(1, Ordering::SeqCst);
                FleetEvent::Skipped {
                    tenant_id,
                    reason: err.to_string(),
                }
            }
            Err(err) => {
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                failures.push((tenant_id, err.to_string()));
                if self.max_failures.is_some_and(|max| failures.len() >= max) {
                    self.stop.store(true, Ordering::SeqCst);
                }
                FleetEvent::Failed {
                    tenant_id,
                    error: err.to_string(),
                }
            }
        };
        (self.on_event)(&event);
    }
}
