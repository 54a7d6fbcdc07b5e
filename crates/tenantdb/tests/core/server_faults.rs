//! Server faults on a throwaway PostgreSQL cluster this test starts itself
//! (`initdb` + `pg_ctl` on a free port, as the `postgres` OS user, password
//! auth on), never on the shared server: password authentication with the
//! SCRAM verifiers tenantdb sends, wrong credentials, server down, restart.

use std::path::Path;
use std::time::Duration;

use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use tenantdb::Error;
use tenantdb::TenantSecret;
use tenantdb::internal::quote_ident;
use tenantdb::{Config, NewTenant, Tenancy, TenantRef, TenantServerConfig};
use tenantdb::{DoctorOptions, Problem};

use crate::support::schema_v1;

use tenantdb_test_support::PgCluster as Cluster;

fn config(cluster: &Cluster, dir: &Path) -> Config {
    let catalog = tenantdb::config::sqlite_url(&dir.join("catalog.db"));
    let mut config = Config::new(
        SecretString::from(catalog),
        TenantServerConfig::parse(&cluster.url()).unwrap(),
    );
    config.secret = Some(TenantSecret::new(1, SecretString::from("fault-test-secret-0123456789abcdef0123")).unwrap());
    config.pools.budget = 8;
    config.pools.acquire_timeout = Duration::from_millis(1500);
    config.pools.validate_after_idle = Duration::from_millis(50);
    config
}

