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
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use super::tools::{succeeded, tool_missing};
use super::{OBJECT_IN_USE, PostgresEngine, sql_state};
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};
use crate::names::{quote_ident, quote_literal};

impl PostgresEngine {
    /// The name of a tenant's publication, subscription and slot.
    pub(crate) fn move_name(db: &DatabaseSpec) -> String {
        format!("tenantdb_move_{}", db.tenant.as_uuid().simple())
    }

    /// A connection to the tenant's database as the admin.
    async fn admin_in(&self, db: &DatabaseSpec) -> Result<PgConnection> {
        // Never logged: a subscription's statement carries a password.
        PgConnection::connect_with(
            &self
                .inner
                .options
                .clone()
                .database(db.database.as_str())
                .application_name("tenantdb-move")
                .disable_statement_logging(),
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

    /// What in the tenant's database logical replication would not carry:
    /// tables without a primary key or replica identity (their updates),
    /// unlogged tables, materialized views (their rows) and large objects.
    /// An online move is refused while there is any.
    pub(crate) async fn online_obstacles(&self, db: &DatabaseSpec) -> Result<Vec<String>> {
        let mut conn = self.admin_in(db).await?;
        let found: std::result::Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT CASE \
                 WHEN c.relkind = 'm' THEN 'materialized view ' \
                 WHEN c.relpersistence = 'u' THEN 'unlogged table ' \
                 ELSE 'table without a primary key ' END || format('%I.%I', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND (c.relkind = 'm' OR c.relpersistence = 'u' OR c.relreplident = 'n' \
                    OR (c.relreplident = 'd' AND NOT EXISTS \
                        (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))) \
             UNION ALL SELECT count(*) || ' large object(s)' FROM pg_largeobject_metadata HAVING count(*) > 0 \
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await;
        let _ = conn.close().await;
        found.map_err(Error::server("cannot list the tenant's tables"))
    }

    /// Locks the tenant's role out of this server (`NOLOGIN`) and ends its
    /// sessions, waiting until they are gone: nothing the tenant writes
    /// here is acknowledged after this returns.
    pub(crate) async fn lock_out(&self, db: &DatabaseSpec) -> Result<()> {
        self.check_role_ours(db).await?;
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

    /// Lets the tenant's role log in again (after `lock_out`), its password
    /// untouched.
    pub(crate) async fn let_in(&self, db: &DatabaseSpec) -> Result<()> {
        if self.role_mark(&db.role).await?.is_none() {
            return Ok(());
        }
        self.check_role_ours(db).await?;
        let role = quote_ident(db.role.as_str());
        self.exec(&format!("ALTER ROLE {role} WITH LOGIN"), || {
            format!("cannot let role '{}' log in again", db.role)
        })
        .await
    }

    /// `NotOurs` unless the tenant's role here, if any, is this catalog's.
    pub(crate) async fn check_role_ours(&self, db: &DatabaseSpec) -> Result<()> {
        match self.role_mark(&db.role).await? {
            Some(mark) if mark.as_deref() != Some(self.marker(db).as_str()) => Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: format!("(role) {}", db.role),
            }),
            _ => Ok(()),
        }
    }

    /// Marks the tenant's database here as the copy a move to `to` left in
    /// place (`--keep-source`): `doctor` reports it and `--fix` drops it
    /// once the tenant is served from `to`.
    pub(crate) async fn mark_moved(&self, db: &DatabaseSpec, to: uuid::Uuid) -> Result<()> {
        if self.ownership(db, &db.database).await? != crate::engine::Ownership::Ours {
            return Err(Error::NotOurs {
                tenant: db.tenant.to_string(),
                database: db.database.to_string(),
            });
        }
        let mark = format!("{} moved-to={to}", self.marker(db));
        self.exec(
            &format!(
                "COMMENT ON DATABASE {} IS {}",
                quote_ident(db.database.as_str()),
                quote_literal(&mark)
            ),
            || format!("cannot mark database '{}'", db.database),
        )
        .await
    }

    /// The server a database's mark says the tenant moved to.
    pub(crate) fn moved_mark_of(&self, tenant: crate::names::TenantId, mark: Option<&str>) -> Option<uuid::Uuid> {
        let prefix = format!("tenantdb catalog={} tenant={tenant} moved-to=", self.inner.catalog_id);
        uuid::Uuid::parse_str(mark?.strip_prefix(&prefix)?).ok()
    }

    /// Copies the tenant's database from `self` into the (empty) one on
    /// `target`: `pg_dump` as this server's admin, `pg_restore` as the
    /// tenant's role (so everything it makes is the tenant's), in one
    /// transaction. `schema_only` copies the tables without their rows.
    pub(crate) async fn copy_to(&self, target: &PostgresEngine, db: &DatabaseSpec, schema_only: bool) -> Result<()> {
        let (source_url, source_password) = url_parts(&self.inner.url, db.database.as_str())?;
        let mut dump = tokio::process::Command::new(self.pg_tool("pg_dump"));
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
        let restore = target
            .restore_as_tenant(db, "tenantdb-move", dumped)
            .spawn()
            .map_err(tool_missing("pg_restore"))?;
        let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
        succeeded("pg_dump", "copying", db, dumped)?;
        succeeded("pg_restore", "copying", db, restored)
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
        // libpq decodes %XX in a URL, not `+`: every byte but letters and
        // digits escaped.
        let escape =
            |value: &str| percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut extra = format!("application_name={}", escape(&name));
        if let Some(password) = &password {
            extra.push_str(&format!("&password={}", escape(password.expose_secret())));
        }
        let conninfo = if url.contains('?') {
            format!("{url}&{extra}")
        } else {
            format!("{url}?{extra}")
        };
        let sql = format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true, slot_name = {})",
            quote_ident(&name),
            quote_literal(&conninfo),
            quote_ident(&name),
            quote_literal(&name),
        );
        let mut conn = self.admin_in(db).await?;
        // Keep the statement (it carries the source's password) out of
        // this server's log and statistics; a role that may not change
        // these settings goes on without.
        for setting in [
            "SET log_min_error_statement = panic",
            "SET log_statement = 'none'",
            "SET pg_stat_statements.track_utility = off",
        ] {
            let _ = sqlx::raw_sql(setting).execute(&mut conn).await;
        }
        let result = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map(drop)
            // The statement is not in the error: sqlx reports the server's
            // message only.
            .map_err(Error::server(format!(
                "cannot subscribe to the source in '{}'",
                db.database
            )));
        let _ = conn.close().await;
        result
    }

