//! The tenant connection budget exhausted: `503 busy` with `Retry-After`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tenantdb_test_support::both_backends;

use crate::support::{Backend, Service, code};

both_backends!(a_request_that_finds_the_connection_budget_taken_gets_busy);

/// A write lock on a tenant's database, taken around the service: while it
/// is held, the service's writes to that database wait.
enum Lock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Lock {
    async fn take(backend: Backend, service: &Service, tenant: &Value) -> Self {
        if let Backend::Sqlite = backend {
            let file = service
                .data_dir()
                .join("tenants")
                .join(format!("{}.db", tenant["id"].as_str().unwrap()));
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(file);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            return Self::Sqlite(conn);
        }
        let database = tenant["database"]["database_name"].as_str().unwrap();
        let options = tenantdb_test_support::postgres_options().database(database);
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE projects IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        Self::Postgres(conn)
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

/// Budget one, one connection per tenant: while a request of tenant A holds
/// the only connection (its write waits on a lock the test holds), a
/// request of tenant B waits the acquire timeout and gets `503 busy` with
/// `Retry-After`; once A's request is done, B is served.
async fn a_request_that_finds_the_connection_budget_taken_gets_busy(backend: Backend) {
    let service = std::sync::Arc::new(
        Service::start_with(backend, |config, _| {
            config.pools.budget = 1;
            config.pools.max_per_tenant = 1;
            config.pools.acquire_timeout = Duration::from_millis(200);
        })
        .await,
    );
    let (ada, token) = service.user("ada@example.com").await;
    let a = service.tenant("a", Some(&ada)).await;
    service.tenant("b", Some(&ada)).await;
    let list = |tenant: &'static str| {
        service
            .client
            .get(format!("{}/v1/projects", service.base))
            .bearer_auth(&token)
            .header("X-Tenant", tenant)
            .send()
    };
    // A's pool holds the budget's one connection.
    assert_eq!(list("a").await.unwrap().status(), StatusCode::OK);

    let lock = Lock::take(backend, &service, &a).await;
    let held = {
        let (service, token) = (service.clone(), token.clone());
        tokio::spawn(async move {
            service
                .call(
                    Method::POST,
                    "/v1/projects",
                    Some(&token),
                    Some("a"),
                    Some(json!({"name": "held"})),
                )
                .await
        })
    };
    // Until A's request has its connection, B's may still get one (by
    // closing A's idle pool); A's then takes it back and waits on the lock.
    let mut busy = None;
    for _ in 0..20 {
        let response = list("b").await.unwrap();
        match response.status() {
            StatusCode::OK => tokio::time::sleep(Duration::from_millis(50)).await,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy = Some(response);
                break;
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
        assert!(!held.is_finished(), "A's request did not wait on the lock");
    }
    let busy = busy.expect("B never found the budget taken");
    let retry_after: u32 = busy.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = busy.json().await.unwrap();
    assert_eq!(code(&body), "busy", "{body}");

    lock.release().await;
    let (status, project) = held.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{project}");
    assert_eq!(list("b").await.unwrap().status(), StatusCode::OK);
    std::sync::Arc::into_inner(service).unwrap().stop().await;
}
