//! `doctor`: every kind of drift is made by hand here and must be found;
//! `repair` fixes what is safe, and a second look finds only what needs an
//! operator, untouched.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use tenantdb::catalog::{tenant_database, tenants};
use tenantdb::internal::Step;
use tenantdb::{DbStatus, NewTenant};
use tenantdb::{DoctorOptions, Finding, Problem};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, LEASE_EXPIRY_WAIT, TestEnv, schema_v1, schema_v2};

both_backends!(
    doctor_finds_repairable_drift_and_fix_repairs_it,
    doctor_reports_what_needs_an_operator_and_touches_none_of_it,
    a_new_deployment_is_clean_and_its_first_tenant_builds_the_template
);

/// Removes a tenant's catalog rows behind tenantdb's back.
async fn forget_in_catalog(env: &TestEnv, tenant: uuid::Uuid, whole_tenant: bool) {
    let db = env.tenancy.catalog().db();
    tenant_database::Entity::delete_many()
        .filter(tenant_database::Column::TenantId.eq(tenant))
        .exec(db)
        .await
        .unwrap();
    if whole_tenant {
        tenants::Entity::delete_by_id(tenant).exec(db).await.unwrap();
    }
}

/// ChangeStamp a tenant's catalog row behind tenantdb's back.
async fn edit_row(env: &TestEnv, tenant: uuid::Uuid, change: tenant_database::ActiveModel) {
    tenant_database::Entity::update_many()
        .set(change)
        .filter(tenant_database::Column::TenantId.eq(tenant))
        .exec(env.tenancy.catalog().db())
        .await
        .unwrap();
}

async fn examine(env: &TestEnv) -> Vec<Finding> {
    env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap()
}

fn problems(findings: &[Finding]) -> BTreeSet<(String, String)> {
    findings
        .iter()
        .map(|f| (f.problem.as_str().to_owned(), f.subject.clone()))
        .collect()
}

fn has(findings: &[Finding], problem: Problem, subject: &str) -> bool {
    findings.iter().any(|f| f.problem == problem && f.subject == subject)
}

/// Nothing is wrong with a deployment that has no tenant yet: its template
/// is built by the first create (it used to be reported missing, so
/// `doctor` failed on every fresh install).
async fn a_new_deployment_is_clean_and_its_first_tenant_builds_the_template(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    assert_eq!(examine(&env).await, Vec::<Finding>::new());
    env.create("first").await;
    let current = env.tenancy.templates().current().expect("templates are on");
    assert_eq!(
        env.tenancy.catalog().template().await.unwrap().as_deref(),
        Some(current.name.as_str())
    );
    assert_eq!(examine(&env).await, Vec::<Finding>::new());
}

async fn doctor_finds_repairable_drift_and_fix_repairs_it(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let healthy = env.create("healthy").await;
    assert!(examine(&env).await.is_empty(), "a fresh deployment is healthy");

    // Orphan database: its catalog rows are gone.
    let orphan = env.create("orphan").await;
    let orphan_subject = match backend {
        Backend::Postgres => orphan.database_name.clone(),
        Backend::Sqlite => format!("{}.db", orphan.tenant_id),
    };
    forget_in_catalog(&env, orphan.tenant_id, true).await;

    // Orphan role (PostgreSQL): no row, no database, the role left.
    let lonely = env.create("lonely").await;
    if backend == Backend::Postgres {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            lonely.database_name
        )))
        .execute(env.admin())
        .await
        .unwrap();
        forget_in_catalog(&env, lonely.tenant_id, false).await;
    }

    // Version drift: the catalog says an older version.
    let older = tenant_database::ActiveModel {
        schema_version: Set(Some("m0001_notes".into())),
        ..Default::default()
    };
    edit_row(&env, healthy.tenant_id, older).await;

    // A stuck row: a create whose process died after making the database.
    env.tenancy.provisioner().crash_after(Step::DatabaseCreated);
    let stuck = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "stuck".into(),
            ..Default::default()
        })
        .await;
    assert!(stuck.is_err(), "the test hook stopped the create");

    // A stale template: one of an older migration set, left behind, and
    // the catalog pointed at it (what a deploy of the older set did before
    // this one; a program with an older set may no longer build one).
    let current = env.tenancy.templates().current().unwrap();
    let version = &tenantdb::internal::sha256_hex("m0001_notes")[..12];
    let stale = format!("{}{version}", current.stem);
    let owner = tenantdb::RoleName::for_templates(&env.config.database_prefix, env.tenancy.catalog().id());
    let v1 = schema_v1();
    env.tenancy
        .engine()
        .ensure_template(&stale, &owner, version, v1.migrations())
        .await
        .expect("the older template");
    env.tenancy.catalog().set_template(Some(&stale)).await.unwrap();
    tokio::time::sleep(LEASE_EXPIRY_WAIT).await;

    let found = examine(&env).await;
    let stuck_row = env
        .tenancy
        .catalog()
        .tenants()
        .find(&tenantdb::TenantRef::parse("stuck").unwrap())
        .await
        .unwrap()
        .unwrap();
    let stuck_name = env.row(stuck_row.id).await.unwrap().database_name;
    assert!(has(&found, Problem::OrphanDatabase, &orphan_subject), "{found:#?}");
    assert!(has(&found, Problem::VersionDrift, &healthy.database_name), "{found:#?}");
    assert!(has(&found, Problem::StuckRow, &stuck_name), "{found:#?}");
    assert!(has(&found, Problem::StaleTemplate, &stale), "{found:#?}");
    assert!(has(&found, Problem::TemplateMissing, &current.name), "{found:#?}");
    let mut expected = 5;
    if backend == Backend::Postgres {
        assert!(has(&found, Problem::OrphanRole, &lonely.role_name), "{found:#?}");
        expected += 1;
    }
    assert_eq!(found.len(), expected, "nothing else: {found:#?}");
    assert!(found.iter().all(Finding::fixable), "{found:#?}");

    let repaired = env.tenancy.doctor().repair(&found).await;
    for r in &repaired {
        assert!(r.outcome.is_ok(), "{r:#?}");
    }
    let left = examine(&env).await;
    assert!(left.is_empty(), "all repaired: {left:#?}");

    // And the repairs did the right thing.
    assert!(!env.physical_databases().await.contains(&orphan_subject));
    assert!(!env.roles().await.contains(&orphan.role_name));
    assert!(!env.roles().await.contains(&lonely.role_name));
    assert_eq!(
        env.row(healthy.tenant_id).await.unwrap().schema_version.as_deref(),
        Some("m0002_tags")
    );
    let finished = env.row(stuck_row.id).await.unwrap();
    assert_eq!(finished.status, tenantdb::DbStatus::Active, "{finished:#?}");
    assert_eq!(
        env.tenancy.catalog().template().await.unwrap().as_deref(),
        Some(current.name.as_str())
    );
    assert!(env.database_exists(&healthy).await, "the healthy tenant is untouched");
}

