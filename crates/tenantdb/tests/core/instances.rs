//! Many instances over one catalog share each server's budget: each holds
//! its share (the budget divided among the live instances), the shares
//! never add up to more than the budget while instances join and leave,
//! a leaving instance's share returns at once and a dead one's when its
//! lease expires; under load from three instances the server never sees
//! more tenant connections than the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use tenantdb::{Error, NewTenant, Tenancy, TenantRef};
use tenantdb_test_support::{Backend, ConnectionPeak, both_backends};

use crate::support::{TestEnv, schema_v1};

both_backends!(shares_split_the_budget_and_come_back_when_an_instance_leaves_or_dies);

const BUDGET: u32 = 6;

fn quick(config: &mut tenantdb::Config) {
    config.pools.budget = BUDGET;
    config.pools.max_per_tenant = 2;
    config.pools.acquire_timeout = Duration::from_millis(800);
    config.instance_lease = Duration::from_millis(2000);
}

/// The shares recorded in the catalog for the live instances.
async fn recorded(tenancy: &Tenancy) -> Vec<i32> {
    let server = tenancy.provisioner().server_id();
    let rows = tenancy.catalog().instances().live(server).await.unwrap();
    rows.iter().map(|row| row.share).collect()
}

/// Waits until the instances' shares are `want` (in joining order),
/// checking at every look that neither the recorded shares nor what the
/// pools can hold add up to more than the budget.
async fn settle(instances: &[&Tenancy], want: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shares: Vec<u32> = instances.iter().map(|t| t.pools().share()).collect();
        let ceilings: u32 = instances.iter().map(|t| t.pools().ceiling()).sum();
        let on_record: i32 = recorded(instances[0]).await.iter().sum();
        assert!(ceilings <= BUDGET, "the pools could hold {ceilings} > {BUDGET}");
        assert!(on_record <= BUDGET as i32, "the recorded shares add up to {on_record}");
        if shares == want {
            return;
        }
        assert!(Instant::now() < deadline, "shares {shares:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a pool of `acme` in `tenancy` (which joins the instances the
/// first time); `busy` while the others have not given room yet is fine.
async fn touch(tenancy: &Tenancy) {
    match tenancy
        .connections()
        .connection(&TenantRef::parse("acme").unwrap())
        .await
    {
        Ok(_) => {}
        Err(err) if err.is_busy() => {}
        Err(err) => panic!("{err}"),
    }
}

async fn shares_split_the_budget_and_come_back_when_an_instance_leaves_or_dies(backend: Backend) {
    let env = TestEnv::with(backend, schema_v1(), quick).await;
    let a = &env.tenancy;
    a.provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A process that opens no tenant pool never joins: it takes nothing
    // from the others (a `status`, a `tenants list`).
    // Nor does it record its budget as the server's: only a joining
    // instance does.
    let mut other_budget = env.config.clone();
    other_budget.pools.budget = BUDGET + 10;
    let idle = Tenancy::connect(other_budget, schema_v1()).await.unwrap();
    assert_eq!(idle.pools().share(), 0);
    let server = idle
        .catalog()
        .servers()
        .find(idle.provisioner().server_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server.connection_budget, BUDGET as i32,
        "the idle process wrote its budget"
    );
    touch(a).await;
    assert_eq!(a.pools().share(), BUDGET, "alone, an instance has the whole budget");
    assert_eq!(
        recorded(a).await,
        vec![BUDGET as i32],
        "the idle process is not among the instances"
    );
    let b = env.second(schema_v1()).await;
    touch(&b).await;
    settle(&[a, &b], &[3, 3]).await;
    let c = env.second(schema_v1()).await;
    touch(&c).await;
    settle(&[a, &b, &c], &[2, 2, 2]).await;
    assert_eq!(recorded(a).await, vec![2, 2, 2]);

    // A clean shutdown gives the share back at once.
    b.close().await;
    settle(&[a, &c], &[3, 3]).await;

    // A process that dies keeps its share until its lease expires (this
    // one is alive but stopped beating: its rows stay, its pools are gone).
    c.pools().close_all().await;
    let died = Instant::now();
    drop(c);
    settle(&[a], &[BUDGET]).await;
    assert!(
        died.elapsed() >= Duration::from_millis(1000),
        "the share came back before the lease could expire: {:?}",
        died.elapsed()
    );
    idle.close().await;
}

/// Three instances over one catalog and server, under random load over
/// many tenants, one of them leaving half-way and a fourth joining: the
/// server never shows more tenant connections than the budget, and every
/// request is served or told `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_under_load_never_exceed_the_servers_budget() {
    const TENANTS: usize = 24;
    let env = TestEnv::with(Backend::Postgres, schema_v1(), quick).await;
    let mut ids = Vec::new();
    for i in 0..TENANTS {
        let slug = format!("t{i}");
        let row = env
            .tenancy
            .provisioner()
            .create_tenant(NewTenant {
                slug,
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(row.tenant_id);
    }
    let ids = Arc::new(ids);
    let b = env.second(schema_v1()).await;
    let c = env.second(schema_v1()).await;
    for tenancy in [&env.tenancy, &b, &c] {
        touch_any(tenancy, ids[0]).await;
    }

    let sampler = ConnectionPeak::start(env.admin().clone(), env.db_prefix(), Duration::from_millis(3));
    let (served, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = |tenancy: Tenancy, worker: u64, requests: usize| {
        let (ids, served, busy) = (ids.clone(), served.clone(), busy.clone());
        tokio::spawn(async move {
            let mut seed = worker * 7919 + 1;
            for _ in 0..requests {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let tenant = ids[(seed >> 33) as usize % ids.len()];
                let result = async {
                    let conn = tenancy.connections().connection(&TenantRef::Id(tenant.into())).await?;
                    let sql = Statement::from_string(conn.get_database_backend(), "SELECT pg_sleep(0.002)");
                    conn.execute_raw(sql).await.map_err(Error::from)
                }
                .await;
                match result {
                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                    Err(err) if err.is_busy() => busy.fetch_add(1, Ordering::Relaxed),
                    Err(err) => panic!("a request failed with something other than busy: {err}"),
                };
            }
        })
    };
    let mut workers = Vec::new();
    for (n, tenancy) in [&env.tenancy, &c].into_iter().enumerate() {
        for w in 0..6 {
            workers.push(load(tenancy.clone(), (n * 10 + w) as u64, 100));
        }
    }
    let leaving: Vec<_> = (0..6).map(|w| load(b.clone(), 20 + w, 30)).collect();
    // Half-way, one instance leaves and another joins.
    for worker in leaving {
        worker.await.unwrap();
    }
    b.close().await;
    let d = env.second(schema_v1()).await;
    touch_any(&d, ids[0]).await;
    for w in 0..6 {
        workers.push(load(d.clone(), 40 + w, 60));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let peak = sampler.stop().await;
    let (served, busy) = (served.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    eprintln!("served {served}, busy {busy}");
    assert!(
        peak <= BUDGET,
        "the server saw {peak} tenant connections, budget {BUDGET}"
    );
    assert!(served > busy, "served {served}, busy {busy}");
    c.close().await;
    d.close().await;
    idle_close(&env).await;
}

/// Opens a pool of `tenant` in `tenancy` (joining the instances); `busy`
/// while the others have not given room yet is fine.
async fn touch_any(tenancy: &Tenancy, tenant: uuid::Uuid) {
    match tenancy.connections().connection(&TenantRef::Id(tenant.into())).await {
        Ok(_) => {}
        Err(err) if err.is_busy() => {}
        Err(err) => panic!("{err}"),
    }
}

/// After every other instance left, the first one has the whole budget
/// again.
async fn idle_close(env: &TestEnv) {
    settle(&[&env.tenancy], &[BUDGET]).await;
}

/// An instance that cannot reach its catalog fences itself before its
/// lease could expire: its share drops to nothing (so the others may take
/// it back without the sum going over the budget), and it takes a share
/// again once the catalog answers. The catalog lives on a throwaway
/// cluster that is stopped for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_reach_its_catalog_gives_up_its_share_in_time() {
    let cluster = tenantdb_test_support::PgCluster::start();
    let catalog = cluster.create_database("tenantdb_catalog").await;
    // The tenants stay on the shared server: only the catalog goes away.
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| {
        quick(config);
        config.catalog_url = secrecy::SecretString::from(catalog);
    })
    .await;
    let tenancy = &env.tenancy;
    let lease = env.config.instance_lease;
    tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    touch(tenancy).await;
    assert_eq!(tenancy.pools().share(), BUDGET);

    cluster.pg_ctl_stop();
    let stopped = Instant::now();
    while tenancy.pools().ceiling() > 0 {
        assert!(
            stopped.elapsed() < lease,
            "still holding {} connections of its share when its lease could expire",
            tenancy.pools().ceiling()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tenancy.pools().share(), 0);

    cluster.pg_ctl_start();
    let started = Instant::now();
    while tenancy.pools().share() != BUDGET {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no share again after the catalog came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instance that joins while another holds the whole budget is given
/// room long before the other's next regular beat: the joiner tells the
/// others (PostgreSQL catalog: a notification), the other gives back what
/// it does not use at once and says so, and the joiner takes it. A clean
/// leave is told the same way. Beats here are 6 s apart and a request
/// waits at most 1 s: waiting for the next regular beat would be `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_instance_is_given_room_before_the_others_next_beat() {
    let env = TestEnv::with(Backend::Postgres, schema_v1(), |config| {
        quick(config);
        config.pools.acquire_timeout = Duration::from_millis(1000);
        config.instance_lease = Duration::from_secs(30);
    })
    .await;
    let a = &env.tenancy;
    for slug in ["acme", "beta"] {
        a.provisioner()
            .create_tenant(NewTenant {
                slug: slug.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    touch(a).await;
    assert_eq!(a.pools().share(), BUDGET, "alone, an instance has the whole budget");

    let b = env.second(schema_v1()).await;
    let asked = Instant::now();
    let conn = b
        .connections()
        .connection(&TenantRef::parse("beta").unwrap())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "the joining instance got no connection after {:?}: {err}",
                asked.elapsed()
            )
        });
    let waited = asked.elapsed();
    drop(conn);
    eprintln!("the joining instance had a connection after {waited:?}");
    settle(&[a, &b], &[3, 3]).await;

    b.close().await;
    let left = Instant::now();
    settle(&[a], &[BUDGET]).await;
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "the leaver's share came back only after {:?} (the next regular beat)",
        left.elapsed()
    );
}
