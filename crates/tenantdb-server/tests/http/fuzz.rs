//! Fuzzing every operation of the HTTP contract: each case picks a route,
//! fills its path with real ids or hostile strings, sends a valid body, a
//! mutated one (a field dropped, retyped, made huge, given a NUL, an unknown
//! field added), random JSON or bytes that are not JSON, with the admin
//! token, a user's token, a junk token or none, and a tenant header that is
//! valid or hostile. Whatever comes in, the service answers 2xx, 4xx with the
//! JSON error shape, or 503 with `Retry-After` and that shape; never a 5xx
//! otherwise. The seed is fixed and printed, so a failure replays.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN, Backend, Service};
use tenantdb_test_support::both_backends;

both_backends!(no_request_gets_a_server_error);

/// Cases per engine.
const CASES: usize = 1500;

/// (method, path template, a valid body or `Null` for none, tenant API).
/// Changes to a tenant go to `{victim}`, so that `{tenant}` keeps serving
/// the tenant API for the whole run.
fn routes() -> Vec<(Method, &'static str, Value, bool)> {
    use Method as M;
    vec![
        (
            M::POST,
            "/v1/users",
            json!({"email": "x@example.com", "name": "X"}),
            false,
        ),
        (M::GET, "/v1/users/{user}", Value::Null, false),
        (M::POST, "/v1/users/{user}/tokens", json!({"name": "t"}), false),
        (M::DELETE, "/v1/users/{user}/tokens/{token}", Value::Null, false),
        (
            M::POST,
            "/v1/tenants",
            json!({"slug": "made", "name": "Made", "owner_user_id": "{user}", "plan": "pro"}),
            false,
        ),
        (M::GET, "/v1/tenants", Value::Null, false),
        (M::GET, "/v1/tenants/{tenant}", Value::Null, false),
        (
            M::PATCH,
            "/v1/tenants/{victim}",
            json!({"name": "N", "status": "SUSPENDED"}),
            false,
        ),
        (M::DELETE, "/v1/tenants/{victim}", Value::Null, false),
        (M::GET, "/v1/tenants/{tenant}/database", Value::Null, false),
        (
            M::PATCH,
            "/v1/tenants/{victim}/database",
            json!({"database_name": "{dbname}"}),
            false,
        ),
        (M::POST, "/v1/tenants/{victim}/database/retry", Value::Null, false),
        (
            M::PUT,
            "/v1/tenants/{victim}/members/{user}",
            json!({"role": "ADMIN"}),
            false,
        ),
        (M::DELETE, "/v1/tenants/{victim}/members/{user}", Value::Null, false),
        (M::GET, "/v1/tenants/{tenant}/members", Value::Null, false),
        (
            M::PUT,
            "/v1/tenants/{victim}/subscription",
            json!({"plan": "pro", "status": "ACTIVE", "seats": 3}),
            false,
        ),
        (M::GET, "/v1/tenants/{tenant}/subscription", Value::Null, false),
        (M::GET, "/v1/settings", Value::Null, false),
        (M::PUT, "/v1/settings/{key}", json!({"any": ["json", 1]}), false),
        (M::POST, "/v1/migrations", json!({"concurrency": 2}), false),
        (M::GET, "/v1/migrations/{id}", Value::Null, false),
        (M::GET, "/v1/projects", Value::Null, true),
        (M::POST, "/v1/projects", json!({"name": "P"}), true),
        (M::GET, "/v1/projects/{project}", Value::Null, true),
        (M::PATCH, "/v1/projects/{project}", json!({"name": "Q"}), true),
        (M::DELETE, "/v1/projects/{project}", Value::Null, true),
        (M::GET, "/v1/projects/{project}/tasks", Value::Null, true),
        (
            M::POST,
            "/v1/projects/{project}/tasks",
            json!({"title": "T", "due": "2027-01-01"}),
            true,
        ),
        (M::PATCH, "/v1/tasks/{task}", json!({"title": "U", "done": true}), true),
        (M::DELETE, "/v1/tasks/{task}", Value::Null, true),
        (M::GET, "/healthz", Value::Null, false),
        (M::GET, "/readyz", Value::Null, false),
        (M::GET, "/metrics", Value::Null, false),
        (M::GET, "/openapi.json", Value::Null, false),
    ]
}

