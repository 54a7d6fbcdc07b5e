use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN, Backend, Service, code};
use tenantdb_test_support::both_backends;

both_backends!(
    the_readme_session_works_and_tenants_are_separate,
    errors_have_the_documented_codes_and_change_nothing,
    operator_endpoints_round_trip,
    roles_and_revocation_take_effect_at_once,
    shutdown_lets_a_provisioning_request_finish,
    renaming_under_load_keeps_the_data,
    a_deleted_tenant_is_refused_then_restored_with_its_data,
    a_tenant_is_exported_and_imported_over_http,
);

async fn a_tenant_is_exported_and_imported_over_http(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, token) = service.user("ada@example.com").await;
    service.tenant("acme", Some(&ada)).await;
    let (status, _) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("acme"),
            Some(json!({"name": "Exported"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let response = service
        .client
        .get(format!("{}/v1/tenants/acme/export", service.base))
        .bearer_auth(crate::support::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("acme.tenantdb")
    );
    let export = response.bytes().await.unwrap();
    assert!(
        export.starts_with(b"TENANTDB-EXPORT 1\n"),
        "{:?}",
        &export[..40.min(export.len())]
    );

    // A client per import: a request refused before its body is read ends
    // its connection (the body is not read to the end), which a pooled
    // client could otherwise reuse.
    let import = |query: &str, body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{}/v1/imports{query}", service.base))
            .bearer_auth(crate::support::ADMIN)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    // Bad input changes nothing: no slug, a bad slug, not an export, a
    // taken slug.
    for (query, body, status) in [
        ("", export.to_vec(), StatusCode::BAD_REQUEST),
        ("?slug=Bad_Slug", export.to_vec(), StatusCode::BAD_REQUEST),
        ("?slug=junk", b"not an export".to_vec(), StatusCode::BAD_REQUEST),
        ("?slug=acme", export.to_vec(), StatusCode::CONFLICT),
    ] {
        let response = import(query, body).await.unwrap();
        assert_eq!(response.status(), status, "{query}: {}", response.text().await.unwrap());
    }
    let (_, list) = service.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    let response = import("?slug=copy&name=Copy", export.to_vec()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let copy: Value = response.json().await.unwrap();
    assert_eq!(
        (copy["slug"].as_str(), copy["name"].as_str()),
        (Some("copy"), Some("Copy"))
    );
    assert_eq!(copy["database"]["status"], "ACTIVE", "{copy}");
    let (status, _) = service
        .admin(
            Method::PUT,
            &format!("/v1/tenants/copy/members/{ada}"),
            Some(json!({"role": "OWNER"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, projects) = service
        .call(Method::GET, "/v1/projects", Some(&token), Some("copy"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{projects}");
    assert_eq!(projects["items"][0]["name"], "Exported", "{projects}");
    let (status, body) = service.admin(Method::GET, "/v1/tenants/nobody/export", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    service.stop().await;
}

async fn a_deleted_tenant_is_refused_then_restored_with_its_data(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, token) = service.user("ada@example.com").await;
    service.tenant("acme", Some(&ada)).await;
    let project = || {
        service.call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("acme"),
            Some(json!({"name": "Kept"})),
        )
    };
    assert_eq!(project().await.0, StatusCode::CREATED);
    let (status, body) = service.admin(Method::POST, "/v1/tenants/acme/restore", None).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"), "{body}");

    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = service
        .call(Method::GET, "/v1/projects", Some(&token), Some("acme"), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "tenant_deleted"),
        "{body}"
    );
    let (status, view) = service.admin(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["database"]["status"], "DELETED", "{view}");
    assert!(view["database"]["deleted_at"].is_string(), "{view}");
    let (status, body) = service.admin(Method::DELETE, "/v1/tenants/acme?now=maybe", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{body}"
    );

    let (status, view) = service.admin(Method::POST, "/v1/tenants/acme/restore", None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["database"]["status"], "ACTIVE", "{view}");
    assert_eq!(view["database"]["deleted_at"], Value::Null);
    let (status, projects) = service
        .call(Method::GET, "/v1/projects", Some(&token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{projects}");
    assert_eq!(projects["items"][0]["name"], "Kept", "{projects}");

    // For good: deleted (again) with now=true, it is gone.
    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/acme?now=true", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = service.admin(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let (status, body) = service.admin(Method::POST, "/v1/tenants/acme/restore", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    service.stop().await;
}

async fn the_readme_session_works_and_tenants_are_separate(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, ada_token) = service.user("ada@example.com").await;
    let acme = service.tenant("acme", Some(&ada)).await;
    assert_eq!(acme["database"]["status"], "ACTIVE");
    let (bob, bob_token) = service.user("bob@example.com").await;
    service.tenant("beta", Some(&bob)).await;

    let (status, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&ada_token),
            Some("acme"),
            Some(json!({"name": "Launch"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (status, task) = service
        .call(
            Method::POST,
            &format!("/v1/projects/{project_id}/tasks"),
            Some(&ada_token),
            Some("acme"),
            Some(json!({"title": "Ship it", "due": "2027-01-31"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["done"], false);
    assert_eq!(task["due"], "2027-01-31");
    let task_path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    let (status, task) = service
        .call(
            Method::PATCH,
            &task_path,
            Some(&ada_token),
            Some("acme"),
            Some(json!({"done": true, "due": null})),
        )
        .await;
    assert_eq!(
        (status, &task["done"], &task["due"]),
        (StatusCode::OK, &json!(true), &Value::Null)
    );
    let (status, tasks) = service
        .call(
            Method::GET,
            &format!("/v1/projects/{project_id}/tasks"),
            Some(&ada_token),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!((status, tasks["items"].as_array().unwrap().len()), (StatusCode::OK, 1));
    let (status, _) = service
        .call(Method::DELETE, &task_path, Some(&ada_token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .call(Method::DELETE, &task_path, Some(&ada_token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, renamed) = service
        .call(
            Method::PATCH,
            &format!("/v1/projects/{project_id}"),
            Some(&ada_token),
            Some("acme"),
            Some(json!({"name": "Launch 2"})),
        )
        .await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("Launch 2")));
    let (status, _) = service
        .call(
            Method::PATCH,
            &format!("/v1/projects/{project_id}"),
            Some(&ada_token),
            Some("acme"),
            Some(json!({"name": "Launch"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = service
        .call(Method::GET, "/v1/projects", Some(&ada_token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);

    // The tenant from the Host under the base domain.
    let response = service
        .client
        .get(format!("{}/v1/projects", service.base))
        .bearer_auth(&ada_token)
        .header("Host", "acme.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Bob's tenant is empty; Ada cannot see it, nor Bob hers.
    let (status, list) = service
        .call(Method::GET, "/v1/projects", Some(&bob_token), Some("beta"), None)
        .await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (StatusCode::OK, 0));
    for (token, tenant) in [(&ada_token, "beta"), (&bob_token, "acme"), (&ada_token, "nonexistent")] {
        let (status, body) = service
            .call(Method::GET, "/v1/projects", Some(token), Some(tenant), None)
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "tenant_not_found"),
            "{tenant}"
        );
    }
    // A member of both asking tenant B for tenant A's project: not found.
    let (status, _) = service
        .admin(
            Method::PUT,
            &format!("/v1/tenants/beta/members/{ada}"),
            Some(json!({"role": "MEMBER"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = service
        .call(
            Method::GET,
            &format!("/v1/projects/{project_id}"),
            Some(&ada_token),
            Some("beta"),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = service
        .call(
            Method::GET,
            &format!("/v1/projects/{project_id}"),
            Some(&ada_token),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("Launch")));
    service.stop().await;
}

async fn errors_have_the_documented_codes_and_change_nothing(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, ada_token) = service.user("ada@example.com").await;
    service.tenant("acme", Some(&ada)).await;

    let (status, body) = service.call(Method::GET, "/v1/tenants", None, None, None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = service
        .call(Method::GET, "/v1/tenants", Some("tdb_wrong"), None, None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = service
        .call(Method::GET, "/v1/tenants", Some(&ada_token), None, None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = service
        .call(Method::GET, "/v1/projects", Some(ADMIN), Some("acme"), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = service
        .call(Method::GET, "/v1/projects", None, Some("acme"), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));

    for bad in [
        json!({"slug": "x; drop database y", "name": "X"}),
        json!({"slug": "ok", "name": "Ok", "database_name": "postgres"}),
        json!({"slug": "ok", "name": "Ok", "unknown": 1}),
        json!({"slug": 5, "name": "Ok"}),
        json!({"slug": "ok"}),
        json!({}),
    ] {
        let (status, body) = service.admin(Method::POST, "/v1/tenants", Some(bad.clone())).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
    let raw = |body: &'static str, content_type: &'static str| {
        service
            .client
            .post(format!("{}/v1/tenants", service.base))
            .bearer_auth(ADMIN)
            .header("Content-Type", content_type)
            .body(body)
    };
    for request in [
        raw("{not json", "application/json"),
        raw("{\"slug\":\"ok\"}", "text/plain"),
        raw(
            Box::leak(format!("{{\"slug\":\"{}\"}}", "a".repeat(100_000)).into_boxed_str()),
            "application/json",
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "invalid_request");
    }
    let (_, tenants) = service.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1, "nothing was created");

    let (status, body) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"));
    let (status, body) = service
        .admin(Method::POST, "/v1/tenants/acme/database/retry", None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"));
    let (status, body) = service.admin(Method::GET, "/v1/tenants/nobody", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let (status, body) = service.admin(Method::GET, "/v1/no/such/route", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    let (status, _) = service
        .admin(Method::PATCH, "/v1/tenants/acme", Some(json!({"status": "SUSPENDED"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = service
        .call(Method::GET, "/v1/projects", Some(&ada_token), Some("acme"), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "tenant_suspended"));
    // No response carries SQL or internals.
    assert!(!body.to_string().to_lowercase().contains("select"));
    service.stop().await;
}

async fn operator_endpoints_round_trip(backend: Backend) {
    let service = Service::start(backend).await;
    let (ada, _) = service.user("ada@example.com").await;
    for key in [ada.as_str(), "ADA@example.com"] {
        let (status, user) = service.admin(Method::GET, &format!("/v1/users/{key}"), None).await;
        assert_eq!(
            (status, user["email"].as_str()),
            (StatusCode::OK, Some("ada@example.com"))
        );
    }
    let (status, _) = service.admin(Method::GET, "/v1/users/nobody@example.com", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, tenant) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "acme", "name": "Acme", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let (status, sub) = service.admin(Method::GET, "/v1/tenants/acme/subscription", None).await;
    assert_eq!((status, sub["plan"].as_str()), (StatusCode::OK, Some("pro")));
    let (status, sub) = service
        .admin(
            Method::PUT,
            "/v1/tenants/acme/subscription",
            Some(json!({"plan": "team", "status": "ACTIVE", "seats": 5})),
        )
        .await;
    assert_eq!((status, sub["seats"].as_i64()), (StatusCode::OK, Some(5)));

    let (status, member) = service
        .admin(
            Method::PUT,
            &format!("/v1/tenants/acme/members/{ada}"),
            Some(json!({"role": "ADMIN"})),
        )
        .await;
    assert_eq!((status, member["role"].as_str()), (StatusCode::OK, Some("ADMIN")));
    let (_, members) = service.admin(Method::GET, "/v1/tenants/acme/members", None).await;
    assert_eq!(members["items"].as_array().unwrap().len(), 1);
    // Pages of one: every member once, then no cursor.
    let (bob, _) = service.user("bob@example.com").await;
    let (status, _) = service
        .admin(
            Method::PUT,
            &format!("/v1/tenants/acme/members/{bob}"),
            Some(json!({"role": "MEMBER"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, first) = service
        .admin(Method::GET, "/v1/tenants/acme/members?limit=1", None)
        .await;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, second) = service
        .admin(
            Method::GET,
            &format!("/v1/tenants/acme/members?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    let (_, third) = service
        .admin(
            Method::GET,
            &format!(
                "/v1/tenants/acme/members?limit=1&cursor={}",
                second["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let mut seen: Vec<&str> = [&first, &second]
        .iter()
        .map(|page| page["items"][0]["user_id"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    let mut both = vec![ada.as_str(), bob.as_str()];
    both.sort_unstable();
    assert_eq!(seen, both);
    assert_eq!(third["items"].as_array().unwrap().len(), 0);
    assert!(third["next_cursor"].is_null());
    // A bad limit, a filter this list does not have, a status that is
    // not one: refused, not ignored.
    for query in [
        "/v1/tenants/acme/members?limit=0",
        "/v1/tenants/acme/members?status=ACTIVE",
        "/v1/tenants?status=DELETED",
    ] {
        let (status, error) = service.admin(Method::GET, query, None).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{query}: {error}"
        );
    }
    let (status, page) = service.admin(Method::GET, "/v1/tenants?status=ACTIVE", None).await;
    assert_eq!(
        (status, page["items"][0]["slug"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    // The tenant server, its budget, its tenants and the instances
    // sharing the budget.
    let (status, servers) = service.admin(Method::GET, "/v1/servers", None).await;
    assert_eq!(status, StatusCode::OK, "{servers}");
    let server = &servers["items"][0];
    assert_eq!(
        (server["name"].as_str(), server["status"].as_str()),
        (Some("default"), Some("ACCEPTING"))
    );
    assert!(server["tenants"].as_u64().unwrap() >= 1, "{server}");
    let shares: u64 = server["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["share"].as_u64().unwrap())
        .sum();
    assert!(shares <= server["budget"].as_u64().unwrap(), "{server}");
    let (status, one) = service.admin(Method::GET, "/v1/servers/default", None).await;
    assert_eq!((status, &one["name"]), (StatusCode::OK, &server["name"]));
    // A DRAINING server takes no new tenant (409, nothing made) and its
    // tenants keep being served; ACCEPTING again, it takes them.
    let (status, drained) = service.admin(Method::POST, "/v1/servers/default/drain", None).await;
    assert_eq!((status, drained["status"].as_str()), (StatusCode::OK, Some("DRAINING")));
    let (status, refused) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "late", "name": "Late"})),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{refused}"
    );
    let (status, _) = service.admin(Method::GET, "/v1/tenants/late", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was made");
    let (status, _) = service.admin(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, accepted) = service.admin(Method::POST, "/v1/servers/default/accept", None).await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (StatusCode::OK, Some("ACCEPTING"))
    );
    let (status, _) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "late", "name": "Late"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = service.admin(Method::POST, "/v1/servers/nope/drain", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, missing) = service.admin(Method::GET, "/v1/servers/nope", None).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = service
        .admin(Method::DELETE, &format!("/v1/tenants/acme/members/{bob}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .admin(Method::DELETE, &format!("/v1/tenants/acme/members/{ada}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A path segment that is not UTF-8 once decoded: the JSON error shape.
    let (status, error) = service.admin(Method::GET, "/v1/tenants/%FF%FE", None).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{error}"
    );

    let (status, _) = service
        .admin(Method::PUT, "/v1/settings/signup.open", Some(json!(true)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, settings) = service.admin(Method::GET, "/v1/settings", None).await;
    assert_eq!(settings["signup.open"], true);

    let (status, renamed) = service
        .admin(
            Method::PATCH,
            "/v1/tenants/acme/database",
            Some(json!({"database_name": format!("{}renamed", prefix_of(&tenant))})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert!(renamed["database_name"].as_str().unwrap().ends_with("renamed"));
    let (status, db) = service.admin(Method::GET, "/v1/tenants/acme/database", None).await;
    assert_eq!(
        (status, &db["database_name"]),
        (StatusCode::OK, &renamed["database_name"])
    );

    let (status, _) = service.admin(Method::DELETE, "/v1/tenants/acme?now=true", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service.admin(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A fleet run over HTTP: started in the background, then polled.
    let (status, started) = service
        .admin(Method::POST, "/v1/migrations", Some(json!({"concurrency": 2})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let run_path = format!("/v1/migrations/{}", started["id"].as_str().unwrap());
    let mut run = Value::Null;
    for _ in 0..100 {
        let (status, body) = service.admin(Method::GET, &run_path, None).await;
        assert_eq!(status, StatusCode::OK);
        run = body;
        if run["finished_at"] != Value::Null {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(run["total"], 0, "every tenant is already at the latest version");
    let (status, _) = service
        .admin(Method::POST, "/v1/migrations", Some(json!({"concurrency": 0})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = service
            .client
            .get(format!("{}{path}", service.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = service
        .client
        .get(format!("{}/metrics", service.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tenantdb_pools_created_total",
        "tenantdb_provisioning_total",
        "tenantdb_provisioning_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    service.stop().await;
}

/// The database prefix, read off a generated database name (`<prefix><slug>`).
fn prefix_of(tenant: &Value) -> String {
    let name = tenant["database"]["database_name"].as_str().unwrap();
    let slug = tenant["slug"].as_str().unwrap();
    name.strip_suffix(slug).unwrap().to_owned()
}

async fn roles_and_revocation_take_effect_at_once(backend: Backend) {
    let service = Service::start(backend).await;
    let (owner, owner_token) = service.user("owner@example.com").await;
    let (member, member_token) = service.user("member@example.com").await;
    service.tenant("acme", Some(&owner)).await;
    service
        .admin(
            Method::PUT,
            &format!("/v1/tenants/acme/members/{member}"),
            Some(json!({"role": "MEMBER"})),
        )
        .await;
    let (_, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&member_token),
            Some("acme"),
            Some(json!({"name": "P"})),
        )
        .await;
    let path = format!("/v1/projects/{}", project["id"].as_str().unwrap());
    let (status, body) = service
        .call(Method::DELETE, &path, Some(&member_token), Some("acme"), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = service
        .call(Method::DELETE, &path, Some(&owner_token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A removed member and a revoked token stop working at once.
    let (status, body) = service
        .admin(Method::DELETE, &format!("/v1/tenants/acme/members/{member}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = service
        .call(Method::GET, "/v1/projects", Some(&member_token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, new_token) = service
        .admin(
            Method::POST,
            &format!("/v1/users/{owner}/tokens"),
            Some(json!({"name": "two"})),
        )
        .await;
    let token_id = new_token["id"].as_str().unwrap();
    let token = new_token["token"].as_str().unwrap();
    let (status, _) = service
        .call(Method::GET, "/v1/projects", Some(token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = service
        .admin(Method::DELETE, &format!("/v1/users/{owner}/tokens/{token_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .call(Method::GET, "/v1/projects", Some(token), Some("acme"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    service.stop().await;
}

async fn shutdown_lets_a_provisioning_request_finish(backend: Backend) {
    let mut service = Service::start(backend).await;
    let request = service
        .client
        .post(format!("{}/v1/tenants", service.base))
        .bearer_auth(ADMIN)
        .json(&json!({"slug": "late", "name": "Late"}))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    service.shutdown_now();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"]["status"], "ACTIVE");
    service.stop().await;
}

/// A provisioning failure answers 502 with the tenant id, leaves the tenant
/// FAILED with its message, and `retry` finishes it once the cause is gone.
/// (SQLite: the tenant directory vanishing is a fault a test can cause
/// without touching the shared PostgreSQL server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_provisioning_answers_502_and_retry_finishes_it() {
    let service = Service::start(Backend::Sqlite).await;
    let tenants_dir = service.data_dir().join("tenants");
    std::fs::remove_dir_all(&tenants_dir).unwrap();
    let (status, body) = service
        .admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_GATEWAY, "provisioning_failed"),
        "{body}"
    );
    let (_, tenant) = service.admin(Method::GET, "/v1/tenants/acme", None).await;
    let id = tenant["id"].as_str().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains(id), "{body}");
    assert_eq!(tenant["database"]["status"], "FAILED");
    assert!(
        tenant["database"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    std::fs::create_dir_all(&tenants_dir).unwrap();
    let (status, db) = service
        .admin(Method::POST, "/v1/tenants/acme/database/retry", None)
        .await;
    assert_eq!(
        (status, db["status"].as_str()),
        (StatusCode::OK, Some("ACTIVE")),
        "{db}"
    );
    assert_eq!(db["error_message"], Value::Null);
    service.stop().await;
}

async fn renaming_under_load_keeps_the_data(backend: Backend) {
    let service = std::sync::Arc::new(Service::start(backend).await);
    let (ada, token) = service.user("ada@example.com").await;
    let tenant = service.tenant("acme", Some(&ada)).await;
    let (_, project) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("acme"),
            Some(json!({"name": "Kept"})),
        )
        .await;
    let path = format!("/v1/projects/{}", project["id"].as_str().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (service, token, path, stop) = (service.clone(), token.clone(), path.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = service.call(Method::GET, &path, Some(&token), Some("acme"), None).await;
                match status {
                    StatusCode::OK => {
                        assert_eq!(body["name"], "Kept");
                        ok += 1;
                    }
                    // Refused cleanly while the database moves.
                    StatusCode::SERVICE_UNAVAILABLE => {}
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            ok
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let new_name = format!("{}moved", prefix_of(&tenant));
    let (status, db) = service
        .admin(
            Method::PATCH,
            "/v1/tenants/acme/database",
            Some(json!({"database_name": new_name})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{db}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    let (status, body) = service.call(Method::GET, &path, Some(&token), Some("acme"), None).await;
    assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("Kept")));
}
