use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, TenantRef};

use crate::support::{Backend, TestEnv, schema_broken, schema_v1, schema_v2, tables};
use tenantdb_test_support::both_backends;

both_backends!(
    a_failed_create_leaves_a_failed_row_and_no_database_and_retry_finishes_it,
    migrating_a_tenant_applies_new_migrations,
    a_failing_migration_keeps_the_last_good_version_and_the_tenant_serving,
);

async fn a_failed_create_leaves_a_failed_row_and_no_database_and_retry_finishes_it(backend: Backend) {
    let env = TestEnv::new(backend, schema_broken()).await;
    let err = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let Error::ProvisioningFailed { tenant, message, .. } = &err else {
        panic!("expected ProvisioningFailed, got {err}");
    };
    assert!(message.contains("m0003_broken"), "{message}");

    let row = env.row(tenant.parse().unwrap()).await.unwrap();
    assert_eq!(row.status, DbStatus::Failed);
    assert!(row.error_message.as_deref().unwrap().contains("m0003_broken"));
    assert!(row.lease_owner.is_none());
    assert!(!env.database_exists(&row).await, "nothing half-made is left");
    assert!(env.physical_databases().await.is_empty());
    assert!(env.roles().await.is_empty());

    // The application fixed its migrations: retry finishes the tenant.
    let fixed = env.second(schema_v2()).await;
    let row = env
        .raw(
            &fixed
                .provisioner()
                .retry(&TenantRef::parse("acme").unwrap())
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(row.status, DbStatus::Active);
    assert_eq!(row.schema_version.as_deref(), Some("m0002_tags"));
    assert!(row.error_message.is_none());
    fixed.close().await;
}

async fn migrating_a_tenant_applies_new_migrations(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let created = env
        .raw(
            &env.tenancy
                .provisioner()
                .create_tenant(NewTenant {
                    slug: "acme".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;
    let newer = env.second(schema_v2()).await;
    let acme = TenantRef::parse("acme").unwrap();
    let row = env.raw(&newer.provisioner().migrate_tenant(&acme).await.unwrap()).await;
    assert_eq!(row.status, DbStatus::Active);
    assert_eq!(row.schema_version.as_deref(), Some("m0002_tags"));
    assert!(row.last_migration_at > created.last_migration_at);
    assert_eq!(
        tables(&env.connect_tenant(&row).await).await,
        vec!["notes", "seaql_migrations", "tags"]
    );

    // Nothing left to apply: the version stays, nothing breaks.
    let again = env.raw(&newer.provisioner().migrate_tenant(&acme).await.unwrap()).await;
    assert_eq!(again.schema_version.as_deref(), Some("m0002_tags"));
    assert_eq!(again.last_migration_at, row.last_migration_at);
    newer.close().await;
}

async fn a_failing_migration_keeps_the_last_good_version_and_the_tenant_serving(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    env.tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let broken = env.second(schema_broken()).await;
    let err = broken
        .provisioner()
        .migrate_tenant(&TenantRef::parse("acme").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MigrationFailed { migration, .. } if migration == "m0003_broken"),
        "{err}"
    );

    let view = env.tenancy.tenant(&TenantRef::parse("acme").unwrap()).await.unwrap();
    let db = view.database.unwrap();
    assert_eq!(db.status, DbStatus::Active, "the tenant keeps serving");
    assert_eq!(db.schema_version.as_deref(), Some("m0002_tags"), "v2 applied, v3 not");
    assert!(db.error_message.unwrap().contains("m0003_broken"));
    let row = env.row(view.id).await.unwrap();
    // The failed migration's first statement was rolled back with it, on
    // SQLite as on PostgreSQL.
    assert_eq!(
        tables(&env.connect_tenant(&row).await).await,
        vec!["notes", "seaql_migrations", "tags"]
    );
    broken.close().await;
}
