use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenantdb::TenantSecret;
use tenantdb::{Config, TenantServerConfig};
use tenantdb_server::http::{ConnectionLimits, Server, ServiceOptions};
pub use tenantdb_test_support::Backend;
use tenantdb_test_support::{PgScratch, postgres_url};
use tokio::sync::oneshot;

pub const ADMIN: &str = "test-admin-token-0123456789";

/// The `code` of an error body (docs/API.md's shape), or "".
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

pub struct Service {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _scratch: Option<PgScratch>,
}

impl Service {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_, _| {}).await
    }

    /// Starts the service after `tune` has adjusted the test defaults.
    pub async fn start_with(backend: Backend, tune: impl FnOnce(&mut Config, &mut ServiceOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Not made yet: the service creates it (with its permissions).
        let data_dir = dir.path().join("data");
        let (mut config, scratch) = match backend {
            Backend::Sqlite => (Config::embedded(&data_dir), None),
            Backend::Postgres => {
                let scratch = PgScratch::new();
                let catalog = scratch.create_database("cat").await;
                let mut config = Config::new(
                    SecretString::from(catalog),
                    TenantServerConfig::parse(&postgres_url()).unwrap(),
                );
                config.database_prefix = tenantdb::DatabasePrefix::parse(&format!("{}_", scratch.prefix())).unwrap();
                config.secret =
                    Some(TenantSecret::new(1, SecretString::from("http-test-secret-0123456789abcdef01")).unwrap());
                (config, Some(scratch))
            }
        };
        config.catalog_max_connections = 2;
        config.pools.budget = 6;
        config.pools.max_per_tenant = 2;
        config.catalog_poll_interval = Duration::from_millis(200);
        let mut options = ServiceOptions {
            admin_token: SecretString::from(ADMIN),
            base_domain: Some("example.test".into()),
            connections: ConnectionLimits::default(),
        };
        tune(&mut config, &mut options);
        let server = Server::build(config, options, "127.0.0.1:0").await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run_until_stopped(async {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            data_dir,
            _dir: dir,
            _scratch: scratch,
        }
    }

    /// Signals shutdown and waits for the service to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The data directory (SQLite catalog and tenant files).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir.clone()
    }

    pub fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        tenant: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(tenant) = tenant {
            request = request.header("X-Tenant", tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN), None, body).await
    }

    /// A user with a token: (user id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let (status, user) = self
            .admin(
                Method::POST,
                "/v1/users",
                Some(json!({"email": email, "name": "Someone"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let id = user["id"].as_str().unwrap().to_owned();
        let (status, token) = self.admin(Method::POST, &format!("/v1/users/{id}/tokens"), None).await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        (id, token["token"].as_str().unwrap().to_owned())
    }

    pub async fn tenant(&self, slug: &str, owner: Option<&str>) -> Value {
        let mut body = json!({"slug": slug, "name": slug.to_uppercase()});
        if let Some(owner) = owner {
            body["owner_user_id"] = json!(owner);
        }
        let (status, tenant) = self.admin(Method::POST, "/v1/tenants", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{tenant}");
        tenant
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}
