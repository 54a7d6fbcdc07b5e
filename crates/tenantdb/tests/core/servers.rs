//! Many tenant servers over one catalog: adding servers (the admin password
//! sealed, never stored), placement over three servers, drain, a server
//! stopped during placement, fleet migrate over three servers, doctor
//! finding an orphan on the second server, remove refused while not empty.
//! The catalog and the server of the settings are on the shared server;
//! the two others are throwaway clusters.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Statement};
use tenantdb::{AddServer, Error, FleetOptions, NewTenant, Problem, Tenancy, TenantRef};
use tenantdb_test_support::{PgCluster, SUPERUSER_PASSWORD};

use crate::support::{Backend, TestEnv, schema_v1, schema_v2};

fn add(name: &str, url: String) -> AddServer {
    AddServer {
        name: name.into(),
        admin_url: url.into(),
        budget: 6,
        max_per_tenant: Some(2),
    }
}

async fn create(tenancy: &Tenancy, slug: &str, server: Option<&str>) -> tenantdb::Result<String> {
    let db = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: slug.into(),
            server: server.map(str::to_owned),
            ..Default::default()
        })
        .await?;
    Ok(db.server)
}

/// Whether the database `name` exists on the cluster.
async fn exists_on(cluster: &PgCluster, name: &str) -> bool {
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    found.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_placed_served_migrated_and_examined_across_three_servers() {
    let (a, b) = (PgCluster::start(), PgCluster::start());
    // Two instances share each server below: a short lease makes a
    // newcomer's share come within the acquire timeout.
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| {
        config.instance_lease = std::time::Duration::from_secs(4);
    })
    .await;
    let tenancy = &env.tenancy;

    // Adding: bad input changes nothing; the password is sealed.
    let bad_name = tenancy.add_server(add("Not A Name", a.url())).await.unwrap_err();
    assert!(matches!(bad_name, Error::Invalid { .. }), "{bad_name}");
    let wrong_password = a.url().replace(SUPERUSER_PASSWORD, "wrong-password");
    let refused = tenancy.add_server(add("a", wrong_password)).await.unwrap_err();
    assert!(matches!(refused, Error::Invalid { .. }), "{refused}");
    assert!(!refused.to_string().contains("wrong-password"), "{refused}");
    let mut too_big = add("a", a.url());
    too_big.budget = 500;
    let too_big = tenancy.add_server(too_big).await.unwrap_err();
    assert!(too_big.to_string().contains("room for"), "{too_big}");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nobody = format!("postgres://postgres:pw@127.0.0.1:{closed_port}/postgres");
    let unreachable = tenancy.add_server(add("nobody", nobody)).await.unwrap_err();
    assert!(unreachable.is_unreachable(), "{unreachable}");
    assert_eq!(tenancy.servers().await.unwrap().len(), 1, "nothing recorded");

    let added = tenancy.add_server(add("a", a.url())).await.unwrap();
    assert_eq!(added.address, Some(format!("127.0.0.1:{}", a.port())));
    assert_eq!(
        (added.name.as_str(), added.status.as_str(), added.budget),
        ("a", "ACCEPTING", 6)
    );
    tenancy.add_server(add("b", b.url())).await.unwrap();
    let again = tenancy.add_server(add("b", b.url())).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    for server in tenancy.catalog().servers().list().await.unwrap() {
        let text = server.settings.to_string();
        assert!(
            !text.contains(SUPERUSER_PASSWORD),
            "a plaintext password in the catalog: {text}"
        );
        // The shared server takes no password (trust); a and b do.
        let sealed = server.settings["password"]["sealed"].is_string();
        assert_eq!(sealed, server.name != "default", "{text}");
    }

    // Placement: the fewest tenants first, ties by name: a, b, default.
    let mut placed = HashMap::<String, Vec<String>>::new();
    for i in 0..6 {
        let slug = format!("t{i}");
        let server = create(tenancy, &slug, None).await.unwrap();
        placed.entry(server).or_default().push(slug);
    }
    let counts: HashMap<_, _> = placed.iter().map(|(s, t)| (s.as_str(), t.len())).collect();
    assert_eq!(
        counts,
        HashMap::from([("a", 2), ("b", 2), ("default", 2)]),
        "{placed:?}"
    );
    assert_eq!(placed["a"], ["t0", "t3"]);
    assert_eq!(create(tenancy, "on-b", Some("b")).await.unwrap(), "b");
    let unknown = create(tenancy, "nowhere", Some("zz")).await.unwrap_err();
    assert!(matches!(unknown, Error::ServerNotFound(_)), "{unknown}");

    // Each tenant's database is on its server, served as its own role.
    for (server, slugs) in &placed {
        for slug in slugs {
            let tenant = tenancy.tenant(&TenantRef::parse(slug).unwrap()).await.unwrap();
            let database = tenant.database.unwrap();
            assert_eq!(&database.server, server);
            let on_a = exists_on(&a, &database.database_name).await;
            let on_b = exists_on(&b, &database.database_name).await;
            assert_eq!((on_a, on_b), (server == "a", server == "b"), "{slug} on {server}");
            let conn = tenancy
                .connections()
                .connection(&TenantRef::parse(slug).unwrap())
                .await
                .unwrap();
            let who = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT current_user::text AS u, current_database()::text AS d",
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who.try_get::<String>("", "d").unwrap(), database.database_name);
        }
    }

    // Drain: no new tenants on a, by placement or by name.
    tenancy.set_server_accepting("a", false).await.unwrap();
    let drained = create(tenancy, "on-a", Some("a")).await.unwrap_err();
    assert!(matches!(drained, Error::ServerDraining(_)), "{drained}");
    assert_ne!(create(tenancy, "t6", None).await.unwrap(), "a");

    // A server stopped during placement is skipped with a warning: b has
    // the fewest tenants (after a), but does not answer.
    let counts = tenancy.catalog().tenant_databases().count_by_server().await.unwrap();
    let b_id = tenancy.server("b").await.unwrap().unwrap().id;
    let fewest = counts.values().min().unwrap();
    if counts[&b_id] != *fewest {
        // Make b the server placement would choose.
        create(tenancy, "filler", Some("default")).await.unwrap();
    }
    b.pg_ctl_stop();
    let moved = create(tenancy, "while-b-is-down", None).await.unwrap();
    assert_eq!(moved, "default", "skipped b, a is DRAINING");
    let down = create(tenancy, "on-b-down", Some("b")).await.unwrap_err();
    assert!(down.is_unreachable(), "{down}");
    // Bad input is refused as such, before any server is asked.
    let malformed = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "bad-name-b-down".into(),
            server: Some("b".into()),
            database_name: Some("Not A Name".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(malformed, Error::Invalid { .. }), "{malformed}");
    b.pg_ctl_start();

    // Doctor finds an orphan on the second server: a's tenant t0 loses its
    // catalog rows (as if the catalog were restored from an older backup).
    let t0 = tenancy.tenant(&TenantRef::parse("t0").unwrap()).await.unwrap();
    let t0_db = t0.database.clone().unwrap().database_name;
    let catalog = tenancy.catalog().db();
    for sql in [
        format!("DELETE FROM database_names WHERE tenant_id = '{}'", t0.id),
        format!("DELETE FROM tenant_databases WHERE tenant_id = '{}'", t0.id),
    ] {
        catalog.execute_unprepared(&sql).await.unwrap();
    }
    for clean in ["default", "b"] {
        let findings = tenancy
            .doctor_on(clean)
            .await
            .unwrap()
            .examine(Default::default())
            .await
            .unwrap();
        assert!(findings.is_empty(), "{clean}: {findings:#?}");
    }
    let doctor = tenancy.doctor_on("a").await.unwrap();
    let findings = doctor.examine(Default::default()).await.unwrap();
    let orphan: Vec<_> = findings
        .iter()
        .filter(|f| f.problem == Problem::OrphanDatabase)
        .map(|f| (f.server.as_str(), f.subject.as_str()))
        .collect();
    assert_eq!(orphan, [("a", t0_db.as_str())], "{findings:#?}");
    doctor.repair(&findings).await;
    assert!(!exists_on(&a, &t0_db).await, "the orphan is dropped on a");
    tenancy.catalog().tenants().delete(t0.id).await.unwrap();

    // Fleet migrate over the three servers, side by side.
    let v2 = env.second(schema_v2()).await;
    let behind = v2.fleet().behind(&[]).await.unwrap();
    assert!(behind.len() >= 8, "{}", behind.len());
    let options = FleetOptions {
        concurrency: 2,
        ..Default::default()
    };
    let report = v2.fleet().migrate(&options, |_| {}).await.unwrap();
    assert_eq!(
        (report.succeeded, report.failures.len()),
        (behind.len(), 0),
        "{report:?}"
    );
    assert!(v2.fleet().behind(&[]).await.unwrap().is_empty());
    let on_b = v2.tenant(&TenantRef::parse("on-b").unwrap()).await.unwrap();
    let conn = v2
        .connections()
        .connection(&TenantRef::parse("on-b").unwrap())
        .await
        .unwrap();
    assert!(
        crate::support::tables(&conn).await.contains(&"tags".to_owned()),
        "migrated on b"
    );
    assert_eq!(on_b.database.unwrap().server, "b");
    drop(conn);

    // A create on b stops after its database was made (the process dies
    // there) and b restarts: once the lease expires, reconcile finishes it
    // on b, as on one server.
    v2.provisioner().crash_after(tenantdb::internal::Step::DatabaseCreated);
    let crashed = create(&v2, "dies-midway", Some("b")).await.unwrap_err();
    assert!(matches!(crashed, Error::Interrupted { .. }), "{crashed}");
    b.pg_ctl_stop();
    b.pg_ctl_start();
    tokio::time::sleep(env.config.lease_ttl + std::time::Duration::from_millis(300)).await;
    let report = v2.provisioner().reconcile().await.unwrap();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].outcome, tenantdb::ReconcileOutcome::Finished, "{report:?}");
    let finished = v2.tenant(&TenantRef::parse("dies-midway").unwrap()).await.unwrap();
    let finished = finished.database.unwrap();
    assert_eq!(
        (finished.server.as_str(), finished.status),
        ("b", tenantdb::DbStatus::Active)
    );
    assert!(exists_on(&b, &finished.database_name).await);
    v2.connections()
        .connection(&TenantRef::parse("dies-midway").unwrap())
        .await
        .unwrap();

    // A server drained between placement's read and the insert (by
    // another process, here from inside the ranking) refuses the row: the
    // tenant is placed again, on a server that still takes tenants.
    #[derive(Debug)]
    struct DrainTheFirst(Tenancy, std::sync::Mutex<Option<String>>);
    impl tenantdb::Placement for DrainTheFirst {
        fn rank(&self, _: &NewTenant, candidates: Vec<tenantdb::Candidate>) -> Vec<tenantdb::Candidate> {
            let mut drained = self.1.lock().unwrap();
            if drained.is_none() {
                let first = candidates[0].name.clone();
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(self.0.set_server_accepting(&first, false))
                })
                .unwrap();
                *drained = Some(first);
            }
            candidates
        }
    }
    let drain = std::sync::Arc::new(DrainTheFirst(tenancy.clone(), std::sync::Mutex::new(None)));
    v2.set_placement(drain.clone());
    let landed = create(&v2, "placed-again", None).await.unwrap();
    let drained = drain.1.lock().unwrap().clone().unwrap();
    assert_ne!(landed, drained, "the create landed on the server drained under it");
    assert_ne!(landed, "a");
    tenancy.set_server_accepting(&drained, true).await.unwrap();
    v2.set_placement(std::sync::Arc::new(tenantdb::FewestTenants));

    // The secret is rotated: an instance with only the new secret cannot
    // open b's sealed password, and says which version it needs; one that
    // also has the previous secret can, and doctor seals it again.
    let rotated = |previous: bool| {
        let mut config = env.config.clone();
        config.secret =
            Some(tenantdb::TenantSecret::new(2, "rotated-secret-0123456789abcdef0123456789".into()).unwrap());
        if previous {
            config.previous_secret = env.config.secret.clone();
        }
        config
    };
    let without = Tenancy::connect(rotated(false), schema_v2()).await.unwrap();
    let unusable = without.doctor_on("b").await.unwrap_err();
    assert!(matches!(unusable, Error::ServerUnusable { .. }), "{unusable}");
    assert!(unusable.to_string().contains("version 1"), "{unusable}");
    let with = Tenancy::connect(rotated(true), schema_v2()).await.unwrap();
    let doctor = with.doctor_on("b").await.unwrap();
    let stale: Vec<_> = doctor
        .examine(Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.problem == Problem::StaleSealedPassword)
        .collect();
    assert_eq!(stale.len(), 1, "{stale:#?}");
    let repaired = doctor.repair(&stale).await;
    assert!(repaired[0].outcome.is_ok(), "{repaired:#?}");
    with.close().await;
    without.close().await;
    let now = Tenancy::connect(rotated(false), schema_v2()).await.unwrap();
    now.doctor_on("b").await.expect("b opens with the new secret alone");
    now.close().await;

    // Remove: refused while a holds tenants, then while it holds the
    // template; the server of the settings never.
    let busy = v2.remove_server("a", false).await.unwrap_err();
    assert!(matches!(busy, Error::ServerInUse { .. }), "{busy}");
    let home = v2.remove_server("default", true).await.unwrap_err();
    assert!(matches!(home, Error::ServerInUse { .. }), "{home}");
    for slug in &placed["a"] {
        if slug != "t0" {
            v2.provisioner()
                .delete_tenant_now(&TenantRef::parse(slug).unwrap())
                .await
                .unwrap();
        }
    }
    let template = v2.remove_server("a", false).await.unwrap_err();
    assert!(template.to_string().contains("templates"), "{template}");
    let a_id = v2.server("a").await.unwrap().unwrap().id;
    assert!(v2.remove_server("a", true).await.unwrap().is_some());
    // The other process had a open (pools, membership): it sees the row
    // gone and closes them; its heartbeat no longer records a share there.
    let removed = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if tenancy.catalog().instances().live(a_id).await.unwrap().is_empty() {
            break;
        }
        assert!(
            removed.elapsed() < std::time::Duration::from_secs(5),
            "a is still held by the other process"
        );
    }
    // And stays so for more than two of its beats (a lease of 4 s beats
    // every 0.8 s).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(tenancy.catalog().instances().live(a_id).await.unwrap().is_empty());
    assert!(v2.server("a").await.unwrap().is_none());
    assert!(v2.remove_server("a", true).await.unwrap().is_none());
    let left: Vec<String> = {
        let pool = sqlx::PgPool::connect(&a.url()).await.unwrap();
        let names = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        names
    };
    assert!(left.is_empty(), "a is left empty: {left:?}");

    // One cluster under two names would be two budgets, two templates and
    // two doctors for one server: refused, by whatever URL it is reached.
    let same = format!(
        "postgres://postgres:{SUPERUSER_PASSWORD}@localhost:{}/postgres",
        b.port()
    );
    let twice = v2.add_server(add("b-again", same)).await.unwrap_err();
    assert!(matches!(twice, Error::AlreadyExists(_)), "{twice}");
    assert!(twice.to_string().contains("'b'"), "{twice}");
    v2.close().await;
    env.tenancy.close().await;
}

