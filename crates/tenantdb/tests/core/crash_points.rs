//! Kill -9 at every fault point: each operation runs in a child process
//! (this test binary, started again) that aborts at one point, with no
//! cleanup and its lease left behind. Then one instance reconciles and runs
//! `doctor --fix`, and every tenant must be whole (it exists, ACTIVE, and
//! serves its data) or wholly gone, with nothing of it left on the server,
//! and `doctor` must find nothing more. A table of every point and its
//! outcome is printed; a fault point no plan covers fails the test.

use std::collections::BTreeMap;
use std::process::Command;

use sea_orm::Iterable;
use sea_orm::{ConnectionTrait, Statement};
use tenantdb::DoctorOptions;
use tenantdb::FleetOptions;
use tenantdb::faults::{Step, abort_at};
use tenantdb::{DbStatus, NewTenant, Tenancy, TenantMigrations, TenantRef};
use tenantdb_test_support::both_backends;

use crate::support::{
    Backend, LEASE_EXPIRY_WAIT, TestEnv, child_config, schema_broken, schema_v1, schema_v2, schema_v3,
};

both_backends!(every_fault_point_is_repaired_after_a_kill);

/// What happens to the tenant of a plan once the work is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// It exists, ACTIVE, at the newest version, serving its note if it had one.
    Whole,
    /// It is gone: no tenant, row, database or role.
    Gone,
    /// It is DELETED with its database kept (restored afterwards, its
    /// note must be there).
    Deleted,
}

/// One kill: the operation a child runs and the point it dies at.
struct Plan {
    point: Step,
    op: &'static str,
    slug: String,
    /// The tenant migration set the child runs with (v1 before v2 before
    /// v3: a newer set records itself, and an older one may then no longer
    /// change tenants).
    set: &'static str,
    expect: Expect,
}

fn plans() -> Vec<Plan> {
    let plan = |point, op, slug: &str, set, expect| Plan {
        point,
        op,
        slug: slug.to_owned(),
        set,
        expect,
    };
    use Expect::*;
    vec![
        plan(Step::RetryClaimed, "retry", "retried", "v1", Whole),
        plan(Step::RowInserted, "create", "c-row", "v1", Whole),
        plan(Step::RoleCreated, "create", "c-role", "v1", Whole),
        plan(Step::DatabaseCreated, "create", "c-db", "v1", Whole),
        plan(Step::DatabaseOpened, "create", "c-open", "v1", Whole),
        plan(Step::Migrated, "create", "c-migrated", "v1", Whole),
        plan(Step::RenameClaimed, "rename", "n-claimed", "v1", Whole),
        plan(Step::RenameDrained, "rename", "n-drained", "v1", Whole),
        plan(Step::DatabaseRenamed, "rename", "n-renamed", "v1", Whole),
        plan(Step::DeleteClaimed, "delete", "d-claimed", "v1", Gone),
        plan(Step::DeleteDatabaseDropped, "delete", "d-db", "v1", Gone),
        plan(Step::DatabaseDropped, "delete", "d-role", "v1", Gone),
        plan(Step::TrashClaimed, "trash", "x-claimed", "v1", Deleted),
        plan(Step::TrashLockedOut, "trash", "x-locked", "v1", Deleted),
        plan(Step::DatabaseTrashed, "trash", "x-renamed", "v1", Deleted),
        plan(Step::RestoreClaimed, "restore", "u-claimed", "v1", Whole),
        plan(Step::DatabaseRestored, "restore", "u-renamed", "v1", Whole),
        plan(Step::PurgeClaimed, "purge", "p-claimed", "v1", Gone),
        plan(Step::MigrateClaimed, "migrate", "m-claimed", "v2", Whole),
        plan(Step::MigrationApplied, "migrate", "m-applied", "v2", Whole),
        plan(Step::FleetStarted, "fleet", "f-started", "v2", Whole),
        plan(Step::FleetTenantDone, "fleet", "f-done", "v2", Whole),
        plan(Step::TemplateCreated, "create", "t-created", "v2", Whole),
        plan(Step::TemplateMigrated, "create", "t-migrated", "v3", Whole),
    ]
}

