//! A process killed between any two steps is repaired by `reconcile`, and
//! `reconcile` never touches work another process is still doing.

use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, TenantRef};
use tenantdb::{ReconcileOutcome, internal::Step};

use crate::support::{Backend, LEASE_EXPIRY_WAIT, TestEnv, schema_slow, schema_v1, tables};
use tenantdb_test_support::both_backends;

both_backends!(
    a_create_stopped_after_any_step_is_finished_by_reconcile,
    a_rename_stopped_after_any_step_is_finished_by_reconcile,
    a_delete_stopped_after_any_step_is_finished_by_reconcile,
    reconcile_leaves_work_in_progress_alone,
);

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

/// Runs reconcile from another "process" once the dead one's lease expired.
async fn reconcile_later(env: &TestEnv) -> Vec<tenantdb::Reconciled> {
    tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
    let other = env.second(schema_v1()).await;
    let report = other.provisioner().reconcile().await.unwrap();
    other.close().await;
    report
}

async fn a_create_stopped_after_any_step_is_finished_by_reconcile(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let steps = [
        Step::RowInserted,
        Step::RoleCreated,
        Step::DatabaseCreated,
        Step::DatabaseOpened,
        Step::Migrated,
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let slug = format!("crash-{i}");
        env.tenancy.provisioner().crash_after(step);
        let err = env.tenancy.provisioner().create_tenant(new(&slug)).await.unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{step:?}: {err}");
        let view = env.tenancy.tenant(&TenantRef::parse(&slug).unwrap()).await.unwrap();
        assert_eq!(view.database.unwrap().status, DbStatus::Provisioning, "{step:?}");

        let report = reconcile_later(&env).await;
        assert_eq!(report.len(), 1, "{step:?}: {report:?}");
        assert_eq!(report[0].outcome, ReconcileOutcome::Finished, "{step:?}");
        let row = env.row(view.id).await.unwrap();
        assert_eq!(row.status, DbStatus::Active, "{step:?}");
        assert_eq!(row.schema_version.as_deref(), Some("m0001_notes"));
        assert!(row.lease_owner.is_none());
        assert_eq!(
            tables(&env.connect_tenant(&row).await).await,
            vec!["notes", "seaql_migrations"]
        );
    }
    let databases = env.physical_databases().await;
    let main_files = databases
        .iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"));
    assert_eq!(main_files.count(), steps.len(), "{databases:?}");
}

async fn a_rename_stopped_after_any_step_is_finished_by_reconcile(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    for (i, step) in [Step::RenameClaimed, Step::DatabaseRenamed].into_iter().enumerate() {
        let slug = format!("mover-{i}");
        let row = env.raw(&provisioner.create_tenant(new(&slug)).await.unwrap()).await;
        let to = format!("{}moved_{i}", env.db_prefix());
        provisioner.crash_after(step);
        let err = provisioner
            .rename_tenant_database(&TenantRef::parse(&slug).unwrap(), &to)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{step:?}: {err}");
        assert_eq!(env.row(row.tenant_id).await.unwrap().status, DbStatus::Renaming);

        let report = reconcile_later(&env).await;
        assert_eq!(report.len(), 1, "{step:?}: {report:?}");
        assert_eq!(report[0].outcome, ReconcileOutcome::Finished);
        let row = env.row(row.tenant_id).await.unwrap();
        assert_eq!(row.status, DbStatus::Active);
        assert_eq!(row.database_name, to);
        assert!(row.pending_database_name.is_none());
        assert!(env.database_exists(&row).await);
        assert_eq!(
            tables(&env.connect_tenant(&row).await).await,
            vec!["notes", "seaql_migrations"]
        );
    }
}

async fn a_delete_stopped_after_any_step_is_finished_by_reconcile(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    for (i, step) in [Step::DeleteClaimed, Step::DatabaseDropped].into_iter().enumerate() {
        let slug = format!("gone-{i}");
        let row = env.raw(&provisioner.create_tenant(new(&slug)).await.unwrap()).await;
        provisioner.crash_after(step);
        let err = provisioner
            .delete_tenant_now(&TenantRef::parse(&slug).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{step:?}: {err}");
        assert_eq!(env.row(row.tenant_id).await.unwrap().status, DbStatus::Deleting);

        let report = reconcile_later(&env).await;
        assert_eq!(report.len(), 1, "{step:?}: {report:?}");
        assert_eq!(report[0].outcome, ReconcileOutcome::Finished);
        assert!(env.row(row.tenant_id).await.is_none());
        let tenant = env
            .tenancy
            .catalog()
            .tenants()
            .find(&TenantRef::parse(&slug).unwrap())
            .await
            .unwrap();
        assert!(tenant.is_none(), "the tenant went too");
        assert!(!env.database_exists(&row).await);
    }
    assert!(env.roles().await.is_empty());
}

async fn reconcile_leaves_work_in_progress_alone(backend: Backend) {
    // The slow migration takes 2.5 s, longer than two lease TTLs: the lease
    // survives only because the working process renews it.
    let env = TestEnv::new(backend, schema_slow()).await;
    let provisioner = env.tenancy.provisioner().clone();
    let create = tokio::spawn(async move { provisioner.create_tenant(new("busy")).await });
    let other = env.second(schema_v1()).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(2000);
    let mut rounds = 0;
    while tokio::time::Instant::now() < deadline {
        let report = other.provisioner().reconcile().await.unwrap();
        assert!(report.is_empty(), "live work was touched: {report:?}");
        rounds += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(rounds >= 5);
    let row = create.await.unwrap().unwrap();
    assert_eq!(row.status, DbStatus::Active);
    assert_eq!(row.schema_version.as_deref(), Some("m0002_slow"));
    other.close().await;
}