/// A test process killed before dropping its clusters leaves them running;
/// the next cluster made stops and removes them (and only those whose
/// process is gone).
#[tokio::test]
async fn clusters_of_a_killed_test_process_are_swept() {
    let left = PgCluster::start();
    let alive = PgCluster::start();
    let (left_dir, left_port) = (left.dir().to_owned(), left.port());
    // As if its process had died: a pid that is not running.
    std::fs::write(left_dir.join("owner"), "999999999 1").unwrap();
    let next = PgCluster::start();
    assert!(!left_dir.exists(), "the dead process's cluster is removed");
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", left_port)).await;
    assert!(refused.is_err(), "its server is stopped");
    assert!(alive.dir().exists(), "a live process's cluster stays");
    sqlx::PgPool::connect(&alive.url())
        .await
        .expect("and keeps running")
        .close()
        .await;
    drop((left, next));
}

/// The harness makes a hot standby of a throwaway cluster (what the read
/// replica work builds on): it follows the primary's writes, and with
/// replay paused it falls behind by a measurable lag.
#[tokio::test]
async fn a_standby_of_a_throwaway_cluster_follows_and_can_be_held_back() {
    let primary = PgCluster::start();
    let standby = primary.standby();
    let (writer, reader) = (
        sqlx::PgPool::connect(&primary.url()).await.unwrap(),
        sqlx::PgPool::connect(&standby.url()).await.unwrap(),
    );
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&reader)
        .await
        .unwrap();
    assert!(in_recovery, "the standby replays the primary's log");
    sqlx::raw_sql("CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes VALUES (1)")
        .execute(&writer)
        .await
        .unwrap();
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM notes")
            .fetch_one(&pool)
            .await
            .ok()
    };
    let started = std::time::Instant::now();
    while count(reader.clone()).await != Some(1) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the write never reached the standby"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&reader)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notes VALUES (2)")
        .execute(&writer)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        count(reader.clone()).await,
        Some(1),
        "replay paused: the standby is behind"
    );
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&reader)
        .await
        .unwrap();
    let resumed = std::time::Instant::now();
    while count(reader.clone()).await != Some(2) {
        assert!(
            resumed.elapsed() < std::time::Duration::from_secs(10),
            "replay never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    writer.close().await;
    reader.close().await;
}