fn set(name: &str) -> TenantMigrations {
    match name {
        "v1" => schema_v1(),
        "v2" => schema_v2(),
        _ => schema_v3(),
    }
}

fn tenant(slug: &str) -> TenantRef {
    TenantRef::parse(slug).unwrap()
}

/// Tenants that exist before the kills (created with v1, each with a note).
fn needs_tenant(plan: &Plan) -> bool {
    matches!(
        plan.op,
        "rename" | "delete" | "migrate" | "fleet" | "trash" | "restore" | "purge"
    )
}

async fn write_note(env: &TestEnv, slug: &str) {
    let row = env
        .row(env.tenancy.tenant(&tenant(slug)).await.unwrap().id)
        .await
        .unwrap();
    let conn = env.connect_tenant(&row).await;
    conn.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'before the kill')")
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn every_fault_point_is_repaired_after_a_kill(backend: Backend) {
    let plans = plans();
    let covered: std::collections::HashSet<Step> = plans.iter().map(|p| p.point).collect();
    // A move needs two servers with logical decoding: its points are
    // killed in `moves.rs`, which checks it covers every one of them.
    let missing: Vec<Step> = Step::iter()
        .filter(|s| !covered.contains(s) && !format!("{s:?}").starts_with("Move"))
        .collect();
    assert!(missing.is_empty(), "fault points no kill covers: {missing:?}");

    let env = TestEnv::new(backend, schema_v1()).await;
    // The setup, all with v1 before any child records a newer set.
    for plan in plans.iter().filter(|p| needs_tenant(p)) {
        env.create(&plan.slug).await;
        write_note(&env, &plan.slug).await;
        if matches!(plan.op, "restore" | "purge") {
            env.tenancy
                .provisioner()
                .delete_tenant(&tenant(&plan.slug))
                .await
                .unwrap();
        }
    }
    // A warm stock: the creates below claim from it (then clone).
    env.tenancy.provisioner().refill_warm().await.unwrap();
    let broken = env.second(schema_broken()).await;
    broken.provisioner().create_tenant(new("retried")).await.unwrap_err();
    broken.close().await;

    let mut table = BTreeMap::new();
    for (i, plan) in plans.iter().enumerate() {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_points::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(env.child_vars())
            .env("TENANTDB_CHILD_POINT", format!("{:?}", plan.point))
            .env("TENANTDB_CHILD_OP", plan.op)
            .env("TENANTDB_CHILD_SLUG", &plan.slug)
            .env("TENANTDB_CHILD_SET", plan.set)
            .env("TENANTDB_CHILD_TARGET", format!("{}moved_{i}", env.db_prefix()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(
            !child.status.success() && stderr.contains("reached: aborting"),
            "{:?} ({}) was not reached: {}\n{stderr}",
            plan.point,
            plan.op,
            String::from_utf8_lossy(&child.stdout)
        );
        table.insert(format!("{:?}", plan.point), (plan.op, "killed"));
    }

    // One instance with the newest set finishes everything.
    tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
    let survivor = env.second(schema_v3()).await;
    let provisioner = survivor.provisioner();
    let reconciled = provisioner.reconcile().await.unwrap();
    let doctor = survivor.doctor();
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    let repaired = doctor.repair(&findings).await;
    for done in &repaired {
        assert!(done.outcome.is_ok(), "{done:?}");
    }
    let left = doctor.examine(DoctorOptions::default()).await.unwrap();
    assert!(left.is_empty(), "doctor after reconcile and --fix: {left:#?}");

    for plan in &plans {
        let outcome = check(&env, &survivor, plan).await;
        table.insert(format!("{:?}", plan.point), (plan.op, outcome));
    }
    println!("\n{:<24} {:<8} outcome ({backend:?})", "fault point", "op");
    for (point, (op, outcome)) in &table {
        println!("{point:<24} {op:<8} {outcome}");
    }
    println!(
        "{} points, {} rows reconciled, {} doctor findings repaired",
        table.len(),
        reconciled.len(),
        repaired.len()
    );
    survivor.close().await;
}

/// Asserts the plan's tenant is whole or gone; says which.
async fn check(env: &TestEnv, survivor: &Tenancy, plan: &Plan) -> &'static str {
    let found = survivor.tenant(&tenant(&plan.slug)).await;
    match plan.expect {
        Expect::Gone => {
            // Its database and role are gone too: doctor, clean above,
            // reports any database or role of this catalog without a row.
            assert!(found.is_err(), "{:?}: the tenant must be gone: {found:?}", plan.point);
            "gone"
        }
        Expect::Deleted => {
            let view = found.unwrap_or_else(|err| panic!("{:?}: the tenant must exist: {err}", plan.point));
            let db = view.database.expect("it has a database");
            assert_eq!(db.status, DbStatus::Deleted, "{:?}: {db:?}", plan.point);
            let row = env.row(view.id).await.unwrap();
            assert!(
                env.database_exists(&row).await,
                "{:?}: the database is kept",
                plan.point
            );
            survivor
                .provisioner()
                .restore_tenant(&tenant(&plan.slug))
                .await
                .unwrap();
            let row = env.row(view.id).await.unwrap();
            let conn = env.connect_tenant(&row).await;
            let backend = conn.get_database_backend();
            let rows = conn
                .query_all_raw(Statement::from_string(backend, "SELECT body FROM notes"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{:?}: the tenant's data must survive", plan.point);
            conn.close().await.unwrap();
            "kept, restored"
        }
        Expect::Whole => {
            let view = found.unwrap_or_else(|err| panic!("{:?}: the tenant must exist: {err}", plan.point));
            let db = view.database.expect("it has a database");
            assert_eq!(db.status, DbStatus::Active, "{:?}: {db:?}", plan.point);
            let row = env.row(view.id).await.unwrap();
            let conn = env.connect_tenant(&row).await;
            let backend = conn.get_database_backend();
            if needs_tenant(plan) {
                let rows = conn
                    .query_all_raw(Statement::from_string(backend, "SELECT body FROM notes"))
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 1, "{:?}: the tenant's data must survive", plan.point);
            } else {
                conn.query_all_raw(Statement::from_string(backend, "SELECT count(*) FROM notes"))
                    .await
                    .unwrap_or_else(|err| panic!("{:?}: the schema must be there: {err}", plan.point));
            }
            conn.close().await.unwrap();
            "whole"
        }
    }
}

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

/// The child: runs one operation with one fault point armed. Started by
/// the test above with the env's coordinates; ignored in normal runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by every_fault_point_is_repaired_after_a_kill"]
async fn crash_child() {
    let config = child_config().expect("started without the env's coordinates");
    let var = |name: &str| std::env::var(name).unwrap();
    let point = Step::iter()
        .find(|s| format!("{s:?}") == var("TENANTDB_CHILD_POINT"))
        .expect("a known fault point");
    let tenancy = Tenancy::connect(config, set(&var("TENANTDB_CHILD_SET"))).await.unwrap();
    let provisioner = tenancy.provisioner();
    let slug = var("TENANTDB_CHILD_SLUG");
    abort_at(point);
    let result = match var("TENANTDB_CHILD_OP").as_str() {
        "create" => provisioner.create_tenant(new(&slug)).await.map(drop),
        "retry" => provisioner.retry(&tenant(&slug)).await.map(drop),
        "rename" => provisioner
            .rename_tenant_database(&tenant(&slug), &var("TENANTDB_CHILD_TARGET"))
            .await
            .map(drop),
        "delete" => provisioner.delete_tenant_now(&tenant(&slug)).await,
        "trash" => provisioner.delete_tenant(&tenant(&slug)).await,
        "restore" => provisioner.restore_tenant(&tenant(&slug)).await.map(drop),
        "purge" => provisioner.purge_tenant(&tenant(&slug)).await,
        "migrate" => provisioner.migrate_tenant(&tenant(&slug)).await.map(drop),
        "fleet" => {
            let options = FleetOptions {
                concurrency: 1,
                tenants: vec![tenant(&slug)],
                ..Default::default()
            };
            tenancy.fleet().migrate(&options, |_| {}).await.map(drop)
        }
        other => panic!("unknown operation {other}"),
    };
    println!("the operation returned without reaching {point:?}: {result:?}");
}
