//! The embedded default's files on disk.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Backend, Service};

/// The permission bits, in octal as `ls` shows them.
fn mode(path: &Path) -> String {
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    format!("{:o}", mode & 0o777)
}

/// The data directory, the tenant and template directories, the catalog,
/// every tenant file (with its WAL files) and template are the owner's
/// alone: directories 0700, files 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_and_directories_are_for_the_owner_only() {
    let service = Service::start(Backend::Sqlite).await;
    let (ada, token) = service.user("ada@example.com").await;
    let tenant = service.tenant("acme", Some(&ada)).await;
    // A write through the tenant's pool, which stays open: its WAL files exist.
    let (status, _) = service
        .call(
            Method::POST,
            "/v1/projects",
            Some(&token),
            Some("acme"),
            Some(json!({"name": "P"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let data = service.data_dir();
    let tenants = data.join("tenants");
    let templates = data.join("tenants-templates");
    let tenant_file = tenants.join(format!("{}.db", tenant["id"].as_str().unwrap()));
    for dir in [&data, &tenants, &templates] {
        assert_eq!(mode(dir), "700", "{}", dir.display());
    }
    for file in [
        &data.join("catalog.db"),
        &tenant_file,
        &tenant_file.with_extension("db-wal"),
    ] {
        assert_eq!(mode(file), "600", "{}", file.display());
    }
    // And everything else in them (WAL files, locks, templates).
    let mut files = 0;
    for dir in [&data, &tenants, &templates] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let expected = if path.is_dir() { "700" } else { "600" };
            assert_eq!(mode(&path), expected, "{}", path.display());
            files += 1;
        }
    }
    assert!(files >= 6, "{files} files and directories");
    let built = std::fs::read_dir(&templates)
        .unwrap()
        .any(|entry| entry.unwrap().path().extension().is_some_and(|e| e == "db"));
    assert!(built, "the template was built (its mode checked above)");
    service.stop().await;
}
