use sea_orm::{EntityTrait, PaginatorTrait};
use secrecy::SecretString;
use tenantdb::Error;
use tenantdb::catalog::{Catalog, MemberRole, SubscriptionStatus};
use tenantdb::{NewTenant, TenantRef};

use crate::support::{Backend, TestEnv, schema_v1};
use tenantdb_test_support::both_backends;

both_backends!(
    the_catalog_migrates_once_when_many_processes_start_together,
    catalog_repositories_round_trip,
    services_that_start_together_over_a_new_catalog_all_start,
);

async fn the_catalog_migrates_once_when_many_processes_start_together(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let url = env.fresh_catalog_url("fresh").await;
    let starts = (0..4).map(|_| {
        let url = SecretString::from(url.clone());
        tokio::spawn(async move { Catalog::connect(&url, 2).await })
    });
    let mut ids = Vec::new();
    for start in starts {
        let catalog = start.await.unwrap().expect("every process starts");
        ids.push(catalog.id());
        let applied = sea_orm_migration::seaql_migrations::Entity::find()
            .count(catalog.db())
            .await
            .unwrap();
        assert_eq!(applied, tenantdb::catalog::migrations().len() as u64);
        catalog.close().await;
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one catalog id, made once");
}

async fn catalog_repositories_round_trip(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let catalog = env.tenancy.catalog();

    let user = catalog.users().create("Ada@Example.COM", "Ada").await.unwrap();
    assert_eq!(user.email, "ada@example.com");
    let err = catalog.users().create("ada@example.com", "Other").await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    assert_eq!(
        catalog
            .users()
            .find_by_email("ADA@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        user.id
    );

    let (token_row, token) = catalog.tokens().create(user.id, "cli").await.unwrap();
    assert_ne!(token_row.token_sha256, token, "only the hash is stored");
    assert_eq!(
        catalog.tokens().find_active(&token).await.unwrap().unwrap().id,
        token_row.id
    );
    assert!(catalog.tokens().revoke(user.id, token_row.id).await.unwrap());
    assert!(catalog.tokens().find_active(&token).await.unwrap().is_none());
    assert!(!catalog.tokens().revoke(user.id, token_row.id).await.unwrap());

    let row = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            name: Some("Acme Inc.".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let tenant = row.tenant_id;
    catalog
        .memberships()
        .upsert(tenant, user.id, MemberRole::Member)
        .await
        .unwrap();
    let changed = catalog
        .memberships()
        .upsert(tenant, user.id, MemberRole::Admin)
        .await
        .unwrap();
    assert_eq!(changed.role, MemberRole::Admin);
    assert_eq!(catalog.memberships().list_for_tenant(tenant).await.unwrap().len(), 1);

    catalog
        .subscriptions()
        .upsert(tenant, "pro", SubscriptionStatus::Trialing, 5, None)
        .await
        .unwrap();
    let sub = catalog
        .subscriptions()
        .upsert(tenant, "pro", SubscriptionStatus::Active, 10, None)
        .await
        .unwrap();
    assert_eq!((sub.status, sub.seats), (SubscriptionStatus::Active, 10));

    catalog
        .settings()
        .put("signup.open", serde_json::json!(true))
        .await
        .unwrap();
    catalog
        .settings()
        .put("signup.open", serde_json::json!({"until": "2027"}))
        .await
        .unwrap();
    assert_eq!(
        catalog.settings().get("signup.open").await.unwrap(),
        Some(serde_json::json!({"until": "2027"}))
    );
    assert_eq!(catalog.settings().all().await.unwrap().len(), 1);

    let suspended = env
        .tenancy
        .set_tenant_status(&TenantRef::parse("acme").unwrap(), tenantdb::TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, tenantdb::TenantStatus::Suspended);
    assert_eq!(suspended.name, "Acme Inc.");
}

/// Services that start together over a catalog no one has used: each one
/// closes the catalog's database to tenant roles at start, and none may fail
/// because another is doing the same (PostgreSQL once answered the second
/// `REVOKE` with "tuple concurrently updated" and a CI run lost a service).
async fn services_that_start_together_over_a_new_catalog_all_start(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    for round in 0..8 {
        let mut config = env.config.clone();
        config.catalog_url = SecretString::from(env.fresh_catalog_url(&format!("together{round}")).await);
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move { tenantdb::Tenancy::connect(config, schema_v1()).await })
            })
            .collect();
        for start in starts {
            let tenancy = start.await.unwrap().expect("every service starts");
            if backend == Backend::Postgres {
                let open: bool =
                    sqlx::query_scalar("SELECT has_database_privilege('public', current_database(), 'CONNECT')")
                        .fetch_one(tenancy.catalog().db().get_postgres_connection_pool())
                        .await
                        .unwrap();
                assert!(!open, "the catalog's database is closed to PUBLIC");
            }
            tenancy.close().await;
        }
    }
}
