//! Request ids and the metrics scrape.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Backend, Service};

async fn scrape(service: &Service) -> String {
    let response = service
        .client
        .get(format!("{}/metrics", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn every_response_has_a_request_id_and_a_usable_given_one_is_kept() {
    let service = Service::start(Backend::Sqlite).await;
    let get = |id: Option<&'static str>| {
        let mut request = service.client.get(format!("{}/healthz", service.base));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        request.send()
    };
    let first = get(None).await.unwrap();
    let second = get(None).await.unwrap();
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (a, b) = (id(&first), id(&second));
    assert_eq!(a.len(), 32, "{a}");
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b, "each request gets its own id");
    assert_eq!(id(&get(Some("trace-42/abc")).await.unwrap()), "trace-42/abc");
    // Too long, or with a space: not taken, a new one is made.
    let long: &'static str = "x".repeat(129).leak();
    for unusable in [long, "two words"] {
        let made = id(&get(Some(unusable)).await.unwrap());
        assert_ne!(made, unusable);
        assert_eq!(made.len(), 32);
    }
    // Errors carry one too.
    let (status, _) = service.call(Method::GET, "/v1/nowhere", None, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = service
        .client
        .get(format!("{}/v1/nowhere", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(id(&missing).len(), 32);
    service.stop().await;
}

/// A scrape after real traffic: every metric has `# HELP` and `# TYPE`,
/// each name has one type, latencies are histograms (no summaries), the
/// pool gauges exist once and carry the server, and requests are counted
/// by route template and status class.
#[tokio::test]
async fn a_scrape_describes_every_metric_once_with_histograms_and_request_counts() {
    let service = Service::start(Backend::Sqlite).await;
    let (user, token) = service.user("metrics@example.com").await;
    service.tenant("metrics-acme", Some(&user)).await;
    let (status, _) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("metrics-acme"),
            Some(json!({"name": "One"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = service
        .call(Method::GET, "/v1/projects", Some(&token), Some("metrics-acme"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = service.call(Method::GET, "/v1/projects", None, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    service.call(Method::GET, "/v1/nowhere", None, None, None).await;
    let text = scrape(&service).await;

    let (mut help, mut types) = (BTreeSet::new(), BTreeMap::new());
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => assert!(help.insert(name.to_owned()), "two HELP for {name}"),
            (Some("#"), Some("TYPE"), Some(name)) => {
                let kind = words.next().unwrap().to_owned();
                assert!(types.insert(name.to_owned(), kind).is_none(), "two TYPE for {name}");
            }
            (Some(sample), Some(_), _) if !sample.starts_with('#') => {
                samples.insert(sample.split('{').next().unwrap().to_owned());
            }
            _ => {}
        }
    }
    for name in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no TYPE:\n{text}");
        assert!(help.contains(family), "{name} has no HELP:\n{text}");
    }
    assert!(
        !types.values().any(|k| k == "summary"),
        "summaries cannot be added up:\n{text}"
    );
    for histogram in [
        "tenantdb_http_request_duration_seconds",
        "tenantdb_provisioning_seconds",
    ] {
        assert_eq!(types.get(histogram).map(String::as_str), Some("histogram"), "{text}");
    }
    for gone in ["tenantdb_pools_open_now", "tenantdb_pool_connections_now"] {
        assert!(!text.contains(gone), "{gone} duplicates a labelled gauge:\n{text}");
    }
    for gauge in ["tenantdb_pool_budget_free", "tenantdb_pool_share"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(gauge)).collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.contains("server=\"")),
            "{gauge}: {lines:?}"
        );
    }
    for series in [
        r#"tenantdb_http_requests_total{method="GET",route="/v1/projects",status="2xx"}"#,
        r#"tenantdb_http_requests_total{method="POST",route="/v1/projects",status="2xx"}"#,
        r#"tenantdb_http_requests_total{method="GET",route="/v1/projects",status="4xx"}"#,
        r#"tenantdb_http_requests_total{method="GET",route="unmatched",status="4xx"}"#,
        r#"tenantdb_http_request_duration_seconds_bucket{method="GET",route="/v1/projects",status="2xx",le="0.005"}"#,
        r#"tenantdb_build_info{version=""#,
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    service.stop().await;
}
