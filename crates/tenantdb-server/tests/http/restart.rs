//! The PostgreSQL server restarts under load: a throwaway cluster holds the
//! catalog and the tenant databases; while requests run over several
//! tenants it is stopped for five seconds and started again. Clients see
//! only 200 or 503 with `Retry-After` (never a 500), `/readyz` says 503
//! within two seconds of the outage, every tenant answers again within five
//! seconds of the restart without restarting tenantdb, and no answer ever
//! carries another tenant's data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tenantdb::TenantSecret;
use tenantdb::{Config, TenantServerConfig};
use tenantdb_server::http::{Server, ServiceOptions};
use tenantdb_test_support::PgCluster;

const ADMIN: &str = "restart-admin-token-0123456789";
const TENANTS: [&str; 3] = ["red", "green", "blue"];

struct Seen {
    status: StatusCode,
    retry_after: bool,
    wrong_data: Option<String>,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: Option<&str>,
    path: &str,
) -> reqwest::Result<(StatusCode, bool, Value)> {
    let mut request = client.get(format!("{base}{path}")).bearer_auth(token);
    if let Some(tenant) = tenant {
        request = request.header("X-Tenant", tenant);
    }
    let response = request.send().await?;
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, retry_after, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_under_load_gives_only_200_or_503_and_recovers() {
    let cluster = PgCluster::start();
    let catalog = cluster.create_database("tenantdb_catalog").await;
    let mut config = Config::new(
        SecretString::from(catalog),
        TenantServerConfig::parse(&cluster.url()).unwrap(),
    );
    config.secret = Some(TenantSecret::new(1, SecretString::from("restart-test-secret-0123456789abcdef")).unwrap());
    config.catalog_max_connections = 3;
    config.pools.budget = 8;
    config.pools.acquire_timeout = Duration::from_millis(1000);
    config.pools.validate_after_idle = Duration::from_millis(50);
    config.catalog_poll_interval = Duration::from_millis(200);
    let (stop_service, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServiceOptions {
        admin_token: SecretString::from(ADMIN),
        base_domain: None,
        connections: Default::default(),
    };
    let server = Server::build(config, options, "127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let service = tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // A user who owns three tenants, each with one project named after it.
    let post = |path: String, body: Value, token: String, tenant: Option<&'static str>| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let mut request = client.post(format!("{base}{path}")).bearer_auth(token).json(&body);
            if let Some(tenant) = tenant {
                request = request.header("X-Tenant", tenant);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let value: Value = response.json().await.unwrap();
            assert!(status.is_success(), "{path}: {status} {value}");
            value
        }
    };
    let user = post(
        "/v1/users".into(),
        json!({"email": "ops@example.com", "name": "Ops"}),
        ADMIN.into(),
        None,
    )
    .await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let token = post(format!("/v1/users/{user_id}/tokens"), json!({}), ADMIN.into(), None).await;
    let token = token["token"].as_str().unwrap().to_owned();
    for slug in TENANTS {
        post(
            "/v1/tenants".into(),
            json!({"slug": slug, "name": slug, "owner_user_id": user_id}),
            ADMIN.into(),
            None,
        )
        .await;
        post(
            "/v1/projects".into(),
            json!({"name": format!("project of {slug}")}),
            token.clone(),
            Some(slug),
        )
        .await;
    }

    // Load: four tenant-API clients over the three tenants, and one
    // operator reading tenants from the catalog, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let (operator_client, operator_base, operator_stop) = (client.clone(), base.clone(), stop.clone());
    workers.push(tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut i = 0;
        while !operator_stop.load(Ordering::SeqCst) {
            let slug = TENANTS[i % TENANTS.len()];
            i += 1;
            let path = format!("/v1/tenants/{slug}");
            let (status, retry_after, body) = call(&operator_client, &operator_base, ADMIN, None, &path)
                .await
                .expect("the operator API answers within the client's timeout");
            let wrong_data = (status == StatusCode::OK && body["slug"] != slug).then(|| format!("{slug} got {body}"));
            seen.push(Seen {
                status,
                retry_after,
                wrong_data,
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    }));
    for worker in 0..4usize {
        let (client, base, token, stop) = (client.clone(), base.clone(), token.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                let slug = TENANTS[i % TENANTS.len()];
                i += 1;
                let (status, retry_after, body) = call(&client, &base, &token, Some(slug), "/v1/projects")
                    .await
                    .expect("the tenant API answers within the client's timeout");
                let wrong_data = (status == StatusCode::OK)
                    .then(|| {
                        body["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p["name"].as_str())
                            .find(|name| *name != format!("project of {slug}"))
                            .map(|name| format!("{slug} got '{name}'"))
                    })
                    .flatten();
                seen.push(Seen {
                    status,
                    retry_after,
                    wrong_data,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.pg_ctl_stop();
    let outage = Instant::now();
    let (status, _, _) = call(&client, &base, &token, None, "/readyz").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "/readyz during the outage");
    assert!(
        outage.elapsed() < Duration::from_secs(2),
        "/readyz took {:?}",
        outage.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(outage.elapsed())).await;

    cluster.pg_ctl_start();
    let restarted = Instant::now();
    for slug in TENANTS {
        loop {
            let (status, _, _) = call(&client, &base, &token, Some(slug), "/v1/projects").await.unwrap();
            if status == StatusCode::OK {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "{slug} still answers {status} five seconds after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);

    let mut counts = std::collections::BTreeMap::new();
    for worker in workers {
        for seen in worker.await.unwrap() {
            assert!(
                seen.status == StatusCode::OK || seen.status == StatusCode::SERVICE_UNAVAILABLE,
                "only 200 and 503 may be seen, got {}",
                seen.status
            );
            if seen.status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(seen.retry_after, "a 503 carries Retry-After");
            }
            assert!(seen.wrong_data.is_none(), "{:?}", seen.wrong_data);
            *counts.entry(seen.status.as_u16()).or_insert(0) += 1;
        }
    }
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "the outage was seen: {counts:?}"
    );
    assert!(counts.get(&200).copied().unwrap_or(0) > 0, "{counts:?}");
    println!("answers during the restart test: {counts:?}");

    let _ = stop_service.send(());
    service.await.unwrap().unwrap();
}
