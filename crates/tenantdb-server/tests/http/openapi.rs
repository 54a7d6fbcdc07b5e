//! The OpenAPI document: valid OpenAPI 3.1 that a client generator can
//! read, complete (bodies, answers, parameters, the error shape, the
//! tenant header, which routes take no token), and in step with
//! `docs/API.md` and with what the router serves.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Backend, Service};

/// The document as the service serves it (raw JSON and parsed by `oas3`).
async fn document() -> (Value, oas3::Spec) {
    let service = Service::start(Backend::Sqlite).await;
    let (status, doc) = service.call(Method::GET, "/openapi.json", None, None, None).await;
    service.stop().await;
    assert_eq!(status, StatusCode::OK);
    let spec = oas3::from_json(doc.to_string()).expect("oas3 parses the document");
    spec.validate_version().expect("a 3.1 document");
    (doc, spec)
}

/// Every `"$ref"` anywhere in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

fn schema_ref(content: &Value) -> Option<&str> {
    content["application/json"]["schema"]["$ref"].as_str()
}

/// The document is valid and complete: every reference resolves; every
/// operation has a unique id, declares each `{param}` of its path, has a
/// success answer with a schema (but 204), documents its request body,
/// answers every error in the error shape; every list takes `limit` and
/// `cursor`; the tenant API takes `X-Tenant`; exactly the service
/// endpoints take no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_complete() {
    let (doc, spec) = document().await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "the document refers to its schemas: {}", found.len());
    for target in &found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target}: only component schemas are referred to"));
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));

    let mut ids = BTreeSet::new();
    let mut count = 0;
    for (path, method, operation) in spec.operations() {
        count += 1;
        let at = format!("{method} {path}");
        let raw = &doc["paths"][&path][method.as_str().to_lowercase()];
        let id = operation
            .operation_id
            .clone()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id.clone()), "{at}: operationId {id} twice");
        let parameters: Vec<oas3::spec::Parameter> = operation
            .parameters
            .iter()
            .map(|p| p.resolve(&spec).unwrap_or_else(|e| panic!("{at}: {e}")))
            .collect();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            assert!(
                parameters
                    .iter()
                    .any(|p| p.name == name && p.location == oas3::spec::ParameterIn::Path && p.required == Some(true)),
                "{at}: path parameter {name} undeclared"
            );
        }
        for parameter in &parameters {
            assert!(parameter.schema.is_some(), "{at}: {} has no schema", parameter.name);
            assert!(
                parameter.description.is_some(),
                "{at}: {} has no description",
                parameter.name
            );
        }
        let tags = &operation.tags;
        let service = tags.iter().any(|t| t == "service");
        assert_eq!(tags.len(), 1, "{at}: one tag of operator, tenant, service");
        if service {
            assert_eq!(raw["security"], serde_json::json!([]), "{at}: takes no token");
        } else {
            assert!(raw.get("security").is_none(), "{at}: takes the bearer token");
        }
        if tags[0] == "tenant" {
            assert!(
                parameters
                    .iter()
                    .any(|p| p.name == "X-Tenant" && p.location == oas3::spec::ParameterIn::Header),
                "{at}: the tenant header"
            );
        }

        let responses = raw["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: no responses"));
        let successes: Vec<&String> = responses.keys().filter(|s| s.starts_with('2')).collect();
        assert_eq!(successes.len(), 1, "{at}: one success answer");
        let success = &responses[successes[0]];
        if successes[0] != "204" {
            let content = success["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: no body"));
            let schema = content.values().next().unwrap()["schema"].clone();
            assert!(schema.is_object(), "{at}: its answer has no schema");
            if schema_ref(&success["content"]).is_some_and(|r| r.contains("PageOf_")) {
                for name in ["limit", "cursor"] {
                    assert!(parameters.iter().any(|p| p.name == name), "{at}: a list without {name}");
                }
            }
        }
        for (status, response) in responses.iter().filter(|(s, _)| s.starts_with(['4', '5'])) {
            let expected = if path == "/readyz" { "Health" } else { "ErrorBody" };
            assert_eq!(
                schema_ref(&response["content"]),
                Some(format!("#/components/schemas/{expected}").as_str()),
                "{at} {status}: the error shape"
            );
            if status == "503" && path != "/readyz" {
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{at}: 503 without Retry-After"
                );
            }
        }
        if !service {
            for status in ["401", "500"] {
                assert!(responses.contains_key(status), "{at}: {status} undocumented");
            }
        }
        let takes_body =
            matches!(method.as_str(), "PUT" | "PATCH") || (method.as_str() == "POST" && !takes_no_body(&path));
        if takes_body {
            let body = operation
                .request_body
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: its body is undocumented"))
                .resolve(&spec)
                .unwrap();
            assert!(
                body.content.values().all(|media| media.schema.is_some()),
                "{at}: its body has no schema"
            );
        } else {
            assert!(operation.request_body.is_none(), "{at}: takes no body");
        }
    }
    assert!(count >= 30, "{count} operations");
    // The error shape is the one the service answers with.
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
}

