//! `repair`: what `--fix` does about each finding.

use uuid::Uuid;

use super::{Doctor, Finding, Repair, Repaired};
use crate::catalog::DbStatus;
use crate::engine::DatabaseSpec;
use crate::error::Result;
use crate::names::TenantId;

impl Doctor {
    /// Repairs what is safe among `findings` (see `Remedy::Fix`); the rest
    /// is left as it is. Run `examine` again to see what remains.
    pub async fn repair(&self, findings: &[Finding]) -> Vec<Repaired> {
        let mut repaired = Vec::new();
        // Repairs drop, rebuild and migrate: only with the catalog's set.
        if let Err(err) = self.provisioner.check_migration_set().await {
            return findings
                .iter()
                .filter(|finding| finding.fixable())
                .map(|finding| Repaired {
                    finding: finding.clone(),
                    outcome: Err(err.to_string()),
                })
                .collect();
        }
        let mut reconciled: Option<std::result::Result<Vec<crate::provisioner::Reconciled>, String>> = None;
        let mut template_built = None;
        for finding in findings {
            let Some(repair) = &finding.repair else { continue };
            let outcome = match repair {
                Repair::DropDatabase(spec) => self.drop_orphan(spec.tenant, || self.engine().drop_tenant(spec)).await,
                Repair::DropMovedSource(spec, to) => self.drop_moved_source(spec, *to).await,
                Repair::DropRole(tenant, role) => {
                    self.drop_orphan(*tenant, || self.engine().drop_role(*tenant, role))
                        .await
                }
                Repair::Reconcile => {
                    if reconciled.is_none() {
                        reconciled = Some(self.provisioner.reconcile().await.map_err(|err| err.chain()));
                    }
                    match reconciled.as_ref() {
                        Some(Ok(done)) => done
                            .iter()
                            .find(|r| Some(r.tenant_id) == finding.tenant_id)
                            .map_or(Ok("already finished by another process".into()), |r| {
                                Ok(format!("{:?}: now {}", r.outcome, r.status.as_str()))
                            }),
                        Some(Err(err)) => Err(err.clone()),
                        None => Err("reconcile did not run".into()),
                    }
                }
                Repair::SetVersion { row, expected, actual } => self
                    .catalog()
                    .tenant_databases()
                    .correct_version(*row, expected.as_deref(), actual.as_deref())
                    .await
                    .map_err(|err| err.chain())
                    .and_then(|changed| {
                        if changed {
                            Ok(format!("recorded version {}", actual.as_deref().unwrap_or("(none)")))
                        } else {
                            Err("the row changed meanwhile; run doctor again".into())
                        }
                    }),
                Repair::Rekey { row, spec, from } => self.rekey(*row, spec, *from).await,
                Repair::Reseal => self.reseal().await.map_err(|err| err.chain()),
                Repair::DropWarm(name) => match self.engine().drop_warm(name).await {
                    Ok(true) => Ok("dropped".to_owned()),
                    Ok(false) => Ok("left alone: another process is making it now".to_owned()),
                    Err(err) => Err(err.chain()),
                },
                Repair::Purge(tenant) => match self.provisioner.purge_if_due(*tenant).await {
                    Ok(true) => Ok("purged".to_owned()),
                    Ok(false) => Ok("no longer due (restored or purged meanwhile)".to_owned()),
                    Err(err) => Err(err.chain()),
                },
                Repair::DropTemplate(name) => self
                    .engine()
                    .drop_template(name)
                    .await
                    .map(|()| "dropped".to_owned())
                    .map_err(|err| err.chain()),
                Repair::BuildTemplate => {
                    if template_built.is_none() {
                        self.templates().forget();
                        template_built = Some(match self.templates().ready().await {
                            Some(name) => Ok(format!("template {name} is ready and the catalog points at it")),
                            None => Err("the template could not be built (see the log)".to_owned()),
                        });
                    }
                    template_built.clone().unwrap_or_else(|| Err("not built".into()))
                }
                Repair::ClearTemplatePointer => self
                    .catalog()
                    .set_template(None)
                    .await
                    .map(|()| "cleared".to_owned())
                    .map_err(|err| err.chain()),
                Repair::CloseRun(id) => self
                    .catalog()
                    .migration_runs()
                    .close_abandoned(*id)
                    .await
                    .map(|closed| {
                        if closed {
                            "recorded as ABANDONED"
                        } else {
                            "no longer abandoned"
                        }
                        .to_owned()
                    })
                    .map_err(|err| err.chain()),
            };
            repaired.push(Repaired {
                finding: finding.clone(),
                outcome,
            });
        }
        repaired
    }

    /// Gives a tenant's role the password of the current secret version and
    /// records it, if the row is still ACTIVE at version `from`; the pools
    /// of this process reconnect with it.
    /// Seals this server's admin password again under the current secret.
    async fn reseal(&self) -> crate::Result<String> {
        let servers = self.catalog().servers();
        let row = servers
            .find(self.site.id)
            .await?
            .ok_or_else(|| crate::Error::ServerNotFound(self.site.name.clone()))?;
        let parts = self.provisioner.sites().parts();
        let settings = crate::sites::ServerSettings::of(&row).resealed(&row.name, parts)?;
        servers.set_settings(row.id, settings.to_json()).await?;
        Ok(format!(
            "sealed under secret version {}",
            parts.secret.as_ref().map_or(0, |s| s.version())
        ))
    }

    async fn rekey(&self, row: Uuid, spec: &DatabaseSpec, from: i32) -> std::result::Result<String, String> {
        let to = self.provisioner.secret_version();
        self.engine().ensure_role(spec).await.map_err(|err| err.chain())?;
        self.engine().flush().await.map_err(|err| err.chain())?;
        let recorded = self
            .catalog()
            .tenant_databases()
            .set_secret_version(row, from, to)
            .await
            .map_err(|err| err.chain())?;
        self.site.pools.invalidate(spec.tenant);
        if recorded {
            Ok(format!("the role now has the password of secret version {to}"))
        } else {
            Err("the row changed meanwhile; run doctor again".into())
        }
    }

    /// Runs `drop` for an orphan of `tenant` unless a catalog row for the
    /// tenant appeared since it was examined.
    /// Drops the copy a move left here, only while the tenant is ACTIVE on
    /// the server it moved to (never where it is served from).
    async fn drop_moved_source(&self, spec: &DatabaseSpec, to: Uuid) -> std::result::Result<String, String> {
        match self
            .catalog()
            .tenant_databases()
            .find_by_tenant(spec.tenant.as_uuid())
            .await
        {
            Ok(Some(row)) if row.server_id == to && row.server_id != self.site.id && row.status == DbStatus::Active => {
                self.engine()
                    .drop_tenant(spec)
                    .await
                    .map(|()| "dropped".to_owned())
                    .map_err(|err| err.chain())
            }
            Ok(_) => Err("the tenant is not ACTIVE on the server it moved to now; left alone".into()),
            Err(err) => Err(err.chain()),
        }
    }

    async fn drop_orphan<F, Fut>(&self, tenant: TenantId, drop: F) -> std::result::Result<String, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        match self.catalog().tenant_databases().find_by_tenant(tenant.as_uuid()).await {
            Ok(Some(_)) => Err("the tenant has a catalog row now; left alone".into()),
            Ok(None) => drop().await.map(|()| "dropped".to_owned()).map_err(|err| err.chain()),
            Err(err) => Err(err.chain()),
        }
    }
}
