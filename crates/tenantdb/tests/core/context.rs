use tenantdb::Error;
use tenantdb::{NewTenant, TenantRef};
use tenantdb::{TenantContext, TenantRepository, TenantScope};

use crate::support::{Backend, TestEnv, schema_v1, tables};
use tenantdb_test_support::both_backends;

both_backends!(repositories_reach_the_database_of_the_tenant_in_scope);

struct Notes;
impl TenantRepository for Notes {}

async fn repositories_reach_the_database_of_the_tenant_in_scope(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    let a = provisioner
        .create_tenant(NewTenant {
            slug: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let connections = env.tenancy.connections();

    let err = Notes.db().await.unwrap_err();
    assert!(matches!(err, Error::NoTenantContext), "{err}");
    assert!(err.to_string().contains("TenantContext::scope"), "{err}");

    let scope = TenantScope::open(connections, &TenantRef::parse("a").unwrap())
        .await
        .unwrap();
    assert_eq!(scope.tenant_id().as_uuid(), a.tenant_id);
    TenantContext::scope(scope, async {
        let db = Notes.db().await.unwrap();
        assert_eq!(tables(&db).await, vec!["notes", "seaql_migrations"]);
        assert_eq!(TenantContext::current().unwrap().tenant().slug, "a");
        // A spawned task does not inherit the scope.
        let spawned = tokio::spawn(async { Notes.db().await.map(drop) }).await.unwrap();
        assert!(matches!(spawned, Err(Error::NoTenantContext)));
    })
    .await;

    let err = TenantScope::open(connections, &TenantRef::parse("nobody").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
}
