//! A small notes application on tenantdb-axum, served on port 0.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantdb::TenantSecret;
use tenantdb::{Config, Tenancy, TenantMigrations, TenantServerConfig};
use tenantdb_axum::{
    ApiError, CatalogAuthorizer, Json, OperatorApi, OperatorAuth, SecretString, TenantDb, TenantResolution,
};
pub use tenantdb_test_support::Backend;
use tenantdb_test_support::{PgScratch, postgres_url};
use tokio::sync::oneshot;

/// The notes app's tenant schema: one table.
struct CreateNotes;

impl MigrationName for CreateNotes {
    fn name(&self) -> &str {
        "m0001_create_notes"
    }
}

#[tenantdb_axum::async_trait]
impl MigrationTrait for CreateNotes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR(200) NOT NULL)")
            .await
            .map(drop)
    }
}

fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateNotes)]
}

#[derive(Deserialize)]
struct NewNote {
    id: i32,
    text: String,
}

async fn add_note(db: TenantDb, Json(note): Json<NewNote>) -> Result<StatusCode, ApiError> {
    let backend = db.write.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => "INSERT INTO notes (id, text) VALUES ($1, $2)",
        _ => "INSERT INTO notes (id, text) VALUES (?, ?)",
    };
    let insert = Statement::from_sql_and_values(backend, sql, [note.id.into(), note.text.into()]);
    db.write.execute_raw(insert).await?;
    Ok(StatusCode::CREATED)
}

async fn list_notes(db: TenantDb) -> Result<Json<Value>, ApiError> {
    let backend = db.read.get_database_backend();
    let select = Statement::from_string(backend, "SELECT text FROM notes ORDER BY id");
    let rows = db.read.query_all_raw(select).await?;
    let texts = rows
        .iter()
        .map(|row| row.try_get::<String>("", "text"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "notes": texts })))
}

/// The app: its notes behind the tenant layer (catalog users and
/// memberships), the operator API under `operator_auth` next to them.
pub fn app(tenancy: &Tenancy, operator_auth: impl OperatorAuth) -> Router {
    let users = CatalogAuthorizer::new(tenancy.catalog().clone());
    let resolution = TenantResolution::new(tenancy.connections().clone()).authorizer(users);
    let (operator, _openapi) = OperatorApi::new(tenancy.clone(), operator_auth)
        .router()
        .split_for_parts();
    Router::new()
        .route("/notes", get(list_notes).post(add_note))
        .route_layer(resolution)
        .merge(operator)
}

/// The app on 127.0.0.1:0 with a tenancy of its own, until dropped.
pub struct Served {
    pub base: String,
    pub client: reqwest::Client,
    tenancy: Tenancy,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Dropped last: the databases go after the tenancy is closed.
    _dir: tempfile::TempDir,
    _scratch: Option<PgScratch>,
}

impl Served {
    pub async fn start(backend: Backend, operator_auth: impl OperatorAuth) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, scratch) = match backend {
            Backend::Sqlite => (Config::embedded(dir.path().join("data")), None),
            Backend::Postgres => {
                let scratch = PgScratch::new();
                let catalog = scratch.create_database("cat").await;
                let mut config = Config::new(
                    SecretString::from(catalog),
                    TenantServerConfig::parse(&postgres_url()).unwrap(),
                );
                config.database_prefix = tenantdb::DatabasePrefix::parse(&format!("{}_", scratch.prefix())).unwrap();
                config.secret =
                    Some(TenantSecret::new(1, SecretString::from("axum-test-secret-0123456789abcdef01")).unwrap());
                (config, Some(scratch))
            }
        };
        config.catalog_max_connections = 2;
        config.pools.budget = 4;
        config.pools.max_per_tenant = 2;
        config.catalog_poll_interval = Duration::from_millis(200);
        let tenancy = Tenancy::connect(config, TenantMigrations::from_fn(migrations))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = app(&tenancy, operator_auth);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .unwrap();
        });
        Self {
            base,
            client: reqwest::Client::new(),
            tenancy,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
            _scratch: scratch,
        }
    }

    /// Stops serving and closes the tenancy.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.tenancy.close().await;
    }

    /// A request with these headers and optional JSON body: (status, body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends a raw body with a content type.
    pub async fn send_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `code` of an error body (docs/API.md's shape), or "".
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
