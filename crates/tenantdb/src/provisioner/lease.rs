//! Leases: a unique one for each operation, and `LeaseKeeper`, which keeps
//! a row's lease alive while work on it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::task::JoinHandle;
use uuid::Uuid;

use super::Provisioner;
use crate::catalog::{Catalog, Lease, tenant_database};
use crate::error::{Error, Result};

/// Renews the lease every third of its TTL until dropped. If a renewal finds
/// the lease gone (another process took over), or no renewal succeeded for a
/// whole TTL (the lease may have expired and been taken), `check` fails so
/// the work stops at its next step and touches nothing more.
pub(crate) struct LeaseKeeper {
    lost: Arc<AtomicBool>,
    /// Milliseconds after `started` of the last successful renewal.
    renewed_ms: Arc<AtomicU64>,
    started: Instant,
    ttl_ms: u64,
    task: JoinHandle<()>,
    tenant: Uuid,
}

impl LeaseKeeper {
    pub(crate) fn start(catalog: Catalog, row_id: Uuid, tenant: Uuid, lease: Lease) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewed_ms = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let ttl_ms = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
        let (flag, renewed) = (lost.clone(), renewed_ms.clone());
        let task = tokio::spawn(async move {
            let period = lease.ttl / 3;
            loop {
                tokio::time::sleep(period).await;
                let attempt = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                match catalog.tenant_databases().renew(row_id, &lease).await {
                    Ok(true) => renewed.store(attempt, Ordering::SeqCst),
                    Ok(false) => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // A catalog hiccup: try again next period; the lease
                    // only goes if renewals fail for a whole TTL.
                    Err(err) => tracing::warn!(tenant.id = %tenant, error = %err, "renewing lease failed"),
                }
            }
        });
        Self {
            lost,
            renewed_ms,
            started,
            ttl_ms,
            task,
            tenant,
        }
    }

    /// Whether the lease is still certainly ours.
    pub(crate) fn held(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        !self.lost.load(Ordering::SeqCst) && now.saturating_sub(self.renewed_ms.load(Ordering::SeqCst)) < self.ttl_ms
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !self.held() {
            return Err(Error::LeaseLost {
                tenant: self.tenant.to_string(),
            });
        }
        Ok(())
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provisioner {
    /// A lease for one operation: unique, so a restarted process, a second
    /// operation of this one, or the reconciler never mistakes another
    /// operation's lease for its own.
    pub(super) fn new_lease(&self) -> Lease {
        Lease {
            owner: format!("{}:{}", self.inner.lease_prefix, Uuid::new_v4().simple()),
            ttl: self.inner.lease_ttl,
        }
    }

    /// A lease for a fleet run (see `new_lease`).
    pub(crate) fn run_lease(&self) -> Lease {
        self.new_lease()
    }

    /// The lease a claimed row carries.
    pub(super) fn lease_of(&self, row: &tenant_database::Model) -> Lease {
        Lease {
            owner: row.lease_owner.clone().unwrap_or_default(),
            ttl: self.inner.lease_ttl,
        }
    }
}
