//! Routing: resolution, status checks, pools under a budget, invalidation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, TenantRef, TenantStatus};

use crate::support::{Backend, TestEnv, schema_broken, schema_v1};
use tenantdb_test_support::{ConnectionPeak, both_backends};

both_backends!(
    a_thousand_first_requests_make_one_pool,
    tenants_that_may_not_be_served_are_refused_before_any_pool,
    a_change_made_by_another_process_is_seen_within_a_second,
    the_budget_holds_under_random_load_over_200_tenants,
    renaming_under_traffic_never_serves_another_tenant,
    deleting_under_traffic_ends_in_clean_errors,
    a_handed_out_pool_is_never_evicted_under_it,
);

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

fn slug(s: &str) -> TenantRef {
    TenantRef::parse(s).unwrap()
}

async fn one(conn: &DatabaseConnection, sql: &str) -> Result<i32, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?
        .expect("one row");
    row.try_get_by_index::<i32>(0)
}

async fn note(conn: &DatabaseConnection) -> Result<String, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT body FROM notes WHERE id = 1",
        ))
        .await?
        .expect("a note");
    row.try_get_by_index::<String>(0)
}

/// Tenant connections this env's tenants have open on the server, as
/// `pg_stat_activity` sees them.
async fn server_connections(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantdb-tenant' \
         AND starts_with(datname, $1)",
    )
    .bind(env.db_prefix())
    .fetch_one(env.admin())
    .await
    .unwrap()
}

