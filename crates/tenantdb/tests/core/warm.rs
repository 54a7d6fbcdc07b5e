//! Warm databases: the stock is filled from the current template, a new
//! tenant claims one (never two tenants the same one, even racing), a new
//! tenant migration makes the stock stale and a refill or `doctor --fix`
//! replaces it, and a tenant never gets a database behind the latest
//! version.

use sea_orm::{ConnectionTrait, Statement};
use tenantdb::{DbStatus, DoctorOptions, FleetOptions, NewTenant};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, TestEnv, schema_v1, schema_v2, tables};

both_backends!(
    new_tenants_claim_warm_databases_and_the_stock_is_refilled,
    a_new_migration_makes_the_stock_stale_and_it_is_replaced,
);

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

fn ready(stock: &[tenantdb::WarmStock]) -> usize {
    stock.iter().map(|s| s.ready).sum()
}

async fn new_tenants_claim_warm_databases_and_the_stock_is_refilled(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), |config| config.warm_databases = 2).await;
    let provisioner = env.tenancy.provisioner();
    let filled = provisioner.refill_warm().await.unwrap();
    assert_eq!(
        (filled[0].made, filled[0].ready, &filled[0].error),
        (2, 2, &None),
        "{filled:?}"
    );
    let again = provisioner.refill_warm().await.unwrap();
    assert_eq!((again[0].made, again[0].ready), (0, 2), "a full stock is left alone");
    // A process that keeps a smaller stock (the size lowered in a deploy,
    // or several refills having passed it) drops what is beyond it.
    let mut smaller = env.config.clone();
    smaller.warm_databases = 1;
    let smaller = tenantdb::Tenancy::connect(smaller, schema_v1()).await.unwrap();
    let trimmed = smaller.provisioner().refill_warm().await.unwrap();
    assert_eq!(
        (trimmed[0].made, trimmed[0].dropped, trimmed[0].ready, &trimmed[0].error),
        (0, 1, 1, &None),
        "{trimmed:?}"
    );
    smaller.close().await;
    let refilled = provisioner.refill_warm().await.unwrap();
    assert_eq!((refilled[0].made, refilled[0].ready), (1, 2), "{refilled:?}");
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "warm databases are no orphans: {findings:#?}");
    if backend == Backend::Postgres {
        // Closed, closed to PUBLIC, and with the relation cache file an
        // admin session built (a copy has none): the tenant's first
        // connection does not build it.
        let warm: Vec<(String, bool, String, bool)> = sqlx::query_as(
            "SELECT datname::text, datallowconn, coalesce(datacl::text, ''), \
             (pg_stat_file('base/' || oid || '/pg_internal.init', true)).size IS NOT NULL \
             FROM pg_database WHERE starts_with(datname, $1)",
        )
        .bind(format!("{}-wrm-", env.db_prefix().trim_end_matches('_')))
        .fetch_all(env.admin())
        .await
        .unwrap();
        assert_eq!(warm.len(), 2, "{warm:?}");
        for (name, accepts, acl, cached) in &warm {
            assert!(!accepts, "{name} accepts no connections");
            // (No ACL at all would be the default: PUBLIC may connect.)
            assert!(
                !acl.is_empty() && !acl.contains("{=") && !acl.contains(",="),
                "{name}: nothing for PUBLIC: {acl}"
            );
            assert!(cached, "{name} has its relation cache file");
        }
    }

    // A database that wears a warm database's name and comment but is not
    // owned by this catalog's template role is never claimed or dropped.
    let decoy = format!("{}-wrm-decoy", env.db_prefix().trim_end_matches('_'));
    if backend == Backend::Postgres {
        let template = provisioner.templates().current().unwrap().name;
        let mark = format!(
            "tenantdb warm catalog={} template={template}",
            env.tenancy.catalog().id()
        );
        for sql in [
            format!("CREATE DATABASE \"{decoy}\""),
            format!("COMMENT ON DATABASE \"{decoy}\" IS '{mark}'"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(env.admin())
                .await
                .unwrap();
        }
        assert_eq!(ready(&provisioner.warm_stock().await.unwrap()), 2);
    }

    let created = provisioner.create_tenant(new("first")).await.unwrap();
    assert_eq!(created.status, DbStatus::Active);
    assert_eq!(ready(&provisioner.warm_stock().await.unwrap()), 1, "one was claimed");
    let row = env.raw(&created).await;
    if backend == Backend::Postgres {
        // Claimed and opened in one step: as a clone is left.
        let (accepts, acl, owner): (bool, String, String) = sqlx::query_as(
            "SELECT datallowconn, coalesce(datacl::text, ''), pg_get_userbyid(datdba)::text \
             FROM pg_database WHERE datname = $1",
        )
        .bind(&row.database_name)
        .fetch_one(env.admin())
        .await
        .unwrap();
        assert!(accepts);
        assert_eq!(owner, row.role_name);
        assert!(
            !acl.is_empty() && !acl.contains("{=") && !acl.contains(",="),
            "nothing for PUBLIC: {acl}"
        );
    }
    let conn = env.connect_tenant(&row).await;
    conn.execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'mine')")
        .await
        .unwrap();
    assert!(tables(&conn).await.contains(&"notes".to_owned()));
    conn.close().await.unwrap();

    // More creates at once than the stock holds: each gets a database of
    // its own (warm or cloned), all served, none sharing another's.
    let racers: Vec<_> = (0..5)
        .map(|i| {
            let provisioner = provisioner.clone();
            tokio::spawn(async move { provisioner.create_tenant(new(&format!("racer-{i}"))).await })
        })
        .collect();
    let mut rows = vec![row];
    for racer in racers {
        rows.push(env.raw(&racer.await.unwrap().unwrap()).await);
    }
    assert_eq!(ready(&provisioner.warm_stock().await.unwrap()), 0);
    for (i, row) in rows.iter().enumerate() {
        let conn = env.connect_tenant(row).await;
        let count = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT count(*) AS n FROM notes",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(count, i64::from(i == 0), "tenant {i} sees only its own rows");
        conn.close().await.unwrap();
    }
    let mut half_made = None;
    if backend == Backend::Postgres {
        assert!(env.pg_database_exists(&decoy).await, "the decoy is untouched");
        // One a stop cut short: made by the template role, never commented.
        let name = format!("{}-wrm-halfmade", env.db_prefix().trim_end_matches('_'));
        let owner = tenantdb::RoleName::for_templates(&env.config.database_prefix, env.tenancy.catalog().id());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" OWNER \"{owner}\" ALLOW_CONNECTIONS false"
        )))
        .execute(env.admin())
        .await
        .unwrap();
        let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
        assert_eq!(
            findings
                .iter()
                .map(|f| (f.problem.as_str(), f.subject.as_str()))
                .collect::<Vec<_>>(),
            vec![("stale_warm", name.as_str())]
        );
        half_made = Some(name);
    }
    if let Some(name) = &half_made {
        // While another process makes it (holding the advisory lock a
        // maker holds on its name), it is left alone.
        let mut maker = env.admin().acquire().await.unwrap();
        let key = format!("tenantdb warm {name}");
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *maker)
            .await
            .unwrap();
        let refilled = provisioner.refill_warm().await.unwrap();
        assert_eq!(
            (refilled[0].made, refilled[0].ready, refilled[0].dropped),
            (2, 2, 0),
            "{refilled:?}"
        );
        assert!(env.pg_database_exists(name).await, "being made: left alone");
        sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *maker)
            .await
            .unwrap();
    }
    let refilled = provisioner.refill_warm().await.unwrap();
    let made = if half_made.is_some() { 0 } else { 2 };
    assert_eq!((refilled[0].made, refilled[0].ready), (made, 2));
    assert_eq!(refilled[0].dropped, usize::from(half_made.is_some()), "{refilled:?}");
    if let Some(name) = &half_made {
        assert!(!env.pg_database_exists(name).await);
    }
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "{findings:#?}");

    if backend == Backend::Postgres {
        assert!(env.pg_database_exists(&decoy).await, "the decoy is untouched");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{decoy}\"")))
            .execute(env.admin())
            .await
            .unwrap();
    }
    // Turned off: the stock is dropped.
    let mut config = env.config.clone();
    config.warm_databases = 0;
    let without = tenantdb::Tenancy::connect(config, schema_v1()).await.unwrap();
    let emptied = without.provisioner().refill_warm().await.unwrap();
    assert_eq!((emptied[0].dropped, emptied[0].ready), (2, 0), "{emptied:?}");
    without.close().await;
}

