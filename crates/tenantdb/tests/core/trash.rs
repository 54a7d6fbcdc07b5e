//! Delete with a way back: a deleted tenant's database is kept under a
//! trash name with its role locked out, refused at the door, restored as it
//! was (migrated if it fell behind), and purged by name, by the sweep past
//! its retention period, or by `doctor --fix`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenantdb::{DbStatus, DoctorOptions, Error, NewTenant, TenantRef};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, TestEnv, schema_v1, schema_v2};

both_backends!(
    a_deleted_tenant_is_kept_refused_and_restored_as_it_was,
    the_trash_is_purged_by_name_by_the_sweep_and_by_doctor,
    without_a_retention_period_delete_is_for_good,
    a_tenant_whose_database_vanished_is_deleted_for_good,
);

fn tenant(slug: &str) -> TenantRef {
    TenantRef::parse(slug).unwrap()
}

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

async fn notes(conn: &DatabaseConnection) -> Vec<String> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT body FROM notes ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "body").unwrap())
    .collect()
}

async fn can_login(env: &TestEnv, role: &str) -> bool {
    sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(env.admin())
        .await
        .unwrap()
}

async fn a_deleted_tenant_is_kept_refused_and_restored_as_it_was(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let before = env.create("acme").await;
    env.create("bystander").await;
    let conn = env.connect_tenant(&before).await;
    conn.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'kept')")
        .await
        .unwrap();
    // Served once, so this process holds a pool the delete must close.
    env.tenancy.connections().connection(&tenant("acme")).await.unwrap();

    provisioner.delete_tenant(&tenant("acme")).await.unwrap();
    let deleted = env.row(before.tenant_id).await.unwrap();
    assert_eq!(deleted.status, DbStatus::Deleted);
    assert!(
        deleted
            .database_name
            .starts_with(&format!("{}_deleted_", env.db_prefix())),
        "{deleted:?}"
    );
    assert_eq!(
        deleted.pending_database_name.as_deref(),
        Some(before.database_name.as_str())
    );
    assert!(deleted.deleted_at.is_some());
    assert!(env.database_exists(&deleted).await, "the database is kept");
    if backend == Backend::Postgres {
        assert!(!env.pg_database_exists(&before.database_name).await);
        assert!(!can_login(&env, &before.role_name).await, "the role is locked out");
        // The session opened before the delete was ended.
        assert!(notes_fail(&conn).await, "the old session still works");
    }
    conn.close().await.ok();

    // Refused at the door, with its own error; the bystander is served.
    let err = env.tenancy.connections().connection(&tenant("acme")).await.unwrap_err();
    assert!(matches!(err, Error::TenantDeleted(_)), "{err}");
    env.tenancy
        .connections()
        .connection(&tenant("bystander"))
        .await
        .unwrap();
    let view = env.tenancy.tenant(&tenant("acme")).await.unwrap().database.unwrap();
    assert!(view.deleted_at.is_some() && view.purge_after.is_some(), "{view:?}");

    // Deleting again does nothing; other work is refused; its slug and its
    // database name stay taken until it is purged.
    provisioner.delete_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(env.row(before.tenant_id).await.unwrap(), deleted);
    for err in [
        provisioner.migrate_tenant(&tenant("acme")).await.unwrap_err(),
        provisioner
            .rename_tenant_database(&tenant("acme"), &format!("{}elsewhere", env.db_prefix()))
            .await
            .unwrap_err(),
        provisioner.purge_tenant(&tenant("bystander")).await.unwrap_err(),
        provisioner.restore_tenant(&tenant("bystander")).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::IllegalState { .. }), "{err}");
    }
    let err = provisioner.create_tenant(new("acme")).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = provisioner
        .create_tenant(NewTenant {
            database_name: Some(before.database_name.clone()),
            ..new("squatter")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = provisioner
        .create_tenant(NewTenant {
            database_name: Some(deleted.database_name.clone()),
            ..new("squatter")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "a trash name is refused: {err}");
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "the trash is no orphan: {findings:#?}");

    if backend == Backend::Postgres {
        // Someone else's database under the bystander's trash name: the
        // delete touches neither, and the bystander stays as it was.
        let bystander = env
            .row(env.tenancy.tenant(&tenant("bystander")).await.unwrap().id)
            .await
            .unwrap();
        let trash = tenantdb::DatabaseName::trash(&env.config.database_prefix, bystander.tenant_id.into());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{trash}\"")))
            .execute(env.admin())
            .await
            .unwrap();
        let err = provisioner.delete_tenant(&tenant("bystander")).await.unwrap_err();
        assert!(matches!(err, Error::NotOurs { .. }), "{err}");
        let after = env.row(bystander.tenant_id).await.unwrap();
        assert_eq!(after.status, DbStatus::Active);
        assert_eq!(after.database_name, bystander.database_name);
        assert!(after.error_message.unwrap().contains("delete failed"));
        assert!(can_login(&env, &bystander.role_name).await, "let in again");
        env.tenancy
            .connections()
            .connection(&tenant("bystander"))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{trash}\"")))
            .execute(env.admin())
            .await
            .unwrap();
    }

    // A newer program restores it: the same name and data, migrated.
    let newer = env.second(schema_v2()).await;
    let restored = newer.provisioner().restore_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(restored.status, DbStatus::Active);
    assert_eq!(restored.database_name, before.database_name);
    assert_eq!(
        (restored.deleted_at.as_deref(), restored.purge_after.as_deref()),
        (None, None)
    );
    assert_eq!(restored.schema_version, schema_v2().latest_version());
    let row = env.row(before.tenant_id).await.unwrap();
    assert_eq!(
        (row.pending_database_name, row.deleted_at, row.purge_tenant),
        (None, None, false)
    );
    if backend == Backend::Postgres {
        assert!(can_login(&env, &before.role_name).await, "the role is let in");
        assert!(!env.pg_database_exists(&deleted.database_name).await);
    }
    let err = newer.provisioner().restore_tenant(&tenant("acme")).await.unwrap_err();
    assert!(matches!(err, Error::IllegalState { .. }), "{err}");
    // (The newer program finds the older program's template stale: not
    // this test's business.)
    let findings = newer.doctor().examine(DoctorOptions::default()).await.unwrap();
    let about_it: Vec<_> = findings.iter().filter(|f| f.tenant_id.is_some()).collect();
    assert!(about_it.is_empty(), "{about_it:#?}");
    newer.close().await;
    // The first process sees the restore (at its next catalog poll) and
    // serves the tenant's data again.
    let mut served = env.tenancy.connections().connection(&tenant("acme")).await;
    for _ in 0..20 {
        if served.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        served = env.tenancy.connections().connection(&tenant("acme")).await;
    }
    assert_eq!(notes(&served.unwrap()).await, vec!["kept".to_owned()]);
}

