//! Attacks on "tenantdb never destroys what it does not own": databases and
//! roles with dangerous names planted around a deployment, tenants that try
//! to pass their database off as a template, and databases PostgreSQL left
//! in states that used to wedge a delete.

use sea_orm::{ConnectionTrait, Statement};
use sqlx::{AssertSqlSafe, PgPool};
use tenantdb::Error;
use tenantdb::{
    DatabasePrefix, RoleName,
    internal::{quote_ident, quote_literal, template_stem},
};
use tenantdb::{DoctorOptions, Problem};
use tenantdb::{NewTenant, TenantRef};

use tenantdb::DbStatus;
use tenantdb::catalog::Lease;
use tenantdb::internal::Step;
use tenantdb_test_support::both_backends;

use crate::support::{Backend, LEASE_TTL, TestEnv, schema_broken, schema_other, schema_v1, schema_v2};

both_backends!(
    a_running_service_finishes_work_a_killed_process_left_within_a_few_lease_periods,
    long_slugs_with_a_common_start_get_distinct_generated_names,
    a_taken_generated_name_gets_a_suffix,
    a_fleet_run_whose_process_died_reads_abandoned_and_doctor_closes_it,
    a_program_with_another_migration_set_may_read_but_not_change_tenants,
    a_failed_migration_never_lowers_or_erases_the_recorded_version,
    shutdown_gives_up_on_stuck_work_after_its_deadline,
);

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

/// Creates a tenant with a requested database name.
async fn create_named(
    env: &TestEnv,
    slug: &str,
    database_name: &str,
) -> tenantdb::Result<tenantdb::catalog::tenant_database::Model> {
    let created = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            database_name: Some(database_name.to_owned()),
            ..new(slug)
        })
        .await?;
    Ok(env.raw(&created).await)
}

/// How many notes the tenant's database holds, read as the tenant.
async fn notes(env: &TestEnv, row: &tenantdb::catalog::tenant_database::Model) -> usize {
    let conn = env.connect_tenant(row).await;
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(Statement::from_string(backend, "SELECT body FROM notes"))
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows.len()
}

async fn exec(pool: &PgPool, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await.unwrap();
}

/// A database that tenantdb did not make, with one row of data in it.
async fn plant(env: &TestEnv, name: &str, comment: Option<&str>) {
    let quoted = quote_ident(name);
    exec(env.admin(), format!("CREATE DATABASE {quoted}")).await;
    if let Some(comment) = comment {
        exec(
            env.admin(),
            format!("COMMENT ON DATABASE {quoted} IS {}", quote_literal(comment)),
        )
        .await;
    }
    let pool = PgPool::connect_with(tenantdb_test_support::postgres_options().database(name))
        .await
        .unwrap();
    exec(
        &pool,
        "CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep me')".into(),
    )
    .await;
    pool.close().await;
}

async fn still_holds_its_data(name: &str) -> bool {
    let Ok(pool) = PgPool::connect_with(tenantdb_test_support::postgres_options().database(name)).await else {
        return false;
    };
    let value: Option<String> = sqlx::query_scalar("SELECT v FROM precious")
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten();
    pool.close().await;
    value.as_deref() == Some("keep me")
}

/// The template name a migration set gets (see `Provisioner::template_name`).
fn template_of(prefix: &DatabasePrefix, catalog: uuid::Uuid, migrations: &[&str]) -> String {
    let hash = &tenantdb::internal::sha256_hex(&migrations.join("\n"))[..12];
    format!("{}{hash}", template_stem(prefix, catalog))
}

