//! `tenants create`, `migrate` and `doctor` over the application's schema.

use std::process::ExitCode;

use tenantdb::{TenantMigrations, TenantRef};

use crate::schema::{FirstRelease, SECOND, SecondRelease};
use clap::Parser;

use crate::support::{AppCli, AppCommand, Backend, Operator, count_in_tenant, runs_in_tenant};

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

/// An application's seed: one welcome note, written so a second run adds
/// nothing; it fails on purpose for the tenant `broken`.
struct Welcome;

#[tenantdb_cli::async_trait]
impl tenantdb_cli::Seed for Welcome {
    async fn seed(&self, tenant: &tenantdb::Tenant, db: &tenantdb::PoolHandle) -> anyhow::Result<()> {
        use sea_orm::ConnectionTrait;
        anyhow::ensure!(tenant.slug != "broken", "no welcome for {}", tenant.slug);
        db.execute_unprepared(
            "INSERT INTO notes (id, body) SELECT 1, 'welcome' WHERE NOT EXISTS (SELECT 1 FROM notes WHERE id = 1)",
        )
        .await?;
        Ok(())
    }
}

/// `tenants seed` runs the application's seed in the chosen tenants only,
/// then in every one with `--all`: a tenant whose seed fails is reported
/// and fails the command, the others are seeded, and seeding again adds
/// nothing. A binary with no seed does nothing and succeeds.
async fn seed_runs_the_applications_seed_in_the_chosen_tenants(backend: Backend) {
    let operator = Operator::new(backend).await;
    let tenancy = operator.connect(TenantMigrations::of::<FirstRelease>()).await;
    for slug in ["acme", "globex", "broken"] {
        assert_eq!(
            operator.execute(&tenancy, &["tenants", "create", slug]).await,
            ExitCode::SUCCESS
        );
    }
    let notes = "SELECT COUNT(*) FROM notes";
    let none = tenantdb_cli::Operator::new();
    let seeded = tenantdb_cli::Operator::new().seed(Welcome);

    let code = operator
        .execute_with(&none, &tenancy, &["tenants", "seed", "--all"])
        .await;
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "no seed: nothing to do");
    assert_eq!(count_in_tenant(&tenancy, "acme", notes).await, 0);

    let code = operator
        .execute_with(&seeded, &tenancy, &["tenants", "seed", "acme"])
        .await;
    assert_eq!(code.unwrap(), ExitCode::SUCCESS);
    assert_eq!(count_in_tenant(&tenancy, "acme", notes).await, 1);
    assert_eq!(count_in_tenant(&tenancy, "globex", notes).await, 0, "only the chosen");

    let all = operator
        .execute_with(&seeded, &tenancy, &["tenants", "seed", "--all", "--json"])
        .await;
    let err = all.expect_err("the seed failed on broken");
    assert!(err.to_string().contains("failed on 1 of 3"), "{err:#}");
    for slug in ["acme", "globex"] {
        assert_eq!(count_in_tenant(&tenancy, slug, notes).await, 1, "{slug}");
    }
    assert!(
        AppCli::try_parse_from(["notes-admin", "tenants", "seed"]).is_err(),
        "a tenant or --all is required"
    );
    assert!(AppCli::try_parse_from(["notes-admin", "tenants", "seed", "acme", "--all"]).is_err());
    tenancy.close().await;
}

tenantdb_test_support::both_backends!(
    seed_runs_the_applications_seed_in_the_chosen_tenants,
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
