//! Which tenant migration set the catalog serves. The first program to
//! change a tenant records its set; a program whose set is another (another
//! application's binary, or an older one) must never create, migrate, build
//! templates or repair.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::migrate::{SetMatch, TenantMigrations, describe_set, match_sets};

/// Refuses to change tenants unless `migrations` is the set the catalog
/// serves or an extension of it (then recorded as the catalog's). A set that
/// only drops migrations no tenant ever reached (say, a broken one the
/// application took back) is accepted too.
pub(crate) async fn check(catalog: &Catalog, migrations: &TenantMigrations) -> Result<()> {
    let ours = migrations.identity();
    loop {
        let recorded = catalog.tenant_migrations().await?;
        let acceptable = match match_sets(recorded.as_deref(), &ours) {
            SetMatch::Same => return Ok(()),
            SetMatch::Unrecorded | SetMatch::Extends => true,
            SetMatch::Other => unapplied_only(catalog, recorded.as_deref(), &ours).await?,
        };
        if !acceptable {
            return Err(Error::MigrationSetMismatch {
                recorded: describe_set(recorded.as_deref().unwrap_or_default()),
                ours: describe_set(&ours),
            });
        }
        if catalog.record_tenant_migrations(recorded.as_deref(), &ours).await? {
            return Ok(());
        }
        // Another process recorded a set meanwhile: compare again.
    }
}

/// Whether `migrations` is exactly the set the catalog records, or none is
/// recorded yet (read only: unlike `check`, it never moves the catalog to
/// an extension of its set, which background work must not do).
pub(crate) async fn is_the_catalogs(catalog: &Catalog, migrations: &TenantMigrations) -> Result<bool> {
    let recorded = catalog.tenant_migrations().await?;
    Ok(matches!(
        match_sets(recorded.as_deref(), &migrations.identity()),
        SetMatch::Same | SetMatch::Unrecorded
    ))
}

/// Whether `ours` is the recorded set's first migrations and what it leaves
/// out was applied to no tenant (no row records such a version).
async fn unapplied_only(catalog: &Catalog, recorded: Option<&str>, ours: &str) -> Result<bool> {
    let recorded: Vec<&str> = recorded
        .unwrap_or_default()
        .split('\n')
        .filter(|n| !n.is_empty())
        .collect();
    let ours: Vec<&str> = ours.split('\n').filter(|n| !n.is_empty()).collect();
    if ours.len() >= recorded.len() || recorded[..ours.len()] != ours[..] {
        return Ok(false);
    }
    let dropped: Vec<String> = recorded[ours.len()..].iter().map(|n| (*n).to_owned()).collect();
    Ok(!catalog.tenant_databases().any_at_version(&dropped).await?)
}