/// The data-loss bug: with a prefix that does not end in `_`, a tenant
/// could be given the name that templates used to have (`<prefix>tpl<hash>`),
/// and building the template dropped the tenant's database.
#[tokio::test]
async fn a_tenant_database_named_like_an_old_template_survives_template_builds() {
    let prefix = |config: &mut tenantdb::Config| {
        let bare = config.database_prefix.as_str().trim_end_matches('_').to_owned();
        config.database_prefix = DatabasePrefix::parse(&bare).unwrap();
        config.use_templates = false;
    };
    let env = TestEnv::with(Backend::Postgres, schema_v1(), prefix).await;
    let hash = &tenantdb::internal::sha256_hex("m0001_notes")[..12];
    let victim_name = format!("{}tpl{hash}", env.db_prefix());
    let victim = create_named(&env, "victim", &victim_name).await.unwrap();
    let conn = env.connect_tenant(&victim).await;
    conn.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'keep me')")
        .await
        .unwrap();
    conn.close().await.unwrap();

    // Today's template name is refused as a tenant database name.
    let template = template_of(
        &env.config.database_prefix,
        env.tenancy.catalog().id(),
        &["m0001_notes"],
    );
    let refused = create_named(&env, "squatter", &template).await.unwrap_err();
    assert!(matches!(refused, Error::Invalid { .. }), "{refused}");

    // Templates on: the next tenant builds one.
    let mut config = env.config.clone();
    config.use_templates = true;
    let with_templates = tenantdb::Tenancy::connect(config, schema_v1()).await.unwrap();
    with_templates.provisioner().create_tenant(new("next")).await.unwrap();
    assert_eq!(
        with_templates.templates().ready().await.as_deref(),
        Some(template.as_str())
    );
    with_templates.close().await;

    assert_eq!(notes(&env, &victim).await, 1, "the tenant's data must survive");
}

/// Databases with this deployment's dangerous names that tenantdb did not
/// make: today's and a future migration set's template names, the prefix
/// alone, another catalog's template name, and one that carries this
/// catalog's template comment without being its template. A whole
/// workload runs around them; each survives with its data, and `doctor`
/// reports each once and `--fix` leaves it alone.
#[tokio::test]
async fn the_minefield_survives_a_whole_workload() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let catalog = env.tenancy.catalog().id();
    let prefix = env.config.database_prefix.clone();
    let today = template_of(&prefix, catalog, &["m0001_notes"]);
    let future = template_of(&prefix, catalog, &["m0001_notes", "m0002_tags"]);
    let stem = template_stem(&prefix, catalog);
    let other_catalog = template_of(&prefix, uuid::Uuid::now_v7(), &["m0001_notes"]);
    let bare_prefix = prefix.as_str().trim_end_matches('_').to_owned();
    let mark = format!("tenantdb template catalog={catalog} version=0123456789ab");
    let mines: Vec<(String, Option<&str>)> = vec![
        (today.clone(), None),
        (future.clone(), None),
        (format!("{stem}ffffffffffff"), Some(mark.as_str())),
        (other_catalog.clone(), None),
        (format!("{bare_prefix}tpl"), None),
        (format!("{}foreign", prefix.as_str()), None),
        (format!("{bare_prefix}-postgres"), None),
    ];
    for (name, comment) in &mines {
        plant(&env, name, *comment).await;
    }
    // Roles with dangerous names: a tenant role's shape, this catalog's
    // template role, another catalog's, the prefix alone.
    let role_mines = [
        format!("{}r_{}", prefix.as_str(), uuid::Uuid::now_v7().simple()),
        RoleName::for_templates(&prefix, catalog).as_str().to_owned(),
        RoleName::for_templates(&prefix, uuid::Uuid::now_v7())
            .as_str()
            .to_owned(),
        prefix.as_str().to_owned(),
    ];
    for role in &role_mines {
        exec(env.admin(), format!("CREATE ROLE {} NOLOGIN", quote_ident(role))).await;
    }

    // The workload: create (the template cannot be built under a foreign
    // database: migrations are replayed), rename, migrate to a new set (a
    // new template), delete, doctor --fix.
    let provisioner = env.tenancy.provisioner();
    let a = env.raw(&provisioner.create_tenant(new("mine-a")).await.unwrap()).await;
    provisioner.create_tenant(new("mine-b")).await.unwrap();
    let renamed = format!("{}renamed", prefix.as_str());
    provisioner
        .rename_tenant_database(&TenantRef::Id(a.tenant_id.into()), &renamed)
        .await
        .unwrap();
    let v2 = env.second(schema_v2()).await;
    v2.provisioner()
        .migrate_tenant(&TenantRef::parse("mine-a").unwrap())
        .await
        .unwrap();
    v2.provisioner().create_tenant(new("mine-c")).await.unwrap();
    v2.provisioner()
        .delete_tenant_now(&TenantRef::parse("mine-b").unwrap())
        .await
        .unwrap();
    let findings = v2.doctor().examine(DoctorOptions::default()).await.unwrap();
    v2.doctor().repair(&findings).await;
    let after = v2.doctor().examine(DoctorOptions::default()).await.unwrap();
    v2.close().await;

    for role in &role_mines {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(env.admin())
            .await
            .unwrap();
        assert!(exists, "role {role} must survive");
        let reported = after.iter().filter(|f| &f.subject == role).collect::<Vec<_>>();
        if role.starts_with(prefix.as_str()) || role.starts_with(stem.trim_end_matches('-')) {
            assert_eq!(reported.len(), 1, "{role}: {after:#?}");
            assert_eq!(reported[0].problem, Problem::ForeignRole);
        }
    }
    for (name, _) in &mines {
        assert!(still_holds_its_data(name).await, "{name} must survive with its data");
        let reported = after.iter().filter(|f| &f.subject == name).collect::<Vec<_>>();
        // Only names in this deployment's name spaces are its business.
        if name.starts_with(prefix.as_str()) || name.starts_with(&stem) {
            let foreign = reported
                .iter()
                .filter(|f| f.problem == Problem::ForeignDatabase)
                .count();
            assert_eq!(foreign, 1, "{name}: {after:#?}");
            assert!(reported.iter().all(|f| !f.fixable()), "{name}: {reported:#?}");
        }
    }
}

