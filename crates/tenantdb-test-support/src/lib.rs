//! Test harness for tenantdb's PostgreSQL tests.
//!
//! The PostgreSQL server at `TENANTDB_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) is shared with other runs.
//! Each test process registers a run (a row in `tenantdb_test_runs` plus a
//! session advisory lock held while the process lives) and names everything
//! it makes with the run's prefix. A [`PgScratch`] adds a number of its own
//! and drops every database and role under its prefix when it is dropped
//! (also after a panic). Every new run sweeps what runs whose lock is free
//! (killed processes) left behind, and only those.

mod cluster;

pub use cluster::{PgCluster, SUPERUSER_PASSWORD};

use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngCore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub fn postgres_url() -> String {
    std::env::var("TENANTDB_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

pub fn postgres_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&postgres_url()).expect("TENANTDB_TEST_POSTGRES_URL is not a valid PostgreSQL URL")
}

pub fn no_server(err: impl std::fmt::Display) -> ! {
    panic!("{}", no_server_message(err))
}

fn no_server_message(err: impl std::fmt::Display) -> String {
    format!(
        "the PostgreSQL tests need a PostgreSQL server (13 or newer) with a superuser: none answered at \
         TENANTDB_TEST_POSTGRES_URL (default {DEFAULT_POSTGRES_URL}). Start one or point the variable at \
         one. Cause: {err}"
    )
}

/// This process's run prefix, registered (and dead runs swept) on first use.
pub fn run_prefix() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The lock lives as long as this connection, which lives as long as
        // the process: a parked thread owns it (and the runtime it needs).
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _hold = match runtime.block_on(register_run()) {
                Ok((conn, prefix)) => {
                    let _ = tx.send(Ok(prefix));
                    (conn, runtime)
                }
                Err(message) => {
                    let _ = tx.send(Err(message));
                    return;
                }
            };
            loop {
                std::thread::park();
            }
        });
        match rx.recv() {
            Ok(Ok(prefix)) => prefix,
            Ok(Err(message)) => panic!("{message}"),
            Err(_) => panic!("registering the test run failed"),
        }
    })
}

async fn register_run() -> Result<(PgConnection, String), String> {
    let mut conn = PgConnection::connect_with(&postgres_options())
        .await
        .map_err(no_server_message)?;
    let mut bytes = [0u8; 3];
    rand::rng().fill_bytes(&mut bytes);
    let prefix = format!("tt{:02x}{:02x}{:02x}_", bytes[0], bytes[1], bytes[2]);
    let key = i64::from(u32::from_be_bytes([0x74, bytes[0], bytes[1], bytes[2]]));
    // Serialise creating the registry between concurrent first runs.
    sqlx::raw_sql(
        "BEGIN; SELECT pg_advisory_xact_lock(7411); \
         CREATE TABLE IF NOT EXISTS tenantdb_test_runs (prefix text PRIMARY KEY, lock_key bigint NOT NULL, \
         started_at timestamptz NOT NULL DEFAULT now()); COMMIT;",
    )
    .execute(&mut conn)
    .await
    .expect("cannot create the test run registry");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO tenantdb_test_runs (prefix, lock_key) VALUES ($1, $2)")
        .bind(&prefix)
        .bind(key)
        .execute(&mut conn)
        .await
        .unwrap();
    sweep_dead_runs(&mut conn, &prefix).await;
    Ok((conn, prefix))
}

