//! Template cloning: a tenant cloned from the template has exactly the
//! schema of one whose migrations were replayed, and the right version.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenantdb::NewTenant;
use tenantdb_test_support::both_backends;

use crate::support::{Backend, TestEnv, schema_v2};

both_backends!(
    a_cloned_tenant_has_the_schema_of_a_replayed_one,
    a_template_gone_or_busy_falls_back_to_replaying_and_is_rebuilt
);

/// Tables, columns, indexes and constraints, as text, in a stable order.
async fn schema(conn: &DatabaseConnection) -> Vec<String> {
    let backend = conn.get_database_backend();
    let queries: &[&str] = match backend {
        sea_orm::DbBackend::Postgres => &[
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || \
             coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
            "SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        ],
        _ => &["SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name"],
    };
    let mut out = Vec::new();
    for sql in queries {
        for row in conn.query_all_raw(Statement::from_string(backend, *sql)).await.unwrap() {
            out.push(row.try_get_by_index::<String>(0).unwrap());
        }
    }
    out
}

async fn a_cloned_tenant_has_the_schema_of_a_replayed_one(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let cloned = env
        .raw(
            &env.tenancy
                .provisioner()
                .create_tenant(NewTenant {
                    slug: "cloned".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;
    let template = env.tenancy.templates().ready().await.expect("a template was built");
    match backend {
        Backend::Postgres => {
            let is_template: bool =
                sqlx::query_scalar("SELECT datistemplate AND NOT datallowconn FROM pg_database WHERE datname = $1")
                    .bind(&template)
                    .fetch_one(env.admin())
                    .await
                    .unwrap();
            assert!(is_template, "an immutable template database");
        }
        Backend::Sqlite => {}
    }
    let mut replay_config = env.config.clone();
    replay_config.use_templates = false;
    let replaying = tenantdb::Tenancy::connect(replay_config, schema_v2()).await.unwrap();
    let replayed = env
        .raw(
            &replaying
                .provisioner()
                .create_tenant(NewTenant {
                    slug: "replayed".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        )
        .await;

    assert_eq!(cloned.schema_version.as_deref(), Some("m0002_tags"));
    assert_eq!(replayed.schema_version, cloned.schema_version);
    let (a, b) = (env.connect_tenant(&cloned).await, env.connect_tenant(&replayed).await);
    let (sa, sb) = (schema(&a).await, schema(&b).await);
    assert!(!sa.is_empty());
    assert_eq!(sa, sb, "cloned and replayed schemas differ");
    // The clone's owner may change its schema (it owns pg_database_owner's
    // objects through owning the database).
    a.execute_unprepared("ALTER TABLE tags ADD COLUMN colour TEXT")
        .await
        .unwrap();
    replaying.close().await;
}

async fn a_template_gone_or_busy_falls_back_to_replaying_and_is_rebuilt(backend: Backend) {
    let env = TestEnv::new(backend, schema_v2()).await;
    let first = env.create("first").await;
    let template = env.tenancy.templates().ready().await.unwrap();
    assert_eq!(
        env.tenancy.catalog().template().await.unwrap().as_deref(),
        Some(template.as_str()),
        "the catalog points at the template"
    );

    // Gone behind this process's back (another deploy dropped it): this
    // process still thinks it ready, the clone fails, the migrations replay.
    let other = env.second(schema_v2()).await;
    match backend {
        Backend::Postgres => {
            for sql in [
                format!("ALTER DATABASE \"{template}\" WITH IS_TEMPLATE false"),
                format!("DROP DATABASE \"{template}\""),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(env.admin())
                    .await
                    .unwrap();
            }
        }
        Backend::Sqlite => {
            std::fs::remove_file(env.sqlite().template_dir().join(format!("{template}.db"))).unwrap();
        }
    }
    let replayed = env.create("replayed").await;
    assert_eq!(replayed.status, tenantdb::DbStatus::Active);
    assert_eq!(replayed.schema_version, first.schema_version);
    let conn = env.connect_tenant(&replayed).await;
    assert_eq!(
        crate::support::tables(&conn).await,
        ["notes", "seaql_migrations", "tags"]
    );
    conn.close().await.unwrap();
    // The failed clone made the process forget the template: the next
    // create builds it again and clones it.
    let rebuilt = env.create("rebuilt").await;
    assert_eq!(rebuilt.schema_version, first.schema_version);
    assert!(
        env.tenancy
            .doctor()
            .examine(tenantdb::DoctorOptions::default())
            .await
            .unwrap()
            .is_empty(),
        "the template is back"
    );

    if backend == Backend::Postgres {
        // Busy: somebody is connected to the template.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{template}\" WITH ALLOW_CONNECTIONS true"
        )))
        .execute(env.admin())
        .await
        .unwrap();
        let mut options: sqlx::postgres::PgConnectOptions = tenantdb_test_support::postgres_url().parse().unwrap();
        options = options.database(&template);
        let squatter = sqlx::PgPool::connect_with(options).await.unwrap();
        sqlx::query("SELECT 1").execute(&squatter).await.unwrap();
        // PostgreSQL waits up to 5 s for the session to leave before it
        // refuses; tenantdb tries once more, then replays.
        let busy = env.create("busy").await;
        assert_eq!(busy.status, tenantdb::DbStatus::Active);
        assert_eq!(busy.schema_version, first.schema_version);
        let conn = env.connect_tenant(&busy).await;
        assert_eq!(
            crate::support::tables(&conn).await,
            ["notes", "seaql_migrations", "tags"]
        );
        conn.close().await.unwrap();
        squatter.close().await;
    }
    other.close().await;
}