/// A tenant's role owns its database and may comment on it: a comment
/// that imitates this catalog's template mark does not make it one.
#[tokio::test]
async fn a_tenant_that_marks_its_database_as_a_template_keeps_it() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let row = env.create("impostor").await;
    let conn = env.connect_tenant(&row).await;
    let mark = format!(
        "tenantdb template catalog={} version=0123456789ab",
        env.tenancy.catalog().id()
    );
    conn.execute_unprepared(&format!(
        "INSERT INTO notes (id, body) VALUES (1, 'keep me'); COMMENT ON DATABASE {} IS {}",
        quote_ident(&row.database_name),
        quote_literal(&mark)
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();

    // A new migration set builds a new template and drops the old ones.
    let v2 = env.second(schema_v2()).await;
    v2.provisioner().create_tenant(new("later")).await.unwrap();
    let findings = v2.doctor().examine(DoctorOptions::default()).await.unwrap();
    v2.doctor().repair(&findings).await;
    v2.close().await;
    assert!(env.pg_database_exists(&row.database_name).await);
    assert_eq!(notes(&env, &row).await, 1);
}

/// PostgreSQL marks a database whose DROP was interrupted as invalid
/// (`datconnlimit = -2`); every ALTER then fails on it. Delete, reconcile
/// and doctor must still finish it.
#[tokio::test]
async fn deleting_a_tenant_whose_database_is_invalid_finishes() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let row = env.create("invalid").await;
    // What an interrupted DROP DATABASE leaves (PostgreSQL 13.12+, 14.9+,
    // 15.4+), done by hand.
    sqlx::query("UPDATE pg_database SET datconnlimit = -2 WHERE datname = $1")
        .bind(&row.database_name)
        .execute(env.admin())
        .await
        .unwrap();
    env.tenancy
        .provisioner()
        .delete_tenant_now(&TenantRef::parse("invalid").unwrap())
        .await
        .unwrap();
    assert!(!env.pg_database_exists(&row.database_name).await);
    assert!(env.row(row.tenant_id).await.is_none());
}

