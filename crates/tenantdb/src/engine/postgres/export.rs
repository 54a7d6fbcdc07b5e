//! A tenant's database exported: `pg_dump` in custom format, made as the
//! tenant's own role (it reads only what the tenant may read), streamed
//! into a file.

use std::process::Stdio;

use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;

use super::PostgresEngine;
use super::moves::tool_missing;
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};

impl PostgresEngine {
    /// Appends a `pg_dump --format=custom` archive of the tenant's
    /// database to `out`; returns its size in bytes.
    pub(crate) async fn dump_into(&self, db: &DatabaseSpec, out: &mut tokio::fs::File) -> Result<u64> {
        let login = self.tenant_login(db);
        let mut dump = tokio::process::Command::new(self.pg_tool("pg_dump"))
            .args(["--format=custom", "--no-owner", "--no-privileges"])
            .arg(format!("--dbname={}", login.url(false)))
            .env("PGPASSWORD", login.password.expose_secret())
            .env("PGAPPNAME", "tenantdb-export")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(tool_missing("pg_dump"))?;
        let mut stdout = dump
            .stdout
            .take()
            .ok_or_else(|| Error::Config("cannot read pg_dump's output".into()))?;
        let copied = tokio::io::copy(&mut stdout, out).await;
        let done = dump.wait_with_output().await.map_err(tool_missing("pg_dump"))?;
        if !done.status.success() {
            let said = String::from_utf8_lossy(&done.stderr);
            let said: String = said.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
            return Err(Error::Config(format!(
                "pg_dump failed exporting database '{}' ({}): {said}",
                db.database, done.status
            )));
        }
        let bytes = copied.map_err(|err| Error::Config(format!("cannot write the export: {err}")))?;
        out.flush()
            .await
            .map_err(|err| Error::Config(format!("cannot write the export: {err}")))?;
        Ok(bytes)
    }
}