/// Path segments and text values no client should send.
const HOSTILE: &[&str] = &[
    "%00",
    "a%00b",
    "%FF%FE",
    "..%2F..%2Fetc",
    "ACME",
    "-x-",
    "00000000-0000-0000-0000-000000000000",
    "%27%3B%20drop%20table%20users%3B--",
    "%E2%98%83",
    "tenant_",
    "null",
    "%20",
    "1e9999",
    "pg_catalog",
    "template0",
    "%22quoted%22",
];

fn junk_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(-1),
        4 => json!(1e300),
        5 => json!("x".repeat(rng.random_range(200..60_000))),
        6 => json!("a\u{0}b"),
        7 => json!(["nested", {"deep": [1, 2, {"x": null}]}]),
        8 => json!({"\u{0}": "key with NUL"}),
        _ => json!("\u{202e}\u{fffd} ünïcödé 😀"),
    }
}

/// A body derived from the route's valid one.
fn body(rng: &mut StdRng, valid: &Value, ids: &BTreeMap<&str, String>) -> Option<Vec<u8>> {
    let mut valid = valid.clone();
    if let Value::Object(map) = &mut valid {
        for value in map.values_mut() {
            if let Some(s) = value.as_str()
                && let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
            {
                *value = json!(ids[name]);
            }
        }
    }
    let value = match rng.random_range(0..9) {
        0 => return None,
        1 => return Some(b"{\"unterminated\": ".to_vec()),
        2 => return Some(vec![0xff, 0x00, b'{']),
        3 => junk_value(rng),
        4..=6 if valid.is_object() => {
            let mut mutated = valid.clone();
            let map = mutated.as_object_mut().unwrap();
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..3) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(key.clone(), junk_value(rng));
                }
                _ => {
                    map.insert("unknown_field".into(), junk_value(rng));
                }
            }
            mutated
        }
        _ => valid,
    };
    Some(serde_json::to_vec(&value).unwrap())
}

fn fill(rng: &mut StdRng, template: &str, ids: &BTreeMap<&str, String>) -> String {
    let mut path = template.to_owned();
    for (name, real) in ids {
        let hole = format!("{{{name}}}");
        if path.contains(&hole) {
            let value = if rng.random_range(0..3) == 0 {
                HOSTILE[rng.random_range(0..HOSTILE.len())].to_owned()
            } else {
                real.clone()
            };
            path = path.replace(&hole, &value);
        }
    }
    if rng.random_range(0..8) == 0 {
        let query = [
            "?limit=0",
            "?limit=9999999999999",
            "?cursor=%00",
            "?status=NOPE",
            "?limit=2&cursor=x",
        ];
        path.push_str(query[rng.random_range(0..query.len())]);
    }
    path
}