/// A role with privileges elsewhere (granted by hand) cannot be dropped
/// (2BP01): the delete finishes, the role is locked out, and doctor
/// reports it.
#[tokio::test]
async fn a_role_that_cannot_be_dropped_does_not_leave_the_tenant_deleting() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let row = env.create("granted").await;
    let catalog_db: String = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
        .bind(format!("{}cat", env.db_prefix().trim_end_matches('_')))
        .fetch_one(env.admin())
        .await
        .unwrap();
    exec(
        env.admin(),
        format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            quote_ident(&catalog_db),
            quote_ident(&row.role_name)
        ),
    )
    .await;
    env.tenancy
        .provisioner()
        .delete_tenant_now(&TenantRef::parse("granted").unwrap())
        .await
        .unwrap();
    assert!(env.row(row.tenant_id).await.is_none());
    assert!(!env.pg_database_exists(&row.database_name).await);
    let can_login: bool = sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(&row.role_name)
        .fetch_one(env.admin())
        .await
        .unwrap();
    assert!(!can_login, "the role is locked out");
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.problem == Problem::OrphanRole && f.subject == row.role_name),
        "{findings:#?}"
    );
    exec(
        env.admin(),
        format!(
            "REVOKE CONNECT ON DATABASE {} FROM {}",
            quote_ident(&catalog_db),
            quote_ident(&row.role_name)
        ),
    )
    .await;
}

/// `serve` used to reconcile only at start: work left by a process killed
/// and restarted within a lease period stayed RENAMING or DELETING forever.
/// A running instance's reconciler finishes it.
async fn a_running_service_finishes_work_a_killed_process_left_within_a_few_lease_periods(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let service = env.second(schema_v1()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let reconciler = service.provisioner().spawn_reconciler(stop.clone());

    env.create("renamed").await;
    env.create("deleted").await;
    let to = format!("{}after_crash", env.db_prefix());
    let provisioner = env.tenancy.provisioner();
    provisioner.crash_after(Step::RenameClaimed);
    provisioner
        .rename_tenant_database(&TenantRef::parse("renamed").unwrap(), &to)
        .await
        .unwrap_err();
    provisioner.crash_after(Step::DeleteClaimed);
    provisioner
        .delete_tenant_now(&TenantRef::parse("deleted").unwrap())
        .await
        .unwrap_err();

    let deadline = std::time::Instant::now() + LEASE_TTL * 4;
    loop {
        let renamed = env.tenancy.tenant(&TenantRef::parse("renamed").unwrap()).await.unwrap();
        let deleted = env.tenancy.tenant(&TenantRef::parse("deleted").unwrap()).await;
        let db = renamed.database.unwrap();
        if db.status == DbStatus::Active && db.database_name == to && deleted.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not finished within four lease periods: {db:?}, {deleted:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    reconciler.await.unwrap();
    service.close().await;
}

/// Generated names used to end in the first digits of a version 7 id (its
/// timestamp): three long slugs with the same start, made at once, gave one
/// tenant and two conflicts.
async fn long_slugs_with_a_common_start_get_distinct_generated_names(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let common = "a".repeat(60);
    let creates = (0..3).map(|i| {
        let provisioner = env.tenancy.provisioner().clone();
        let slug = format!("{common}-{i}");
        tokio::spawn(async move { provisioner.create_tenant(new(&slug)).await })
    });
    let mut names = std::collections::HashSet::new();
    for create in creates {
        let row = create.await.unwrap().expect("every create succeeds");
        assert!(row.database_name.len() <= 63);
        names.insert(row.database_name);
    }
    assert_eq!(names.len(), 3, "{names:?}");
}

async fn a_taken_generated_name_gets_a_suffix(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let plain = format!("{}acme", env.db_prefix());
    create_named(&env, "other", &plain).await.unwrap();
    let acme = env.create("acme").await;
    assert_ne!(acme.database_name, plain);
    assert!(
        acme.database_name.starts_with(&format!("{plain}_")),
        "{}",
        acme.database_name
    );
}

/// A killed `migrate` run stayed RUNNING forever. A run holds a lease: once
/// it expires the run reads ABANDONED, doctor reports it and --fix records
/// it so. A live run stays RUNNING past its lease period (it renews).
async fn a_fleet_run_whose_process_died_reads_abandoned_and_doctor_closes_it(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    env.create("slow").await;
    let runs = env.tenancy.catalog().migration_runs();
    let dead = uuid::Uuid::now_v7();
    let lease = Lease {
        owner: "a-process-that-died".into(),
        ttl: std::time::Duration::from_millis(300),
    };
    runs.start(dead, Some("m0001_notes".into()), 3, &lease).await.unwrap();
    assert_eq!(
        env.tenancy.fleet().run(dead).await.unwrap().unwrap().status,
        tenantdb::RunStatus::Running
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        env.tenancy.fleet().run(dead).await.unwrap().unwrap().status,
        tenantdb::RunStatus::Abandoned
    );

    let doctor = env.tenancy.doctor();
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].problem, Problem::AbandonedRun);
    let repaired = doctor.repair(&findings).await;
    assert!(repaired[0].outcome.is_ok(), "{repaired:?}");
    assert!(doctor.examine(DoctorOptions::default()).await.unwrap().is_empty());
    assert_eq!(
        env.tenancy.fleet().run(dead).await.unwrap().unwrap().status,
        tenantdb::RunStatus::Abandoned
    );

    // A live run renews its lease: still RUNNING after a lease period.
    let slow = env.second(crate::support::schema_slow()).await;
    let (id, run) = slow
        .fleet()
        .start(&tenantdb::FleetOptions::default(), |_| {})
        .await
        .unwrap();
    tokio::time::sleep(LEASE_TTL + std::time::Duration::from_millis(300)).await;
    assert_eq!(
        slow.fleet().run(id).await.unwrap().unwrap().status,
        tenantdb::RunStatus::Running
    );
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.succeeded, 1);
    assert_eq!(
        slow.fleet().run(id).await.unwrap().unwrap().status,
        tenantdb::RunStatus::Succeeded
    );
    slow.close().await;
}