async fn a_new_migration_makes_the_stock_stale_and_it_is_replaced(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), |config| config.warm_databases = 2).await;
    env.create("old").await;
    env.tenancy.provisioner().refill_warm().await.unwrap();

    // A newer program: doctor sees the stock as stale and --fix drops it;
    // a create before any refill clones (never takes a stale one).
    let newer = env.second(schema_v2()).await;
    let doctor = newer.doctor();
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    let stale: Vec<_> = findings
        .iter()
        .filter(|f| f.problem.as_str() == "stale_warm")
        .cloned()
        .collect();
    assert_eq!(stale.len(), 2, "{findings:#?}");
    let fresh = newer.provisioner().create_tenant(new("fresh")).await.unwrap();
    assert_eq!(fresh.schema_version, schema_v2().latest_version());
    let conn = env.connect_tenant(&env.raw(&fresh).await).await;
    assert!(
        tables(&conn).await.contains(&"tags".to_owned()),
        "at the newest version"
    );
    conn.close().await.unwrap();
    for done in doctor.repair(&stale).await {
        assert_eq!(done.outcome, Ok("dropped".to_owned()), "{done:?}");
    }
    // The older program, refused by the newer set, makes and drops nothing.
    let old = env.tenancy.provisioner().refill_warm().await.unwrap();
    assert_eq!((old[0].made, old[0].dropped), (0, 0), "{old:?}");

    // The fleet run brings the old tenant up and refills from the new
    // template: the next tenant claims a database at the newest version.
    let report = newer.fleet().migrate(&FleetOptions::default(), |_| {}).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let stock = newer.provisioner().warm_stock().await.unwrap();
    assert_eq!(ready(&stock), 2, "{stock:?}");
    let next = newer.provisioner().create_tenant(new("next")).await.unwrap();
    assert_eq!(next.schema_version, schema_v2().latest_version());
    assert_eq!(ready(&newer.provisioner().warm_stock().await.unwrap()), 1);
    let conn = env.connect_tenant(&env.raw(&next).await).await;
    assert!(tables(&conn).await.contains(&"tags".to_owned()));
    conn.close().await.unwrap();
    let findings = doctor.examine(DoctorOptions::default()).await.unwrap();
    let about_warm: Vec<_> = findings.iter().filter(|f| f.problem.as_str() == "stale_warm").collect();
    assert!(about_warm.is_empty(), "{about_warm:#?}");
    newer.close().await;
}

