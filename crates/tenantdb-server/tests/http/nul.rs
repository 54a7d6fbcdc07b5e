//! Text holding a NUL character, wherever a request carries text: 400
//! `invalid_request` (PostgreSQL cannot store NUL; the catalog on
//! PostgreSQL once answered 500), and nothing is created.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, Service, code};

both_backends!(text_with_a_nul_character_is_refused_and_nothing_is_created);

fn assert_refused((status, body): (StatusCode, Value), what: &str) {
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{what}: {body}"
    );
}

async fn text_with_a_nul_character_is_refused_and_nothing_is_created(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, token) = service.user("ada@example.com").await;
    service.tenant("acme", Some(&ada)).await;

    // Operator API: bodies.
    assert_refused(
        service
            .admin(Method::PUT, "/v1/settings/nul", Some(json!("a\u{0}b")))
            .await,
        "a setting's value",
    );
    assert_refused(
        service
            .admin(Method::PUT, "/v1/settings/nul", Some(json!({"a\u{0}": 1})))
            .await,
        "a key inside a setting's value",
    );
    for (email, name) in [("nul\u{0}@example.com", "Nul"), ("nul@example.com", "N\u{0}ul")] {
        assert_refused(
            service
                .admin(Method::POST, "/v1/users", Some(json!({"email": email, "name": name})))
                .await,
            "a user",
        );
    }
    for (slug, name) in [("nul", "N\u{0}ul"), ("n\u{0}ul", "Nul")] {
        assert_refused(
            service
                .admin(Method::POST, "/v1/tenants", Some(json!({"slug": slug, "name": name})))
                .await,
            "a tenant",
        );
    }
    assert_refused(
        service
            .admin(Method::PATCH, "/v1/tenants/acme", Some(json!({"name": "A\u{0}"})))
            .await,
        "a tenant's new name",
    );

    // Operator API: paths and queries.
    for path in [
        "/v1/users/%00",
        "/v1/users/ada%00@example.com",
        "/v1/tenants/%00",
        "/v1/tenants?cursor=%00",
        "/v1/tenants?status=%00",
        "/v1/tenants/acme/members?cursor=%00",
    ] {
        assert_refused(service.admin(Method::GET, path, None).await, path);
    }
    assert_refused(
        service
            .admin(Method::PUT, "/v1/settings/n%00ul", Some(json!(true)))
            .await,
        "a setting's key",
    );
    assert_refused(
        service
            .admin(
                Method::PUT,
                "/v1/tenants/acme/members/%00",
                Some(json!({"role": "MEMBER"})),
            )
            .await,
        "a member",
    );
    assert_refused(
        service.admin(Method::POST, "/v1/users/%00/tokens", None).await,
        "a token's user",
    );

    // Tenant API.
    let (caller, token) = (&service, token.as_str());
    let tenant = move |method: Method, path: &'static str, body: Option<Value>| {
        caller.call(method, path, Some(token), Some("acme"), body)
    };
    assert_refused(
        tenant(Method::POST, "/v1/projects", Some(json!({"name": "P\u{0}"}))).await,
        "a project",
    );
    assert_refused(
        tenant(Method::GET, "/v1/projects?cursor=%00", None).await,
        "a project cursor",
    );
    assert_refused(tenant(Method::GET, "/v1/projects/%00", None).await, "a project id");

    // Nothing was made or changed.
    let (_, settings) = service.admin(Method::GET, "/v1/settings", None).await;
    assert_eq!(settings.get("nul"), None, "{settings}");
    let (status, _) = service.admin(Method::GET, "/v1/users/nul@example.com", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, tenants) = service.admin(Method::GET, "/v1/tenants", None).await;
    let slugs: Vec<&str> = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme"]);
    assert_eq!(tenants["items"][0]["name"], "ACME");
    let (_, members) = service.admin(Method::GET, "/v1/tenants/acme/members", None).await;
    assert_eq!(members["items"].as_array().unwrap().len(), 1, "{members}");
    let (status, projects) = tenant(Method::GET, "/v1/projects", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(projects["items"], json!([]));
    service.stop().await;
}