async fn no_request_gets_a_server_error(backend: Backend) {
    let service = Service::start(backend).await;
    let (user, token) = service.user("fuzz@example.com").await;
    let tenant = service.tenant("fuzzed", Some(&user)).await;
    service.tenant("victim", Some(&user)).await;
    let (_, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("fuzzed"),
            Some(json!({"name": "p"})),
        )
        .await;
    let project = project["id"].as_str().unwrap().to_owned();
    let (_, task) = service
        .call(
            Method::POST,
            &format!("/v1/projects/{project}/tasks"),
            Some(&token),
            Some("fuzzed"),
            Some(json!({"title": "t"})),
        )
        .await;
    let (_, token_row) = service
        .admin(
            Method::POST,
            &format!("/v1/users/{user}/tokens"),
            Some(json!({"name": "spare"})),
        )
        .await;
    let mut ids = BTreeMap::new();
    ids.insert("user", user.clone());
    ids.insert("tenant", "fuzzed".to_owned());
    ids.insert("victim", "victim".to_owned());
    ids.insert("project", project);
    ids.insert("task", task["id"].as_str().unwrap().to_owned());
    ids.insert("token", token_row["id"].as_str().unwrap().to_owned());
    ids.insert("id", tenant["id"].as_str().unwrap().to_owned());
    ids.insert("key", "fuzz_setting".to_owned());
    ids.insert("dbname", "tenant_fuzz_renamed".to_owned());

    let seed = 0x7e4a_47db_u64 ^ u64::from(backend == Backend::Postgres);
    let mut rng = StdRng::seed_from_u64(seed);
    let routes = routes();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    // A connection per request: the service closes one whose request it
    // refused before reading the body, and a reused one would then fail.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for case in 0..CASES {
        let (method, template, valid, tenant_api) = &routes[rng.random_range(0..routes.len())];
        let path = fill(&mut rng, template, &ids);
        let mut request = client.request(method.clone(), format!("{}{path}", service.base));
        request = match rng.random_range(0..8) {
            0 => request,
            1 => request.header("Authorization", "Bearer not-a-token"),
            // The other kind of token: 403.
            2 => request.bearer_auth(if *tenant_api { ADMIN } else { token.as_str() }),
            _ => request.bearer_auth(if *tenant_api { token.as_str() } else { ADMIN }),
        };
        if *tenant_api || rng.random_range(0..4) == 0 {
            let header = match rng.random_range(0..4) {
                0 => HOSTILE[rng.random_range(0..HOSTILE.len())],
                1 => "nobody-here",
                _ => "fuzzed",
            };
            request = request.header("X-Tenant", header);
        }
        let body = body(&mut rng, valid, &ids);
        let large = body.as_ref().is_some_and(|b| b.len() > 16 * 1024);
        if let Some(bytes) = body {
            request = request.header("Content-Type", "application/json").body(bytes);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // Refused before its body was read (a bad path or token): the
            // server answers and closes while a large body is still being
            // sent, which the client sees as a broken pipe.
            Err(err) if large && err.is_request() => {
                *by_status.entry(0).or_default() += 1;
                continue;
            }
            Err(err) => panic!("case {case} (seed {seed:#x}): {method} {path}: {err}"),
        };
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let text = match response.text().await {
            Ok(text) => text,
            // The same race on the way back: the server answered without
            // reading a large body and closed; the unread bytes make the
            // kernel reset the connection, which can cut a long answer
            // (`/metrics`) short on the client's side.
            Err(err) if large && (err.is_body() || err.is_decode()) => {
                *by_status.entry(0).or_default() += 1;
                continue;
            }
            Err(err) => panic!("case {case} (seed {seed:#x}): {method} {path}: reading the answer: {err}"),
        };
        let what = format!("case {case} (seed {seed:#x}): {method} {path} -> {status}: {text:.300}");
        *by_status.entry(status.as_u16()).or_default() += 1;
        assert!(
            status.as_u16() < 500 || (status.as_u16() == 503 && retry_after),
            "{what}"
        );
        if status.is_client_error() || status.is_server_error() {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                value["error"]["code"].is_string() && value["error"]["message"].is_string(),
                "the JSON error shape: {what}"
            );
        }
    }
    // Status 0: a large body refused before it was read (see above).
    println!("{backend:?}: {CASES} fuzz cases, answers by status: {by_status:?}");
    service.stop().await;
}

/// The API document describes the body of every operation that takes one,
/// so schema-driven clients and fuzzers reach the write paths.
#[tokio::test]
async fn the_document_describes_every_request_body() {
    let service = Service::start(Backend::Sqlite).await;
    let (status, doc) = service.call(Method::GET, "/openapi.json", None, None, None).await;
    assert!(status.is_success(), "{doc}");
    for (method, template, valid, _) in routes() {
        if valid.is_null() || template == "/v1/settings/{key}" {
            continue;
        }
        let path = template
            .replace("{victim}", "{tenant}")
            .replace("{project}", "{id}")
            .replace("{task}", "{id}")
            .replace("{token}", "{token_id}");
        let operation = &doc["paths"][&path][method.as_str().to_lowercase()];
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        assert!(!schema.is_null(), "{method} {path} has no request body in the document");
    }
    service.stop().await;
}
