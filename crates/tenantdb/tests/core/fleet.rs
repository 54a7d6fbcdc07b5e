//! Fleet migrations: everyone behind is migrated, failures stay with their
//! tenant, re-runs finish what is left, canary and max-failures stop early,
//! and two concurrent runs never migrate one tenant twice.

use std::sync::{Arc, Mutex};

use sea_orm::ConnectionTrait;
use tenantdb::{DbStatus, NewTenant, Tenancy};
use tenantdb::{FleetEvent, FleetOptions};
use tenantdb_test_support::both_backends;
use uuid::Uuid;

use crate::support::{Backend, TestEnv, schema_v1, schema_v2};

both_backends!(
    a_fleet_run_migrates_everyone_but_the_failing_tenant_and_a_rerun_finishes_it,
    canary_and_max_failures_stop_early,
    concurrent_runs_never_migrate_a_tenant_twice,
);

/// `count` tenants on schema v1, in id order.
async fn tenants(env: &TestEnv, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..count {
        let row = env
            .tenancy
            .provisioner()
            .create_tenant(NewTenant {
                slug: format!("f{i:03}"),
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(row.tenant_id);
    }
    ids.sort();
    ids
}

/// Makes v2's `CREATE TABLE tags` fail on this tenant (a conflicting table
/// made by hand).
async fn sabotage(env: &TestEnv, tenant: Uuid) {
    let row = env.row(tenant).await.unwrap();
    let conn = env.connect_tenant(&row).await;
    conn.execute_unprepared("CREATE TABLE tags (made_by_hand INTEGER)")
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn repair(env: &TestEnv, tenant: Uuid) {
    let row = env.row(tenant).await.unwrap();
    let conn = env.connect_tenant(&row).await;
    conn.execute_unprepared("DROP TABLE tags").await.unwrap();
    conn.close().await.unwrap();
}

fn collect() -> (
    Arc<Mutex<Vec<FleetEvent>>>,
    impl Fn(&FleetEvent) + Send + Sync + 'static,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |event: &FleetEvent| {
        sink.lock().unwrap().push(event.clone())
    })
}

async fn a_fleet_run_migrates_everyone_but_the_failing_tenant_and_a_rerun_finishes_it(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let ids = tenants(&env, 50).await;
    let bad = ids[17];
    sabotage(&env, bad).await;
    let v2: Tenancy = env.second(schema_v2()).await;
    let behind = v2.fleet().behind(&[]).await.unwrap();
    assert_eq!(behind.len(), 50);
    assert_eq!(behind[0].pending, vec!["m0002_tags"]);

    let options = FleetOptions {
        concurrency: 4,
        ..Default::default()
    };
    let (events, sink) = collect();
    let report = v2.fleet().migrate(&options, sink).await.unwrap();
    assert_eq!((report.total, report.succeeded), (50, 49));
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, bad);
    assert_eq!(report.status(), tenantdb::RunStatus::Failed);
    assert_eq!(events.lock().unwrap().len(), 50, "one event per tenant");

    let failed = env.row(bad).await.unwrap();
    assert_eq!(failed.status, DbStatus::Active, "it keeps serving");
    assert_eq!(
        failed.schema_version.as_deref(),
        Some("m0001_notes"),
        "at its old version"
    );
    assert!(failed.error_message.as_deref().unwrap().contains("m0002_tags"));
    for &id in ids.iter().filter(|&&id| id != bad) {
        assert_eq!(env.row(id).await.unwrap().schema_version.as_deref(), Some("m0002_tags"));
    }

    // Fixed by hand: the next run finishes only that tenant.
    repair(&env, bad).await;
    assert_eq!(v2.fleet().behind(&[]).await.unwrap().len(), 1);
    let report = v2.fleet().migrate(&options, |_| {}).await.unwrap();
    assert_eq!(
        (report.total, report.succeeded, report.status()),
        (1, 1, tenantdb::RunStatus::Succeeded)
    );
    assert!(v2.fleet().behind(&[]).await.unwrap().is_empty());
    let runs = v2.fleet().runs(10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].status.as_str(), runs[0].succeeded), ("SUCCEEDED", 1));
    assert_eq!(
        (runs[1].status.as_str(), runs[1].failed, runs[1].total),
        ("FAILED", 1, 50)
    );
    v2.close().await;
}

async fn canary_and_max_failures_stop_early(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let ids = tenants(&env, 8).await;
    sabotage(&env, ids[0]).await;
    sabotage(&env, ids[5]).await;
    let v2 = env.second(schema_v2()).await;

    // The canary (the first two, in id order) holds a failing tenant: stop.
    let canary = FleetOptions {
        concurrency: 2,
        canary: Some(2),
        ..Default::default()
    };
    let report = v2.fleet().migrate(&canary, |_| {}).await.unwrap();
    assert!(report.stopped);
    assert_eq!(report.status(), tenantdb::RunStatus::Stopped);
    assert_eq!((report.succeeded, report.failures.len()), (1, 1));
    assert_eq!(
        v2.fleet().behind(&[]).await.unwrap().len(),
        7,
        "nothing past the canary ran"
    );

    // One at a time, stop at the first failure.
    let strict = FleetOptions {
        concurrency: 1,
        max_failures: Some(1),
        ..Default::default()
    };
    let report = v2.fleet().migrate(&strict, |_| {}).await.unwrap();
    assert!(report.stopped);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, ids[0], "the first in line fails first");
    assert_eq!(report.succeeded, 0);
    v2.close().await;
}

async fn concurrent_runs_never_migrate_a_tenant_twice(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let ids = tenants(&env, 24).await;
    let (a, b) = (env.second(schema_v2()).await, env.second(schema_v2()).await);
    let options = FleetOptions {
        concurrency: 3,
        ..Default::default()
    };
    let (events_a, sink_a) = collect();
    let (events_b, sink_b) = collect();
    let (fleet_a, fleet_b) = (a.fleet(), b.fleet());
    let (ra, rb) = tokio::join!(fleet_a.migrate(&options, sink_a), fleet_b.migrate(&options, sink_b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.failures.is_empty() && rb.failures.is_empty());
    let migrated = |events: &Arc<Mutex<Vec<FleetEvent>>>| -> Vec<Uuid> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                FleetEvent::Migrated { tenant_id, .. } => Some(*tenant_id),
                _ => None,
            })
            .collect()
    };
    let (ma, mb) = (migrated(&events_a), migrated(&events_b));
    assert!(
        ma.iter().all(|id| !mb.contains(id)),
        "a tenant was migrated by both runs"
    );
    let mut all: Vec<Uuid> = ma.into_iter().chain(mb).collect();
    all.sort();
    all.dedup();
    // Each tenant was migrated by exactly one run, or skipped by both
    // because the other had just finished it (then it is up to date).
    for id in &ids {
        assert_eq!(
            env.row(*id).await.unwrap().schema_version.as_deref(),
            Some("m0002_tags")
        );
    }
    assert_eq!(ra.succeeded + rb.succeeded, all.len());
    a.close().await;
    b.close().await;
}
