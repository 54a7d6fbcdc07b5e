//! `POST /v1/servers` and `DELETE /v1/servers/{server}`: a second tenant
//! server (a throwaway cluster) added over HTTP, a tenant placed on it and
//! served from it, then the server removed once it is empty. Bad input is a
//! clear 4xx that records nothing, and no answer ever shows the password.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantdb_test_support::{PgCluster, SUPERUSER_PASSWORD};

use crate::support::{Backend, Service, code};

#[tokio::test]
async fn a_server_is_added_used_and_removed_over_http() {
    let cluster = PgCluster::start();
    let service = Service::start(Backend::Postgres).await;
    let add = |body| service.admin(Method::POST, "/v1/servers", Some(body));

    let wrong_password = cluster.url().replace(SUPERUSER_PASSWORD, "not-the-password");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (body, status, error) in [
        (json!({"name": "eu"}), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            json!({"name": "Eu 1", "admin_url": cluster.url(), "budget": 4}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "eu", "admin_url": "mysql://x@y/z", "budget": 4}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "eu", "admin_url": wrong_password, "budget": 4}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "eu", "admin_url": cluster.url(), "budget": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "eu", "admin_url": format!("postgres://postgres:pw@127.0.0.1:{closed_port}/postgres"), "budget": 4}),
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_unavailable",
        ),
    ] {
        let (got, answer) = add(body.clone()).await;
        assert_eq!((got, code(&answer)), (status, error), "{body}: {answer}");
        assert!(!answer.to_string().contains("not-the-password"), "{answer}");
    }
    let (_, servers) = service.admin(Method::GET, "/v1/servers", None).await;
    assert_eq!(
        servers["items"].as_array().unwrap().len(),
        1,
        "nothing recorded: {servers}"
    );

    let (status, eu) = add(json!({"name": "eu", "admin_url": cluster.url(), "budget": 4})).await;
    assert_eq!(status, StatusCode::CREATED, "{eu}");
    assert_eq!(
        (eu["name"].as_str(), eu["status"].as_str(), eu["budget"].as_u64()),
        (Some("eu"), Some("ACCEPTING"), Some(4))
    );
    assert!(!eu.to_string().contains(SUPERUSER_PASSWORD), "{eu}");
    let (status, again) = add(json!({"name": "eu", "admin_url": cluster.url(), "budget": 4})).await;
    assert_eq!((status, code(&again)), (StatusCode::CONFLICT, "conflict"), "{again}");

    // A tenant placed on it by name, served from it as its own role.
    let (ada, token) = service.user("ada@servers.test").await;
    let (status, unknown) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "lost", "name": "Lost", "server": "nope"})),
        )
        .await;
    assert_eq!(
        (status, code(&unknown)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{unknown}"
    );
    let (status, tenant) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "euro", "name": "Euro", "owner_user_id": ada, "server": "eu"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    assert_eq!(tenant["database"]["server"], "eu", "{tenant}");
    let (status, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("euro"),
            Some(json!({"name": "Abroad"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let on_cluster = {
        let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
        let name = tenant["database"]["database_name"].as_str().unwrap().to_owned();
        let found: Option<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&pool)
            .await
            .unwrap();
        pool.close().await;
        found
    };
    assert!(on_cluster.is_some(), "the database is on the added server");

    // Removing: refused while it holds the tenant, then its template;
    // never the server of the settings.
    for (path, why) in [
        ("/v1/servers/eu", "tenant databases"),
        ("/v1/servers/default?drop_templates=true", "settings"),
    ] {
        let (status, refused) = service.admin(Method::DELETE, path, None).await;
        assert_eq!(
            (status, code(&refused)),
            (StatusCode::CONFLICT, "conflict"),
            "{refused}"
        );
        assert!(refused.to_string().contains(why), "{refused}");
    }
    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/euro?now=true", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, refused) = service.admin(Method::DELETE, "/v1/servers/eu", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("templates"), "{refused}");
    let (status, _) = service
        .admin(Method::DELETE, "/v1/servers/eu?drop_templates=true", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = service.admin(method, "/v1/servers/eu", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    service.stop().await;
}

/// `POST /v1/servers/{server}/replicas`: a standby of an added server is
/// recorded as its read replica; a primary, another cluster, an unknown
/// server or a tiny bound are refused and record nothing; the server is
/// not removed while it has the replica.
#[tokio::test]
async fn a_read_replica_is_added_shown_and_removed_over_http() {
    let cluster = PgCluster::start();
    let standby = cluster.standby();
    let service = Service::start(Backend::Postgres).await;
    let (status, eu) = service
        .admin(
            Method::POST,
            "/v1/servers",
            Some(json!({"name": "eu", "admin_url": cluster.url(), "budget": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{eu}");
    let replica = |server: &str, body| {
        let path = format!("/v1/servers/{server}/replicas");
        let service = &service;
        async move { service.admin(Method::POST, &path, Some(body)).await }
    };
    for (server, body, status, error) in [
        (
            "eu",
            json!({"admin_url": cluster.url(), "budget": 4}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "default",
            json!({"admin_url": standby.url(), "budget": 4}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "eu",
            json!({"admin_url": standby.url(), "budget": 4, "max_lag_ms": 5}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "nope",
            json!({"admin_url": standby.url(), "budget": 4}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (got, answer) = replica(server, body.clone()).await;
        assert_eq!((got, code(&answer)), (status, error), "{server} {body}: {answer}");
    }
    let (_, servers) = service.admin(Method::GET, "/v1/servers", None).await;
    assert_eq!(servers["items"].as_array().unwrap().len(), 2, "{servers}");

    let (status, added) = replica(
        "eu",
        json!({"admin_url": standby.url(), "budget": 4, "max_lag_ms": 2000}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        (
            added["name"].as_str(),
            added["status"].as_str(),
            added["replica"]["follows"].as_str()
        ),
        (Some("eu-replica"), Some("REPLICA"), Some("eu")),
        "{added}"
    );
    assert_eq!(added["replica"]["max_lag_ms"], 2000);
    assert!(!added.to_string().contains(SUPERUSER_PASSWORD), "{added}");
    let (status, refused) = service
        .admin(Method::DELETE, "/v1/servers/eu?drop_templates=true", None)
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "conflict"),
        "{refused}"
    );
    assert!(refused.to_string().contains("eu-replica"), "{refused}");
    let (status, _) = service.admin(Method::DELETE, "/v1/servers/eu-replica", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .admin(Method::DELETE, "/v1/servers/eu?drop_templates=true", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    service.stop().await;
}

/// `POST /v1/tenants/{tenant}/move`: 202 with the move under way, then
/// the tenant ACTIVE on the other server with its data; a move to the
/// server it is on, or to no such server, is refused and changes nothing.
#[tokio::test]
async fn a_tenant_is_moved_over_http() {
    let (from, to) = (PgCluster::start(), PgCluster::start());
    let service = Service::start(Backend::Postgres).await;
    for (name, cluster) in [("from", &from), ("to", &to)] {
        let (status, added) = service
            .admin(
                Method::POST,
                "/v1/servers",
                Some(json!({"name": name, "admin_url": cluster.url(), "budget": 4})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
    }
    let (ada, token) = service.user("ada@moves.test").await;
    let (status, tenant) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "mover", "name": "Mover", "owner_user_id": ada, "server": "from"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let (status, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("mover"),
            Some(json!({"name": "Packed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");

    for (body, status, error) in [
        (json!({"to": "from"}), StatusCode::BAD_REQUEST, "invalid_request"),
        (json!({"to": "nowhere"}), StatusCode::NOT_FOUND, "not_found"),
        (
            json!({"to": "to", "by": "air"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let (got, answer) = service
            .admin(Method::POST, "/v1/tenants/mover/move", Some(body.clone()))
            .await;
        assert_eq!((got, code(&answer)), (status, error), "{body}: {answer}");
    }
    let (status, moving) = service
        .admin(Method::POST, "/v1/tenants/mover/move", Some(json!({"to": "to"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{moving}");
    assert_eq!(moving["database"]["moving"]["to"], "to", "{moving}");
    let started = std::time::Instant::now();
    let moved = loop {
        let (_, now) = service.admin(Method::GET, "/v1/tenants/mover", None).await;
        if now["database"]["status"] == "ACTIVE" {
            break now;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{now}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(moved["database"]["server"], "to", "{moved}");
    assert!(moved["database"]["moving"].is_null(), "{moved}");
    let (status, projects) = service
        .call(Method::GET, "/v1/projects", Some(&token), Some("mover"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{projects}");
    assert_eq!(projects["items"][0]["name"], "Packed", "{projects}");
    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/mover?now=true", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    service.stop().await;
}
