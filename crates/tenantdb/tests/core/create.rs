use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, TenantRef};

use crate::support::{Backend, TestEnv, schema_v1, tables};
use tenantdb_test_support::both_backends;

both_backends!(
    creating_a_tenant_makes_an_active_database_at_the_latest_version,
    bad_names_are_refused_and_change_nothing,
    a_taken_slug_or_database_name_is_a_conflict,
    a_new_tenant_gets_its_owner_and_plan_or_nothing_is_made,
    concurrent_creates_of_one_tenant_make_exactly_one_database,
    illegal_transitions_are_refused,
);

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

async fn creating_a_tenant_makes_an_active_database_at_the_latest_version(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let row = env
        .raw(&env.tenancy.provisioner().create_tenant(new("acme")).await.unwrap())
        .await;

    assert_eq!(row.status, DbStatus::Active);
    assert_eq!(row.database_name, format!("{}acme", env.db_prefix()));
    assert_eq!(row.read_database_name, row.database_name);
    assert_eq!(row.schema_version.as_deref(), Some("m0001_notes"));
    assert!(row.last_migration_at.is_some());
    assert!(row.lease_owner.is_none(), "the lease is released");
    assert!(env.database_exists(&row).await);
    let conn = env.connect_tenant(&row).await;
    assert_eq!(tables(&conn).await, vec!["notes", "seaql_migrations"]);

    let view = env.tenancy.tenant(&TenantRef::parse("acme").unwrap()).await.unwrap();
    assert_eq!(view.slug, "acme");
    assert_eq!(view.database.unwrap().status, DbStatus::Active);
}

async fn bad_names_are_refused_and_change_nothing(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let long = "a".repeat(64);
    for slug in ["x; drop database y", "\"quoted\"", "Upper", "", "-lead", long.as_str()] {
        let err = provisioner.create_tenant(new(slug)).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { kind: "slug", .. }), "{slug}: {err}");
    }
    let prefix = env.db_prefix().to_owned();
    let too_long = format!("{prefix}{}", "a".repeat(64 - prefix.len()));
    let bad_names = [
        "x; drop database y".to_owned(),
        "\"quoted\"".to_owned(),
        "pg_catalog".to_owned(),
        "template0".to_owned(),
        "postgres".to_owned(),
        "no_prefix_db".to_owned(),
        too_long,
        format!("{}ACME", prefix),
        String::new(),
    ];
    for name in &bad_names {
        let request = NewTenant {
            slug: "good-slug".into(),
            database_name: Some(name.clone()),
            ..Default::default()
        };
        let err = provisioner.create_tenant(request).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    kind: "database name",
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("must"), "the message names the rule: {err}");
    }
    let tenants = env.tenancy.catalog().tenants().list(None, None, 100).await.unwrap();
    assert!(tenants.is_empty(), "no tenant row was made");
    assert!(env.physical_databases().await.is_empty(), "no database was made");
    assert!(env.roles().await.is_empty(), "no role was made");
}

async fn a_taken_slug_or_database_name_is_a_conflict(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let first = env.raw(&provisioner.create_tenant(new("acme")).await.unwrap()).await;

    let err = provisioner.create_tenant(new("acme")).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    assert!(err.to_string().contains("slug 'acme'"), "{err}");

    let same_name = NewTenant {
        slug: "other".into(),
        database_name: Some(first.database_name.clone()),
        ..Default::default()
    };
    let err = provisioner.create_tenant(same_name).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");

    let tenants = env.tenancy.catalog().tenants().list(None, None, 100).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(env.physical_databases().await.len(), 1);
}

async fn a_new_tenant_gets_its_owner_and_plan_or_nothing_is_made(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let catalog = env.tenancy.catalog();
    let ada = catalog.users().create("ada@example.com", "Ada").await.unwrap();
    let owned = NewTenant {
        slug: "owned".into(),
        owner_user_id: Some(ada.id),
        plan: Some("pro".into()),
        ..Default::default()
    };
    let made = env.tenancy.provisioner().create_tenant(owned).await.unwrap();
    let member = catalog
        .memberships()
        .find(made.tenant_id, ada.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(member.role, tenantdb::MemberRole::Owner);
    let subscription = catalog.subscriptions().find(made.tenant_id).await.unwrap().unwrap();
    assert_eq!(subscription.plan, "pro");

    // An owner who is not a user refuses the whole insert: no tenant, no
    // row, no name reserved, no database.
    let nobody = uuid::Uuid::now_v7();
    let orphan = NewTenant {
        slug: "orphan".into(),
        owner_user_id: Some(nobody),
        plan: Some("pro".into()),
        ..Default::default()
    };
    let err = env.tenancy.provisioner().create_tenant(orphan).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { kind: "owner_user_id", value, .. } if *value == nobody.to_string()),
        "{err}"
    );
    let tenants = catalog.tenants().list(None, None, 100).await.unwrap();
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    assert_eq!(catalog.tenant_databases().list(None).await.unwrap().len(), 1);
    assert_eq!(env.physical_databases().await.len(), 1);
    let again = NewTenant {
        slug: "orphan".into(),
        ..Default::default()
    };
    env.tenancy.provisioner().create_tenant(again).await.unwrap();
}

async fn concurrent_creates_of_one_tenant_make_exactly_one_database(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let other = env.second(schema_v1()).await;
    let name = format!("{}shared", env.db_prefix());
    let request = |slug: &str| NewTenant {
        slug: slug.into(),
        database_name: Some(name.clone()),
        ..Default::default()
    };
    // Same slug from two "processes", then the same database name under two
    // slugs.
    for (a, b) in [("twin", "twin"), ("left", "right")] {
        let (ra, rb) = tokio::join!(
            env.tenancy.provisioner().create_tenant(request(a)),
            other.provisioner().create_tenant(request(b)),
        );
        let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
        assert_eq!(oks, 1, "exactly one create wins: {ra:?} / {rb:?}");
        let err = ra.err().or(rb.err()).unwrap();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "the loser is told it exists: {err}"
        );
        assert_eq!(env.physical_databases().await.len(), 1);
        let winner = env.tenancy.catalog().tenants().list(None, None, 10).await.unwrap();
        env.tenancy
            .provisioner()
            .delete_tenant_now(&TenantRef::Id(winner[0].id.into()))
            .await
            .unwrap();
    }
    other.close().await;
}

async fn illegal_transitions_are_refused(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    provisioner.create_tenant(new("acme")).await.unwrap();
    let acme = TenantRef::parse("acme").unwrap();

    let err = provisioner.retry(&acme).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::IllegalState {
                status: DbStatus::Active,
                action: "retry",
                ..
            }
        ),
        "{err}"
    );
    let err = provisioner
        .retry(&TenantRef::parse("nobody").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
}
