//! What tenantdb's metrics mean: their `# HELP` lines and units, in one
//! place. The metrics themselves are recorded where they happen, through
//! the `metrics` facade, into whatever recorder the application installs.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric tenantdb records (help text and unit) to the
/// installed recorder, so an exporter can print `# HELP` lines. Call it
/// once, after installing the recorder. Per-server metrics carry a
/// `server` label.
pub fn describe_metrics() {
    describe_counter!(
        "tenantdb_pool_hits_total",
        Unit::Count,
        "Connections handed out from an open tenant pool."
    );
    describe_counter!(
        "tenantdb_pool_misses_total",
        Unit::Count,
        "Requests for a tenant pool that was not open (it was opened)."
    );
    describe_counter!("tenantdb_pools_created_total", Unit::Count, "Tenant pools opened.");
    describe_counter!(
        "tenantdb_pools_closed_total",
        Unit::Count,
        "Tenant pools closed, by reason (idle, evicted, invalidated, shutdown)."
    );
    describe_gauge!("tenantdb_pools_open", Unit::Count, "Tenant pools open now.");
    describe_gauge!(
        "tenantdb_warm_databases",
        Unit::Count,
        "Warm databases ready for new tenants on a server, after the last refill."
    );
    describe_gauge!(
        "tenantdb_replica_lag_ms",
        Unit::Milliseconds,
        "How far a read replica was behind its server at its last check, by replica."
    );
    describe_gauge!(
        "tenantdb_replica_usable",
        Unit::Count,
        "1 while reads go to the read replica, 0 while they go to its server."
    );
    describe_gauge!(
        "tenantdb_pool_connections",
        Unit::Count,
        "Connections reserved by the open tenant pools."
    );
    describe_gauge!(
        "tenantdb_pool_budget_free",
        Unit::Count,
        "Connections of the server's budget that no pool has reserved (as of the last scrape)."
    );
    describe_gauge!(
        "tenantdb_pool_share",
        Unit::Count,
        "Connections of the server's budget this instance may hold: its share among the instances over the catalog (as of the last scrape)."
    );
    describe_histogram!(
        "tenantdb_pool_budget_wait_seconds",
        Unit::Seconds,
        "Time a new tenant pool waited for connections of the budget."
    );
    describe_counter!(
        "tenantdb_resolve_cache_hits_total",
        Unit::Count,
        "Tenant resolutions answered from the cache."
    );
    describe_counter!(
        "tenantdb_resolve_cache_misses_total",
        Unit::Count,
        "Tenant resolutions that read the catalog."
    );
    describe_counter!(
        "tenantdb_provisioning_total",
        Unit::Count,
        "Tenant databases provisioned, by outcome (active, failed)."
    );
    describe_histogram!(
        "tenantdb_move_pause_seconds",
        Unit::Seconds,
        "How long moves paused their tenant's writes (from closing its pools on the old server to the switch)."
    );
    describe_counter!(
        "tenantdb_placement_skipped_total",
        Unit::Count,
        "Servers placement passed by because they did not answer, by server."
    );
    describe_histogram!(
        "tenantdb_provisioning_seconds",
        Unit::Seconds,
        "Time to provision a tenant database."
    );
    describe_counter!(
        "tenantdb_tenant_migrations_total",
        Unit::Count,
        "Migrations of one tenant database, by outcome."
    );
    describe_histogram!(
        "tenantdb_tenant_migration_seconds",
        Unit::Seconds,
        "Time to migrate one tenant database."
    );
}