async fn tenancy(cluster: &Cluster, dir: &Path) -> Tenancy {
    Tenancy::connect(config(cluster, dir), schema_v1())
        .await
        .expect("tenancy on the throwaway cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_restarts_and_bad_credentials_on_a_throwaway_cluster() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tenancy = tenancy(&cluster, dir.path()).await;
    let acme = TenantRef::parse("acme").unwrap();

    // Password authentication (scram-sha-256) with the verifier tenantdb
    // sent: provisioning migrates as the tenant role, requests connect.
    let row = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("the tenant role logs in with its derived password");
    let row = tenancy
        .catalog()
        .tenant_databases()
        .find_by_tenant(row.tenant_id)
        .await
        .unwrap()
        .unwrap();
    let db = tenancy.connections().connection(&acme).await.unwrap();
    db.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'x')")
        .await
        .unwrap();

    // A query in flight when the server shuts down fails with SQLSTATE
    // 57P01 (admin shutdown): "unreachable" (HTTP 503), never a bug (500).
    let busy = tenancy.connections().connection(&acme).await.unwrap();
    let in_flight = tokio::spawn(async move { busy.execute_unprepared("SELECT pg_sleep(30)").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Server down: a clear error within the acquire timeout, no hang.
    cluster.pg_ctl_stop();
    let interrupted = Error::from(in_flight.await.unwrap().unwrap_err());
    assert!(interrupted.is_unreachable(), "{}", interrupted.chain());
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let result = async {
        let db = tenancy.connections().connection(&acme).await?;
        db.execute_unprepared("SELECT 1").await.map_err(Error::from)
    }
    .await;
    assert!(result.is_err(), "the server is down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );

    // Restarted: served again without restarting the process.
    cluster.pg_ctl_start();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let db = tenancy.connections().connection(&acme).await.unwrap();
    db.execute_unprepared("SELECT 1")
        .await
        .expect("recovered after the restart");

    // Wrong credentials (the role's password changed behind our back): a
    // clear error naming the tenant, then recovery once the cause is gone.
    let admin = match tenancy.engine() {
        tenantdb::engine::Engine::Postgres(pg) => pg.admin_pool().clone(),
        _ => unreachable!(),
    };
    let role = quote_ident(&row.role_name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {role} PASSWORD 'not-the-derived-one'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    drop(tenancy.pools().invalidate(row.tenant_id.into()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = tenancy.connections().connection(&acme).await.unwrap_err();
    let message = err.chain();
    assert!(message.contains(&row.tenant_id.to_string()), "{message}");
    assert!(message.contains("password authentication failed"), "{message}");

    // Retry-able repair: provisioning steps set the derived password again.
    tenancy
        .engine()
        .ensure_role(&tenancy.provisioner().tenant_db(&row))
        .await
        .unwrap();
    let db = tenancy.connections().connection(&acme).await.unwrap();
    db.execute_unprepared("SELECT 1").await.unwrap();

    // Rotating TENANTDB_SECRET: a process with the new secret cannot log
    // in as the existing roles until `doctor --fix` gives each the new
    // password; then it can, the catalog records the version, and the old
    // secret no longer logs in.
    let mut config = config(&cluster, dir.path());
    config.secret = Some(TenantSecret::new(2, SecretString::from("rotated-secret-0123456789abcdef012345")).unwrap());
    let rotated = Tenancy::connect(config, schema_v1()).await.unwrap();
    let spec = rotated.provisioner().tenant_db(&row);
    assert!(
        rotated.engine().connect(&spec, 1).await.is_err(),
        "still the old password"
    );
    let found = rotated.doctor().examine(DoctorOptions::default()).await.unwrap();
    let problems: Vec<(Problem, &str)> = found.iter().map(|f| (f.problem, f.subject.as_str())).collect();
    assert_eq!(problems, [(Problem::StaleSecret, row.role_name.as_str())], "{found:#?}");
    let repaired = rotated.doctor().repair(&found).await;
    assert!(repaired.iter().all(|r| r.outcome.is_ok()), "{repaired:#?}");
    assert!(
        rotated
            .doctor()
            .examine(DoctorOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
    let conn = rotated
        .engine()
        .connect(&spec, 1)
        .await
        .expect("the new password works");
    conn.close().await.unwrap();
    let recorded = rotated
        .catalog()
        .tenant_databases()
        .find_by_tenant(row.tenant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.secret_version, 2);
    assert!(
        tenancy.engine().connect(&spec, 1).await.is_err(),
        "the old secret no longer logs in"
    );
    rotated.close().await;
    tenancy.close().await;
}

/// The admin URL need not be a superuser: a role with only CREATEDB and
/// CREATEROLE provisions, renames, migrates, deletes and repairs, and the
/// catalog can share the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_role_that_is_not_a_superuser_runs_every_operation() {
    let cluster = Cluster::start();
    let superuser = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    for sql in [
        "CREATE ROLE tdb_admin WITH LOGIN CREATEDB CREATEROLE PASSWORD 'admin-pw'",
        "CREATE DATABASE tdb_catalog OWNER tdb_admin",
    ] {
        sqlx::raw_sql(sql).execute(&superuser).await.unwrap();
    }
    let url = |database: &str| format!("postgres://tdb_admin:admin-pw@127.0.0.1:{}/{database}", cluster.port());
    let mut config = Config::new(
        SecretString::from(url("tdb_catalog")),
        TenantServerConfig::parse(&url("postgres")).unwrap(),
    );
    config.secret = Some(TenantSecret::new(1, SecretString::from("fault-test-secret-0123456789abcdef0123")).unwrap());
    config.pools.budget = 6;
    let tenancy = Tenancy::connect(config.clone(), schema_v1())
        .await
        .expect("connects as a non-superuser");
    let provisioner = tenancy.provisioner();
    let acme = TenantRef::parse("acme").unwrap();
    provisioner
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("creates a tenant");
    provisioner
        .create_tenant(NewTenant {
            slug: "other".into(),
            ..Default::default()
        })
        .await
        .expect("creates a second tenant from the template");
    let db = tenancy.connections().connection(&acme).await.unwrap();
    db.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'x')")
        .await
        .unwrap();
    drop(db);
    provisioner
        .rename_tenant_database(&acme, "tenant_acme_renamed")
        .await
        .expect("renames");
    let db = tenancy.connections().connection(&acme).await.unwrap();
    db.execute_unprepared("SELECT body FROM notes").await.unwrap();
    drop(db);
    let v2 = Tenancy::connect(config, crate::support::schema_v2()).await.unwrap();
    v2.provisioner().migrate_tenant(&acme).await.expect("migrates");
    v2.provisioner()
        .create_tenant(NewTenant {
            slug: "third".into(),
            ..Default::default()
        })
        .await
        .expect("builds a new template and clones it");
    v2.provisioner()
        .delete_tenant_now(&TenantRef::parse("other").unwrap())
        .await
        .expect("deletes");
    let findings = v2.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
    v2.close().await;
    tenancy.close().await;
    superuser.close().await;
}
