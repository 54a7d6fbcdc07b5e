//! Read replicas: a hot standby of a throwaway primary (`pg_basebackup
//! -R`) added as a replica; reads go to it within its lag bound, to the
//! primary while its replay is paused past the bound, and while it is
//! stopped; bad input changes nothing.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use tenantdb::{AddReplica, AddServer, Error, NewTenant, PoolHandle, Tenancy, TenantRef};
use tenantdb_test_support::PgCluster;

use crate::support::{Backend, TestEnv, schema_v1};

fn replica_of(primary: &str, url: String, max_lag_ms: u32) -> AddReplica {
    AddReplica {
        primary: primary.into(),
        name: None,
        admin_url: url.into(),
        budget: 6,
        max_per_tenant: Some(2),
        max_lag_ms: Some(max_lag_ms),
    }
}

/// The port of the server a connection reached and the newest note it sees.
async fn read(conn: &PoolHandle) -> Result<(i32, i64), sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT inet_server_port() AS port, coalesce(max(id), 0)::bigint AS newest FROM marks",
        ))
        .await?
        .expect("one row");
    Ok((row.try_get("", "port")?, row.try_get("", "newest")?))
}

async fn usable(tenancy: &Tenancy, name: &str) -> bool {
    let server = tenancy.server(name).await.unwrap().unwrap();
    server.replica.expect("a replica").usable
}

