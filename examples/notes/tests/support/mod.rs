//! One deployment of the notes service as its operator runs it: the built
//! `notes-admin` and `notes-server` binaries, configured by environment
//! variables, on SQLite files in a temporary directory or on the shared
//! PostgreSQL server (a scratch catalog database and tenant prefix of this
//! test run, dropped at the end; a killed run's are swept by the next).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
pub use tenantdb_test_support::Backend;
use tenantdb_test_support::{PgScratch, postgres_url};

pub const TOKEN_KEY: &str = "notes-e2e-token-key-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "notes-e2e-admin-token-0123456789";
const TENANTDB_SECRET: &str = "notes-e2e-tenantdb-secret-0123456789ab";

/// One deployment: the variables both binaries get, and where its
/// databases live.
pub struct Deployment {
    env: Vec<(&'static str, String)>,
    // Dropped after the processes (fields drop in order; the test stops
    // its servers first): then the databases go.
    _dir: tempfile::TempDir,
    _scratch: Option<PgScratch>,
}

/// What a finished command printed, and whether it succeeded.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Deployment {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("TENANTDB_DATA_DIR", dir.path().join("data").display().to_string()),
            // The shared server has about 100 connections for every run.
            ("TENANTDB_POOL_BUDGET", "4".to_owned()),
            ("TENANTDB_POOL_MAX_PER_TENANT", "2".to_owned()),
            ("NOTES_TOKEN_KEY", TOKEN_KEY.to_owned()),
            ("NOTES_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("NOTES_ADDR", "127.0.0.1:0".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        let scratch = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let scratch = PgScratch::new();
                env.extend([
                    ("TENANTDB_DATABASE_URL", scratch.create_database("cat").await),
                    ("TENANTDB_TENANT_SERVER_URL", postgres_url()),
                    ("TENANTDB_DATABASE_PREFIX", format!("{}_", scratch.prefix())),
                    ("TENANTDB_SECRET", TENANTDB_SECRET.to_owned()),
                ]);
                Some(scratch)
            }
        };
        Self {
            env,
            _dir: dir,
            _scratch: scratch,
        }
    }

    fn command(&self, binary: &str, schema: &str) -> Command {
        let mut command = Command::new(binary);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command.env("NOTES_SCHEMA", schema);
        command
    }

    /// Runs `command` to its end (off the runtime's threads).
    async fn run(mut command: Command) -> Output {
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `notes-admin <args>` with the schema release `schema`, to its end.
    pub async fn admin(&self, schema: &str, args: &[&str]) -> Output {
        let mut command = self.command(env!("CARGO_BIN_EXE_notes-admin"), schema);
        command.args(args);
        Self::run(command).await
    }

    /// `notes-admin <args>`, which must succeed; its stdout.
    pub async fn admin_ok(&self, schema: &str, args: &[&str]) -> String {
        let output = self.admin(schema, args).await;
        assert!(
            output.success,
            "notes-admin {args:?} failed:\n{}\n{}",
            output.stdout, output.stderr
        );
        output.stdout
    }

    /// A notes token of `user` for `tenant`, minted by `notes-server token`.
    pub async fn token(&self, user: &str, tenant: &str) -> String {
        let mut command = self.command(env!("CARGO_BIN_EXE_notes-server"), "latest");
        command.args(["token", user, tenant]);
        let output = Self::run(command).await;
        assert!(output.success, "notes-server token failed: {}", output.stderr);
        output.stdout.trim().to_owned()
    }

    /// `notes-server serve` with the schema release `schema`, once it
    /// listens (it prints its address when it does).
    pub async fn serve(&self, schema: &str) -> Served {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_notes-server"), schema)
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Its first line; the rest of its output is not read (it prints
        // nothing more on stdout).
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(30), first_line)
            .await
            .expect("notes-server did not start listening within 30 s")
            .unwrap()
            .unwrap();
        let line = line.trim();
        assert!(!line.is_empty(), "notes-server exited before listening");
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        Served {
            base: base.to_owned(),
            child: Some(child),
            client: reqwest::Client::new(),
        }
    }
}

/// A running `notes-server`.
pub struct Served {
    base: String,
    child: Option<Child>,
    client: reqwest::Client,
}

impl Served {
    /// A request with an optional bearer token, `X-Tenant` and JSON body:
    /// (status, body).
    pub async fn call(&self, method: Method, path: &str, auth: Auth<'_>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = auth.token {
            request = request.bearer_auth(token);
        }
        if let Some(tenant) = auth.tenant {
            request = request.header("x-tenant", tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A raw body with a JSON content type.
    pub async fn post_raw(&self, path: &str, auth: Auth<'_>, body: &'static str) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = auth.token {
            request = request.bearer_auth(token);
        }
        if let Some(tenant) = auth.tenant {
            request = request.header("x-tenant", tenant);
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Stops it as its operator would (SIGTERM) and waits for it to exit.
    pub async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let exited = tokio::task::spawn_blocking(move || child.wait());
        let status = tokio::time::timeout(Duration::from_secs(20), exited)
            .await
            .expect("notes-server did not stop within 20 s of SIGTERM")
            .unwrap()
            .unwrap();
        assert!(status.success(), "notes-server exited with {status}");
    }
}

/// A test that failed before `stop` leaves no server behind.
impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Who a request says it is, and for which tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Auth<'a> {
    pub token: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl<'a> Auth<'a> {
    pub fn new(token: &'a str, tenant: &'a str) -> Self {
        Self {
            token: Some(token),
            tenant: Some(tenant),
        }
    }
}

/// The `code` of an error body (API.md's shape), or "".
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The schema version `notes-admin tenants show <tenant> --json` reports.
pub async fn schema_version(deployment: &Deployment, schema: &str, tenant: &str) -> String {
    let shown: Value = serde_json::from_str(
        &deployment
            .admin_ok(schema, &["tenants", "show", tenant, "--json"])
            .await,
    )
    .unwrap();
    shown["database"]["schema_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