/// Drops what runs whose lock is free (their process is gone) left behind.
async fn sweep_dead_runs(conn: &mut PgConnection, own: &str) {
    // Advisory locks are re-entrant within a session: our own lock would
    // look free to us, so our own run is skipped by name.
    let runs: Vec<(String, i64)> = sqlx::query_as("SELECT prefix, lock_key FROM tenantdb_test_runs WHERE prefix <> $1")
        .bind(own)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for (prefix, key) in runs {
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if !free {
            continue;
        }
        // Forget the run only once nothing of it is left, so that a sweep
        // that failed part-way is tried again by the next run.
        if !drop_everything_with_prefix(conn, &prefix).await {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await
                .unwrap();
            continue;
        }
        sqlx::query("DELETE FROM tenantdb_test_runs WHERE prefix = $1")
            .bind(&prefix)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// Drops every database and role whose name starts with `prefix`; true when
/// none is left.
pub async fn drop_everything_with_prefix(conn: &mut PgConnection, prefix: &str) -> bool {
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for name in databases {
        // Templates refuse DROP until they are ordinary databases again.
        let unmark = format!("ALTER DATABASE {} WITH IS_TEMPLATE false", quote_ident(&name));
        let _ = sqlx::raw_sql(AssertSqlSafe(unmark)).execute(&mut *conn).await;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name));
        if let Err(err) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
            eprintln!("cleanup: cannot drop database {name}: {err}");
        }
    }
    let roles: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
        .bind(prefix)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for role in roles {
        let sql = format!("DROP ROLE IF EXISTS {}", quote_ident(&role));
        if let Err(err) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
            eprintln!("cleanup: cannot drop role {role}: {err}");
        }
    }
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)) \
         + (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1))",
    )
    .bind(prefix)
    .fetch_one(&mut *conn)
    .await
    .unwrap_or(1);
    left == 0
}

/// The two engines every behaviour is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates, in a module `on_postgres` and one `on_sqlite`, one
/// `#[tokio::test]` per backend for each named `async fn(Backend)` of the
/// calling module: one test body, two backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )+
        }
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )+
        }
    };
}

/// Quotes an identifier (test-side copy, so the harness needs no tenantdb).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A scratch namespace on the shared server: a unique prefix for databases
/// and roles, all dropped when this value is.
#[derive(Debug)]
pub struct PgScratch {
    prefix: String,
}

impl PgScratch {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Self {
            prefix: format!("{}{n:02}", run_prefix()),
        }
    }

    /// `run prefix + number`: at most 11 characters.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates an empty database `<prefix><suffix>` and returns its URL.
    pub async fn create_database(&self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.prefix);
        let mut admin = PgConnection::connect_with(&postgres_options())
            .await
            .unwrap_or_else(|err| no_server(err));
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {}", quote_ident(&name))))
            .execute(&mut admin)
            .await
            .expect("cannot create a scratch database");
        let _ = admin.close().await;
        postgres_options().database(&name).to_url_lossy().to_string()
    }
}

impl Default for PgScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop may run inside a test's runtime, which cannot block on a
        // future: clean up from a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(mut conn) = PgConnection::connect_with(&postgres_options()).await else {
                    return;
                };
                drop_everything_with_prefix(&mut conn, &prefix).await;
                let _ = conn.close().await;
            });
        });
        if cleanup.join().is_err() {
            eprintln!(
                "cleanup of scratch prefix {} failed; the next run sweeps it",
                self.prefix
            );
        }
    }
}

/// Samples, every `every`, how many tenant connections (application name
/// `tenantdb-tenant`) to databases under a prefix the server shows, and
/// keeps the peak: what the budget tests hold against the budget.
#[derive(Debug)]
pub struct ConnectionPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u32>,
}

impl ConnectionPeak {
    /// Starts sampling through `admin` (a superuser pool).
    pub fn start(admin: sqlx::PgPool, prefix: &str, every: std::time::Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stopping, prefix) = (stop.clone(), prefix.to_owned());
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !stopping.load(Ordering::Relaxed) {
                let seen: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantdb-tenant' \
                     AND starts_with(datname, $1)",
                )
                .bind(&prefix)
                .fetch_one(&admin)
                .await
                .expect("pg_stat_activity could not be read");
                peak = peak.max(u32::try_from(seen).unwrap_or(u32::MAX));
                tokio::time::sleep(every).await;
            }
            peak
        });
        Self { stop, task }
    }

    /// Stops sampling; the most connections seen at once.
    pub async fn stop(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the sampler panicked")
    }
}
