//! The pools' metrics: counters and gauges per server, fetched once.

use super::close::CloseReason;

/// Counters and gauges, fetched once so the hot path does no lookups.
pub(super) struct PoolMetrics {
    pub(super) hits: metrics::Counter,
    pub(super) misses: metrics::Counter,
    pub(super) created: metrics::Counter,
    pub(super) budget_wait: metrics::Histogram,
    pub(super) open_pools: metrics::Gauge,
    pub(super) open_connections: metrics::Gauge,
    pub(super) budget_free: metrics::Gauge,
    pub(super) share: metrics::Gauge,
    pub(super) server: String,
}

impl PoolMetrics {
    pub(super) fn new(server: &str) -> Self {
        let label = [("server", server.to_owned())];
        Self {
            hits: metrics::counter!("tenantdb_pool_hits_total", &label),
            misses: metrics::counter!("tenantdb_pool_misses_total", &label),
            created: metrics::counter!("tenantdb_pools_created_total", &label),
            budget_wait: metrics::histogram!("tenantdb_pool_budget_wait_seconds", &label),
            open_pools: metrics::gauge!("tenantdb_pools_open", &label),
            open_connections: metrics::gauge!("tenantdb_pool_connections", &label),
            budget_free: metrics::gauge!("tenantdb_pool_budget_free", &label),
            share: metrics::gauge!("tenantdb_pool_share", &label),
            server: server.to_owned(),
        }
    }

    pub(super) fn closed(&self, reason: CloseReason) {
        metrics::counter!(
            "tenantdb_pools_closed_total",
            "server" => self.server.clone(),
            "reason" => reason.label()
        )
        .increment(1);
    }
}
