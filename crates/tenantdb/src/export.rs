//! Exports: one tenant's database in one file, with what it is (tenant,
//! engine, schema version) in a header, for a backup, an audit or moving
//! it elsewhere by hand.
//!
//! The file: the line `TENANTDB-EXPORT 1`, one line of JSON
//! ([`ExportHeader`]), then the database: a `pg_dump --format=custom`
//! archive made as the tenant's own role (PostgreSQL; restore it with
//! `tail -n +3 FILE | pg_restore -d ...`, or `read_export`'s offset), or a
//! SQLite database file (`VACUUM INTO`). Both are consistent snapshots
//! taken while the tenant is served. The file is written owner-only under a
//! temporary name and renamed into place once complete.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::catalog::Catalog;
use crate::engine::{DatabaseSpec, Engine};
use crate::error::{Error, Result};
use crate::names::{DatabaseName, RoleName, TenantId, TenantRef};
use crate::sites::Sites;

/// The first line of every export.
pub const EXPORT_MAGIC: &str = "TENANTDB-EXPORT 1";

/// What an export holds (its second line, JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportHeader {
    /// The tenant's id.
    pub tenant_id: uuid::Uuid,
    /// The tenant's slug.
    pub slug: String,
    /// `postgres` (a `pg_dump` custom-format archive follows) or `sqlite`
    /// (a database file follows).
    pub engine: String,
    /// The database's name on its server.
    pub database_name: String,
    /// The last tenant migration applied to it, as the catalog records it.
    pub schema_version: Option<String>,
    /// When the export began (RFC 3339).
    pub exported_at: String,
}

/// An export written.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// What it holds.
    pub header: ExportHeader,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Reads an export's header; returns it with the offset where the
/// database begins.
pub fn read_export(path: &Path) -> Result<(ExportHeader, u64)> {
    let bad = |why: &str| Error::invalid("export", &path.display().to_string(), why);
    let file = std::fs::File::open(path).map_err(|err| bad(&format!("cannot open it: {err}")))?;
    let mut reader = BufReader::new(file);
    let (mut magic, mut header) = (String::new(), String::new());
    reader
        .read_line(&mut magic)
        .map_err(|err| bad(&format!("cannot read it: {err}")))?;
    if magic.trim_end() != EXPORT_MAGIC {
        return Err(bad("not a tenantdb export (its first line is not TENANTDB-EXPORT 1)"));
    }
    reader
        .read_line(&mut header)
        .map_err(|err| bad(&format!("cannot read it: {err}")))?;
    let parsed = serde_json::from_str(header.trim_end()).map_err(|err| bad(&format!("bad header: {err}")))?;
    Ok((parsed, (magic.len() + header.len()) as u64))
}

/// Exports the tenant's database to `output` (see the module docs).
pub(crate) async fn export(catalog: &Catalog, sites: &Sites, tenant: &TenantRef, output: &Path) -> Result<Exported> {
    let found = catalog.tenants().get(tenant).await?;
    let row = catalog
        .tenant_databases()
        .find_by_tenant(found.id)
        .await?
        .ok_or_else(|| Error::TenantDatabaseNotFound(found.slug.clone()))?;
    if !row.status.serves_traffic() {
        return Err(Error::TenantUnavailable {
            tenant: found.slug.clone(),
            status: row.status,
        });
    }
    let site = sites.get(row.server_id).await?;
    let spec = DatabaseSpec {
        tenant: TenantId::from(row.tenant_id),
        database: DatabaseName::from_catalog(row.database_name.clone()),
        role: RoleName::from_catalog(row.role_name.clone()),
    };
    let header = ExportHeader {
        tenant_id: found.id,
        slug: found.slug.clone(),
        engine: site.engine.name().to_owned(),
        database_name: row.database_name.clone(),
        schema_version: row.schema_version.clone(),
        exported_at: crate::tenant::rfc3339(chrono::Utc::now()),
    };
    let partial = partial_name(output);
    let written = write(&site.engine, &spec, &header, &partial).await;
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    std::fs::rename(&partial, output).map_err(|err| io_error(output, &err))?;
    tracing::info!(tenant.id = %found.id, file = %output.display(), bytes, "exported a tenant");
    Ok(Exported {
        header,
        path: output.to_owned(),
        bytes,
    })
}

async fn write(engine: &Engine, spec: &DatabaseSpec, header: &ExportHeader, to: &Path) -> Result<u64> {
    let file = crate::private_files::create_private(to).map_err(|err| io_error(to, &err))?;
    let mut out = tokio::fs::File::from_std(file);
    let head = format!(
        "{EXPORT_MAGIC}\n{}\n",
        serde_json::to_string(header).map_err(|err| Error::Config(err.to_string()))?
    );
    out.write_all(head.as_bytes()).await.map_err(|err| io_error(to, &err))?;
    let body = match engine {
        Engine::Postgres(pg) => pg.dump_into(spec, &mut out).await?,
        Engine::Sqlite(sqlite) => {
            let copy = to.with_extension("sqlite-copy");
            let _ = std::fs::remove_file(&copy);
            let copied = async {
                sqlite.snapshot_to(spec, &copy).await?;
                let mut from = tokio::fs::File::open(&copy)
                    .await
                    .map_err(|err| io_error(&copy, &err))?;
                tokio::io::copy(&mut from, &mut out)
                    .await
                    .map_err(|err| io_error(to, &err))
            }
            .await;
            let _ = std::fs::remove_file(&copy);
            copied?
        }
    };
    out.sync_all().await.map_err(|err| io_error(to, &err))?;
    Ok(head.len() as u64 + body)
}

fn partial_name(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

fn io_error(path: &Path, err: &std::io::Error) -> Error {
    Error::Config(format!("cannot write {}: {err}", path.display()))
}
