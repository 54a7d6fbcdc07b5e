//! Moving a tenant database between PostgreSQL servers, as the engine
//! sees it: copies with `pg_dump | pg_restore` (the schema only, for an
//! online move, or everything), logical replication from the source's
//! database to the target's (a publication, a subscription and its slot,
//! all named after the tenant), locking the tenant's role out of the
//! source, carrying sequences over, and removing every replication object
//! again. Every step is idempotent: a move that died is rolled back or
//! finished by running them again.

use std::process::Stdio;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{OBJECT_IN_USE, PostgresEngine, sql_state};
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::names::{quote_ident, quote_literal};

/// Tables a logical copy cannot carry updates and deletes of: no primary
/// key and no replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WithoutIdentity(pub(crate) Vec<String>);

impl PostgresEngine {
    /// The name of a tenant's publication, subscription and slot.
    pub(crate) fn move_name(db: &DatabaseSpec) -> String {
        format!("tenantdb_move_{}", db.tenant.as_uuid().simple())
    }

    /// A connection to the tenant's database as the admin.
    async fn admin_in(&self, db: &DatabaseSpec) -> Result<PgConnection> {
        PgConnection::connect_with(
            &self
                .inner
                .options
                .clone()
                .database(db.database.as_str())
                .application_name("tenantdb-move"),
        )
        .await
        .map_err(Error::server(format!(
            "cannot connect to database '{}' as the admin",
            db.database
        )))
    }

    async fn run_in(&self, db: &DatabaseSpec, sql: &str, what: &str) -> Result<()> {
        let mut conn = self.admin_in(db).await?;
        let result = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(Error::server(format!("{what} in '{}'", db.database)));
        let _ = conn.close().await;
        result
    }

