//! Moving a tenant between two throwaway servers (with logical decoding):
//! online under a steady write load, losing no acknowledged write and
//! keeping its sequences; offline back; bad requests refused with nothing
//! changed; and a process killed at every step of a move, after which
//! `reconcile` rolls back (before the switch) or finishes (after it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::Iterable;
use sea_orm::{ConnectionTrait, Statement};
use tenantdb::faults::Step;
use tenantdb::{AddServer, DbStatus, Error, MoveTenant, NewTenant, Tenancy, TenantRef};
use tenantdb_test_support::PgCluster;

use crate::support::{Backend, LEASE_EXPIRY_WAIT, TestEnv, schema_v1};

/// Every fault point of a move, in the order a move reaches them.
const MOVE_STEPS: [Step; 7] = [
    Step::MoveClaimed,
    Step::MoveTargetCreated,
    Step::MoveCopying,
    Step::MoveCaughtUp,
    Step::MovePaused,
    Step::MoveSwitched,
    Step::MoveReplicationDropped,
];

#[test]
fn every_fault_point_of_a_move_is_killed_below() {
    let moves: Vec<Step> = Step::iter().filter(|s| format!("{s:?}").starts_with("Move")).collect();
    assert_eq!(moves, MOVE_STEPS);
}

fn server(name: &str, cluster: &PgCluster) -> AddServer {
    AddServer {
        name: name.into(),
        admin_url: cluster.url().into(),
        budget: 8,
        max_per_tenant: Some(3),
    }
}

fn to(server: &str) -> MoveTenant {
    MoveTenant {
        to: Some(server.into()),
        ..Default::default()
    }
}

