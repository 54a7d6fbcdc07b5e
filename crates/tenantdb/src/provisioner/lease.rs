//! Keeps a row's lease alive while work on it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::catalog::{Catalog, Lease};
use crate::error::{Error, Result};

/// Renews the lease every third of its TTL until dropped. If a renewal finds
/// the lease gone (this process stalled past the TTL and another took over),
/// `check` fails so the work stops at its next step.
pub(crate) struct LeaseKeeper {
    lost: Arc<AtomicBool>,
    task: JoinHandle<()>,
    tenant: Uuid,
}

impl LeaseKeeper {
    pub(crate) fn start(catalog: Catalog, row_id: Uuid, tenant: Uuid, lease: Lease) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            let period = lease.ttl / 3;
            loop {
                tokio::time::sleep(period).await;
                match catalog.tenant_databases().renew(row_id, &lease).await {
                    Ok(true) => {}
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
        Self { lost, task, tenant }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
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
