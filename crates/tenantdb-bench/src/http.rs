//! http: `GET /v1/projects` through the real tenantdb service (bearer
//! token, membership check, tenant resolution from `X-Tenant`, the tenant's
//! pool, the query, the JSON page) with `X-Tenant` spread over many tenants,
//! against a minimal axum handler that runs the same query on one pool of
//! one tenant database and answers the same JSON. Both listen on loopback;
//! one load generator (a keep-alive HTTP client, 32 workers) drives both,
//! in interleaved rounds; throughput medians, latency percentiles over every
//! request.
//!
//! A third side, for diagnosis only: the same minimal handler over a plain
//! map from `X-Tenant` to each tenant's own one-connection pool, the layout
//! of connections tenantdb has. tenantdb against it is the cost of the
//! service itself; it against the one pool is the cost of spreading the
//! same connections over many databases.
//!
//! Between rounds each side gives its database connections back (tenant
//! pools closed, the baseline's pool closed), so that the shared
//! PostgreSQL server never holds both; every round starts with untimed
//! requests that open them again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use reqwest::Method;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, QuerySelect};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenantdb::engine::{DatabaseSpec, Engine as TenantEngine};
use tenantdb::rfc3339;
use tenantdb::{TenantMigrations, TenantRef};
use tenantdb_server::http::{ConnectionLimits, ServiceOptions};
use tenantdb_server::tenant_schema::{Migrator, projects};
use tokio::sync::oneshot;

use crate::env::{BenchEnv, cpu_seconds, require_free_slots};
use crate::stats::{Outcome, median, percentile, row};
use crate::{Counts, Engine};

const CONCURRENCY: usize = 32;
const ADMIN: &str = "bench-admin-token-0123456789abcdef";
/// Projects in every tenant: each answer is a page of this many.
const PROJECTS: usize = 10;
/// The service's default page size.
const LIMIT: u64 = 50;

/// A server on 127.0.0.1:0 until `stop`.
struct Server {
    base: String,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("a server did not stop")??
    }
}

/// What a baseline queries: one pool, or (the diagnostic line) a plain map
/// from the `X-Tenant` value to that tenant's own one-connection pool,
/// the same layout of connections tenantdb has.
#[derive(Clone)]
enum Baseline {
    One(DatabaseConnection),
    Map(Arc<HashMap<String, DatabaseConnection>>),
}

impl Baseline {
    async fn close(self) -> anyhow::Result<()> {
        match self {
            Self::One(db) => db.close().await?,
            Self::Map(map) => {
                for db in map.values() {
                    db.clone().close().await?;
                }
            }
        }
        Ok(())
    }
}

/// The baseline: the same query and the same JSON, no token, no tenant
/// resolution (the map baseline only looks the header up).
async fn baseline_projects(
    State(baseline): State<Baseline>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<Value>, (StatusCode, String)> {
    let db = match &baseline {
        Baseline::One(db) => db,
        Baseline::Map(map) => headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .and_then(|tenant| map.get(tenant))
            .ok_or((StatusCode::NOT_FOUND, "no such tenant".to_owned()))?,
    };
    let rows = projects::Entity::find()
        .order_by_asc(projects::Column::Id)
        .limit(LIMIT)
        .all(db)
        .await
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    let last = rows.last().map(|p| p.id);
    let items: Vec<Value> = rows
        .iter()
        .map(|p| json!({ "id": p.id, "name": p.name, "created_at": rfc3339(p.created_at) }))
        .collect();
    let next = (items.len() as u64 == LIMIT).then_some(last).flatten();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next })))
}