    /// The server's `wal_level` is `logical` (logical replication works).
    pub(crate) async fn logical_decoding(&self) -> Result<bool> {
        let level: String = sqlx::query_scalar("SELECT current_setting('wal_level')")
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server("cannot read wal_level"))?;
        Ok(level == "logical")
    }

    /// Tables of the tenant's database whose updates logical replication
    /// cannot carry (no primary key, no replica identity).
    pub(crate) async fn without_identity(&self, db: &DatabaseSpec) -> Result<WithoutIdentity> {
        let mut conn = self.admin_in(db).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS \
                    (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))) \
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(Error::server("cannot list the tenant's tables"))?;
        let _ = conn.close().await;
        Ok(WithoutIdentity(tables))
    }

    /// Locks the tenant's role out of this server (`NOLOGIN`) and ends its
    /// sessions, waiting until they are gone: nothing the tenant writes
    /// here is acknowledged after this returns.
    pub(crate) async fn lock_out(&self, db: &DatabaseSpec) -> Result<()> {
        let role = quote_ident(db.role.as_str());
        self.exec(&format!("ALTER ROLE {role} WITH NOLOGIN"), || {
            format!("cannot lock role '{}' out", db.role)
        })
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE usename = $1 AND pid <> pg_backend_pid()",
            )
            .bind(db.role.as_str())
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server(format!("cannot end the sessions of role '{}'", db.role)))?;
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::server(format!("sessions of role '{}' do not end", db.role))(
                    sqlx::Error::PoolTimedOut,
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Copies the tenant's database from `self` into the (empty) one on
    /// `target`: `pg_dump` as this server's admin, `pg_restore` as the
    /// tenant's role (so everything it makes is the tenant's), in one
    /// transaction. `schema_only` copies the tables without their rows.
    pub(crate) async fn copy_to(&self, target: &PostgresEngine, db: &DatabaseSpec, schema_only: bool) -> Result<()> {
        let (source_url, source_password) = url_parts(&self.inner.url, db.database.as_str())?;
        let login = target.tenant_login(db);
        let mut dump = tokio::process::Command::new(pg_tool("pg_dump"));
        dump.args(["--format=custom", "--no-owner", "--no-privileges"])
            .args(["--no-publications", "--no-subscriptions"])
            .args(schema_only.then_some("--schema-only"))
            .arg(format!("--dbname={source_url}"))
            .env("PGAPPNAME", "tenantdb-move")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(password) = &source_password {
            dump.env("PGPASSWORD", password.expose_secret());
        }
        let mut dump = dump.spawn().map_err(tool_missing("pg_dump"))?;
        let dumped: Stdio = dump
            .stdout
            .take()
            .and_then(|out| out.try_into().ok())
            .ok_or_else(|| Error::Config("cannot read pg_dump's output".into()))?;
        let restore = tokio::process::Command::new(pg_tool("pg_restore"))
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
            ])
            .arg(format!("--dbname={}", login.url(false)))
            .env("PGPASSWORD", login.password.expose_secret())
            .env("PGAPPNAME", "tenantdb-move")
            .stdin(dumped)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(tool_missing("pg_restore"))?;
        let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
        let failed = |tool: &str, out: std::io::Result<std::process::Output>| -> Result<()> {
            let out = out.map_err(tool_missing(tool))?;
            if out.status.success() {
                return Ok(());
            }
            let said = String::from_utf8_lossy(&out.stderr);
            let said: String = said.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
            Err(Error::Config(format!(
                "{tool} failed copying database '{}' ({}): {said}",
                db.database, out.status
            )))
        };
        failed("pg_dump", dumped)?;
        failed("pg_restore", restored)
    }

    /// Publishes every table of the tenant's database (on the source).
    pub(crate) async fn publish(&self, db: &DatabaseSpec) -> Result<()> {
        let name = quote_ident(&Self::move_name(db));
        self.run_in(
            db,
            &format!("DROP PUBLICATION IF EXISTS {name}; CREATE PUBLICATION {name} FOR ALL TABLES"),
            "cannot publish the tenant's tables",
        )
        .await
    }

    /// Subscribes the tenant's database here (the target) to its
    /// publication on `source`: the rows are copied, then changes stream.
    pub(crate) async fn subscribe(&self, source: &PostgresEngine, db: &DatabaseSpec) -> Result<()> {
        let name = Self::move_name(db);
        let (url, password) = url_parts(&source.inner.url, db.database.as_str())?;
        // libpq takes a URL as a connection string; the password goes in as
        // a parameter (readable by superusers of this server only, and
        // dropped with the subscription at the end of the move).
        let mut conninfo = url::Url::parse(&url).map_err(|_| Error::Config("bad source URL".into()))?;
        if let Some(password) = &password {
            conninfo
                .query_pairs_mut()
                .append_pair("password", password.expose_secret());
        }
        conninfo.query_pairs_mut().append_pair("application_name", &name);
        let sql = format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true, slot_name = {})",
            quote_ident(&name),
            quote_literal(conninfo.as_str()),
            quote_ident(&name),
            quote_literal(&name),
        );
        self.run_in(db, &sql, "cannot subscribe to the source").await
    }

    /// Tables of the subscription still copying their first rows (`None`
    /// when there is no subscription).
    pub(crate) async fn tables_copying(&self, db: &DatabaseSpec) -> Result<Option<(i64, i64)>> {
        let mut conn = self.admin_in(db).await?;
        let counts: Option<(i64, i64)> = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE r.srsubstate <> 'r'), count(r.srrelid) FROM pg_subscription s \
             LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid WHERE s.subname = $1 GROUP BY s.oid",
        )
        .bind(Self::move_name(db))
        .fetch_optional(&mut conn)
        .await
        .map_err(Error::server("cannot read the subscription's state"))?;
        let _ = conn.close().await;
        Ok(counts)
    }

    /// How far (bytes of log) the tenant's slot here (the source) is behind
    /// `position`: 0 once the target has applied everything up to it.
    pub(crate) async fn slot_behind(&self, db: &DatabaseSpec, position: i64) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT greatest($1 - (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, 0)::bigint \
             FROM pg_replication_slots WHERE slot_name = $2",
        )
        .bind(position)
        .bind(Self::move_name(db))
        .fetch_optional(&self.inner.admin)
        .await
        .map_err(Error::server("cannot read the replication slot"))
    }

    /// Sets every sequence of the tenant's database on `target` to where it
    /// is here (logical replication carries rows, not sequences).
    pub(crate) async fn copy_sequences(&self, target: &PostgresEngine, db: &DatabaseSpec) -> Result<usize> {
        let mut here = self.admin_in(db).await?;
        let sequences: Vec<(String, i64)> = sqlx::query_as(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences \
             WHERE last_value IS NOT NULL",
        )
        .fetch_all(&mut here)
        .await
        .map_err(Error::server("cannot read the tenant's sequences"))?;
        let _ = here.close().await;
        if sequences.is_empty() {
            return Ok(0);
        }
        let mut there = target.admin_in(db).await?;
        for (sequence, value) in &sequences {
            sqlx::query("SELECT setval($1::regclass, $2, true)")
                .bind(sequence)
                .bind(value)
                .execute(&mut there)
                .await
                .map_err(Error::server(format!("cannot set sequence {sequence}")))?;
        }
        let _ = there.close().await;
        Ok(sequences.len())
    }

    /// Drops the tenant's subscription here (the target), if there is one
    /// and its database exists, without touching the slot on the source
    /// (`drop_slot` does that, so this works while the source is down).
    pub(crate) async fn unsubscribe(&self, db: &DatabaseSpec) -> Result<()> {
        let name = Self::move_name(db);
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
            .bind(&name)
            .fetch_one(&self.inner.admin)
            .await
            .map_err(Error::server("cannot look up the subscription"))?;
        if !exists || !self.name_in_use(&db.database).await? {
            return Ok(());
        }
        let name = quote_ident(&name);
        for sql in [
            format!("ALTER SUBSCRIPTION {name} DISABLE"),
            format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)"),
            format!("DROP SUBSCRIPTION IF EXISTS {name}"),
        ] {
            self.run_in(db, &sql, "cannot drop the subscription").await?;
        }
        Ok(())
    }

    /// Drops the tenant's slot and publication here (the source), if any;
    /// waits for a slot still held by its sender to be let go.
    pub(crate) async fn unpublish(&self, db: &DatabaseSpec) -> Result<()> {
        let name = Self::move_name(db);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let dropped = sqlx::query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(&name)
            .execute(&self.inner.admin)
            .await;
            match dropped {
                Ok(_) => break,
                Err(err)
                    if sql_state(&err).as_deref() == Some(OBJECT_IN_USE) && tokio::time::Instant::now() < deadline =>
                {
                    // Its sender has not exited yet.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                         WHERE slot_name = $1 AND active_pid IS NOT NULL",
                    )
                    .bind(&name)
                    .execute(&self.inner.admin)
                    .await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(Error::server("cannot drop the replication slot")(err)),
            }
        }
        if self.name_in_use(&db.database).await? && !self.is_invalid(db.database.as_str()).await? {
            self.run_in(
                db,
                &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(&name)),
                "cannot drop the publication",
            )
            .await?;
        }
        Ok(())
    }
}