/// A refill stopped while it makes a warm database (a shutdown, a timeout
/// around it) leaves a half-made one, which the next refill drops: the
/// maker's lock goes with the stopped work (its connection is closed, not
/// returned to the pool still holding the lock, which would make every
/// refill leave the half-made database alone as "being made elsewhere").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_stopped_halfway_leaves_no_lock_behind() {
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| config.warm_databases = 1).await;
    let provisioner = env.tenancy.provisioner().clone();
    // The template first, so that the refill below starts making at once.
    env.create("first").await;
    let prefix = format!("{}-wrm-", env.db_prefix().trim_end_matches('_'));
    let half_made = async || -> Option<String> {
        sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) \
             AND shobj_description(oid, 'pg_database') IS NULL",
        )
        .bind(&prefix)
        .fetch_optional(env.admin())
        .await
        .unwrap()
    };
    let mut stopped = None;
    for attempt in 0..5 {
        let refill = tokio::spawn({
            let provisioner = provisioner.clone();
            async move { provisioner.refill_warm().await }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = None;
        while seen.is_none() && !refill.is_finished() && std::time::Instant::now() < deadline {
            seen = half_made().await;
        }
        refill.abort();
        let _ = refill.await;
        if let Some(name) = seen
            && half_made().await.as_deref() == Some(name.as_str())
        {
            stopped = Some(name);
            break;
        }
        // Made in full before the stop landed: use it up and try again.
        env.create(&format!("use-{attempt}")).await;
    }
    let name = stopped.expect("a refill was stopped while it made a warm database");
    // The stopped maker's connection closes in the background: a moment.
    let mut dropped = 0;
    for _ in 0..50 {
        dropped += provisioner.refill_warm().await.unwrap()[0].dropped;
        if dropped > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dropped, 1, "the half-made warm database was dropped");
    assert!(!env.pg_database_exists(&name).await);
    assert_eq!(ready(&provisioner.warm_stock().await.unwrap()), 1);
}
