//! Warm databases: clones of the current template made ahead of need, so
//! that a new tenant's database is a rename and an ownership change (both
//! catalog-only DDL, well under a millisecond) instead of a copy.
//!
//! A warm database is named after its template, in the template name space
//! no tenant database can enter (`<prefix>-wrm-<catalog id>-<hash>-<6 hex>`),
//! owned by this catalog's NOLOGIN template role (the mark templates carry)
//! and commented `tenantdb warm catalog=<id> template=<template>`, accepting
//! no connections. Before it is commented, one admin session in it builds
//! its relation cache file, which a copy lacks, so that the tenant's first
//! connection is as quick as any later one. One left without its comment (a
//! crash or a stop while it was made) is a stale warm database: the next
//! refill, or `doctor --fix`, drops it.
//! A claim renames it to the tenant's name, gives it to the tenant's role and
//! opens it in one transaction, so two processes can never claim the same
//! one and a crash leaves either a warm database or the tenant's own.

use sqlx::{AssertSqlSafe, Connection};

use super::{DUPLICATE_DATABASE, PostgresEngine, run, sql_state};
use crate::engine::{DatabaseSpec, WarmDatabase};
use crate::error::{Error, Result};
use crate::names::{RoleName, quote_ident, quote_literal};

/// `no_data_found`: raised by the claim when no warm database could be had.
const NO_DATA_FOUND: &str = "P0002";

impl PostgresEngine {
    fn warm_mark_prefix(&self) -> String {
        format!("tenantdb warm catalog={} template=", self.inner.catalog_id)
    }

