//! A tenant's database exported: `pg_dump` in custom format, made as the
//! tenant's own role (it reads only what the tenant may read), streamed
//! into a file.

use std::process::Stdio;

use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;

use super::PostgresEngine;
use super::tools::{succeeded, tool_missing};
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
        succeeded("pg_dump", "exporting", db, dump.wait_with_output().await)?;
        let bytes = copied.map_err(|err| Error::Config(format!("cannot write the export: {err}")))?;
        out.flush()
            .await
            .map_err(|err| Error::Config(format!("cannot write the export: {err}")))?;
        Ok(bytes)
    }

    /// Restores an export's archive (the bytes of `file` from `offset`)
    /// into the tenant's empty database, as the tenant's own role (so it
    /// owns everything restored), in one transaction.
    pub(crate) async fn restore_from(&self, db: &DatabaseSpec, file: &std::path::Path, offset: u64) -> Result<()> {
        use tokio::io::AsyncSeekExt;
        let mut restore = self
            .restore_as_tenant(db, "tenantdb-import", Stdio::piped())
            .spawn()
            .map_err(tool_missing("pg_restore"))?;
        let unreadable = |err: std::io::Error| Error::Config(format!("cannot read {}: {err}", file.display()));
        let mut input = tokio::fs::File::open(file).await.map_err(unreadable)?;
        input.seek(std::io::SeekFrom::Start(offset)).await.map_err(unreadable)?;
        // Through a pipe: the archive is read in order, never by offsets
        // (which would count from the file's start, header included).
        let mut stdin = restore
            .stdin
            .take()
            .ok_or_else(|| Error::Config("cannot write to pg_restore".into()))?;
        let fed = tokio::io::copy(&mut input, &mut stdin).await;
        drop(stdin);
        succeeded("pg_restore", "importing into", db, restore.wait_with_output().await)?;
        fed.map(drop).map_err(unreadable)
    }
}