/// The POST routes that are verbs on what their path names, with no body.
fn takes_no_body(path: &str) -> bool {
    ["/retry", "/drain", "/accept", "/restore"]
        .iter()
        .any(|end| path.ends_with(end))
}

/// `docs/API.md`'s routes: `(METHOD, path) -> success status`, from its
/// tables (`| GET /v1/users/{user} | | 200 user |`).
fn api_md_routes(text: &str) -> BTreeMap<(String, String), String> {
    let mut routes = BTreeMap::new();
    for line in text.lines() {
        // `\|` is a bar inside a cell (`ACTIVE\|SUSPENDED`).
        let line = line.replace("\\|", "/");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Some((method, path)) = cells[1].split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let status: String = cells[3].chars().take_while(char::is_ascii_digit).collect();
        let before = routes.insert((method.to_owned(), path.to_owned()), status);
        assert!(before.is_none(), "{method} {path} twice in docs/API.md");
    }
    routes
}

/// `docs/API.md` and the document describe the same API: the same routes
/// and methods with the same success status, the same error codes (those
/// `tenantdb_axum::openapi::ERROR_CODES` lists, which the answers use) and
/// every header the document names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_md_and_the_openapi_document_agree() {
    let (doc, spec) = document().await;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
    let documented = api_md_routes(&text);
    let mut served = BTreeMap::new();
    for (path, method, _) in spec.operations() {
        let raw = &doc["paths"][&path][method.as_str().to_lowercase()]["responses"];
        let success = raw
            .as_object()
            .unwrap()
            .keys()
            .find(|s| s.starts_with('2'))
            .unwrap()
            .clone();
        served.insert((method.as_str().to_owned(), path), success);
    }
    assert_eq!(documented, served, "docs/API.md (left) and /openapi.json (right)");

    let codes: BTreeSet<(u16, String)> = text
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status = cells.get(1)?.parse().ok()?;
            Some((status, cells.get(2)?.trim_matches('`').to_owned()))
        })
        .collect();
    let built: BTreeSet<(u16, String)> = tenantdb_axum::openapi::ERROR_CODES
        .iter()
        .map(|(status, code)| (*status, (*code).to_owned()))
        .collect();
    assert_eq!(codes, built, "the error table of docs/API.md");

    let mut headers = BTreeSet::from(["Authorization".to_owned(), "X-Request-Id".to_owned()]);
    for (_, _, operation) in spec.operations() {
        for parameter in &operation.parameters {
            let parameter = parameter.resolve(&spec).unwrap();
            if parameter.location == oas3::spec::ParameterIn::Header {
                headers.insert(parameter.name);
            }
        }
        for response in operation.responses.iter().flatten() {
            headers.extend(response.1.resolve(&spec).unwrap().headers.keys().cloned());
        }
    }
    assert!(headers.len() >= 4, "{headers:?}");
    for header in headers {
        assert!(
            text.contains(&format!("| `{header}` |")),
            "{header} missing from the headers of docs/API.md"
        );
    }
}

/// The router serves exactly what the document lists: each documented
/// method answers something other than route-not-found, each other method
/// of a documented path answers 405, and a made-up path 404. (Every route
/// is added through `utoipa_axum`'s `routes!`, which documents it; only
/// `/openapi.json` is added by hand, and it is listed too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_what_the_document_lists() {
    let (doc, _) = document().await;
    let service = Service::start(Backend::Sqlite).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = service.call(verb.clone(), &concrete, None, None, None).await;
            if item.get(method).is_some() {
                assert_ne!(body["error"]["message"], "route not found", "{verb} {concrete}");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{verb} {concrete}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{verb} {concrete}");
                assert_eq!(body["error"]["code"], "method_not_allowed");
            }
        }
    }
    let (status, body) = service.call(Method::GET, "/v1/nothing", None, None, None).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("route not found"))
    );
    service.stop().await;
}
