//! Attacks on "tenantdb never destroys what it does not own": databases and
//! roles with dangerous names planted around a deployment, tenants that try
//! to pass their database off as a template, and databases PostgreSQL left
//! in states that used to wedge a delete.

use sea_orm::{ConnectionTrait, Statement};
use sqlx::{AssertSqlSafe, PgPool};
use tenantdb::error::Error;
use tenantdb::names::{DatabasePrefix, quote_ident, quote_literal, template_stem};
use tenantdb::provisioner::{DoctorOptions, Problem};
use tenantdb::{NewTenant, TenantRef};

use crate::support::{Backend, TestEnv, schema_v1, schema_v2};

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
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
    let hash = &tenantdb::secret::sha256_hex(&migrations.join("\n"))[..12];
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
    let hash = &tenantdb::secret::sha256_hex("m0001_notes")[..12];
    let victim_name = format!("{}tpl{hash}", env.db_prefix());
    let victim = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            database_name: Some(victim_name.clone()),
            ..new("victim")
        })
        .await
        .unwrap();
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
    let refused = env
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            database_name: Some(template.clone()),
            ..new("squatter")
        })
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Invalid { .. }), "{refused}");

    // Templates on: the next tenant builds one.
    let mut config = env.config.clone();
    config.use_templates = true;
    let with_templates = tenantdb::Tenancy::connect(config, schema_v1()).await.unwrap();
    with_templates.provisioner().create_tenant(new("next")).await.unwrap();
    assert_eq!(
        with_templates.provisioner().template().await.as_deref(),
        Some(template.as_str())
    );
    with_templates.close().await;

    let conn = env.connect_tenant(&victim).await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT body FROM notes",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the tenant's data must survive");
    conn.close().await.unwrap();
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

    // The workload: create (the template cannot be built under a foreign
    // database: migrations are replayed), rename, migrate to a new set (a
    // new template), delete, doctor --fix.
    let provisioner = env.tenancy.provisioner();
    let a = provisioner.create_tenant(new("mine-a")).await.unwrap();
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
        .delete_tenant(&TenantRef::parse("mine-b").unwrap())
        .await
        .unwrap();
    let findings = v2.provisioner().examine(DoctorOptions::default()).await.unwrap();
    v2.provisioner().repair(&findings).await;
    let after = v2.provisioner().examine(DoctorOptions::default()).await.unwrap();
    v2.close().await;

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
    let findings = v2.provisioner().examine(DoctorOptions::default()).await.unwrap();
    v2.provisioner().repair(&findings).await;
    v2.close().await;
    assert!(env.pg_database_exists(&row.database_name).await);
    let conn = env.connect_tenant(&row).await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT body FROM notes",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    conn.close().await.unwrap();
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
        .delete_tenant(&TenantRef::parse("invalid").unwrap())
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
        .delete_tenant(&TenantRef::parse("granted").unwrap())
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
    let findings = env
        .tenancy
        .provisioner()
        .examine(DoctorOptions::default())
        .await
        .unwrap();
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
