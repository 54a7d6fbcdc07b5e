use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantdb_axum::{AdminToken, ApiError, OperatorAuth, Parts, SecretString, async_trait};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, Served, code};

const ADMIN: &str = "axum-test-admin-token-0123456789";

fn admin_token() -> AdminToken {
    AdminToken::new(SecretString::from(ADMIN))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Through the operator API: a user with a token, owner of tenant `slug`.
/// Returns the token.
async fn owner_of(app: &Served, operator: &[(&str, &str)], slug: &str) -> String {
    let user = json!({"email": format!("{slug}@example.com"), "name": "Owner"});
    let (status, user) = app.call(Method::POST, "/v1/users", operator, Some(user)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let path = format!("/v1/users/{}/tokens", user["id"].as_str().unwrap());
    let (status, token) = app.call(Method::POST, &path, operator, None).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let tenant = json!({"slug": slug, "name": slug, "owner_user_id": user["id"]});
    let (status, tenant) = app.call(Method::POST, "/v1/tenants", operator, Some(tenant)).await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    token["token"].as_str().unwrap().to_owned()
}

async fn an_app_mounts_the_operator_api_next_to_its_own_routes(backend: Backend) {
    let app = Served::start(backend, admin_token()).await;
    let operator = bearer(ADMIN);
    let token = owner_of(&app, &[("authorization", &operator)], "acme").await;
    let user = [("authorization", bearer(&token)), ("x-tenant", "acme".to_owned())];
    let user: Vec<(&str, &str)> = user.iter().map(|(n, v)| (*n, v.as_str())).collect();

    let note = json!({"id": 1, "text": "first"});
    let (status, body) = app.call(Method::POST, "/notes", &user, Some(note)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.call(Method::GET, "/notes", &user, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"notes": ["first"]})));

    // The operator's token is not a user's, and a user's opens no operator route.
    let as_operator = [("authorization", operator.as_str()), ("x-tenant", "acme")];
    let (status, body) = app.call(Method::GET, "/notes", &as_operator, None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = app.call(Method::GET, "/v1/tenants", &user[..1], None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = app
        .call(Method::GET, "/v1/tenants/acme", &[("authorization", &operator)], None)
        .await;
    assert_eq!((status, body["slug"].as_str()), (StatusCode::OK, Some("acme")));
    app.stop().await;
}

async fn a_malformed_json_body_gets_the_api_error_shape(backend: Backend) {
    let app = Served::start(backend, admin_token()).await;
    let token = owner_of(&app, &[("authorization", &bearer(ADMIN))], "acme").await;
    let user = [("authorization", bearer(&token)), ("x-tenant", "acme".to_owned())];
    let user: Vec<(&str, &str)> = user.iter().map(|(n, v)| (*n, v.as_str())).collect();
    for (content_type, body) in [
        ("application/json", "{\"id\": 1, \"text\":"),
        ("application/json", "{\"id\": \"one\", \"text\": \"x\"}"),
        ("application/json", "{\"id\": 1, \"text\": \"a\\u0000b\"}"),
        ("text/plain", "{\"id\": 1, \"text\": \"x\"}"),
    ] {
        let (status, answer) = app.send_raw("/notes", &user, content_type, body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}: {answer}"
        );
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    // The operator API's bodies too.
    let operator = [("authorization", bearer(ADMIN))];
    let operator: Vec<(&str, &str)> = operator.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, answer) = app
        .send_raw("/v1/users", &operator, "application/json", "{\"email\":")
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{answer}"
    );
    // Nothing was written.
    let (status, body) = app.call(Method::GET, "/notes", &user, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"notes": Value::Array(vec![])})));
    app.stop().await;
}

/// Operators are whoever the proxy in front says they are.
struct FromProxy;

#[async_trait]
impl OperatorAuth for FromProxy {
    async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
        match parts.headers.get("x-operator") {
            Some(name) if name == "ops" => Ok(()),
            Some(_) => Err(ApiError::forbidden("not an operator")),
            None => Err(ApiError::unauthorized()),
        }
    }
}

async fn a_custom_operator_hook_replaces_the_admin_token(backend: Backend) {
    let app = Served::start(backend, FromProxy).await;
    let token = owner_of(&app, &[("x-operator", "ops")], "acme").await;
    let (status, body) = app
        .call(Method::GET, "/v1/tenants", &[("x-operator", "ops")], None)
        .await;
    assert_eq!(
        (status, body["items"][0]["slug"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    let (status, body) = app
        .call(Method::GET, "/v1/tenants", &[("x-operator", "bob")], None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    // The admin token means nothing here.
    let (status, body) = app
        .call(Method::GET, "/v1/tenants", &[("authorization", &bearer(ADMIN))], None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    // The tenant API still takes the catalog's users.
    let user = [("authorization", bearer(&token)), ("x-tenant", "acme".to_owned())];
    let user: Vec<(&str, &str)> = user.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, _) = app.call(Method::GET, "/notes", &user, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

both_backends!(
    an_app_mounts_the_operator_api_next_to_its_own_routes,
    a_malformed_json_body_gets_the_api_error_shape,
    a_custom_operator_hook_replaces_the_admin_token,
);
