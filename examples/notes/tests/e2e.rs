//! The notes service driven as its operator and its users would: tenants
//! made with `notes-admin`, notes written and read through `notes-server`
//! with the service's own tokens, then the second migration rolled out
//! with `notes-admin migrate` and a clean `notes-admin doctor`. On SQLite
//! and on PostgreSQL (`TENANTDB_TEST_POSTGRES_URL`).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantdb_test_support::both_backends;

use support::{ADMIN_TOKEN, Auth, Backend, Deployment, Served, code, schema_version};

both_backends!(a_team_writes_notes_and_gets_pinning_when_the_second_migration_rolls_out);

async fn a_team_writes_notes_and_gets_pinning_when_the_second_migration_rolls_out(backend: Backend) {
    let deployment = Deployment::new(backend).await;
    // The first release: only the first migration.
    deployment.admin_ok("v1", &["tenants", "create", "acme"]).await;
    deployment.admin_ok("v1", &["tenants", "create", "beta"]).await;
    assert_eq!(schema_version(&deployment, "v1", "acme").await, "m0001_create_notes");

    let v1 = deployment.serve("v1").await;
    let alice = deployment.token("alice", "acme").await;
    let first = writes_and_reads_a_note(&v1, &alice).await;
    refuses_wrong_tokens_and_tenants(&v1, &deployment, &alice).await;

    // The second release: its `migrate` brings every tenant up while the
    // first release keeps serving (the new column has a default).
    deployment.admin_ok("latest", &["migrate"]).await;
    for tenant in ["acme", "beta"] {
        assert_eq!(schema_version(&deployment, "latest", tenant).await, "m0002_add_pinned");
    }
    let (status, _) = v1.call(Method::GET, "/notes", Auth::new(&alice, "acme"), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first release still serves after the migration"
    );
    v1.stop().await;

    let latest = deployment.serve("latest").await;
    pins_a_note_which_is_listed_first(&latest, &alice, first).await;
    latest.stop().await;

    // A tenant made now starts at the latest schema.
    deployment.admin_ok("latest", &["tenants", "create", "gamma"]).await;
    assert_eq!(schema_version(&deployment, "latest", "gamma").await, "m0002_add_pinned");
    let doctor = deployment.admin("latest", &["doctor"]).await;
    assert!(
        doctor.success,
        "doctor found problems:\n{}\n{}",
        doctor.stdout, doctor.stderr
    );
}

/// Writes a note as alice and reads it back; returns its id.
async fn writes_and_reads_a_note(app: &Served, alice: &str) -> i64 {
    let as_alice = Auth::new(alice, "acme");
    let (status, note) = app
        .call(
            Method::POST,
            "/notes",
            as_alice,
            Some(json!({"title": "groceries", "body": "milk"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(
        (note["author"].as_str(), note.get("pinned")),
        (Some("alice"), None),
        "{note}"
    );
    let id = note["id"].as_i64().unwrap();

    let (status, listed) = app.call(Method::GET, "/notes", as_alice, None).await;
    assert_eq!(
        (status, listed["notes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "{listed}"
    );
    let (status, shown) = app.call(Method::GET, &format!("/notes/{id}"), as_alice, None).await;
    assert_eq!(
        (status, shown["body"].as_str()),
        (StatusCode::OK, Some("milk")),
        "{shown}"
    );

    let (status, body) = app.call(Method::GET, "/notes/999999", as_alice, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.post_raw("/notes", as_alice, "{\"title\": ").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let pinned = json!({"title": "too early", "pinned": true});
    let (status, body) = app.call(Method::POST, "/notes", as_alice, Some(pinned)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "no column yet"
    );
    id
}

async fn refuses_wrong_tokens_and_tenants(app: &Served, deployment: &Deployment, alice: &str) {
    let forged = {
        let (payload, mac) = alice.split_once('.').unwrap();
        format!("{payload}.{}", mac.chars().rev().collect::<String>())
    };
    for token in [None, Some("not-a-token"), Some(forged.as_str()), Some(ADMIN_TOKEN)] {
        let auth = Auth {
            token,
            tenant: Some("acme"),
        };
        let (status, body) = app.call(Method::GET, "/notes", auth, None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{token:?}"
        );
    }
    // alice's token opens acme only: beta exists but looks as if it did not.
    for tenant in ["beta", "nowhere"] {
        let (status, body) = app.call(Method::GET, "/notes", Auth::new(alice, tenant), None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "tenant_not_found"),
            "{tenant}"
        );
    }
    let bob = deployment.token("bob", "beta").await;
    let (status, body) = app.call(Method::GET, "/notes", Auth::new(&bob, "beta"), None).await;
    assert_eq!(
        (status, body["notes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "beta's own notes"
    );

    // The operator API sits beside the notes under the admin token only.
    let operator = Auth {
        token: Some(ADMIN_TOKEN),
        tenant: None,
    };
    let (status, body) = app.call(Method::GET, "/v1/tenants/acme", operator, None).await;
    assert_eq!(
        (status, body["slug"].as_str()),
        (StatusCode::OK, Some("acme")),
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/tenants/acme",
            Auth {
                token: Some(alice),
                tenant: None,
            },
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
}

async fn pins_a_note_which_is_listed_first(app: &Served, alice: &str, first: i64) {
    let as_alice = Auth::new(alice, "acme");
    let pinned = json!({"title": "call the bank", "pinned": true});
    let (status, note) = app.call(Method::POST, "/notes", as_alice, Some(pinned)).await;
    assert_eq!(
        (status, note["pinned"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{note}"
    );

    let (status, listed) = app.call(Method::GET, "/notes", as_alice, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let order: Vec<_> = listed["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["title"].as_str().unwrap(), n["pinned"].as_bool().unwrap()))
        .collect();
    assert_eq!(order, [("call the bank", true), ("groceries", false)]);
    let (status, old) = app.call(Method::GET, &format!("/notes/{first}"), as_alice, None).await;
    assert_eq!(
        (status, old["pinned"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{old}"
    );
}