    /// Whether the subscription's apply or copy failed (a change the target
    /// cannot apply, such as DDL on the source during the copy).
    pub(crate) async fn subscription_errors(&self, db: &DatabaseSpec) -> Result<i64> {
        // `pg_stat_subscription_stats` is PostgreSQL 15+; older servers
        // report none here (the copy's stall limit still applies).
        let errors: std::result::Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "SELECT (apply_error_count + sync_error_count)::bigint FROM pg_stat_subscription_stats \
             WHERE subname = $1",
        )
        .bind(Self::move_name(db))
        .fetch_optional(&self.inner.admin)
        .await;
        Ok(errors.ok().flatten().unwrap_or(0))
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
        let names: Vec<String> =
            sqlx::query_scalar("SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences")
                .fetch_all(&mut here)
                .await
                .map_err(Error::server("cannot read the tenant's sequences"))?;
        // `pg_sequences.last_value` is NULL for a sequence restarted or set
        // with `is_called = false`: each is read itself.
        let mut sequences = Vec::with_capacity(names.len());
        for name in names {
            // `name` is the server's own `%I.%I`: quoted already.
            let (value, called): (i64, bool) =
                sqlx::query_as(AssertSqlSafe(format!("SELECT last_value, is_called FROM {name}")))
                    .fetch_one(&mut here)
                    .await
                    .map_err(Error::server(format!("cannot read sequence {name}")))?;
            sequences.push((name, value, called));
        }
        let _ = here.close().await;
        if sequences.is_empty() {
            return Ok(0);
        }
        let mut there = target.admin_in(db).await?;
        for (sequence, value, called) in &sequences {
            sqlx::query("SELECT setval($1::regclass, $2, $3)")
                .bind(sequence)
                .bind(value)
                .bind(called)
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

    /// Drops the tenant's slots and publication here (the source), if any:
    /// the move's slot and the table-copy slots its subscription made in
    /// the tenant's database (`pg_<oid>_sync_...`, left behind when the
    /// subscription was dropped without reaching here); waits for a slot
    /// still held by its sender to be let go.
    pub(crate) async fn unpublish(&self, db: &DatabaseSpec) -> Result<()> {
        let name = Self::move_name(db);
        let ours = "(slot_name = $1 OR (database = $2 AND slot_type = 'logical' \
                    AND slot_name LIKE 'pg\\_%\\_sync\\_%'))";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let dropped = sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE {ours}"
            )))
            .bind(&name)
            .bind(db.database.as_str())
            .execute(&self.inner.admin)
            .await;
            match dropped {
                Ok(_) => break,
                Err(err)
                    if sql_state(&err).as_deref() == Some(OBJECT_IN_USE) && tokio::time::Instant::now() < deadline =>
                {
                    // Its sender has not exited yet.
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                         WHERE {ours} AND active_pid IS NOT NULL"
                    )))
                    .bind(&name)
                    .bind(db.database.as_str())
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
