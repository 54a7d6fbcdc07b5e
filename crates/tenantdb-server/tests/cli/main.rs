//! The `tenantdb` binary end to end, as an operator uses it, on the
//! embedded default (SQLite under a data directory) and on PostgreSQL.

use std::process::{Command, Output};

use tenantdb_test_support::{ConnectionPeak, PgScratch, postgres_url};

struct Cli {
    envs: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    _scratch: Option<PgScratch>,
}

impl Cli {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let envs = vec![(
            "TENANTDB_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        )];
        Self {
            envs,
            _dir: dir,
            _scratch: None,
        }
    }

    async fn postgres() -> Self {
        let scratch = PgScratch::new();
        let catalog = scratch.create_database("cat").await;
        let dir = tempfile::tempdir().unwrap();
        let envs = vec![
            (
                "TENANTDB_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("TENANTDB_DATABASE_URL".into(), catalog),
            ("TENANTDB_TENANT_SERVER_URL".into(), postgres_url()),
            ("TENANTDB_DATABASE_PREFIX".into(), format!("{}_", scratch.prefix())),
            ("TENANTDB_SECRET".into(), "cli-test-secret-0123456789abcdef0123".into()),
        ];
        Self {
            envs,
            _dir: dir,
            _scratch: Some(scratch),
        }
    }

    fn prefix(&self) -> String {
        self.envs
            .iter()
            .find(|(k, _)| k == "TENANTDB_DATABASE_PREFIX")
            .map_or("tenant_".into(), |(_, v)| v.clone())
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantdb"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        command.output().expect("the binary runs")
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail and returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `tenants shell <tenant>` with `input` on its stdin; its stdout.
    fn shell(&self, tenant: &str, input: &str) -> String {
        use std::io::Write;
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantdb"));
        command
            .args(["tenants", "shell", tenant])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

async fn operator_session(cli: Cli) {
    let created = cli.ok(&["tenants", "create", "acme", "--name", "Acme Inc."]);
    assert!(created.contains("acme") && created.contains("ACTIVE"), "{created}");

    let list = cli.json(&["tenants", "list", "--json"]);
    let acme = &list[0];
    assert_eq!(acme["slug"], "acme");
    assert_eq!(acme["name"], "Acme Inc.");
    assert_eq!(acme["database"]["status"], "ACTIVE");
    assert_eq!(acme["database"]["schema_version"], "m0001_create_projects_and_tasks");
    let id = acme["id"].as_str().unwrap().to_owned();
    assert_eq!(cli.json(&["tenants", "show", &id, "--json"])["slug"], "acme");
    doctor(&cli);

    // Bad input: a clear message naming the rule, and nothing created.
    let err = cli.fails(&["tenants", "create", "x; drop database y"]);
    assert!(err.contains("invalid slug") && err.contains("a-z"), "{err}");
    let err = cli.fails(&["tenants", "create", "ok", "--database-name", "template0"]);
    assert!(err.contains("system database"), "{err}");
    let err = cli.fails(&["tenants", "create", "acme"]);
    assert!(err.contains("already exists"), "{err}");
    let err = cli.fails(&["tenants", "show", "nobody"]);
    assert!(err.contains("tenant 'nobody' not found"), "{err}");
    assert_eq!(cli.json(&["tenants", "list", "--json"]).as_array().unwrap().len(), 1);

    let new_name = format!("{}acme_two", cli.prefix());
    let renamed = cli.json(&["tenants", "rename-database", "acme", &new_name, "--json"]);
    assert_eq!(renamed["database"]["database_name"], new_name.as_str());

    assert!(cli.ok(&["tenants", "check", "acme"]).contains("reachable"));
    assert!(
        cli.ok(&["migrate"])
            .contains("every tenant is at m0001_create_projects_and_tasks")
    );
    assert!(cli.ok(&["migrate", "--dry-run"]).contains("0 tenant(s) behind"));
    let status = cli.ok(&["migrate", "status"]);
    assert!(
        status.contains("m0001_create_projects_and_tasks") && status.contains("behind: 0"),
        "{status}"
    );

    // The tenant's own way in: a URL (no password unless asked), a shell.
    let url = cli.ok(&["tenants", "url", "acme"]).trim().to_owned();
    if let Some(rest) = url.strip_prefix("postgres://") {
        let userinfo = rest.split('@').next().unwrap();
        assert!(!userinfo.contains(':'), "no password unless asked: {url}");
        let with_password = cli.ok(&["tenants", "url", "acme", "--show-password"]);
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(with_password.trim())
            .await
            .unwrap();
        let (user, db): (String, String) = sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!((user.as_str(), db.as_str()), (userinfo, new_name.as_str()));
        sqlx::Connection::close(conn).await.unwrap();
    } else {
        let file = url.strip_prefix("sqlite://").expect("a sqlite URL");
        assert!(std::path::Path::new(file).is_file(), "{url}");
        assert!(cli.ok(&["tenants", "show", "acme"]).contains(&format!("file: {file}")));
    }
    let shell = cli.shell("acme", "SELECT 40 + 2;");
    assert!(shell.contains("42"), "{shell}");

    // One statement over the fleet, as each tenant's role.
    let read = cli.json(&[
        "tenants",
        "exec",
        "--sql",
        "SELECT count(*) AS n FROM projects",
        "--json",
    ]);
    assert_eq!(
        read,
        serde_json::json!([{"tenant": "acme", "ok": true, "rows": [{"n": 0}]}])
    );
    let write = cli.json(&[
        "tenants",
        "exec",
        "--sql",
        "UPDATE projects SET name = name WHERE 1 = 0",
        "--tenant",
        "acme",
        "--json",
    ]);
    assert_eq!(write[0]["rows_affected"], 0, "{write}");
    if cli.prefix() != "tenant_" {
        let who = cli.json(&["tenants", "exec", "--sql", "SELECT current_user AS who", "--json"]);
        let who = who[0]["rows"][0]["who"].as_str().unwrap().to_owned();
        assert!(
            who != "postgres" && url.contains(&format!("//{who}@")),
            "{who} is the tenant's role"
        );
    }
    // Every column comes back, whatever its type (numeric, NULL, text).
    let typed = cli.json(&[
        "tenants",
        "exec",
        "--sql",
        "SELECT 1.5 AS x, NULL AS missing, 'a' AS s;",
        "--json",
    ]);
    assert_eq!(
        typed[0]["rows"][0],
        serde_json::json!({"x": 1.5, "missing": null, "s": "a"}),
        "{typed}"
    );
    let table = cli.ok(&["tenants", "exec", "--sql", "SELECT 7 AS seven"]);
    assert!(
        table.contains("acme: 1 row(s)") && table.contains("seven") && table.contains('7'),
        "{table}"
    );
    let out = cli.run(&["tenants", "exec", "--sql", "SELECT * FROM no_such_table", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed[0]["ok"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed on 1 of 1"));

    // The reference app ships no seed: it says so, and changes nothing.
    let out = cli.run(&["tenants", "seed", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no seed"));

    // Every command that prints has --json, one document each.
    let check = cli.json(&["tenants", "check", "acme", "--json"]);
    assert_eq!(check["reachable"], true);
    assert!(check["query_ms"].as_f64().unwrap() >= check["connect_ms"].as_f64().unwrap());
    let plan = cli.json(&["migrate", "--dry-run", "--json"]);
    assert_eq!(plan["target"], "m0001_create_projects_and_tasks");
    assert_eq!(plan["behind"].as_array().unwrap().len(), 0);
    let run = cli.json(&["migrate", "--json"]);
    assert_eq!(
        (run["status"].as_str(), run["total"].as_u64()),
        (Some("SUCCEEDED"), Some(0)),
        "{run}"
    );
    let versions = cli.json(&["migrate", "status", "--json"]);
    assert_eq!(versions["latest"], "m0001_create_projects_and_tasks");
    assert_eq!(versions["behind"], 0);
    assert_eq!(versions["by_version"]["m0001_create_projects_and_tasks"], 1);
    assert_eq!(versions["runs"][0]["status"], "SUCCEEDED", "{versions}");
    let overview = cli.json(&["status", "--json"]);
    assert_eq!(overview["tenants_by_status"]["ACTIVE"], 1, "{overview}");
    assert_eq!(overview["server"]["name"], "default");
    assert!(overview["pools"]["open"].is_u64());
    assert_eq!(overview["versions"]["behind"], 0);
    // The fleet run filled the warm stock (TENANTDB_WARM_DATABASES, 3).
    assert_eq!(overview["warm"][0]["ready"], 3, "{overview}");
    assert!(cli.ok(&["status"]).contains("warm databases on 'default': 3 of 3"));
    // Each command is its own short process: those that opened tenant
    // pools left the instances when they ended, and `status` opened none.
    assert_eq!(overview["instances"], serde_json::json!([]), "{overview}");
    let servers = cli.json(&["servers", "list", "--json"]);
    assert_eq!(servers[0]["name"], "default", "{servers}");
    assert_eq!(servers[0]["tenants"], 1, "{servers}");
    let server = cli.json(&["servers", "show", "default", "--json"]);
    assert_eq!(server["budget"], servers[0]["budget"]);
    let table = cli.ok(&["servers", "list"]);
    assert!(table.contains("default") && table.contains("ACCEPTING"), "{table}");
    assert!(
        cli.fails(&["servers", "show", "nope"])
            .contains("no server named 'nope'")
    );
    let drained = cli.json(&["servers", "drain", "default", "--json"]);
    assert_eq!(drained["status"], "DRAINING");
    assert!(cli.fails(&["tenants", "create", "late"]).contains("DRAINING"));
    assert_eq!(
        cli.json(&["servers", "accept", "default", "--json"])["status"],
        "ACCEPTING"
    );
    assert_eq!(cli.json(&["reconcile", "--json"]), serde_json::json!([]));
    let user = cli.json(&["users", "create", "ada@example.com", "--name", "Ada", "--json"]);
    assert_eq!(user["email"], "ada@example.com");
    assert!(
        cli.ok(&["users", "create", "bob@example.com"])
            .contains("created user bob@example.com")
    );
    let users = cli.json(&["users", "list", "--json"]);
    assert_eq!(users[0]["email"], "ada@example.com");
    assert_eq!(users[1]["name"], "bob");
    let listed = cli.ok(&["users", "list"]);
    assert!(
        listed.starts_with("EMAIL") && listed.contains("bob@example.com"),
        "{listed}"
    );
    assert!(
        listed.lines().all(|l| l == l.trim_end()),
        "no row ends in spaces:\n{listed}"
    );
    let token = cli.ok(&["users", "token", "ada@example.com"]);
    assert!(token.trim().starts_with("tdb_") && token.trim().len() > 40, "{token}");
    let second = cli.json(&["users", "token", "ada@example.com", "--name", "ci", "--json"]);
    assert!(second["token"].as_str().unwrap().starts_with("tdb_"), "{second}");
    let tokens = cli.json(&["users", "tokens", "ada@example.com", "--json"]);
    assert_eq!(tokens.as_array().unwrap().len(), 2, "{tokens}");
    assert_eq!(tokens[1]["name"], "ci");
    assert_eq!(tokens[1]["revoked_at"], serde_json::Value::Null);
    let id = second["id"].as_str().unwrap();
    let revoked = cli.json(&["tokens", "revoke", id, "--json"]);
    assert_eq!(revoked["revoked"], true);
    let tokens = cli.json(&["users", "tokens", "ada@example.com", "--json"]);
    assert!(tokens[1]["revoked_at"].is_string(), "{tokens}");
    assert!(cli.fails(&["tokens", "revoke", id]).contains("already revoked"));
    assert!(
        !cli.ok(&["users", "tokens", "ada@example.com"]).contains("tdb_"),
        "token values are never listed"
    );
    // Roles print as they are written everywhere else (not `Admin`).
    assert!(
        cli.ok(&["members", "add", "acme", "ada@example.com", "--role", "admin"])
            .contains("ada@example.com is ADMIN of acme")
    );
    let members = cli.json(&["members", "list", "acme", "--json"]);
    assert_eq!(members[0]["email"], "ada@example.com");
    assert_eq!(members[0]["role"], "ADMIN");
    let added = cli.json(&[
        "members",
        "add",
        "acme",
        "bob@example.com",
        "--role",
        "MEMBER",
        "--json",
    ]);
    assert_eq!(added["role"], "MEMBER");
    assert!(cli.ok(&["members", "list", "acme"]).contains("bob@example.com  MEMBER"));
    let removed = cli.json(&["members", "remove", "acme", "bob@example.com", "--json"]);
    assert_eq!(removed["removed"], true);
    let help = cli.ok(&["members", "add", "--help"]);
    assert!(help.contains("OWNER") && help.contains("MEMBER"), "{help}");
    assert!(
        cli.ok(&["members", "remove", "acme", "ada@example.com"])
            .contains("no longer a member")
    );
    let err = cli.fails(&["members", "remove", "acme", "ada@example.com"]);
    assert!(err.contains("not a member"), "{err}");
    let err = cli.fails(&["users", "token", "nobody@example.com"]);
    assert!(err.contains("no user"), "{err}");
    cli.ok(&["tenants", "suspend", "acme"]);
    let err = cli.fails(&["tenants", "check", "acme"]);
    assert!(err.contains("suspended"), "{err}");
    let suspended = cli.json(&["tenants", "list", "--status", "SUSPENDED", "--json"]);
    assert_eq!(suspended.as_array().unwrap().len(), 1);
    cli.ok(&["tenants", "resume", "acme"]);
    let migrated = cli.json(&["tenants", "migrate", "acme", "--json"]);
    assert_eq!(migrated["database"]["status"], "ACTIVE");

    let err = cli.fails(&["tenants", "retry", "acme"]);
    assert!(err.contains("is ACTIVE: cannot retry"), "{err}");
    let err = cli.fails(&["tenants", "delete", "acme"]);
    assert!(err.contains("--yes"), "{err}");
    // Deleted with a way back: kept, refused, restored; then purged.
    let out = cli.ok(&["tenants", "delete", "acme", "--yes"]);
    assert!(out.contains("tenants restore acme"), "{out}");
    let deleted = cli.json(&["tenants", "list", "--database-status", "DELETED", "--json"]);
    assert_eq!(deleted[0]["slug"], "acme", "{deleted}");
    let err = cli.fails(&["tenants", "check", "acme"]);
    assert!(err.contains("deleted"), "{err}");
    let restored = cli.json(&["tenants", "restore", "acme", "--json"]);
    assert_eq!(restored["database"]["status"], "ACTIVE", "{restored}");
    cli.ok(&["tenants", "check", "acme"]);
    cli.ok(&["tenants", "delete", "acme", "--yes"]);
    let nothing = cli.json(&["tenants", "purge", "--json"]);
    assert_eq!(nothing, serde_json::json!([]), "within its retention period");
    let err = cli.fails(&["tenants", "purge", "acme"]);
    assert!(err.contains("--yes"), "{err}");
    let purged = cli.json(&["tenants", "purge", "acme", "--yes", "--json"]);
    assert_eq!(purged[0]["purged"], true, "{purged}");
    assert!(cli.json(&["tenants", "list", "--json"]).as_array().unwrap().is_empty());
    assert!(cli.ok(&["reconcile"]).contains("nothing to reconcile"));
}

/// `doctor` on a healthy deployment, then (SQLite, where drift is easy to
/// make from outside) a stale template it fixes and a foreign file it only
/// reports.
fn doctor(cli: &Cli) {
    assert!(cli.ok(&["doctor"]).contains("no problems found"));
    let report = cli.json(&["doctor", "--json"]);
    assert_eq!(report["remaining"].as_array().unwrap().len(), 0, "{report}");
    if cli._scratch.is_some() {
        return;
    }
    let data = std::path::PathBuf::from(&cli.envs[0].1);
    let templates = data.join("tenants-templates");
    let current = std::fs::read_dir(&templates)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("the template file");
    // The same catalog's template of another migration set: the same stem,
    // another hash.
    let name = current.file_stem().unwrap().to_str().unwrap();
    let stale = templates.join(format!("{}000000000000.db", &name[..name.len() - 12]));
    std::fs::copy(&current, &stale).unwrap();
    let foreign = data.join("tenants").join("notes.txt");
    std::fs::write(&foreign, "not ours").unwrap();

    let out = cli.run(&["doctor"]);
    assert!(!out.status.success(), "problems remain: non-zero exit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 problem(s), 1 fixable with --fix")
            && text.contains("stale_template")
            && text.contains("foreign_database"),
        "{text}"
    );
    let out = cli.run(&["doctor", "--fix"]);
    assert!(!out.status.success(), "the foreign file remains");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fixed   stale_template"), "{text}");
    assert!(
        text.contains("1 problem(s) remain") && text.contains("notes.txt"),
        "{text}"
    );
    assert!(
        !stale.exists() && foreign.exists(),
        "fixed the template, left the foreign file"
    );
    std::fs::remove_file(&foreign).unwrap();
    assert!(cli.ok(&["doctor"]).contains("no problems found"));
}

#[tokio::test]
async fn an_operator_session_works_on_the_embedded_default() {
    operator_session(Cli::sqlite()).await;
}

#[tokio::test]
async fn an_operator_session_works_on_postgres() {
    operator_session(Cli::postgres().await).await;
}

/// A second tenant server from the binary: added (its password never
/// printed), a tenant placed on it by name and by placement, doctor per
/// server, migrate over both, removed once empty.
#[tokio::test]
async fn a_second_server_is_added_used_examined_and_removed() {
    let cluster = tenantdb_test_support::PgCluster::start();
    let mut cli = Cli::postgres().await;
    // The password is never an argument.
    let refused = cli.fails(&["servers", "add", "eu", &cluster.url()]);
    assert!(refused.contains("TENANTDB_SERVER_PASSWORD"), "{refused}");
    cli.envs.push((
        "TENANTDB_SERVER_PASSWORD".into(),
        tenantdb_test_support::SUPERUSER_PASSWORD.into(),
    ));
    let url = cluster.url_without_password();
    let added = cli.json(&["servers", "add", "eu", &url, "--budget", "4", "--json"]);
    assert_eq!(
        (added["name"].as_str(), added["status"].as_str()),
        (Some("eu"), Some("ACCEPTING"))
    );
    let out = cli.run(&["servers", "add", "eu", &url]);
    assert_eq!(out.status.code(), Some(1));
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("already exists"), "{shown}");
    assert!(!shown.contains(tenantdb_test_support::SUPERUSER_PASSWORD), "{shown}");

    // A read replica of eu: shown as such, and removed before eu can be.
    let standby = cluster.standby();
    let replica = cli.json(&[
        "servers",
        "add-replica",
        "eu",
        &standby.url_without_password(),
        "--max-lag-ms",
        "500",
        "--budget",
        "4",
        "--json",
    ]);
    assert_eq!(
        (replica["name"].as_str(), replica["status"].as_str()),
        (Some("eu-replica"), Some("REPLICA")),
        "{replica}"
    );
    assert_eq!(replica["replica"]["follows"], "eu", "{replica}");
    assert!(
        cli.ok(&["servers", "show", "eu-replica"])
            .contains("read replica of 'eu'")
    );
    assert!(cli.fails(&["servers", "remove", "eu"]).contains("eu-replica"));
    cli.ok(&["servers", "remove", "eu-replica"]);
    drop(standby);

    let on_eu = cli.json(&["tenants", "create", "euro", "--server", "eu", "--json"]);
    assert_eq!(on_eu["database"]["server"], "eu", "{on_eu}");
    // Placement: eu has one tenant, default none.
    let placed = cli.json(&["tenants", "create", "homebody", "--json"]);
    assert_eq!(placed["database"]["server"], "default", "{placed}");
    assert!(
        cli.fails(&["tenants", "create", "lost", "--server", "nope"])
            .contains("nope")
    );
    let servers = cli.json(&["servers", "list", "--json"]);
    let tenants: Vec<_> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["tenants"].clone()))
        .collect();
    assert_eq!(tenants.len(), 2, "{servers}");
    assert!(tenants.iter().all(|(_, n)| n == 1), "{servers}");

    let doctor = cli.json(&["doctor", "--json"]);
    assert_eq!(doctor["remaining"], serde_json::json!([]), "{doctor}");
    assert_eq!(doctor["unreachable"], serde_json::json!([]), "{doctor}");
    let one = cli.json(&["doctor", "--server", "eu", "--json"]);
    assert_eq!(one["found"], serde_json::json!([]), "{one}");
    let run = cli.json(&["migrate", "--json"]);
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let check = cli.json(&["tenants", "check", "euro", "--json"]);
    assert_eq!(check["reachable"], true, "{check}");

    assert!(cli.fails(&["servers", "remove", "eu"]).contains("tenant databases"));
    assert!(cli.fails(&["servers", "remove", "default"]).contains("settings"));
    // Emptying eu: drained, then every tenant moved off it (online: the
    // throwaway cluster has logical decoding).
    let moved = cli.json(&["tenants", "move", "--all-from", "eu", "--json"]);
    assert_eq!(
        moved,
        serde_json::json!([{"tenant": "euro", "ok": true, "server": "default", "error": null}])
    );
    assert_eq!(cli.json(&["servers", "show", "eu", "--json"])["status"], "DRAINING");
    let euro = cli.json(&["tenants", "show", "euro", "--json"]);
    assert_eq!(
        (euro["database"]["server"].as_str(), euro["database"]["status"].as_str()),
        (Some("default"), Some("ACTIVE")),
        "{euro}"
    );
    let again = cli.run(&["tenants", "move", "euro", "--to", "default", "--json"]);
    assert_eq!(again.status.code(), Some(1));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(again[0]["error"].as_str().unwrap().contains("already"), "{again}");
    assert!(cli.fails(&["servers", "remove", "eu"]).contains("templates"));
    assert!(
        cli.ok(&["servers", "remove", "eu", "--drop-templates"])
            .contains("removed server 'eu'")
    );
    assert_eq!(cli.json(&["servers", "list", "--json"]).as_array().unwrap().len(), 1);
    cli.ok(&["tenants", "delete", "euro", "--yes", "--now"]);
}

#[test]
fn postgres_tenants_without_a_secret_are_refused_at_start() {
    let cli = Cli::sqlite();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantdb"));
    let out = command
        .args(["tenants", "list"])
        .env_clear()
        .env("TENANTDB_DATA_DIR", cli.envs[0].1.clone())
        .env("TENANTDB_TENANT_SERVER_URL", postgres_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TENANTDB_SECRET is required"), "{err}");
}

/// `migrate --dry-run --sql` prints the SQL each pending migration would
/// run, in the server's dialect, and changes nothing. (A tenant is made to
/// look behind by clearing its version in the catalog.)
#[tokio::test]
async fn a_dry_run_prints_the_sql_of_each_pending_migration() {
    let cli = Cli::sqlite();
    cli.ok(&["tenants", "create", "acme"]);
    let catalog = cli.envs[0].1.clone() + "/catalog.db";
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{catalog}")).await.unwrap();
    sqlx::query("UPDATE tenant_databases SET schema_version = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let text = cli.ok(&["migrate", "--dry-run", "--sql"]);
    assert!(
        text.contains("-- m0001_create_projects_and_tasks (1 tenant(s))") && text.contains("CREATE TABLE \"projects\""),
        "{text}"
    );
    let plan = cli.json(&["migrate", "--dry-run", "--sql", "--json"]);
    let statements = plan["sql"]["m0001_create_projects_and_tasks"].as_array().unwrap();
    assert!(
        statements
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("CREATE TABLE \"tasks\"")),
        "{plan}"
    );
    let version: (Option<String>,) = sqlx::query_as("SELECT schema_version FROM tenant_databases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(version.0, None, "a dry run changes nothing");
    let refused = cli.run(&["migrate", "--sql"]);
    assert_eq!(refused.status.code(), Some(2), "--sql needs --dry-run");
    pool.close().await;
}

#[test]
fn help_lists_the_commands() {
    let out = Cli::sqlite().ok(&["tenants", "--help"]);
    for command in [
        "create",
        "list",
        "show",
        "rename-database",
        "delete",
        "retry",
        "suspend",
        "resume",
    ] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
    let out = Cli::sqlite().ok(&["--help"]);
    assert!(
        out.starts_with("Database-per-tenant toolkit"),
        "the program's own description comes first:\n{out}"
    );
    for command in ["serve", "tenants", "migrate", "doctor", "status", "reconcile"] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
}

/// No log level prints a secret: a whole provisioning session at
/// `RUST_LOG=trace` (every sqlx statement included) shows no role password
/// or SCRAM verifier, no user token, no secret and no URL password.
#[tokio::test]
async fn no_log_level_prints_a_secret_verifier_token_or_password() {
    let mut cli = Cli::postgres().await;
    cli.envs.push(("RUST_LOG".into(), "trace".into()));
    let secret = cli
        .envs
        .iter()
        .find(|(k, _)| k == "TENANTDB_SECRET")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut logs = String::new();
    let mut run = |args: &[&str]| {
        let out = cli.run(args);
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["users", "create", "ada@example.com", "--name", "Ada"]);
    let token = run(&["users", "token", "ada@example.com"]);
    let token = token.split_whitespace().last().unwrap().to_owned();
    run(&["tenants", "create", "acme"]);
    run(&["members", "add", "acme", "ada@example.com", "--role", "OWNER"]);
    let new_name = format!("{}renamed", cli.prefix());
    run(&["tenants", "rename-database", "acme", &new_name]);
    run(&["tenants", "check", "acme"]);
    run(&["doctor"]);
    run(&["tenants", "delete", "acme", "--yes"]);

    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the logs were captured at trace level"
    );
    for (what, needle) in [
        ("a SCRAM verifier", "SCRAM-SHA-256$"),
        ("a role password clause", "PASSWORD '"),
        ("the secret", secret.as_str()),
        ("the user token", token.as_str()),
    ] {
        assert!(!logs.contains(needle), "the logs show {what}");
    }
}

/// `serve` with its stderr captured (a pipe, as under systemd or a
/// container runtime), until the first request is answered and SIGTERM.
/// Returns the log and the response's head.
fn serve_one_request(format: &str, request_id: &str) -> (String, String) {
    use std::io::{Read, Write};
    let cli = Cli::sqlite();
    let (address, mut child, mut stderr, mut log) = start_serve(&cli, &[("TENANTDB_LOG_FORMAT", format)]);
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /v1/projects HTTP/1.1\r\nHost: x\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let stopped = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    stderr.read_to_string(&mut log).unwrap();
    assert!(child.0.wait().unwrap().success(), "{log}");
    let head = response.split("\r\n\r\n").next().unwrap().to_owned();
    (log, head)
}

/// A log read from a pipe holds no terminal escape codes, and the request's
/// id comes back in the response and is in the request's log line.
#[test]
fn a_captured_text_log_has_no_escape_codes_and_names_the_request_id() {
    let (log, head) = serve_one_request("text", "text-log-request-1");
    assert!(!log.contains('\u{1b}'), "escape codes in a captured log:\n{log}");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: text-log-request-1"),
        "{head}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("finished processing request"))
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    assert!(
        line.contains("text-log-request-1") && line.contains("status=401"),
        "{line}"
    );
}

/// `TENANTDB_LOG_FORMAT=json`: every line is one JSON object; the request's
/// line has its span's fields (id, method, path) and its status.
#[test]
fn a_json_log_is_one_object_per_line_with_the_request_span() {
    let (log, _) = serve_one_request("json", "json-log-request-1");
    assert!(!log.contains('\u{1b}'), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    let request = lines
        .iter()
        .find(|l| l["fields"]["message"] == "finished processing request")
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    assert_eq!(request["span"]["request_id"], "json-log-request-1", "{request}");
    assert_eq!(request["span"]["method"], "GET", "{request}");
    assert_eq!(request["span"]["path"], "/v1/projects", "{request}");
    assert_eq!(request["fields"]["status"], 401, "{request}");
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let mut cli = Cli::sqlite();
    cli.envs.push(("TENANTDB_LOG_FORMAT".into(), "xml".into()));
    let out = cli.run(&["tenants", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TENANTDB_LOG_FORMAT must be text or json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Completions need no database: nothing is created, and the script
/// knows the subcommands.
#[test]
fn completions_are_printed_without_touching_a_database() {
    let cli = Cli::sqlite();
    for shell in ["bash", "zsh", "fish"] {
        let script = cli.ok(&["completions", shell]);
        for word in ["tenants", "doctor", "migrate", "serve"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    assert!(
        !std::path::Path::new(&cli.envs[0].1).exists(),
        "no data directory was made"
    );
    cli.fails(&["completions", "tcsh"]);
}

/// Exit codes: settings that make no valid configuration are a usage
/// error (2), like bad flags; a secret file that cannot be read is named.
#[test]
fn invalid_settings_exit_2_and_a_secret_file_is_named_when_unreadable() {
    let mut cli = Cli::sqlite();
    cli.envs.push(("TENANTDB_DATABASE_PREFIX".into(), "Bad-Prefix".into()));
    let out = cli.run(&["tenants", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        Cli::sqlite().run(&["tenants", "list", "--no-such-flag"]).status.code(),
        Some(2)
    );

    let mut cli = Cli::sqlite();
    cli.envs
        .push(("TENANTDB_SECRET_FILE".into(), "/nonexistent/tenantdb-secret".into()));
    let out = cli.run(&["tenants", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("TENANTDB_SECRET_FILE"), "{err}");

    // A URL with a password is refused as a flag, without echoing it.
    let out = Cli::sqlite().run(&["tenants", "list", "--database-url", "postgres://u:hunter2@127.0.0.1/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// The service takes its operator token from a file named by
/// TENANTDB_ADMIN_TOKEN_FILE.
#[test]
fn the_operator_token_comes_from_a_file() {
    use std::io::{BufRead, BufReader, Read, Write};
    let cli = Cli::sqlite();
    let token_file = cli._dir.path().join("token");
    std::fs::write(&token_file, "file-admin-token-0123456789\n").unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_tenantdb"))
            .arg("serve")
            .env_clear()
            .env("TENANTDB_DATA_DIR", &cli.envs[0].1)
            .env("TENANTDB_LISTEN", "127.0.0.1:0")
            .env("TENANTDB_ADMIN_TOKEN_FILE", &token_file)
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        None,
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            assert!(rest.contains("TENANTDB_ADMIN_TOKEN"), "{line}");
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    let status = |token: &str| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "GET /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().to_owned()
    };
    assert_eq!(status("file-admin-token-0123456789"), "200");
    assert_eq!(status("some-other-token-0123456789"), "401");
}

/// A service process, killed when the test ends however it ends (a
/// failed assertion must not leave it running).
/// A child process, killed when dropped; a `serve` one keeps the tail of
/// its log, printed if the test fails after the process stopped on its own.
struct Running(std::process::Child, Option<std::sync::Arc<std::sync::Mutex<String>>>);

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(Some(status)) = self.0.try_wait()
        {
            let log = self
                .1
                .as_ref()
                .map(|log| log.lock().unwrap().clone())
                .unwrap_or_default();
            eprintln!("a service had stopped on its own ({status}); the end of its log:\n{log}");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a `serve` process of `cli`'s deployment on a free port (logging
/// at INFO), with `extra` settings, and reads its log up to the line that
/// says where it listens: that address (`host:port`), the process (killed
/// when dropped), the rest of its log, and the log read so far.
fn start_serve(
    cli: &Cli,
    extra: &[(&str, &str)],
) -> (String, Running, std::io::BufReader<std::process::ChildStderr>, String) {
    use std::io::BufRead;
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantdb"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TENANTDB_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped());
    for (key, value) in cli
        .envs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
    {
        command.env(key, value);
    }
    let mut child = Running(command.spawn().unwrap(), None);
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut log = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the service stopped:\n{log}");
        log.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split([' ', '"', '\\']).next().unwrap().to_owned();
        }
    };
    (address, child, stderr, log)
}

/// A `serve` process of `cli`'s deployment on a free port, with `extra`
/// settings: its base URL, and the process (killed when dropped). Its log
/// is drained in the background so it never blocks on a full pipe.
fn spawn_serve(cli: &Cli, extra: &[(&str, &str)]) -> (String, Running) {
    use std::io::BufRead;
    let (address, mut child, mut stderr, _) = start_serve(cli, extra);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    child.1 = Some(log.clone());
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            let mut kept = log.lock().unwrap();
            kept.push_str(&line);
            if kept.len() > 64 * 1024 {
                let cut = kept.len() - 32 * 1024;
                let cut = (cut..kept.len()).find(|&i| kept.is_char_boundary(i)).unwrap_or(0);
                kept.drain(..cut);
            }
            line.clear();
        }
    });
    (format!("http://{address}"), child)
}

/// A service's `/metrics` text.
async fn metrics_of(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `tenantdb_pool_share{server}` as a service's `/metrics` shows it.
async fn share_of(client: &reqwest::Client, base: &str, server: &str) -> u32 {
    let text = metrics_of(client, base).await;
    let label = format!("server=\"{server}\"");
    text.lines()
        .find(|l| l.starts_with("tenantdb_pool_share{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u32)
}

/// Three `serve` processes over one catalog and two PostgreSQL servers
/// (the shared one and a throwaway cluster, added with `servers add`)
/// share each server's budget under random load over twelve tenants: no
/// server ever sees more tenant connections than its budget (sampled
/// every few ms on each), every request answers 200 or 503 busy. When one
/// is killed (`SIGKILL`: no clean shutdown) the two others take its share
/// of each server back within a few beats, well within its lease (the dead
/// process ran on this host, so it is known to be gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_services_share_two_servers_and_a_killed_ones_share_returns() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const BUDGET: u32 = 6;
    const ADMIN: &str = "three-services-admin-token-0123456789";
    let cluster = tenantdb_test_support::PgCluster::start();
    let mut cli = Cli::postgres().await;
    cli.envs.push((
        "TENANTDB_SERVER_PASSWORD".into(),
        tenantdb_test_support::SUPERUSER_PASSWORD.into(),
    ));
    let settings = [
        ("TENANTDB_POOL_BUDGET", "6"),
        ("TENANTDB_POOL_MAX_PER_TENANT", "2"),
        ("TENANTDB_ADMIN_TOKEN", ADMIN),
        ("TENANTDB_INSTANCE_LEASE_SECS", "10"),
    ];
    // The settings' server is recorded by the first command; then eu.
    cli.ok(&["servers", "list"]);
    cli.ok(&[
        "servers",
        "add",
        "eu",
        &cluster.url_without_password(),
        "--budget",
        "6",
        "--max-per-tenant",
        "2",
    ]);
    let (a, _a) = spawn_serve(&cli, &settings);
    let (b, _b) = spawn_serve(&cli, &settings);
    let (c, mut c_process) = spawn_serve(&cli, &settings);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let post = |base: &str, path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let user: serde_json::Value = post(
        &a,
        "/v1/users",
        serde_json::json!({"email": "ops@example.com", "name": "Ops"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let token: serde_json::Value = post(&a, &format!("/v1/users/{user_id}/tokens"), serde_json::json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let slugs: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for (i, slug) in slugs.iter().enumerate() {
        let server = if i % 2 == 0 { "default" } else { "eu" };
        let created = post(
            &a,
            "/v1/tenants",
            serde_json::json!({"slug": slug, "name": slug, "owner_user_id": user_id, "server": server}),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    }

    let shared = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let throwaway = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let samplers = [
        ConnectionPeak::start(shared, &cli.prefix(), Duration::from_millis(3)),
        ConnectionPeak::start(throwaway, &cli.prefix(), Duration::from_millis(3)),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let bases = [&a, &b, &c, &a, &b, &c];
    for (n, base) in bases.into_iter().cloned().enumerate() {
        let (client, token, slugs, stop) = (client.clone(), token.clone(), slugs.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut state = n as u64 + 1;
            while !stop.load(Ordering::Relaxed) {
                // A small xorshift: random tenants, reproducible per worker.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let slug = &slugs[(state % slugs.len() as u64) as usize];
                let sent = client
                    .get(format!("{base}/v1/projects"))
                    .bearer_auth(&token)
                    .header("X-Tenant", slug)
                    .send()
                    .await;
                // The killed service's clients see their connection refused.
                let Ok(response) = sent else { break };
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                answers.push((status, body["error"]["code"].as_str().unwrap_or("").to_owned()));
            }
            answers
        }));
    }
    let shares = async |server: &str| {
        (
            share_of(&client, &a, server).await,
            share_of(&client, &b, server).await,
            share_of(&client, &c, server).await,
        )
    };
    let settled = Instant::now();
    for server in ["default", "eu"] {
        while shares(server).await != (BUDGET / 3, BUDGET / 3, BUDGET / 3) {
            if settled.elapsed() > Duration::from_secs(20) {
                let metrics = metrics_of(&client, &a).await;
                let probe = client
                    .get(format!("{a}/v1/projects"))
                    .bearer_auth(&token)
                    .header("X-Tenant", "t1")
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let shares_now = shares(server).await;
                panic!(
                    "the three never settled on thirds of {server}: {shares_now:?}\n{probe}\n{}",
                    metrics
                        .lines()
                        .filter(|l| l.contains("share"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    c_process.0.kill().unwrap();
    let _ = c_process.0.wait();
    for server in ["default", "eu"] {
        loop {
            let (a_share, b_share) = (share_of(&client, &a, server).await, share_of(&client, &b, server).await);
            if (a_share, b_share) == (BUDGET / 2, BUDGET / 2) {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(8),
                "the killed service's share of {server} did not come back well before its 10 s lease"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    for (sampler, server) in samplers.into_iter().zip(["default", "eu"]) {
        let peak = sampler.stop().await;
        assert!(
            peak <= BUDGET,
            "server {server} saw {peak} tenant connections, budget {BUDGET}"
        );
    }
    let served = answers.iter().filter(|(s, _)| *s == reqwest::StatusCode::OK).count();
    for (status, code) in &answers {
        assert!(
            *status == reqwest::StatusCode::OK || (status.as_u16() == 503 && code == "busy"),
            "{status} {code}"
        );
    }
    assert!(served > answers.len() / 2, "served {served} of {}", answers.len());
}

/// `tenants export` and `tenants backup`: files that start with the export
/// header and hold the tenant's database; a tenant that does not exist
/// fails the backup with exit 1, the others are still written.
#[test]
fn tenants_are_exported_and_backed_up() {
    let cli = Cli::sqlite();
    cli.ok(&["tenants", "create", "acme"]);
    cli.ok(&["tenants", "create", "globex"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.export");
    let exported = cli.json(&[
        "tenants",
        "export",
        "acme",
        "--output",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(exported["header"]["slug"], "acme", "{exported}");
    assert_eq!(exported["header"]["engine"], "sqlite", "{exported}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"TENANTDB-EXPORT 1\n"));
    assert_eq!(bytes.len() as u64, exported["bytes"].as_u64().unwrap());

    let backups = dir.path().join("backups");
    let all = cli.json(&[
        "tenants",
        "backup",
        "--all",
        "--output",
        backups.to_str().unwrap(),
        "--json",
    ]);
    let slugs: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["tenant"].clone(), r["ok"].clone()))
        .collect();
    assert_eq!(
        slugs,
        [
            (serde_json::json!("acme"), serde_json::json!(true)),
            (serde_json::json!("globex"), serde_json::json!(true))
        ]
    );
    for slug in ["acme", "globex"] {
        let bytes = std::fs::read(backups.join(format!("{slug}.tenantdb"))).unwrap();
        assert!(bytes.starts_with(b"TENANTDB-EXPORT 1\n"), "{slug}");
    }
    let copy = cli.json(&[
        "tenants",
        "import",
        "acme-copy",
        "--input",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(copy["database"]["status"], "ACTIVE", "{copy}");
    let again = cli.fails(&["tenants", "import", "acme-copy", "--input", file.to_str().unwrap()]);
    assert!(again.contains("already exists"), "{again}");
    assert!(
        cli.fails(&["tenants", "import", "other", "--input", "/nonexistent"])
            .contains("export")
    );
    assert!(
        cli.fails(&["tenants", "backup", "--output", backups.to_str().unwrap()])
            .contains("--all")
    );
    assert!(
        cli.fails(&["tenants", "backup", "nobody", "--output", backups.to_str().unwrap()])
            .contains("nobody")
    );
}