async fn start_baseline(db: Baseline) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/v1/projects", axum::routing::get(baseline_projects))
        .with_state(db);
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await?;
        Ok(())
    });
    Ok(Server { base, shutdown, task })
}

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: String,
    token: &str,
    tenant: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(tenant) = tenant {
        request = request.header("X-Tenant", tenant);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("calling {url}"))?;
    let status = StatusCode::from_u16(response.status().as_u16())?;
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// `requests` GETs of `base/v1/projects` from `CONCURRENCY` workers, each
/// with a random tenant of `slugs` in `X-Tenant`.
async fn load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    slugs: &Arc<Vec<String>>,
    requests: usize,
    salt: u64,
) -> anyhow::Result<Outcome> {
    let url = Arc::new(format!("{base}/v1/projects"));
    let token = Arc::new(format!("Bearer {token}"));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (client, url, token, slugs) = (client.clone(), url.clone(), token.clone(), slugs.clone());
            let share = requests / CONCURRENCY + usize::from(w < requests % CONCURRENCY);
            tokio::spawn(async move {
                let mut outcome = Outcome {
                    latencies: Vec::with_capacity(share),
                    ..Default::default()
                };
                let mut seed = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
                for _ in 0..share {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let slug = &slugs[(seed >> 33) as usize % slugs.len()];
                    let sent = Instant::now();
                    let result = async {
                        let response = client
                            .get(url.as_str())
                            .header("Authorization", token.as_str())
                            .header("X-Tenant", slug)
                            .send()
                            .await?;
                        let status = response.status().as_u16();
                        let body = response.bytes().await?;
                        anyhow::Ok((status, body))
                    }
                    .await;
                    match result {
                        Ok((200, _)) => {
                            outcome.served += 1;
                            outcome.latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        }
                        Ok((503, body)) if String::from_utf8_lossy(&body).contains("\"busy\"") => outcome.busy += 1,
                        Ok((status, body)) => {
                            outcome.errors += 1;
                            outcome
                                .first_error
                                .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&body)));
                        }
                        Err(err) => {
                            outcome.errors += 1;
                            outcome.first_error.get_or_insert_with(|| format!("{err:#}"));
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    Outcome::gather(workers, started).await
}

/// One side's figures over the rounds.
#[derive(Default)]
struct Side {
    rates: Vec<f64>,
    /// This process's CPU per request, µs.
    cpu: Vec<f64>,
    outcome: Outcome,
}

impl Side {
    /// Untimed requests that open the client's connections, then `requests`
    /// timed ones; records the rate and the CPU they took.
    async fn round(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        token: &str,
        slugs: &Arc<Vec<String>>,
        requests: usize,
        salt: u64,
    ) -> anyhow::Result<()> {
        load(client, base, token, slugs, CONCURRENCY * 2, 0).await?;
        let cpu = cpu_seconds()?;
        let outcome = load(client, base, token, slugs, requests, salt).await?;
        self.cpu.push((cpu_seconds()? - cpu) * 1e6 / requests as f64);
        self.rates.push(outcome.rate());
        self.outcome.add(outcome);
        Ok(())
    }
}

pub async fn run(engine: Engine, quick: bool, counts: Counts) -> anyhow::Result<()> {
    let wanted = if quick { 10 } else { 100 };
    // One connection per tenant keeps every tenant's pool open: on the shared
    // PostgreSQL server that is the budget's worth of tenants.
    let budget = counts.budget.unwrap_or(match engine {
        Engine::Postgres => 20,
        Engine::Sqlite => wanted,
    });
    let tenants = (wanted as usize).min(budget as usize);
    let requests = counts.requests.unwrap_or(if quick { 400 } else { 10_000 });
    let rounds = if quick { 3 } else { 7 };
    if engine == Engine::Postgres {
        // Tenant pools or the baseline's pool (never both), catalog, admin.
        require_free_slots(budget + 4).await?;
    }
    let env = BenchEnv::build(engine, 0, TenantMigrations::of::<Migrator>(), |config| {
        config.pools.budget = budget;
        config.pools.max_per_tenant = 1;
        config.pools.acquire_timeout = tenantdb::config::DEFAULT_ACQUIRE_TIMEOUT;
        // The baseline's pool logs in as the first tenant's role: room for
        // all of its connections.
        config.role_connection_limit = config
            .role_connection_limit
            .max(i32::try_from(budget).unwrap_or(i32::MAX) + 10);
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (shutdown, rx) = oneshot::channel::<()>();
    let options = ServiceOptions {
        admin_token: SecretString::from(ADMIN),
        base_domain: None,
        connections: ConnectionLimits::default(),
    };
    let task = tokio::spawn(tenantdb_server::http::run(
        env.tenancy.clone(),
        options,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    let service = Server { base, shutdown, task };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let result = measure(&env, &client, &service.base, tenants, budget, requests, rounds).await;
    drop(client);
    let stopped = service.stop().await;
    env.close().await;
    result.and(stopped)
}

async fn measure(
    env: &BenchEnv,
    client: &reqwest::Client,
    base: &str,
    tenants: usize,
    budget: u32,
    requests: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One user, OWNER of every tenant, with an API token.
    let (status, user) = call(
        client,
        Method::POST,
        format!("{base}/v1/users"),
        ADMIN,
        None,
        Some(json!({"email": "bench@example.com", "name": "Bench"})),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "creating the user: {status} {user}");
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let (status, token) = call(
        client,
        Method::POST,
        format!("{base}/v1/users/{user_id}/tokens"),
        ADMIN,
        None,
        None,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "creating a token: {status} {token}");
    let token = token["token"].as_str().unwrap_or_default().to_owned();
    let slugs: Vec<String> = (0..tenants).map(|i| format!("h{i}")).collect();
    for batch in slugs.chunks(4) {
        let creates: Vec<_> = batch
            .iter()
            .map(|slug| {
                let (client, base, user_id, token, slug) = (
                    client.clone(),
                    base.to_owned(),
                    user_id.clone(),
                    token.clone(),
                    slug.clone(),
                );
                tokio::spawn(async move {
                    let body = json!({"slug": slug, "name": slug, "owner_user_id": user_id});
                    let url = format!("{base}/v1/tenants");
                    let (status, tenant) = call(&client, Method::POST, url, ADMIN, None, Some(body)).await?;
                    anyhow::ensure!(
                        status == StatusCode::CREATED,
                        "creating tenant {slug}: {status} {tenant}"
                    );
                    for p in 0..PROJECTS {
                        let body = json!({"name": format!("Project {p} of {slug}")});
                        let url = format!("{base}/v1/projects");
                        let (status, project) =
                            call(&client, Method::POST, url, &token, Some(&slug), Some(body)).await?;
                        anyhow::ensure!(status == StatusCode::CREATED, "creating a project: {status} {project}");
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for create in creates {
            create.await??;
        }
    }
    println!(
        "http: GET /v1/projects ({PROJECTS} projects a page), X-Tenant over {tenants} tenants (made in {:.1} s), \
         budget {budget} (one connection per tenant), concurrency {CONCURRENCY}, {rounds} rounds of {requests}, \
         loopback",
        started.elapsed().as_secs_f64()
    );

    // Each tenant's database, to open directly as its role: the first one is
    // the one-pool baseline's.
    let mut every = Vec::new();
    for slug in &slugs {
        let id = env.tenancy.tenant(&TenantRef::parse(slug)?).await?.id;
        let row = env
            .tenancy
            .catalog()
            .tenant_databases()
            .find_by_tenant(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no database row"))?;
        every.push((slug.clone(), env.tenancy.provisioner().tenant_db(&row)));
    }
    // As many connections as tenantdb holds (one per tenant), up to one per worker.
    let baseline_size = u32::try_from(tenants.min(CONCURRENCY))?;
    let slugs = Arc::new(slugs);
    let one = Arc::new(vec![slugs[0].clone()]);
    let (mut ours, mut theirs, mut mapped) = (Side::default(), Side::default(), Side::default());
    // Each round's sides run back to back, so their ratio cancels most of
    // what the shared machine does to both; the median of those ratios is
    // the steadier figure.
    let (mut round_ratios, mut map_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let salt = 0xB5_u64 * (round as u64 + 7);
        for side in if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] } {
            if side == 0 {
                // Untimed: one request per tenant opens its pool.
                for slug in slugs.iter() {
                    load(client, base, &token, &Arc::new(vec![slug.clone()]), 1, 0).await?;
                }
                ours.round(client, base, &token, &slugs, requests, salt).await?;
                close_tenant_pools(env).await;
                continue;
            }
            let baseline = if side == 1 {
                Baseline::One(baseline_pool(env, &every[0].1, baseline_size).await?)
            } else {
                let mut map = HashMap::new();
                for (slug, db) in &every {
                    map.insert(slug.clone(), baseline_pool(env, db, 1).await?);
                }
                Baseline::Map(Arc::new(map))
            };
            let server = start_baseline(baseline.clone()).await?;
            if side == 1 {
                if round == 0 {
                    same_answer(client, base, &server.base, &token, &slugs[0]).await?;
                }
                theirs.round(client, &server.base, &token, &one, requests, salt).await?;
            } else {
                mapped
                    .round(client, &server.base, &token, &slugs, requests, salt)
                    .await?;
            }
            server.stop().await?;
            baseline.close().await?;
        }
        if let (Some(ours), Some(theirs), Some(map)) = (ours.rates.last(), theirs.rates.last(), mapped.rates.last()) {
            round_ratios.push(ours / theirs);
            map_ratios.push(ours / map);
        }
    }
    let our_median = median(&mut ours.rates);
    row(
        &format!("tenantdb, {tenants} tenants"),
        our_median,
        "minimal axum, one pool",
        median(&mut theirs.rates),
        "req/s",
        "goal >= 0.90",
    );
    let (lowest, highest) = round_ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
    println!(
        "  {:<34} median {:.3} of {} rounds (lowest {lowest:.3}, highest {highest:.3})  goal >= 0.90",
        "ratio of each round's pair",
        median(&mut round_ratios),
        round_ratios.len()
    );
    row(
        &format!("tenantdb, {tenants} tenants"),
        our_median,
        "diagnostic: map of 1-conn pools",
        median(&mut mapped.rates),
        "req/s",
        "same connection layout",
    );
    println!(
        "  {:<34} median {:.3} of {} rounds",
        "ratio of each round's pair (map)",
        median(&mut map_ratios),
        map_ratios.len()
    );
    let our_cpu = median(&mut ours.cpu);
    for (name, side) in [("the baseline", &mut theirs), ("the map of pools", &mut mapped)] {
        row(
            "CPU of this process per request",
            our_cpu,
            &format!("the same for {name}"),
            median(&mut side.cpu),
            "us",
            "",
        );
    }
    for (name, outcome) in [
        ("tenantdb", &mut ours.outcome),
        ("baseline", &mut theirs.outcome),
        ("map", &mut mapped.outcome),
    ] {
        println!(
            "  {name:<9} p50 {:>6.2} ms  p99 {:>6.2} ms  served {:>7}  busy {}  errors {}",
            percentile(&mut outcome.latencies, 0.50),
            percentile(&mut outcome.latencies, 0.99),
            outcome.served,
            outcome.busy,
            outcome.errors,
        );
    }
    let errors = ours.outcome.errors + theirs.outcome.errors + mapped.outcome.errors;
    if errors > 0 {
        let first = ours
            .outcome
            .first_error
            .or(theirs.outcome.first_error)
            .or(mapped.outcome.first_error)
            .unwrap_or_default();
        anyhow::bail!("http: {errors} requests failed, first: {first}");
    }
    Ok(())
}

/// A plain pool on the tenant's database as its role, with the tenant
/// pools' options (no ping before every acquire, the same SQLite pragmas).
async fn baseline_pool(env: &BenchEnv, db: &DatabaseSpec, size: u32) -> anyhow::Result<DatabaseConnection> {
    Ok(match env.tenancy.engine() {
        TenantEngine::Postgres(pg) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(size)
                .test_before_acquire(false)
                .connect_with(pg.tenant_options(db))
                .await?;
            sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        }
        TenantEngine::Sqlite(sqlite) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(sqlite.path(db.tenant))
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(size)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        }
    })
}

/// Both servers answer the first tenant's page alike.
async fn same_answer(
    client: &reqwest::Client,
    ours: &str,
    theirs: &str,
    token: &str,
    slug: &str,
) -> anyhow::Result<()> {
    let (status, a) = call(
        client,
        Method::GET,
        format!("{ours}/v1/projects"),
        token,
        Some(slug),
        None,
    )
    .await?;
    let (_, b) = call(
        client,
        Method::GET,
        format!("{theirs}/v1/projects"),
        token,
        Some(slug),
        None,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "tenantdb answered {status}: {a}");
    anyhow::ensure!(
        a == b && a["items"].as_array().map(Vec::len) == Some(PROJECTS),
        "the two servers answer differently:\n{a}\n{b}"
    );
    Ok(())
}

/// Gives the tenant pools' connections back (the next round opens them).
async fn close_tenant_pools(env: &BenchEnv) {
    for (tenant, _) in env.tenancy.pools().open_pools() {
        env.tenancy
            .pools()
            .invalidate_and_wait(tenant, Duration::from_secs(5))
            .await;
    }
}