async fn create_on(tenancy: &Tenancy, slug: &str, server: &str) -> TenantRef {
    tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: slug.into(),
            server: Some(server.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    TenantRef::parse(slug).unwrap()
}

async fn exec(tenancy: &Tenancy, tenant: &TenantRef, sql: &str) {
    let conn = tenancy.connections().connection(tenant).await.unwrap();
    conn.execute_unprepared(sql).await.unwrap();
}

async fn scalar(tenancy: &Tenancy, tenant: &TenantRef, sql: &str) -> i64 {
    let conn = tenancy.connections().connection(tenant).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// What a move may leave behind on a cluster: databases (but `postgres`),
/// replication slots, subscriptions, tenant roles.
async fn leftovers(cluster: &PgCluster) -> Vec<String> {
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT 'database ' || datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' \
         UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots \
         UNION ALL SELECT 'subscription ' || subname FROM pg_subscription \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE '%r\\_%' AND NOT rolsuper \
           AND rolname NOT LIKE 'pg\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    found
}

/// Whether `cluster` holds the tenant's database (and nothing else of a
/// move: no slot, no subscription).
async fn holds(cluster: &PgCluster, database: &str) -> bool {
    leftovers(cluster).await.contains(&format!("database {database}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_online_under_writes_then_offline_back_and_loses_nothing() {
    let (a, b) = (PgCluster::start(), PgCluster::start());
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let tenancy = Arc::new(env.tenancy.clone());
    tenancy.add_server(server("a", &a)).await.unwrap();
    tenancy.add_server(server("b", &b)).await.unwrap();
    let t = create_on(&tenancy, "mover", "a").await;
    exec(
        &tenancy,
        &t,
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, n bigint NOT NULL); \
         INSERT INTO ledger (n) SELECT g FROM generate_series(1, 5000) g",
    )
    .await;
    let database = tenancy.tenant(&t).await.unwrap().database.unwrap().database_name;

    // Bad requests change nothing.
    let unknown = tenancy.provisioner().move_tenant(&t, to("zz")).await.unwrap_err();
    assert!(matches!(unknown, Error::ServerNotFound(_)), "{unknown}");
    let same = tenancy.provisioner().move_tenant(&t, to("a")).await.unwrap_err();
    assert!(matches!(same, Error::Invalid { .. }), "{same}");
    exec(&tenancy, &t, "CREATE TABLE loose (n int)").await;
    let no_key = tenancy.provisioner().move_tenant(&t, to("b")).await.unwrap_err();
    assert!(no_key.to_string().contains("loose"), "{no_key}");
    exec(
        &tenancy,
        &t,
        "DROP TABLE loose; CREATE MATERIALIZED VIEW totals AS SELECT count(*) FROM ledger",
    )
    .await;
    let view = tenancy.provisioner().move_tenant(&t, to("b")).await.unwrap_err();
    assert!(view.to_string().contains("materialized view"), "{view}");
    // A sequence restarted (`is_called` false) keeps where it restarts.
    exec(
        &tenancy,
        &t,
        "DROP MATERIALIZED VIEW totals; CREATE SEQUENCE restarted; ALTER SEQUENCE restarted RESTART WITH 500",
    )
    .await;
    assert_eq!(
        tenancy.tenant(&t).await.unwrap().database.unwrap().status,
        DbStatus::Active
    );
    assert!(!holds(&b, &database).await);

    // A steady writer: every acknowledged id is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (tenancy, t, stop) = (tenancy.clone(), t.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut refused, mut longest, mut last) = (Vec::new(), 0, Duration::ZERO, Instant::now());
            while !stop.load(Ordering::Relaxed) {
                let written = async {
                    let conn = tenancy.connections().connection(&t).await?;
                    let row = conn
                        .query_one_raw(Statement::from_string(
                            conn.get_database_backend(),
                            "INSERT INTO ledger (n) VALUES (-1) RETURNING id",
                        ))
                        .await?
                        .expect("a row");
                    Ok::<i64, Error>(row.try_get_by_index(0)?)
                };
                match written.await {
                    Ok(id) => {
                        acked.push(id);
                        longest = longest.max(last.elapsed());
                        last = Instant::now();
                    }
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, refused, longest)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = tenancy
        .provisioner()
        .move_tenant(
            &t,
            MoveTenant {
                keep_source: true,
                ..to("b")
            },
        )
        .await
        .unwrap();
    assert_eq!((moved.server.as_str(), moved.status), ("b", DbStatus::Active));
    assert!(moved.moving.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, refused, longest) = writer.await.unwrap();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    assert!(longest < Duration::from_secs(3), "writes waited {longest:?}");
    eprintln!(
        "online move: {} writes acknowledged, {refused} refused, longest wait {longest:?}",
        acked.len()
    );

    // Every acknowledged write is on b (so none was acknowledged by a
    // after the pause), and the sequence went on past them on b.
    let ids: Vec<i64> = {
        let conn = tenancy.connections().connection(&t).await.unwrap();
        conn.query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id FROM ledger WHERE n = -1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index(0).unwrap())
        .collect()
    };
    let missing: Vec<_> = acked.iter().filter(|id| !ids.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    assert_eq!(
        scalar(&tenancy, &t, "SELECT count(*) FROM ledger WHERE n > 0").await,
        5000
    );
    assert_eq!(scalar(&tenancy, &t, "SELECT nextval('restarted')").await, 500);
    assert_eq!(
        scalar(&tenancy, &t, "SELECT inet_server_port()::bigint").await,
        i64::from(b.port()),
        "served from b"
    );
    // The copy kept on a holds the same rows as b up to the switch (a
    // checksum per table), then doctor drops it.
    let checksum = |url: String, upto: i64| async move {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let sum: (i64, Option<String>) =
            sqlx::query_as("SELECT count(*), md5(string_agg(l::text, ',' ORDER BY id)) FROM ledger l WHERE id <= $1")
                .bind(upto)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        sum
    };
    let upto: i64 = {
        let pool = sqlx::PgPool::connect(&a.url_for(&database)).await.unwrap();
        let max = sqlx::query_scalar("SELECT max(id) FROM ledger")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        max
    };
    let (kept, moved) = (
        checksum(a.url_for(&database), upto).await,
        checksum(b.url_for(&database), upto).await,
    );
    assert_eq!(kept, moved, "the kept copy and the moved one differ up to id {upto}");
    let doctor = tenancy.doctor_on("a").await.unwrap();
    let findings = doctor.examine(Default::default()).await.unwrap();
    let kept_copy: Vec<_> = findings
        .iter()
        .filter(|f| f.problem == tenantdb::Problem::MovedSource)
        .map(|f| f.subject.clone())
        .collect();
    assert_eq!(kept_copy, std::slice::from_ref(&database), "{findings:#?}");
    doctor.repair(&findings).await;
    assert!(!holds(&a, &database).await, "doctor --fix drops the kept copy");
    // a holds nothing of the tenant any more; b no replication object.
    assert!(
        leftovers(&a)
            .await
            .iter()
            .all(|l| l.starts_with("database tenantdb_template")),
        "{:?}",
        leftovers(&a).await
    );
    assert_eq!(
        leftovers(&b)
            .await
            .iter()
            .filter(|l| !l.starts_with("database") && !l.starts_with("role"))
            .count(),
        0
    );

    // Offline back to a: everything comes along.
    let back = tenancy
        .provisioner()
        .move_tenant(
            &t,
            MoveTenant {
                to: Some("a".into()),
                offline: true,
                keep_source: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(back.server, "a");
    let total = ids.len() as i64 + 5000;
    assert_eq!(scalar(&tenancy, &t, "SELECT count(*) FROM ledger").await, total);
    exec(&tenancy, &t, "INSERT INTO ledger (n) VALUES (0)").await;
    assert!(!holds(&b, &database).await, "{:?}", leftovers(&b).await);
    tenancy.provisioner().delete_tenant_now(&t).await.unwrap();
    env.tenancy.close().await;
}

/// A process killed at each step of a move (the hook stops the move there
/// as if it died; its lease then expires): `reconcile` rolls the move back
/// before the switch (the tenant on a, its rows there, nothing of it on
/// b) and finishes it after (on b, nothing left on a).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_at_any_step_is_rolled_back_or_finished() {
    let (a, b) = (PgCluster::start(), PgCluster::start());
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let tenancy = &env.tenancy;
    tenancy.add_server(server("a", &a)).await.unwrap();
    tenancy.add_server(server("b", &b)).await.unwrap();
    for (i, step) in MOVE_STEPS.iter().enumerate() {
        let slug = format!("k{i}");
        let t = create_on(tenancy, &slug, "a").await;
        exec(
            tenancy,
            &t,
            "CREATE TABLE ledger (id bigserial PRIMARY KEY, n bigint); \
             INSERT INTO ledger (n) SELECT g FROM generate_series(1, 100) g",
        )
        .await;
        let database = tenancy.tenant(&t).await.unwrap().database.unwrap().database_name;
        tenancy.provisioner().crash_after(*step);
        let died = tenancy.provisioner().move_tenant(&t, to("b")).await.unwrap_err();
        assert!(matches!(died, Error::Interrupted { .. }), "{step:?}: {died}");
        tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
        let report = tenancy.provisioner().reconcile().await.unwrap();
        assert!(
            report.iter().any(|r| r.outcome == tenantdb::ReconcileOutcome::Finished),
            "{step:?}: {report:?}"
        );
        let found = tenancy.tenant(&t).await.unwrap().database.unwrap();
        let switched = matches!(step, Step::MoveSwitched | Step::MoveReplicationDropped);
        let (home, away) = if switched { (&b, &a) } else { (&a, &b) };
        assert_eq!(
            (found.server.as_str(), found.status),
            (if switched { "b" } else { "a" }, DbStatus::Active),
            "{step:?}"
        );
        assert!(found.moving.is_none(), "{step:?}");
        assert_eq!(
            scalar(tenancy, &t, "SELECT count(*) FROM ledger").await,
            100,
            "{step:?}"
        );
        exec(tenancy, &t, "INSERT INTO ledger (n) VALUES (0)").await;
        assert!(holds(home, &database).await, "{step:?}");
        assert!(!holds(away, &database).await, "{step:?}: {:?}", leftovers(away).await);
        let replication: Vec<_> = [leftovers(&a).await, leftovers(&b).await]
            .concat()
            .into_iter()
            .filter(|l| l.starts_with("slot") || l.starts_with("subscription"))
            .collect();
        assert!(replication.is_empty(), "{step:?}: {replication:?}");
        tenancy.provisioner().delete_tenant_now(&t).await.unwrap();
    }

    // Killed while paused, and the target stopped before anyone rolls back:
    // the tenant is let in and served on a again all the same, and its row
    // says what was left on b.
    let t = create_on(tenancy, "stranded", "a").await;
    exec(tenancy, &t, "CREATE TABLE ledger (id bigserial PRIMARY KEY, n bigint)").await;
    tenancy.provisioner().crash_after(Step::MovePaused);
    tenancy.provisioner().move_tenant(&t, to("b")).await.unwrap_err();
    b.pg_ctl_stop();
    tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
    tenancy.provisioner().reconcile().await.unwrap();
    let found = tenancy.tenant(&t).await.unwrap().database.unwrap();
    assert_eq!((found.server.as_str(), found.status), ("a", DbStatus::Active));
    assert!(
        found.error_message.as_deref().unwrap_or_default().contains("left"),
        "{found:?}"
    );
    exec(tenancy, &t, "INSERT INTO ledger (n) VALUES (1)").await;
    let on_a = leftovers(&a).await;
    assert!(!on_a.iter().any(|l| l.starts_with("slot")), "{on_a:?}");
    b.pg_ctl_start();
    tenancy.provisioner().delete_tenant_now(&t).await.unwrap();
    env.tenancy.close().await;
}
