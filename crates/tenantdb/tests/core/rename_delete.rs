use sea_orm::{ConnectionTrait, DatabaseConnection};
use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, TenantRef};

use crate::support::{Backend, TestEnv, schema_v1};
use tenantdb_test_support::both_backends;

both_backends!(
    renaming_a_tenant_keeps_its_data,
    renaming_to_a_taken_or_bad_name_changes_nothing,
    deleting_a_tenant_leaves_no_database_role_or_row,
);

async fn write_note(conn: &DatabaseConnection, body: &str) {
    conn.execute_unprepared(&format!("INSERT INTO notes (id, body) VALUES (1, '{body}')"))
        .await
        .unwrap();
}

async fn read_note(conn: &DatabaseConnection) -> String {
    use sea_orm::Statement;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT body FROM notes WHERE id = 1",
        ))
        .await
        .unwrap()
        .expect("the note is there");
    row.try_get::<String>("", "body").unwrap()
}

async fn renaming_a_tenant_keeps_its_data(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let before = env
        .raw(
            &provisioner
                .create_tenant(NewTenant {
                    slug: "acme".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;
    // A session left open: the rename ends it (PostgreSQL refuses to rename
    // a database anyone is connected to).
    let open = env.connect_tenant(&before).await;
    write_note(&open, "kept").await;

    let new_name = format!("{}acme_renamed", env.db_prefix());
    let after = env
        .raw(
            &provisioner
                .rename_tenant_database(&TenantRef::parse("acme").unwrap(), &new_name)
                .await
                .unwrap(),
        )
        .await;

    assert_eq!(after.status, DbStatus::Active);
    assert_eq!(after.database_name, new_name);
    assert_eq!(after.read_database_name, new_name);
    assert!(after.pending_database_name.is_none());
    assert_eq!(read_note(&env.connect_tenant(&after).await).await, "kept");
    if backend == Backend::Postgres {
        assert!(
            open.execute_unprepared("SELECT 1").await.is_err(),
            "the old session was ended"
        );
        assert!(!env.pg_database_exists(&before.database_name).await);
        assert!(env.pg_database_exists(&new_name).await);
    } else {
        // SQLite files are named by tenant id: the file never moves.
        assert!(env.database_exists(&after).await);
    }
    // The old name is free again.
    let reuse = env
        .raw(
            &provisioner
                .create_tenant(NewTenant {
                    slug: "newcomer".into(),
                    database_name: Some(before.database_name.clone()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(reuse.database_name, before.database_name);
}

async fn renaming_to_a_taken_or_bad_name_changes_nothing(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let new = |slug: &str| NewTenant {
        slug: slug.into(),
        ..Default::default()
    };
    let a = env.raw(&provisioner.create_tenant(new("a")).await.unwrap()).await;
    let b = env.raw(&provisioner.create_tenant(new("b")).await.unwrap()).await;
    let a_ref = TenantRef::Id(a.tenant_id.into());

    let err = provisioner
        .rename_tenant_database(&a_ref, &b.database_name)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = provisioner
        .rename_tenant_database(&a_ref, "postgres")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");

    let row = env.row(a.tenant_id).await.unwrap();
    assert_eq!(row.status, DbStatus::Active);
    assert_eq!(row.database_name, a.database_name);
    assert!(row.pending_database_name.is_none());
    assert!(env.database_exists(&row).await);
}

async fn deleting_a_tenant_leaves_no_database_role_or_row(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let row = env
        .raw(
            &provisioner
                .create_tenant(NewTenant {
                    slug: "doomed".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;
    let user = env
        .tenancy
        .catalog()
        .users()
        .create("Owner@Example.com", "Owner")
        .await
        .unwrap();
    env.tenancy
        .catalog()
        .memberships()
        .upsert(row.tenant_id, user.id, tenantdb::catalog::MemberRole::Owner)
        .await
        .unwrap();
    // A session left open on the database: delete must end it.
    let open = env.connect_tenant(&row).await;
    write_note(&open, "bye").await;

    provisioner
        .delete_tenant_now(&TenantRef::parse("doomed").unwrap())
        .await
        .unwrap();

    assert!(env.row(row.tenant_id).await.is_none(), "no database row");
    let tenant = env
        .tenancy
        .catalog()
        .tenants()
        .find(&TenantRef::Id(row.tenant_id.into()))
        .await
        .unwrap();
    assert!(tenant.is_none(), "no tenant row");
    let members = env
        .tenancy
        .catalog()
        .memberships()
        .list_for_tenant(row.tenant_id)
        .await
        .unwrap();
    assert!(members.is_empty(), "no memberships");
    assert!(
        env.tenancy.catalog().users().find(user.id).await.unwrap().is_some(),
        "users stay"
    );
    assert!(!env.database_exists(&row).await, "no database");
    assert!(env.physical_databases().await.is_empty(), "no -wal or -shm file either");
    assert!(env.roles().await.is_empty(), "no role");
    if backend == Backend::Postgres {
        assert!(
            open.execute_unprepared("SELECT 1").await.is_err(),
            "the open session was ended"
        );
    }
    let err = provisioner
        .delete_tenant_now(&TenantRef::parse("doomed").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
}
