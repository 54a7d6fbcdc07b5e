//! One fleet run: a shared queue, `concurrency` workers, the run's counts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{Behind, Fleet, FleetEvent, FleetOptions, FleetReport};
use crate::catalog::RunCounts;
use crate::error::{Error, Result};

impl Fleet {
    pub(super) async fn run_fleet(
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
        // New tenants clone the template of this migration set; the older
        // ones can only be cloned by programs the catalog now refuses.
        for site in self.provisioner.sites().all_opened() {
            site.templates.refresh().await;
        }
        // Warm databases of the older set are stale: dropped and made again.
        if self.provisioner.warm_databases() > 0
            && let Err(err) = self.provisioner.refill_warm().await
        {
            tracing::warn!(error = %err.chain(), "refilling the warm stock after the run failed");
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
        self.provisioner
            .catalog()
            .migration_runs()
            .record(run_id, state.counts(), Some(report.status()))
            .await?;
        Ok(report)
    }

    /// Runs `queue` with a queue per tenant server, each on up to
    /// `concurrency` workers that take its next tenant when done with the
    /// last: servers migrate side by side, each at its own pace.
    async fn work<F>(
        &self,
        queue: VecDeque<crate::catalog::tenant_database::Model>,
        concurrency: usize,
        state: &Arc<RunState<F>>,
    ) -> Result<()>
    where
        F: Fn(&FleetEvent) + Send + Sync + 'static,
    {
        let mut by_server: Vec<(Uuid, VecDeque<_>)> = Vec::new();
        for row in queue {
            match by_server.iter_mut().find(|(server, _)| *server == row.server_id) {
                Some((_, rows)) => rows.push_back(row),
                None => by_server.push((row.server_id, VecDeque::from([row]))),
            }
        }
        let mut workers = tokio::task::JoinSet::new();
        for (_, queue) in by_server {
            let queue = Arc::new(Mutex::new(queue));
            self.spawn_workers(&mut workers, &queue, concurrency, state);
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|err| Error::Task(err.to_string()))?;
        }
        Ok(())
    }

    fn spawn_workers<F>(
        &self,
        workers: &mut tokio::task::JoinSet<()>,
        queue: &Arc<Mutex<VecDeque<crate::catalog::tenant_database::Model>>>,
        concurrency: usize,
        state: &Arc<RunState<F>>,
    ) where
        F: Fn(&FleetEvent) + Send + Sync + 'static,
    {
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
                    let result = this.provisioner.migrate_row(row).await;
                    state.record(tenant_id, result);
                    crate::faults::reached(crate::faults::Step::FleetTenantDone);
                    // Progress for GET /v1/migrations/{id}; a failed write
                    // only delays what readers see.
                    if let Err(err) = this
                        .provisioner
                        .catalog()
                        .migration_runs()
                        .record(state.run_id, state.counts(), None)
                        .await
                    {
                        tracing::warn!(error = %err, "recording fleet progress failed");
                    }
                }
            });
        }
    }
}

/// Aborts its task when dropped (also when the run panics).
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

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

    /// The run's counts so far.
    fn counts(&self) -> RunCounts {
        RunCounts {
            succeeded: self.succeeded.load(Ordering::SeqCst),
            failed: self.failures().len(),
            skipped: self.skipped.load(Ordering::SeqCst),
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
