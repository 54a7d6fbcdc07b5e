//! `tenants url` and `tenants shell`: an operator's way into one tenant's
//! database, as the tenant's own role (what the service uses), never as
//! the admin.

use std::process::Command;

use anyhow::Context;
use secrecy::ExposeSecret;
use tenantdb::engine::{DatabaseSpec, Engine};
use tenantdb::{Tenancy, TenantRef};

/// The tenant's database as the provisioner names it.
async fn database_of(tenancy: &Tenancy, tenant: &TenantRef) -> anyhow::Result<DatabaseSpec> {
    let id = tenancy.tenant(tenant).await?.id;
    let row = tenancy
        .catalog()
        .tenant_databases()
        .find_by_tenant(id)
        .await?
        .with_context(|| format!("tenant '{tenant}' has no database"))?;
    Ok(tenancy.provisioner().tenant_db(&row))
}

/// `tenants url`: a connection URL for the tenant's role; the password
/// only with `show_password` (and then only on stdout).
pub(crate) async fn url(tenancy: &Tenancy, tenant: &TenantRef, show_password: bool) -> anyhow::Result<()> {
    let db = database_of(tenancy, tenant).await?;
    match tenancy.engine() {
        Engine::Postgres(pg) => println!("{}", pg.tenant_login(&db).url(show_password)),
        Engine::Sqlite(sqlite) => println!("sqlite://{}", sqlite.path(db.tenant).display()),
    }
    Ok(())
}

/// `tenants shell`: `psql` as the tenant's role (the password passed in
/// the environment, not on the command line), or `sqlite3` on its file.
pub(crate) async fn shell(tenancy: &Tenancy, tenant: &TenantRef) -> anyhow::Result<()> {
    let db = database_of(tenancy, tenant).await?;
    let mut command = match tenancy.engine() {
        Engine::Postgres(pg) => {
            let login = pg.tenant_login(&db);
            let mut command = Command::new("psql");
            command
                .args(["-h", &login.host, "-p", &login.port.to_string()])
                .args(["-U", &login.role, "-d", &login.database])
                .env("PGPASSWORD", login.password.expose_secret())
                .env("PGAPPNAME", "tenantdb-shell");
            command
        }
        Engine::Sqlite(sqlite) => {
            let mut command = Command::new("sqlite3");
            command.arg(sqlite.path(db.tenant));
            command
        }
    };
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command
        .status()
        .with_context(|| format!("cannot start {program} (is it installed and on PATH?)"))?;
    anyhow::ensure!(status.success(), "{program} exited with {status}");
    Ok(())
}