async fn doctor_reports_what_needs_an_operator_and_touches_none_of_it(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let missing = env.create("missing").await;
    let failed = env.create("failed").await;
    let future = env.create("future").await;

    // A foreign database under the prefix.
    let foreign = match backend {
        Backend::Postgres => {
            let name = format!("{}foreign", env.db_prefix());
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(env.admin())
                .await
                .unwrap();
            name
        }
        Backend::Sqlite => {
            let path = env.sqlite().dir().join("notes.db");
            std::fs::write(&path, b"not ours").unwrap();
            "notes.db".to_owned()
        }
    };

    // An ACTIVE row whose database is gone.
    match backend {
        Backend::Postgres => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                missing.database_name
            )))
            .execute(env.admin())
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            std::fs::remove_file(env.sqlite().path(missing.tenant_id.into())).unwrap();
        }
    }

    // A FAILED row.
    let failing = tenant_database::ActiveModel {
        status: Set(DbStatus::Failed),
        error_message: Set(Some("disk full".into())),
        ..Default::default()
    };
    edit_row(&env, failed.tenant_id, failing).await;

    // A database migrated by newer code.
    let conn = env.connect_tenant(&future).await;
    conn.execute_unprepared("INSERT INTO seaql_migrations (version, applied_at) VALUES ('m9999_future', 0)")
        .await
        .unwrap();
    conn.close().await.unwrap();

    let mut expected = BTreeSet::from([
        ("foreign_database".to_owned(), foreign.clone()),
        ("missing_database".to_owned(), missing.database_name.clone()),
        ("failed_row".to_owned(), failed.database_name.clone()),
        ("version_drift".to_owned(), future.database_name.clone()),
    ]);

    if backend == Backend::Postgres {
        // A tenant's database renamed behind tenantdb's back.
        let moved = env.create("moved").await;
        let moved_to = format!("{}moved_away", env.db_prefix());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" RENAME TO \"{moved_to}\"",
            moved.database_name
        )))
        .execute(env.admin())
        .await
        .unwrap();
        expected.insert(("misplaced_database".into(), moved_to.clone()));
        expected.insert(("missing_database".into(), moved.database_name.clone()));

        // A tenant's name taken by a database somebody else made.
        let taken = env.create("taken").await;
        for sql in ["DROP DATABASE \"{}\" WITH (FORCE)", "CREATE DATABASE \"{}\""] {
            let sql = sql.replace("{}", &taken.database_name);
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(env.admin())
                .await
                .unwrap();
        }
        expected.insert(("not_ours".into(), taken.database_name.clone()));
        expected.insert(("foreign_database".into(), taken.database_name.clone()));

        // A database nobody can connect to: its version cannot be read.
        let closed = env.create("closed").await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
            closed.database_name
        )))
        .execute(env.admin())
        .await
        .unwrap();
        expected.insert(("unreadable".into(), closed.database_name.clone()));
    }

    let found = examine(&env).await;
    assert_eq!(problems(&found), expected, "{found:#?}");
    assert!(found.iter().all(|f| !f.fixable()), "{found:#?}");
    let before = env.physical_databases().await;
    let repaired = env.tenancy.doctor().repair(&found).await;
    assert!(repaired.is_empty(), "nothing is fixable: {repaired:#?}");
    assert_eq!(env.physical_databases().await, before, "nothing was touched");
    assert_eq!(problems(&examine(&env).await), expected);
    // Without the version check, only what the catalog and server show.
    let quick = env
        .tenancy
        .doctor()
        .examine(DoctorOptions {
            check_versions: false,
            concurrency: 1,
        })
        .await
        .unwrap();
    assert!(
        quick
            .iter()
            .all(|f| !matches!(f.problem, Problem::VersionDrift | Problem::Unreadable))
    );
}
