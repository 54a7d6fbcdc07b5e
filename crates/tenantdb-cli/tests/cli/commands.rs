//! `tenants create`, `migrate` and `doctor` over the application's schema.

use std::process::ExitCode;

use tenantdb::{TenantMigrations, TenantRef};

use crate::schema::{FirstRelease, SECOND, SecondRelease};
use crate::support::{AppCommand, Backend, Operator, runs_in_tenant};

async fn a_created_tenant_has_the_applications_tables(backend: Backend) {
    let operator = Operator::new(backend).await;
    let tenancy = operator.connect(TenantMigrations::of::<FirstRelease>()).await;

    let code = operator
        .execute(&tenancy, &["tenants", "create", "acme", "--json"])
        .await;

    assert_eq!(code, ExitCode::SUCCESS);
    assert!(runs_in_tenant(&tenancy, "acme", "INSERT INTO notes (id, body) VALUES (1, 'hello')").await);
    assert!(!runs_in_tenant(&tenancy, "acme", "SELECT pinned FROM notes").await);
    tenancy.close().await;
}

async fn migrate_brings_a_tenant_up_to_an_added_migration_and_doctor_ends_clean(backend: Backend) {
    let operator = Operator::new(backend).await;
    let first = operator.connect(TenantMigrations::of::<FirstRelease>()).await;
    assert_eq!(
        operator.execute(&first, &["tenants", "create", "acme"]).await,
        ExitCode::SUCCESS
    );
    first.close().await;

    let second = operator.connect(TenantMigrations::of::<SecondRelease>()).await;
    assert_eq!(operator.execute(&second, &["migrate"]).await, ExitCode::SUCCESS);

    let acme = second.tenant(&TenantRef::parse("acme").unwrap()).await.unwrap();
    assert_eq!(acme.database.unwrap().schema_version.as_deref(), Some(SECOND));
    assert!(runs_in_tenant(&second, "acme", "SELECT pinned FROM notes").await);
    assert_eq!(
        operator.execute(&second, &["migrate", "status"]).await,
        ExitCode::SUCCESS
    );
    // `migrate` also replaced the first release's template: nothing is
    // left for the doctor.
    assert_eq!(operator.execute(&second, &["doctor"]).await, ExitCode::SUCCESS);
    second.close().await;
}

/// Problems found are the command's outcome, not an error: `execute`
/// returns `Ok` with a failing exit code.
async fn doctor_exits_non_zero_while_a_foreign_database_is_under_the_prefix(backend: Backend) {
    let operator = Operator::new(backend).await;
    let tenancy = operator.connect(TenantMigrations::of::<FirstRelease>()).await;
    match &operator.scratch {
        Some(scratch) => {
            scratch.create_database("_not_ours").await;
        }
        None => std::fs::write(operator.dir.path().join("data/tenants/t_not_ours.db"), "").unwrap(),
    }

    // 3: it ran and found problems (1 would mean it could not check).
    assert_eq!(
        operator.execute(&tenancy, &["doctor", "--json"]).await,
        ExitCode::from(tenantdb_cli::exit::PROBLEMS_FOUND)
    );
    tenancy.close().await;
}

tenantdb_test_support::both_backends!(
    a_created_tenant_has_the_applications_tables,
    migrate_brings_a_tenant_up_to_an_added_migration_and_doctor_ends_clean,
    doctor_exits_non_zero_while_a_foreign_database_is_under_the_prefix,
);

#[tokio::test]
async fn the_operator_commands_sit_beside_the_applications_own() {
    let operator = Operator::new(Backend::Sqlite).await;
    assert!(matches!(operator.parse(&["export"]).command, AppCommand::Export));
    for words in [
        &["tenants", "list", "--database-status", "failed", "--json"][..],
        &["members", "add", "acme", "ada@example.com", "--role", "admin"],
        &["migrate", "--tenant", "acme", "--dry-run"],
        &["doctor", "--fix", "--no-versions"],
        &["reconcile"],
    ] {
        assert!(
            matches!(operator.parse(words).command, AppCommand::Operator(_)),
            "{words:?}"
        );
    }
}
