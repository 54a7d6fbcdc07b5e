//! This process as one instance of many over the catalog: it joins each
//! server it uses with a heartbeat lease, and its pools hold only its share
//! of the server's connection budget (the budget divided among the live
//! instances; see `catalog::instances` for the rule that keeps the shares'
//! sum within the budget while instances come and go).
//!
//! A process joins when its first pool needs budget (a command that opens
//! no tenant pool never joins, and never makes the others shrink); until
//! then its share is nothing. While its share is below its fair share it
//! beats four times as often, to take what the others give back soon.
//! On a PostgreSQL catalog it does not wait that long: joining, giving
//! back and leaving are notified, and every instance beats when it hears
//! one (and when its pools have shrunk to a share lowered by a beat), so a
//! joiner has room within a few round trips instead of the others' next
//! beat.
//!
//! The heartbeat runs every fifth of the lease, each beat limited to that
//! long. When it cannot reach the catalog for so long that the lease might
//! expire before its pools could shrink (the lease, less the acquire
//! timeout and two beats), the instance fences itself: its share drops
//! to nothing, so when the others take its share back it no longer holds
//! it. (A transaction that keeps a connection longer than that outlives
//! the fence: the pool closes when it ends.) A clean shutdown leaves at
//! once.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{Beat, Catalog, InstanceIdentity};
use crate::pools::TenantPools;

/// This process's membership of one server's instances.
#[derive(Debug)]
pub(crate) struct Membership {
    identity: InstanceIdentity,
    server: Uuid,
    catalog: Catalog,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Membership {
    /// Makes `pools` take their share from this membership: it joins
    /// `server`'s instances when the first pool needs budget, and keeps
    /// the lease in a background task.
    pub(crate) fn start(
        catalog: Catalog,
        pools: TenantPools,
        server: Uuid,
        ttl: Duration,
        identity: InstanceIdentity,
    ) -> Self {
        pools.share_on_demand();
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat(
            catalog.clone(),
            pools,
            identity.clone(),
            server,
            ttl,
            stop.clone(),
        ));
        Self {
            identity,
            server,
            catalog,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Stops the heartbeat and removes this instance's row of the server:
    /// its share returns to the others at once. Call after the pools are
    /// closed.
    pub(crate) async fn leave(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Err(err) = self.catalog.instances().leave(&self.identity, self.server).await {
            tracing::warn!(error = %err, "could not leave the instances; the lease will expire");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The pools' share after a beat: down to the fair share at once (the
/// recorded share follows as they shrink), up to what was granted.
fn apply(pools: &TenantPools, beat: Beat) {
    pools.set_share(beat.fair.min(beat.share));
}

async fn heartbeat(
    catalog: Catalog,
    pools: TenantPools,
    identity: InstanceIdentity,
    server: Uuid,
    ttl: Duration,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        () = pools.wanted() => {}
    }
    let every = ttl / 5;
    // The lease must not expire while this instance still holds its
    // share: the fence starts early enough for idle pools to close and
    // busy ones to be retired (after the acquire timeout), counting a
    // beat's own time limit and the wait before the next try.
    let fence_after = ttl.saturating_sub(pools.config().acquire_timeout + every * 2);
    let mut last_ok = Instant::now();
    let mut fenced = false;
    let mut joined = false;
    let mut wait = Duration::ZERO;
    let mut news = catalog.instance_news(server);
    loop {
        // Besides the interval: another instance joined, gave back or
        // left (its notification), or this one's pools shrank to a share
        // lowered by the last beat; either way the shares move now.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            Ok(()) = news.changed() => {}
            () = pools.repaid() => {}
        }
        wait = every;
        // The budget is recorded by the beat that joins (a process that
        // never opens a pool never writes it).
        let budget = (!joined).then(|| pools.config().budget);
        let instances = catalog.instances();
        let beat = instances.beat(&identity, server, budget, pools.ceiling(), ttl);
        // A beat that hangs (a catalog that drops packets) counts as failed
        // once a beat's time is up.
        let outcome = match tokio::time::timeout(every, beat).await {
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(_) => Err(format!("no answer within {} ms", every.as_millis())),
        };
        match outcome {
            Ok(beat) => {
                if !joined {
                    joined = true;
                    tracing::info!(
                        instance = %identity.id,
                        share = beat.share,
                        instances = beat.instances,
                        "joined the server's instances"
                    );
                }
                if fenced {
                    tracing::info!("the catalog answers again: taking a share again");
                    fenced = false;
                }
                last_ok = Instant::now();
                apply(&pools, beat);
                if beat.share < beat.fair {
                    wait = every / 4;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "instance heartbeat failed");
                if !fenced && last_ok.elapsed() >= fence_after {
                    tracing::warn!(
                        "no heartbeat for too long: giving up this instance's share until the catalog answers"
                    );
                    pools.set_share(0);
                    fenced = true;
                }
                // Try again soon: the fence is checked at every try.
                wait = every / 4;
            }
        }
    }
}