/// The admin URL pointed at `database`, without its password, and the
/// password apart (for a child's environment, never its arguments).
fn url_parts(url: &SecretString, database: &str) -> Result<(String, Option<SecretString>)> {
    let mut parsed =
        url::Url::parse(url.expose_secret()).map_err(|_| Error::Config("the admin URL is not a URL".into()))?;
    let mut password = parsed
        .password()
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned());
    let _ = parsed.set_password(None);
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    parsed.set_query(None);
    let kept: Vec<_> = pairs
        .into_iter()
        .filter_map(|(k, v)| {
            if k == "password" {
                password.get_or_insert(v);
                None
            } else {
                Some((k, v))
            }
        })
        .collect();
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    let escaped = percent_encoding::utf8_percent_encode(database, percent_encoding::NON_ALPHANUMERIC).to_string();
    parsed.set_path(&format!("/{escaped}"));
    Ok((parsed.to_string(), password.map(SecretString::from)))
}

/// `pg_dump` or `pg_restore`: from `TENANTDB_PG_BIN` when set, else the
/// `PATH`.
fn pg_tool(name: &str) -> std::path::PathBuf {
    match std::env::var_os("TENANTDB_PG_BIN") {
        Some(dir) => std::path::Path::new(&dir).join(name),
        None => name.into(),
    }
}

fn tool_missing(tool: &str) -> impl FnOnce(std::io::Error) -> Error {
    let tool = tool.to_owned();
    move |err| {
        Error::Config(format!(
            "cannot run {tool} ({err}): install the PostgreSQL client tools (as new as the newest server) \
             or set TENANTDB_PG_BIN to their directory"
        ))
    }
}