async fn a_thousand_first_requests_make_one_pool(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    env.tenancy.provisioner().create_tenant(new("acme")).await.unwrap();
    let connections = env.tenancy.connections().clone();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let connections = connections.clone();
            tokio::spawn(async move {
                let conn = connections.connection(&slug("acme")).await?;
                one(&conn, "SELECT 1").await.map_err(Error::from)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    let stats = env.tenancy.pools().stats();
    assert_eq!(stats.pools_created, 1, "one pool for one tenant");
    assert_eq!(stats.pools, 1);
    let max = env.config.pools.max_per_tenant;
    assert!(stats.connections <= max, "{stats:?}");
    if backend == Backend::Postgres {
        assert!(server_connections(&env).await <= i64::from(max));
    }
}

async fn tenants_that_may_not_be_served_are_refused_before_any_pool(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    provisioner.create_tenant(new("paused")).await.unwrap();
    let broken = env.second(schema_broken()).await;
    assert!(broken.provisioner().create_tenant(new("failed")).await.is_err());
    broken.close().await;
    env.tenancy
        .set_tenant_status(&slug("paused"), TenantStatus::Suspended)
        .await
        .unwrap();
    let connections = env.tenancy.connections();

    let err = connections.connection(&slug("paused")).await.unwrap_err();
    assert!(matches!(err, Error::TenantSuspended(_)), "{err}");
    let err = connections.connection(&slug("failed")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TenantUnavailable {
                status: DbStatus::Failed,
                ..
            }
        ),
        "{err}"
    );
    let err = connections.read_connection(&slug("nobody")).await.unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
    assert!(!connections.is_active(&slug("paused")).await.unwrap());
    assert!(!connections.is_active(&slug("failed")).await.unwrap());
    assert!(!connections.is_active(&slug("nobody")).await.unwrap());
    assert_eq!(env.tenancy.pools().stats().pools_created, 0, "no pool was touched");

    // Resumed through the library: this process sees it at once.
    env.tenancy
        .set_tenant_status(&slug("paused"), TenantStatus::Active)
        .await
        .unwrap();
    assert!(connections.is_active(&slug("paused")).await.unwrap());
    let conn = connections.connection(&slug("paused")).await.unwrap();
    assert_eq!(one(&conn, "SELECT 1").await.unwrap(), 1);
}

async fn a_change_made_by_another_process_is_seen_within_a_second(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    env.tenancy.provisioner().create_tenant(new("acme")).await.unwrap();
    let connections = env.tenancy.connections();
    assert!(connections.is_active(&slug("acme")).await.unwrap(), "cached as active");

    let other = env.second(schema_v1()).await;
    other
        .set_tenant_status(&slug("acme"), TenantStatus::Suspended)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while connections.is_active(&slug("acme")).await.unwrap() {
        assert!(started.elapsed() < Duration::from_secs(1), "not seen within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.close().await;
}

/// On a PostgreSQL catalog a change is notified: with a poll interval of
/// a minute, another process still sees it at once (the notification
/// fast path), and the same change with the listener's process polling
/// only would have taken up to the interval. Prints the delay it measured.
#[tokio::test]
async fn a_notified_change_is_seen_long_before_the_next_poll() {
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| {
        config.catalog_poll_interval = Duration::from_secs(60);
    })
    .await;
    env.tenancy.provisioner().create_tenant(new("acme")).await.unwrap();
    let connections = env.tenancy.connections();
    let other = env.second(schema_v1()).await;
    let mut delays = Vec::new();
    for status in [TenantStatus::Suspended, TenantStatus::Active, TenantStatus::Suspended] {
        // Cached before the change, as a request would have it.
        let before = connections.is_active(&slug("acme")).await.unwrap();
        assert_eq!(before, status != TenantStatus::Active, "the state before the change");
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.set_tenant_status(&slug("acme"), status).await.unwrap();
        let started = std::time::Instant::now();
        while connections.is_active(&slug("acme")).await.unwrap() != (status == TenantStatus::Active) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "not seen within 5 s of a 60 s poll interval: the notification did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!("a notified change was seen after {delays:.1?} ms (poll interval 60 s)");
    other.close().await;
}

async fn the_budget_holds_under_random_load_over_200_tenants(backend: Backend) {
    const TENANTS: usize = 200;
    const BUDGET: u32 = 20;
    const WORKERS: usize = 32;
    const REQUESTS_PER_WORKER: usize = 60;
    let env = TestEnv::with(backend, schema_v1(), |config| {
        config.pools.budget = BUDGET;
        config.pools.max_per_tenant = 2;
    })
    .await;
    let mut slugs = Vec::new();
    for batch in (0..TENANTS).collect::<Vec<_>>().chunks(4) {
        let creates: Vec<_> = batch
            .iter()
            .map(|i| {
                let provisioner = env.tenancy.provisioner().clone();
                let slug = format!("t{i}");
                tokio::spawn(async move { provisioner.create_tenant(new(&slug)).await })
            })
            .collect();
        for created in creates {
            slugs.push(created.await.unwrap().unwrap().tenant_id);
        }
    }
    let slugs = Arc::new(slugs);

    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // What the pools hold, sampled on the client side too: strictly within
    // the budget at every moment.
    let client_peak = Arc::new(AtomicU32::new(0));
    let client_sampler = {
        let (client_peak, sampling, pools) = (client_peak.clone(), sampling.clone(), env.tenancy.pools().clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                client_peak.fetch_max(pools.stats().connections, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Sample what the server sees while the load runs.
    let sampler = (backend == Backend::Postgres)
        .then(|| ConnectionPeak::start(env.admin().clone(), env.db_prefix(), Duration::from_millis(10)));
    let (served, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (connections, slugs) = (env.tenancy.connections().clone(), slugs.clone());
            let (served, busy) = (served.clone(), busy.clone());
            tokio::spawn(async move {
                let mut seed = w as u64 * 7919 + 1;
                for _ in 0..REQUESTS_PER_WORKER {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let tenant = slugs[(seed >> 33) as usize % slugs.len()];
                    let result = async {
                        let conn = connections.connection(&TenantRef::Id(tenant.into())).await?;
                        one(&conn, "SELECT 1").await.map_err(Error::from)
                    }
                    .await;
                    match result {
                        Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                        Err(err) if err.is_busy() => busy.fetch_add(1, Ordering::Relaxed),
                        Err(err) => panic!("a request failed with something other than busy: {err}"),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = match sampler {
        Some(sampler) => sampler.stop().await,
        None => 0,
    };
    let (served, busy) = (served.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    let total = WORKERS * REQUESTS_PER_WORKER;
    assert_eq!(served + busy, total);
    assert!(served * 100 >= total * 95, "served {served} of {total} ({busy} busy)");
    let stats = env.tenancy.pools().stats();
    assert!(stats.connections <= BUDGET, "{stats:?}");
    assert!(
        stats.pools_created > u64::from(BUDGET / 2),
        "pools were evicted and made again: {stats:?}"
    );
    client_sampler.await.unwrap();
    let client_peak = client_peak.load(Ordering::Relaxed);
    assert!(
        client_peak <= BUDGET,
        "the pools held {client_peak} connections, budget {BUDGET}"
    );
    // The server's view lags: a backend takes a moment to exit after its
    // client closed the connection (an evicted pool's permits come back once
    // its connections are closed on our side). Allow that lag, no more.
    assert!(
        peak <= BUDGET + 2,
        "the server saw {peak} tenant connections, budget {BUDGET}"
    );
    eprintln!("budget test: served {served}, busy {busy}, server peak {peak}, pool peak {client_peak}, {stats:?}");
}

/// Reads the note of `tenant` in a loop until told to stop; every answer is
/// the tenant's own note or a clean error.
fn reader(
    env: &TestEnv,
    tenant: &'static str,
    expected: &'static str,
) -> (
    tokio::task::JoinHandle<(usize, usize)>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connections = env.tenancy.connections().clone();
    let flag = stop.clone();
    let handle = tokio::spawn(async move {
        let (mut ok, mut refused) = (0, 0);
        while !flag.load(Ordering::Relaxed) {
            let read = async {
                let conn = connections.connection(&slug(tenant)).await?;
                note(&conn).await.map_err(Error::from)
            }
            .await;
            match read {
                Ok(body) => {
                    assert_eq!(body, expected, "served another tenant's data");
                    ok += 1;
                }
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (ok, refused)
    });
    (handle, stop)
}

async fn write_note(env: &TestEnv, tenant: &str, body: &str) {
    let conn = env.tenancy.connections().connection(&slug(tenant)).await.unwrap();
    conn.execute_unprepared(&format!("INSERT INTO notes (id, body) VALUES (1, '{body}')"))
        .await
        .unwrap();
}

async fn renaming_under_traffic_never_serves_another_tenant(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let provisioner = env.tenancy.provisioner();
    provisioner.create_tenant(new("a")).await.unwrap();
    provisioner.create_tenant(new("b")).await.unwrap();
    write_note(&env, "a", "note of a").await;
    write_note(&env, "b", "note of b").await;

    let (reading_a, stop_a) = reader(&env, "a", "note of a");
    let (reading_b, stop_b) = reader(&env, "b", "note of b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Swap-like renames: b's old name is taken by a once b has moved.
    let b_old = env
        .row(env.tenancy.tenant(&slug("b")).await.unwrap().id)
        .await
        .unwrap()
        .database_name;
    let b_new = format!("{}b_moved", env.db_prefix());
    provisioner.rename_tenant_database(&slug("b"), &b_new).await.unwrap();
    provisioner.rename_tenant_database(&slug("a"), &b_old).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    let (a_ok, _) = reading_a.await.unwrap();
    let (b_ok, _) = reading_b.await.unwrap();
    assert!(a_ok > 0 && b_ok > 0);
    // After the renames both read their own data.
    let a = env.tenancy.connections().connection(&slug("a")).await.unwrap();
    assert_eq!(note(&a).await.unwrap(), "note of a");
    let b = env.tenancy.connections().connection(&slug("b")).await.unwrap();
    assert_eq!(note(&b).await.unwrap(), "note of b");
}

async fn deleting_under_traffic_ends_in_clean_errors(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    env.tenancy.provisioner().create_tenant(new("doomed")).await.unwrap();
    write_note(&env, "doomed", "last words").await;
    let (reading, stop) = reader(&env, "doomed", "last words");
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.tenancy
        .provisioner()
        .delete_tenant_now(&slug("doomed"))
        .await
        .unwrap();
    let err = env.tenancy.connections().connection(&slug("doomed")).await.unwrap_err();
    assert!(matches!(err, Error::TenantNotFound(_)), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, refused) = reading.await.unwrap();
    assert!(ok > 0 && refused > 0, "read {ok}, refused {refused}");
    assert_eq!(env.tenancy.pools().stats().pools, 0, "the pool was closed");
}

/// A caller handed a pool but slow to use it (a saturated machine) must
/// find it open: eviction waits for the handle, however long it is held.
async fn a_handed_out_pool_is_never_evicted_under_it(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), |config| {
        config.pools.budget = 1;
        config.pools.max_per_tenant = 1;
        config.pools.acquire_timeout = Duration::from_millis(300);
    })
    .await;
    for tenant in ["held", "other"] {
        env.tenancy.provisioner().create_tenant(new(tenant)).await.unwrap();
        write_note(&env, tenant, &format!("note of {tenant}")).await;
    }
    let connections = env.tenancy.connections();
    let held = connections.connection(&slug("held")).await.unwrap();
    // Every connection of `held` is idle and it was last used long ago; only
    // the handle keeps it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = connections.connection(&slug("other")).await.unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert_eq!(note(&held).await.unwrap(), "note of held", "the held pool still serves");
    // A copy counts as well.
    let copy = held.clone();
    drop(held);
    let err = connections.connection(&slug("other")).await.unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    drop(copy);
    // With the handle gone the pool is evicted for the next tenant.
    let other = connections.connection(&slug("other")).await.unwrap();
    assert_eq!(note(&other).await.unwrap(), "note of other");
    assert_eq!(env.tenancy.pools().stats().pools, 1);

    // A handle is a SeaORM connection, transactions included: a rolled
    // back write is gone, a committed one stays.
    use sea_orm::TransactionTrait;
    let txn = other.begin().await.unwrap();
    txn.execute_unprepared("UPDATE notes SET body = 'rolled back' WHERE id = 1")
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(note(&other).await.unwrap(), "note of other");
    other
        .transaction::<_, (), sea_orm::DbErr>(|txn| {
            Box::pin(async move {
                txn.execute_unprepared("UPDATE notes SET body = 'committed' WHERE id = 1")
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    assert_eq!(note(&other).await.unwrap(), "committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_killed_is_replaced_and_the_next_query_succeeds() {
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| {
        config.pools.validate_after_idle = Duration::from_millis(50);
    })
    .await;
    let row = env.tenancy.provisioner().create_tenant(new("acme")).await.unwrap();
    let conn = env.tenancy.connections().connection(&slug("acme")).await.unwrap();
    assert_eq!(one(&conn, "SELECT 1").await.unwrap(), 1);
    let killed: i64 =
        sqlx::query_scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1")
            .bind(&row.database_name)
            .fetch_one(env.admin())
            .await
            .unwrap();
    assert!(killed >= 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = env.tenancy.connections().connection(&slug("acme")).await.unwrap();
    assert_eq!(
        one(&conn, "SELECT 2").await.unwrap(),
        2,
        "the dead connection was replaced"
    );
    assert_eq!(
        env.tenancy.pools().stats().pools_created,
        1,
        "same pool, new connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_the_server_cannot_hold_is_refused_at_start() {
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let mut config = env.config.clone();
    config.pools.budget = 100_000;
    let err = tenantdb::Tenancy::connect(config, schema_v1()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("does not fit") && message.contains("TENANTDB_POOL_BUDGET"),
        "{message}"
    );
}
