//! Throwaway PostgreSQL clusters for tests that must stop, restart or
//! reconfigure a server (never the shared one): `initdb` and `pg_ctl` on a
//! free port under a temporary directory, password (SCRAM) authentication
//! over TCP, run as the `postgres` OS user when the tests run as root.
//! Stopped and removed on drop.
//!
//! Each cluster's directory is under `$TMPDIR/tenantdb-test-clusters/` and
//! records the test process that made it (its pid and start time). A
//! process killed before its clusters were dropped leaves them running:
//! the next cluster made by any run stops and removes those whose process
//! is gone (and only those).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password of every throwaway cluster.
pub const SUPERUSER_PASSWORD: &str = "throwaway-superuser-pw";

/// A PostgreSQL cluster of its own, stopped and removed on drop.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the newest
/// version under `/usr/lib/postgresql`.
fn postgres_bin() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists());
    if from_pg_config.is_some() {
        return from_pg_config;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a server program, as the `postgres` OS user when we are root
/// (PostgreSQL refuses to run as root).
fn run(program: &Path, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    if running_as_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .status()
    } else {
        Command::new(program).args(args).status()
    }
}

fn must(program: &Path, args: &[&str]) {
    let status = run(program, args).unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
    assert!(status.success(), "{} {args:?} failed", program.display());
}

/// Where every run's clusters live.
fn clusters_dir() -> PathBuf {
    std::env::temp_dir().join("tenantdb-test-clusters")
}

/// This process as `<pid> <start time>` (field 22 of `/proc/<pid>/stat`):
/// a pid alone may be reused by another process.
fn process_mark(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let after_name = stat.rsplit_once(')')?.1;
    let start = after_name.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Stops and removes the clusters of test processes that are gone.
fn sweep_dead_clusters(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(clusters_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        let alive = owner
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .and_then(process_mark)
            .is_some_and(|now| now == owner.trim());
        if alive {
            continue;
        }
        let data = dir.join("data").display().to_string();
        if dir.join("data").join("postmaster.pid").exists() {
            let _ = run(&bin.join("pg_ctl"), &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            eprintln!(
                "removed the throwaway cluster of a test process that is gone: {}",
                dir.display()
            );
        }
    }
}

/// A new cluster directory under `clusters_dir`, marked with this process
/// (after sweeping those of processes that are gone).
fn new_dir(bin: &Path) -> tempfile::TempDir {
    sweep_dead_clusters(bin);
    std::fs::create_dir_all(clusters_dir()).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("cluster-")
        .tempdir_in(clusters_dir())
        .unwrap();
    let mark = process_mark(std::process::id()).expect("this process's /proc entry");
    std::fs::write(dir.path().join("owner"), mark).unwrap();
    dir
}

/// Gives `dir` to the `postgres` OS user when we are root (the server
/// runs as that user).
fn give_to_postgres(dir: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot give the cluster's directory to the postgres user"
        );
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl PgCluster {
    /// Makes and starts a cluster; panics with the reason when it cannot
    /// (these tests never pass silently without one).
    pub fn start() -> Self {
        let bin = postgres_bin().expect(
            "these tests start a throwaway PostgreSQL cluster: initdb and pg_ctl from the PostgreSQL server \
             package are needed (pg_config --bindir, or /usr/lib/postgresql/<version>/bin)",
        );
        let dir = new_dir(&bin);
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        give_to_postgres(dir.path());
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        let data_arg = data.display().to_string();
        must(
            &bin.join("initdb"),
            &[
                "-D",
                &data_arg,
                "-U",
                "postgres",
                &pwfile_arg,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-N",
            ],
        );
        let cluster = Self {
            bin,
            data,
            port: free_port(),
            dir,
        };
        cluster.pg_ctl_start();
        cluster
    }

    /// A hot standby of this cluster on a port of its own, made with
    /// `pg_basebackup -R` (streaming replication, replaying as it comes),
    /// stopped and removed on drop like any cluster.
    pub fn standby(&self) -> Self {
        let dir = new_dir(&self.bin);
        give_to_postgres(dir.path());
        let data = dir.path().join("data");
        let primary = format!(
            "host=127.0.0.1 port={} user=postgres password={SUPERUSER_PASSWORD}",
            self.port
        );
        let data_arg = data.display().to_string();
        must(
            &self.bin.join("pg_basebackup"),
            &["-D", &data_arg, "-d", &primary, "-R", "-X", "stream", "-c", "fast"],
        );
        let standby = Self {
            bin: self.bin.clone(),
            data,
            port: free_port(),
            dir,
        };
        standby.pg_ctl_start();
        standby
    }

    /// Starts the (stopped) server again on the same port.
    pub fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=30 -c fsync=off \
             -c wal_level=logical",
            self.port,
            self.data.display()
        );
        let data = self.data.display().to_string();
        let log = self.data.join("log.txt").display().to_string();
        must(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// Stops the server (fast shutdown: sessions are ended with 57P01).
    pub fn pg_ctl_stop(&self) {
        let data = self.data.display().to_string();
        must(&self.bin.join("pg_ctl"), &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// The cluster's directory (its data directory is `data` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL, database `postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The superuser's URL without its password (`SUPERUSER_PASSWORD`).
    pub fn url_without_password(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.url())
            .await
            .expect("cannot reach the throwaway cluster");
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("cannot create a database on the throwaway cluster");
        let _ = admin.close().await;
        self.url_for(name)
    }

    /// The superuser's URL for another database.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = run(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}
