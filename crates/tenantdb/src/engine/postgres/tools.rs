//! The PostgreSQL client tools tenantdb runs (`pg_dump`, `pg_restore`):
//! where they are, `pg_restore` as a tenant's role, and what a failed run
//! said. Passwords go in the child's environment, never its arguments.

use std::process::Stdio;

use secrecy::ExposeSecret;

use super::PostgresEngine;
use crate::engine::DatabaseSpec;
use crate::error::{Error, Result};

impl PostgresEngine {
    /// `pg_dump` or `pg_restore`: in `Config::pg_bin` when set, else on
    /// the `PATH`.
    pub(super) fn pg_tool(&self, name: &str) -> std::path::PathBuf {
        match &self.inner.pg_bin {
            Some(dir) => dir.join(name),
            None => name.into(),
        }
    }

    /// `pg_restore` into the tenant's database here, as the tenant's own
    /// role (so it owns everything restored), in one transaction that
    /// stops at the first error; the archive comes on `stdin`.
    pub(super) fn restore_as_tenant(&self, db: &DatabaseSpec, app: &str, stdin: Stdio) -> tokio::process::Command {
        let login = self.tenant_login(db);
        let mut restore = tokio::process::Command::new(self.pg_tool("pg_restore"));
        restore
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
            ])
            .arg(format!("--dbname={}", login.url(false)))
            .env("PGPASSWORD", login.password.expose_secret())
            .env("PGAPPNAME", app)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        restore
    }
}

/// The error of a tool that could not be started.
pub(super) fn tool_missing(tool: &str) -> impl FnOnce(std::io::Error) -> Error {
    let tool = tool.to_owned();
    move |err| {
        Error::Config(format!(
            "cannot run {tool} ({err}): install the PostgreSQL client tools (as new as the newest server) \
             or set TENANTDB_PG_BIN to their directory"
        ))
    }
}

/// `Ok` when the tool's run succeeded; else an error with the last lines
/// it printed ("`tool` failed `doing` database 'x' (status): ...").
pub(super) fn succeeded(
    tool: &str,
    doing: &str,
    db: &DatabaseSpec,
    out: std::io::Result<std::process::Output>,
) -> Result<()> {
    let out = out.map_err(tool_missing(tool))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: String = said.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
    Err(Error::Config(format!(
        "{tool} failed {doing} database '{}' ({}): {said}",
        db.database, out.status
    )))
}