/// Whether a query on a connection made before the delete fails (its
/// session was ended).
async fn notes_fail(conn: &DatabaseConnection) -> bool {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT body FROM notes",
    ))
    .await
    .is_err()
}

async fn the_trash_is_purged_by_name_by_the_sweep_and_by_doctor(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), |config| {
        config.deleted_retention = Duration::from_millis(1500);
    })
    .await;
    let provisioner = env.tenancy.provisioner();
    let mut rows = Vec::new();
    for slug in ["old", "fixed", "young", "named", "now"] {
        rows.push(env.create(slug).await);
    }
    provisioner.delete_tenant(&tenant("old")).await.unwrap();
    provisioner.delete_tenant(&tenant("fixed")).await.unwrap();
    // A process configured with no retention keeps to the period written
    // on each row, not its own: it purges nothing yet.
    let mut eager_config = env.config.clone();
    eager_config.deleted_retention = Duration::ZERO;
    let eager = tenantdb::Tenancy::connect(eager_config, schema_v1()).await.unwrap();
    assert!(eager.provisioner().purge_expired().await.unwrap().is_empty());
    eager.close().await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    provisioner.delete_tenant(&tenant("young")).await.unwrap();
    provisioner.delete_tenant(&tenant("named")).await.unwrap();
    provisioner.delete_tenant(&tenant("now")).await.unwrap();

    // doctor reports what is past its period, and --fix purges it.
    let doctor = env.tenancy.doctor();
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    let expired: Vec<_> = findings
        .iter()
        .map(|f| (f.problem.as_str(), f.tenant_id.unwrap()))
        .collect();
    assert_eq!(
        expired,
        vec![
            ("expired_trash", rows[0].tenant_id),
            ("expired_trash", rows[1].tenant_id)
        ],
        "{findings:#?}"
    );
    let fixed: Vec<_> = findings
        .into_iter()
        .filter(|f| f.tenant_id == Some(rows[1].tenant_id))
        .collect();
    for done in doctor.repair(&fixed).await {
        assert_eq!(done.outcome, Ok("purged".to_owned()));
    }
    // The sweep takes the other one, not those within their period.
    let purged = provisioner.purge_expired().await.unwrap();
    assert_eq!(
        purged
            .iter()
            .map(|p| (p.tenant_id, p.outcome.clone()))
            .collect::<Vec<_>>(),
        vec![(rows[0].tenant_id, Ok(()))]
    );
    assert_eq!(env.row(rows[2].tenant_id).await.unwrap().status, DbStatus::Deleted);
    // By name before the end of the period, and for good at once.
    provisioner.purge_tenant(&tenant("named")).await.unwrap();
    provisioner.delete_tenant_now(&tenant("now")).await.unwrap();
    for (i, row) in rows.iter().enumerate() {
        let found = env.tenancy.tenant(&TenantRef::Id(row.tenant_id.into())).await;
        if i == 2 {
            assert!(found.is_ok(), "the young one is kept");
            continue;
        }
        assert!(matches!(found, Err(Error::TenantNotFound(_))), "{i}: {found:?}");
        assert!(env.row(row.tenant_id).await.is_none());
    }
    // Nothing of the purged ones is left on the server.
    let young = env.row(rows[2].tenant_id).await.unwrap();
    match backend {
        Backend::Postgres => {
            let left: Vec<String> = env
                .physical_databases()
                .await
                .into_iter()
                .filter(|name| !name.contains("-tpl-"))
                .collect();
            assert_eq!(left, vec![young.database_name.clone()]);
            assert_eq!(env.roles().await, vec![young.role_name.clone()]);
        }
        Backend::Sqlite => {
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(env.database_exists(row).await, i == 2, "{i}");
            }
        }
    }
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

async fn a_tenant_whose_database_vanished_is_deleted_for_good(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let row = env.create("vanished").await;
    match backend {
        Backend::Postgres => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                row.database_name
            )))
            .execute(env.admin())
            .await
            .unwrap();
        }
        Backend::Sqlite => std::fs::remove_file(env.sqlite().path(row.tenant_id.into())).unwrap(),
    }
    // Nothing to keep: not stuck DELETING, gone, role and all.
    env.tenancy
        .provisioner()
        .delete_tenant(&tenant("vanished"))
        .await
        .unwrap();
    assert!(env.row(row.tenant_id).await.is_none());
    assert!(env.roles().await.is_empty());
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

async fn without_a_retention_period_delete_is_for_good(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), |config| {
        config.deleted_retention = Duration::ZERO;
    })
    .await;
    let row = env.create("gone").await;
    env.tenancy.provisioner().delete_tenant(&tenant("gone")).await.unwrap();
    assert!(env.row(row.tenant_id).await.is_none());
    assert!(!env.database_exists(&row).await);
    let err = env.tenancy.tenant(&tenant("gone")).await.unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
}