    /// The template a warm database's comment names, if it is this
    /// catalog's warm comment.
    pub(super) fn warm_template_of<'a>(&self, mark: Option<&'a str>) -> Option<&'a str> {
        mark?.strip_prefix(&self.warm_mark_prefix())
    }

    /// This catalog's warm databases on the server, with the template each
    /// was made from.
    pub(crate) async fn warm_databases(&self) -> Result<Vec<WarmDatabase>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d \
             JOIN pg_roles r ON r.oid = d.datdba \
             WHERE shobj_description(r.oid, 'pg_authid') = $1 AND NOT d.datistemplate \
             AND (starts_with(shobj_description(d.oid, 'pg_database'), $2) \
                  OR (shobj_description(d.oid, 'pg_database') IS NULL AND strpos(d.datname, '-wrm-') > 0)) \
             ORDER BY 1",
        )
        .bind(self.template_owner_marker())
        .bind(self.warm_mark_prefix())
        .fetch_all(&self.inner.admin)
        .await
        .map_err(Error::server("cannot list the warm databases"))?;
        Ok(rows
            .into_iter()
            .map(|(name, mark)| {
                // No comment: a crash (or a stop) cut its making short.
                let template = self.warm_template_of(mark.as_deref()).unwrap_or_default().to_owned();
                WarmDatabase { name, template }
            })
            .collect())
    }

    /// Makes one warm database from `template` (owned by `owner`, the
    /// template role); returns its name. While it is made (uncommented, so
    /// it reads as half-made) its maker holds an advisory lock on its name,
    /// on an admin connection it keeps meanwhile: `drop_warm` in another
    /// process leaves it alone, and a crash of the maker releases the lock.
    pub(crate) async fn make_warm(&self, template: &str, owner: &RoleName) -> Result<String> {
        let Some(name) = warm_name(template) else {
            return Err(Error::Config(format!("'{template}' is not a template name")));
        };
        let mut lock = WarmLock::take(self, &name).await?;
        let made = self.make_warm_locked(&mut lock.conn, template, owner, &name).await;
        lock.release().await;
        made.map(|()| name)
    }

    /// Drops a warm database (a half-made one too) unless another process
    /// is making it now (it holds the lock `make_warm` takes): `false` then.
    /// The try-lock is on a connection of its own (drops are rare; the
    /// drop itself needs the admin pool), closed at the end or when this
    /// is cancelled, which releases the lock.
    pub(crate) async fn drop_warm(&self, name: &str) -> Result<bool> {
        let mut lock = sqlx::PgConnection::connect_with(&self.inner.options)
            .await
            .map_err(Error::server("cannot take a warm database's lock"))?;
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(warm_lock_key(name))
            .fetch_one(&mut lock)
            .await
            .map_err(Error::server("cannot take a warm database's lock"))?;
        let dropped = if free {
            self.drop_template(name).await.map(|()| true)
        } else {
            tracing::debug!(warm = name, "a warm database being made elsewhere is left alone");
            Ok(false)
        };
        let _ = lock.close().await;
        dropped
    }

    /// The making, every statement on `conn` (the lock's connection: a
    /// refill takes no other admin connection from the creates).
    async fn make_warm_locked(
        &self,
        conn: &mut sqlx::PgConnection,
        template: &str,
        owner: &RoleName,
        name: &str,
    ) -> Result<()> {
        let quoted = quote_ident(name);
        let context = || format!("cannot make warm database '{name}'");
        let create = format!(
            "CREATE DATABASE {quoted} WITH OWNER {} TEMPLATE {} ALLOW_CONNECTIONS false",
            quote_ident(owner.as_str()),
            quote_ident(template)
        );
        super::databases::clone_template(conn, &create, context).await?;
        // A copy has no relation cache file (`pg_internal.init`): the first
        // session in it builds one from the system catalogs, which takes
        // longer than the rest of a connection. One admin session builds it
        // now, so that the tenant's first connection does not. (Closed to
        // PUBLIC first; its owner, the template role, cannot log in.)
        run(
            conn,
            &format!(
                "REVOKE ALL ON DATABASE {quoted} FROM PUBLIC; ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS true"
            ),
        )
        .await
        .map_err(Error::server(context()))?;
        if let Err(err) = self.touch(conn, name).await {
            // Only slower for its tenant's first connection.
            tracing::warn!(warm = %name, error = %err.chain(), "cannot open a session in a warm database: its tenant's first connection will be slower");
        }
        // Marked last: only now may it be claimed (a claim's rename waits
        // for every other session to leave the database).
        let mark = format!("{}{template}", self.warm_mark_prefix());
        run(
            conn,
            &format!(
                "COMMENT ON DATABASE {quoted} IS {}; ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS false",
                quote_literal(&mark)
            ),
        )
        .await
        .map_err(Error::server(context()))
    }

    /// One admin session in `name`, then waits (up to a second, watching
    /// from `admin`) until it has left the server.
    async fn touch(&self, admin: &mut sqlx::PgConnection, name: &str) -> Result<()> {
        let context = || format!("cannot open a session in warm database '{name}'");
        let mut conn = sqlx::PgConnection::connect_with(&self.inner.options.clone().database(name))
            .await
            .map_err(Error::server(context()))?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(Error::server(context()))?;
        conn.close().await.map_err(Error::server(context()))?;
        for _ in 0..200 {
            let gone: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(&mut *admin)
                .await
                .map_err(Error::server(context()))?;
            if gone {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Takes a warm database made from `template` for the tenant and opens
    /// it, in one transaction: renamed to its name, owned by its role (the
    /// objects inside belong to `pg_database_owner`, so they follow), closed
    /// to PUBLIC, marked and accepting connections, as `open_database`
    /// leaves a new one, and committed durably (as `flush`). `false` when
    /// none could be had (the stock is empty,
    /// others took them first, or the tenant's name is taken: the caller
    /// looks at what holds it).
    pub(crate) async fn claim_warm(&self, db: &DatabaseSpec, template: &str) -> Result<bool> {
        let Some(prefix) = warm_prefix(template) else {
            return Ok(false);
        };
        // One simple query, so one round trip and one transaction,
        // committed durably: the log is flushed up to this commit, which
        // covers the tenant's role made before it (the caller needs no
        // flush of its own). The candidates are found by their name's
        // prefix first: the comments are looked up only for the few
        // databases that have it, not for each of the server's tenants.
        // Each is tried in a subtransaction of its own: one another claim
        // renamed first is gone (`invalid_catalog_name`), one that cannot be
        // had is reported and the next tried. Once renamed (nobody else can
        // touch it under the tenant's name), it must still be the database
        // listed (the same oid: not one dropped and made again under that
        // name meanwhile). A held tenant name (`duplicate_database`) ends
        // the claim: no warm one can have it.
        let to = quote_ident(db.database.as_str());
        // Written into a dollar-quoted body: no value may hold a `$` (none
        // can: names are validated, marks are fixed text and ids).
        debug_assert!(
            [&prefix, db.database.as_str(), db.role.as_str(), template]
                .iter()
                .all(|v| !v.contains('$'))
        );
        let sql = format!(
            "SET LOCAL synchronous_commit = on; \
             DO $claim$ DECLARE c record; BEGIN \
             FOR c IN SELECT d.datname::text AS name, d.oid FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
                 WHERE starts_with(d.datname, {prefix}) AND NOT d.datistemplate AND d.datconnlimit <> -2 \
                 AND shobj_description(r.oid, 'pg_authid') = {owner_mark} \
                 AND shobj_description(d.oid, 'pg_database') = {warm_mark} \
                 ORDER BY random() LIMIT 3 LOOP \
               BEGIN \
                 EXECUTE format('ALTER DATABASE %I RENAME TO %I', c.name, {to_literal}); \
                 IF NOT EXISTS (SELECT FROM pg_database WHERE datname = {to_literal} AND oid = c.oid) THEN \
                   RAISE EXCEPTION 'it was replaced while it was claimed'; \
                 END IF; \
                 ALTER DATABASE {to} OWNER TO {role}; \
                 REVOKE ALL ON DATABASE {to} FROM PUBLIC; COMMENT ON DATABASE {to} IS {tenant_mark}; \
                 ALTER DATABASE {to} WITH ALLOW_CONNECTIONS true; \
                 RETURN; \
               EXCEPTION \
                 WHEN invalid_catalog_name THEN NULL; \
                 WHEN duplicate_database THEN RAISE; \
                 WHEN OTHERS THEN RAISE WARNING 'claiming warm database % failed: %', c.name, SQLERRM; \
               END; \
             END LOOP; \
             RAISE EXCEPTION 'no warm database could be claimed' USING ERRCODE = 'no_data_found'; \
             END $claim$",
            prefix = quote_literal(&prefix),
            owner_mark = quote_literal(&self.template_owner_marker()),
            warm_mark = quote_literal(&format!("{}{template}", self.warm_mark_prefix())),
            to_literal = quote_literal(db.database.as_str()),
            role = quote_ident(db.role.as_str()),
            tenant_mark = quote_literal(&self.marker(db)),
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.inner.admin).await {
            Ok(_) => {
                tracing::debug!(tenant.id = %db.tenant, "claimed a warm database");
                Ok(true)
            }
            // The stock is empty or others took them first.
            Err(err) if sql_state(&err).as_deref() == Some(NO_DATA_FOUND) => Ok(false),
            // Something holds the tenant's name.
            Err(err) if sql_state(&err).as_deref() == Some(DUPLICATE_DATABASE) => Ok(false),
            Err(err) => Err(Error::server("cannot claim a warm database")(err)),
        }
    }
}

/// `<prefix>-wrm-<catalog id>-<hash>-<6 hex>` for a template named
/// `<prefix>-tpl-<catalog id>-<hash>`: at most 61 bytes.
fn warm_name(template: &str) -> Option<String> {
    warm_prefix(template).map(|prefix| format!("{prefix}{:06x}", rand::random::<u32>() & 0xff_ffff))
}

/// The text whose hash keys the advisory lock held while `name` is made.
fn warm_lock_key(name: &str) -> String {
    format!("tenantdb warm {name}")
}

/// What the names of `template`'s warm databases begin with.
fn warm_prefix(template: &str) -> Option<String> {
    template
        .contains("-tpl-")
        .then(|| format!("{}-", template.replacen("-tpl-", "-wrm-", 1)))
}

/// The advisory lock a warm database's maker holds on its name (session
/// level), on an admin connection taken out of the pool while it is held
/// (every statement of the making runs on it: a refill takes no other
/// admin connection from the creates). Released by an unlock before the
/// connection goes back to the pool; if that fails, or the making is
/// cancelled (dropped) while the lock may be held, the connection is
/// closed instead, which releases it as surely. A new connection of its
/// own would cost a backend's start and exit for each warm database made.
struct WarmLock {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    key: String,
    /// The lock is certainly not held on `conn`.
    clean: bool,
}

impl WarmLock {
    async fn take(pg: &PostgresEngine, name: &str) -> Result<Self> {
        let context = || format!("cannot take warm database '{name}''s lock");
        let conn = pg.inner.admin.acquire().await.map_err(Error::server(context()))?;
        // Not clean from here on: a cancel while the lock is waited for
        // may leave it granted.
        let mut lock = Self {
            conn,
            key: warm_lock_key(name),
            clean: false,
        };
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(&lock.key)
            .execute(&mut *lock.conn)
            .await
            .map_err(Error::server(context()))?;
        Ok(lock)
    }

    async fn release(mut self) {
        let unlocked: std::result::Result<bool, _> =
            sqlx::query_scalar("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                .bind(&self.key)
                .fetch_one(&mut *self.conn)
                .await;
        self.clean = matches!(unlocked, Ok(true));
    }
}

impl Drop for WarmLock {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn warm_names_fit_and_stay_out_of_the_tenant_name_space() {
        let template = format!("{}-tpl-{}-{}", "a".repeat(19), "0".repeat(16), "f".repeat(12));
        let name = super::warm_name(&template).unwrap();
        assert!(name.len() <= 63, "{name}");
        assert!(name.contains('-') && name.contains("-wrm-"), "{name}");
        assert_eq!(super::warm_name("tenant_acme"), None);
    }
}
