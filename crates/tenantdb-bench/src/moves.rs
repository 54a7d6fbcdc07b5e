//! move: one tenant with rows over five tables, under a steady write load
//! (two writers, each a new request: resolve, pool, insert, acknowledged),
//! moved online from one throwaway PostgreSQL server to another, then
//! offline back. For each: the whole move's time, the longest interval in
//! which no write was acknowledged (the writers' view of the pause), the
//! writes refused, and the acknowledged writes missing afterwards (goal 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use secrecy::SecretString;
use tenantdb::config::{Config, TenantServerConfig};
use tenantdb::{AddServer, DatabasePrefix, MoveTenant, NewTenant, Tenancy, TenantMigrations, TenantRef, TenantSecret};
use tenantdb_test_support::{PgCluster, PgScratch};

use crate::env::items;
use crate::stats::row;

const TABLES: usize = 5;
const WRITERS: usize = 2;

/// What the writers saw during one move.
struct Seen {
    /// Acknowledged (table, id).
    acked: Vec<(usize, i64)>,
    refused: usize,
    longest_gap: Duration,
}

async fn write_load(tenancy: Tenancy, tenant: TenantRef, stop: Arc<AtomicBool>, writer: usize) -> Seen {
    let mut seen = Seen {
        acked: Vec::new(),
        refused: 0,
        longest_gap: Duration::ZERO,
    };
    let mut last = Instant::now();
    let mut i = writer;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let table = i % TABLES;
        let written = async {
            let conn = tenancy.connections().connection(&tenant).await?;
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("INSERT INTO t{table} (body, n) VALUES ('written under load', {i}) RETURNING id"),
                ))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no id"))?;
            anyhow::Ok(row.try_get_by_index::<i64>(0)?)
        };
        match written.await {
            Ok(id) => {
                seen.acked.push((table, id));
                seen.longest_gap = seen.longest_gap.max(last.elapsed());
                last = Instant::now();
            }
            Err(_) => {
                seen.refused += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

/// Moves the tenant under the write load: (seconds, what the writers saw).
async fn move_under_load(tenancy: &Tenancy, tenant: &TenantRef, options: MoveTenant) -> anyhow::Result<(f64, Seen)> {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write_load(tenancy.clone(), tenant.clone(), stop.clone(), w * 1_000_000)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tenancy.provisioner().move_tenant(tenant, options).await?;
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen {
        acked: Vec::new(),
        refused: 0,
        longest_gap: Duration::ZERO,
    };
    for writer in writers {
        let one = writer.await?;
        seen.acked.extend(one.acked);
        seen.refused += one.refused;
        seen.longest_gap = seen.longest_gap.max(one.longest_gap);
    }
    Ok((secs, seen))
}

/// Acknowledged writes not in the tenant's database now.
async fn lost(tenancy: &Tenancy, tenant: &TenantRef, acked: &[(usize, i64)]) -> anyhow::Result<usize> {
    let conn = tenancy.connections().connection(tenant).await?;
    let mut missing = 0;
    for table in 0..TABLES {
        let ids: Vec<String> = acked
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| id.to_string())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let found = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                format!("SELECT count(*) FROM t{table} WHERE id IN ({})", ids.join(",")),
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no count"))?
            .try_get_by_index::<i64>(0)?;
        missing += ids.len() - usize::try_from(found)?;
    }
    Ok(missing)
}

pub async fn run(quick: bool, rows: Option<usize>) -> anyhow::Result<()> {
    let rows = rows.unwrap_or(if quick { 10_000 } else { 100_000 });
    let (a, b) = (PgCluster::start(), PgCluster::start());
    let scratch = PgScratch::new();
    let catalog = scratch.create_database("moves").await;
    let mut config = Config::new(SecretString::from(catalog), TenantServerConfig::parse(&a.url())?);
    config.database_prefix = DatabasePrefix::parse(&format!("{}_", scratch.prefix()))?;
    config.secret = Some(TenantSecret::new(
        1,
        SecretString::from("bench-secret-0123456789abcdef0123456789"),
    )?);
    config.catalog_max_connections = 4;
    config.pools.budget = 8;
    let tenancy = Tenancy::connect(config, TenantMigrations::from_fn(|| vec![items()])).await?;
    tenancy
        .add_server(AddServer {
            name: "b".into(),
            admin_url: SecretString::from(b.url()),
            budget: 8,
            max_per_tenant: None,
        })
        .await?;
    let db = tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: "mover".into(),
            server: Some("default".into()),
            ..Default::default()
        })
        .await?;
    let tenant = TenantRef::Id(db.tenant_id.into());
    let conn = tenancy.connections().connection(&tenant).await?;
    for table in 0..TABLES {
        conn.execute_unprepared(&format!(
            "CREATE TABLE t{table} (id bigserial PRIMARY KEY, body text NOT NULL, n bigint NOT NULL); \
             INSERT INTO t{table} (body, n) SELECT md5(g::text), g FROM generate_series(1, {}) g",
            rows / TABLES
        ))
        .await?;
    }
    drop(conn);
    println!(
        "move: one tenant, {rows} rows over {TABLES} tables, {WRITERS} writers (an insert per request), \
         between two throwaway servers on this machine"
    );
    let (online_secs, online) = move_under_load(
        &tenancy,
        &tenant,
        MoveTenant {
            to: Some("b".into()),
            ..Default::default()
        },
    )
    .await?;
    let online_lost = lost(&tenancy, &tenant, &online.acked).await?;
    let (offline_secs, offline) = move_under_load(
        &tenancy,
        &tenant,
        MoveTenant {
            to: Some("default".into()),
            offline: true,
            keep_source: false,
        },
    )
    .await?;
    let offline_lost = lost(&tenancy, &tenant, &offline.acked).await?;
    row(
        "online: longest write pause",
        online.longest_gap.as_secs_f64() * 1000.0,
        "offline: longest write pause",
        offline.longest_gap.as_secs_f64() * 1000.0,
        "ms",
        "(goal: online < 1000 ms)",
    );
    row(
        "online: whole move",
        online_secs,
        "offline: whole move",
        offline_secs,
        "s",
        "",
    );
    println!(
        "  writes acknowledged / refused / lost: online {} / {} / {online_lost}, offline {} / {} / {offline_lost} \
         (goal: 0 lost)",
        online.acked.len(),
        online.refused,
        offline.acked.len(),
        offline.refused
    );
    anyhow::ensure!(online_lost == 0 && offline_lost == 0, "acknowledged writes were lost");
    tenancy.provisioner().delete_tenant_now(&tenant).await?;
    tenancy.close().await;
    Ok(())
}