/// Waits until the replica's state, as this process sees it, is `want`.
async fn until_usable(tenancy: &Tenancy, name: &str, want: bool) {
    let started = Instant::now();
    while usable(tenancy, name).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the replica never became usable={want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_takes_reads_within_its_bound_and_is_left_out_when_behind_or_stopped() {
    let primary = PgCluster::start();
    let standby = primary.standby();
    let env = TestEnv::new(Backend::Postgres, schema_v1()).await;
    let tenancy = &env.tenancy;
    tenancy
        .add_server(AddServer {
            name: "p".into(),
            admin_url: primary.url().into(),
            budget: 6,
            max_per_tenant: Some(2),
        })
        .await
        .unwrap();

    // Bad input changes nothing: a standby is no server, a primary no
    // replica, a replica follows a server it is a standby of, with a sane
    // bound.
    let standby_as_server = tenancy
        .add_server(AddServer {
            name: "s".into(),
            admin_url: standby.url().into(),
            budget: 6,
            max_per_tenant: None,
        })
        .await
        .unwrap_err();
    assert!(standby_as_server.to_string().contains("standby"), "{standby_as_server}");
    let not_a_standby = tenancy
        .add_replica(replica_of("p", primary.url(), 1000))
        .await
        .unwrap_err();
    assert!(matches!(not_a_standby, Error::Invalid { .. }), "{not_a_standby}");
    let unknown = tenancy
        .add_replica(replica_of("zz", standby.url(), 1000))
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::ServerNotFound(_)), "{unknown}");
    let other_cluster = tenancy
        .add_replica(replica_of("default", standby.url(), 1000))
        .await
        .unwrap_err();
    assert!(other_cluster.to_string().contains("another cluster"), "{other_cluster}");
    let tiny = tenancy
        .add_replica(replica_of("p", standby.url(), 10))
        .await
        .unwrap_err();
    assert!(matches!(tiny, Error::Invalid { .. }), "{tiny}");
    assert_eq!(tenancy.servers().await.unwrap().len(), 2, "nothing recorded");

    let max_lag = Duration::from_millis(1000);
    let added = tenancy.add_replica(replica_of("p", standby.url(), 1000)).await.unwrap();
    assert_eq!((added.name.as_str(), added.status.as_str()), ("p-replica", "REPLICA"));
    assert_eq!(added.replica.as_ref().unwrap().follows, "p");
    let again = tenancy
        .add_replica(AddReplica {
            name: Some("p-replica-2".into()),
            ..replica_of("p", standby.url(), 1000)
        })
        .await
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    // A replica takes no tenants, by name or by placement.
    let placed_on_replica = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "on-replica".into(),
            server: Some("p-replica".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(placed_on_replica, Error::Invalid { .. }),
        "{placed_on_replica}"
    );
    assert!(tenancy.set_server_accepting("p-replica", true).await.is_err());

    tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "r1".into(),
            server: Some("p".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = TenantRef::parse("r1").unwrap();
    let write = tenancy.connections().connection(&r1).await.unwrap();
    write
        .execute_unprepared("CREATE TABLE marks (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    until_usable(tenancy, "p-replica", true).await;

    // Within the bound: every write committed more than the bound before a
    // read began is seen by it, wherever it went; most go to the replica.
    let (primary_port, standby_port) = (i32::from(primary.port()), i32::from(standby.port()));
    let mut committed: Vec<(i64, Instant)> = Vec::new();
    let (mut on_replica, mut reads) = (0, 0);
    let started = Instant::now();
    let mut id = 0;
    while started.elapsed() < Duration::from_secs(3) {
        id += 1;
        write
            .execute_unprepared(&format!("INSERT INTO marks VALUES ({id})"))
            .await
            .unwrap();
        committed.push((id, Instant::now()));
        let began = Instant::now();
        let conn = tenancy.connections().read_connection(&r1).await.unwrap();
        let (port, newest) = read(&conn).await.unwrap();
        reads += 1;
        if port == standby_port {
            on_replica += 1;
        } else {
            assert_eq!(port, primary_port);
        }
        let due = committed
            .iter()
            .filter(|(_, at)| began.duration_since(*at) > max_lag)
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0);
        assert!(
            newest >= due,
            "a read missed note {due}, committed over the bound before it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        on_replica * 2 > reads,
        "{on_replica} of {reads} reads went to the replica"
    );

    // Replay paused: writes go on, the replica falls behind its bound and
    // reads go to the primary, which has every write.
    let standby_admin = sqlx::PgPool::connect(&standby.url()).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&standby_admin)
        .await
        .unwrap();
    let paused = Instant::now();
    while usable(tenancy, "p-replica").await {
        id += 1;
        write
            .execute_unprepared(&format!("INSERT INTO marks VALUES ({id})"))
            .await
            .unwrap();
        let conn = tenancy.connections().read_connection(&r1).await.unwrap();
        let (_, newest) = read(&conn).await.unwrap();
        let behind = paused.elapsed();
        assert!(
            behind < max_lag || newest == id,
            "a read {behind:?} after the pause saw {newest} of {id}"
        );
        assert!(behind < Duration::from_secs(10), "never left out while behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let conn = tenancy.connections().read_connection(&r1).await.unwrap();
        assert_eq!(read(&conn).await.unwrap(), (primary_port, id));
    }
    let lag = tenancy
        .server("p-replica")
        .await
        .unwrap()
        .unwrap()
        .replica
        .unwrap()
        .lag_ms;
    assert!(lag.is_some_and(|ms| ms > 0), "{lag:?}");
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby_admin)
        .await
        .unwrap();
    standby_admin.close().await;
    until_usable(tenancy, "p-replica", true).await;
    let conn = tenancy.connections().read_connection(&r1).await.unwrap();
    assert_eq!(read(&conn).await.unwrap(), (standby_port, id));
    drop(conn);

    // Stopped: once its watch sees it gone, reads go to the primary with
    // no error; started again, it takes reads again.
    standby.pg_ctl_stop();
    until_usable(tenancy, "p-replica", false).await;
    for _ in 0..20 {
        let conn = tenancy.connections().read_connection(&r1).await.unwrap();
        assert_eq!(read(&conn).await.unwrap(), (primary_port, id));
    }
    standby.pg_ctl_start();
    until_usable(tenancy, "p-replica", true).await;
    let conn = tenancy.connections().read_connection(&r1).await.unwrap();
    assert_eq!(read(&conn).await.unwrap(), (standby_port, id));
    drop(conn);

    // The primary is not removed while it has a replica; the replica is,
    // and reads go to the primary.
    let busy = tenancy.remove_server("p", true).await.unwrap_err();
    assert!(busy.to_string().contains("p-replica"), "{busy}");
    assert!(tenancy.remove_server("p-replica", false).await.unwrap().is_some());
    let conn = tenancy.connections().read_connection(&r1).await.unwrap();
    assert_eq!(read(&conn).await.unwrap(), (primary_port, id));
    drop((conn, write));
    tenancy.provisioner().delete_tenant_now(&r1).await.unwrap();
    assert!(tenancy.remove_server("p", true).await.unwrap().is_some());
    env.tenancy.close().await;
}