/// An application made tenants with its own migrations; then a binary with
/// another set (the shipped example schema) was pointed at the catalog. It
/// used to erase every tenant's version, give new tenants the wrong schema
/// and drop the application's template.
async fn a_program_with_another_migration_set_may_read_but_not_change_tenants(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let row = env.create("app-tenant").await;
    let template = env.tenancy.templates().ready().await;
    let other = env.second(schema_other()).await;
    let older = env.second(schema_v1()).await;
    for program in [&other, &older] {
        let provisioner = program.provisioner();
        let refused = |err: Error| assert!(matches!(err, Error::MigrationSetMismatch { .. }), "{err}");
        refused(provisioner.create_tenant(new("wrong-schema")).await.unwrap_err());
        refused(
            provisioner
                .migrate_tenant(&TenantRef::parse("app-tenant").unwrap())
                .await
                .unwrap_err(),
        );
        refused(
            program
                .fleet()
                .start(&tenantdb::FleetOptions::default(), |_| {})
                .await
                .unwrap_err(),
        );
        assert!(program.templates().ready().await.is_none(), "no template is built");
        // Reading works; repairing does not.
        let findings = program
            .doctor()
            .examine(DoctorOptions {
                check_versions: false,
                ..Default::default()
            })
            .await
            .unwrap();
        for repaired in program.doctor().repair(&findings).await {
            assert!(repaired.outcome.is_err(), "{repaired:?}");
        }
        program.tenant(&TenantRef::parse("app-tenant").unwrap()).await.unwrap();
    }
    other.close().await;
    older.close().await;
    let after = env.row(row.tenant_id).await.unwrap();
    assert_eq!(after.schema_version.as_deref(), Some("m0002_tags"));
    assert_eq!(after.status, DbStatus::Active);
    assert!(
        env.tenancy
            .tenant(&TenantRef::parse("wrong-schema").unwrap())
            .await
            .is_err()
    );
    assert_eq!(env.tenancy.templates().ready().await, template, "the template survives");
    assert!(
        env.tenancy
            .doctor()
            .examine(DoctorOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A failed migration keeps the recorded version: a run that fails on its
/// first pending migration records nothing new.
async fn a_failed_migration_never_lowers_or_erases_the_recorded_version(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let row = env.create("steady").await;
    let broken = env.second(schema_broken()).await;
    let err = broken
        .provisioner()
        .migrate_tenant(&TenantRef::parse("steady").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MigrationFailed { .. }), "{err}");
    broken.close().await;
    let after = env.row(row.tenant_id).await.unwrap();
    assert_eq!(after.schema_version.as_deref(), Some("m0002_tags"));
    assert_eq!(after.status, DbStatus::Active);
    assert!(after.error_message.is_some());
}

/// Two catalogs with the same prefix on one server: each builds and keeps
/// its own template (a second catalog used to drop and rebuild the first
/// one's), and neither's doctor offers to touch the other's.
#[tokio::test]
async fn two_catalogs_with_one_prefix_keep_their_own_templates() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    env.create("first").await;
    let first = env.tenancy.templates().ready().await.unwrap();
    let mut config = env.config.clone();
    config.catalog_url = secrecy::SecretString::from(env.fresh_catalog_url("cat2").await);
    let second = tenantdb::Tenancy::connect(config, schema_v2()).await.unwrap();
    second.provisioner().create_tenant(new("second")).await.unwrap();
    let other = second.templates().ready().await.unwrap();
    assert_ne!(first, other);
    for name in [&first, &other] {
        assert!(env.pg_database_exists(name).await, "{name}");
    }
    for tenancy in [&env.tenancy, &second] {
        let findings = tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
        assert!(findings.iter().all(|f| !f.fixable()), "{findings:#?}");
        tenancy.doctor().repair(&findings).await;
    }
    for name in [&first, &other] {
        assert!(
            env.pg_database_exists(name).await,
            "{name} survives the other's doctor --fix"
        );
    }
    second.close().await;
}

/// Closing waits for work under way at most its deadline: DDL stuck (here a
/// slow migration) keeps its lease, and the next instance finishes it.
async fn shutdown_gives_up_on_stuck_work_after_its_deadline(backend: Backend) {
    let env = TestEnv::new(backend, crate::support::schema_slow()).await;
    let mut config = env.config.clone();
    config.shutdown_deadline = std::time::Duration::from_millis(300);
    let stuck = tenantdb::Tenancy::connect(config, crate::support::schema_slow())
        .await
        .unwrap();
    let provisioner = stuck.provisioner().clone();
    let create = tokio::spawn(async move { provisioner.create_tenant(new("stuck")).await });
    // Wait until the work is under way (its row exists), then close.
    let slug = TenantRef::parse("stuck").unwrap();
    for _ in 0..100 {
        if env.tenancy.tenant(&slug).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    stuck.close().await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "close waited {:?}",
        started.elapsed()
    );
    let _ = create.await;
    tokio::time::sleep(LEASE_TTL + std::time::Duration::from_millis(300)).await;
    let provisioner = env.tenancy.provisioner();
    provisioner.reconcile().await.unwrap();
    if env.tenancy.tenant(&slug).await.unwrap().database.unwrap().status == DbStatus::Failed {
        provisioner.retry(&slug).await.unwrap();
    }
    assert_eq!(
        env.tenancy.tenant(&slug).await.unwrap().database.unwrap().status,
        DbStatus::Active
    );
    assert!(
        env.tenancy
            .doctor()
            .examine(DoctorOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
}
