//! `doctor`: finds drift between the catalog and the tenant server,
//! explains each finding, and repairs what is safe to repair.
//!
//! The server is listed before the catalog is read. A tenant's row is
//! always inserted before its role and database are made, so a database
//! seen on the server whose tenant has no row (read afterwards) really is
//! an orphan, not a create in flight. Repairs check the catalog again just
//! before they drop anything.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use super::Provisioner;
use crate::catalog::{DbStatus, tenant_database};
use crate::engine::{Engine, Inventory, TenantDb};
use crate::error::Result;
use crate::migrate;
use crate::names::{DatabaseName, RoleName, TenantId};

/// What `doctor` found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// A database this catalog made whose tenant has no catalog row.
    OrphanDatabase,
    /// A role this catalog made whose tenant has no catalog row and no
    /// database.
    OrphanRole,
    /// A database under the prefix that this catalog did not make. Reported,
    /// never touched.
    ForeignDatabase,
    /// A role under the prefix that this catalog did not make. Reported,
    /// never touched.
    ForeignRole,
    /// A tenant's database under a name its catalog row does not give.
    MisplacedDatabase,
    /// An ACTIVE row whose database is missing.
    MissingDatabase,
    /// An ACTIVE row whose database name is taken by a database this
    /// catalog did not make for that tenant.
    NotOurs,
    /// A row in PROVISIONING, RENAMING, MIGRATING or DELETING whose lease
    /// expired: work a dead process left.
    StuckRow,
    /// A FAILED row.
    FailedRow,
    /// The catalog's `schema_version` disagrees with the tenant's own
    /// migration table.
    VersionDrift,
    /// The version check could not read the tenant's database.
    Unreadable,
    /// A tenant role whose password derives from an older secret version
    /// (after `TENANTDB_SECRET` was rotated).
    StaleSecret,
    /// A template of another version, or one a crash left half-built.
    StaleTemplate,
    /// The current template is missing or half-built, or the catalog does
    /// not point at it.
    TemplateMissing,
    /// A fleet migration run whose process died: it reads ABANDONED.
    AbandonedRun,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrphanDatabase => "orphan_database",
            Self::OrphanRole => "orphan_role",
            Self::ForeignDatabase => "foreign_database",
            Self::ForeignRole => "foreign_role",
            Self::MisplacedDatabase => "misplaced_database",
            Self::MissingDatabase => "missing_database",
            Self::NotOurs => "not_ours",
            Self::StuckRow => "stuck_row",
            Self::FailedRow => "failed_row",
            Self::VersionDrift => "version_drift",
            Self::Unreadable => "unreadable",
            Self::StaleSecret => "stale_secret",
            Self::StaleTemplate => "stale_template",
            Self::TemplateMissing => "template_missing",
            Self::AbandonedRun => "abandoned_run",
        }
    }
}

/// What can be done about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "what", rename_all = "snake_case")]
pub enum Remedy {
    /// `--fix` does this.
    Fix(String),
    /// Needs an operator: this is what to do.
    Manual(String),
}

/// One thing `doctor` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub problem: Problem,
    /// The database, role or template concerned.
    pub subject: String,
    pub tenant_id: Option<Uuid>,
    /// What is wrong, in a sentence.
    pub detail: String,
    pub remedy: Remedy,
    #[serde(skip)]
    repair: Option<Repair>,
}

impl Finding {
    pub fn fixable(&self) -> bool {
        self.repair.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repair {
    DropDatabase(TenantDb),
    DropRole(TenantId, RoleName),
    Reconcile,
    SetVersion {
        row: Uuid,
        expected: Option<String>,
        actual: Option<String>,
    },
    Rekey {
        row: Uuid,
        spec: TenantDb,
        from: i32,
    },
    DropTemplate(String),
    BuildTemplate,
    ClearTemplatePointer,
    CloseRun(Uuid),
}

/// What `--fix` did about one finding.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub finding: Finding,
    /// What was done, or why it could not be.
    pub outcome: std::result::Result<String, String>,
}

/// How thorough `examine` is.
#[derive(Debug, Clone, Copy)]
pub struct DoctorOptions {
    /// Connect to every ACTIVE tenant database to compare its migration
    /// table with the catalog (one short connection each).
    pub check_versions: bool,
    /// Version checks at once.
    pub concurrency: usize,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            check_versions: true,
            concurrency: 4,
        }
    }
}

impl Provisioner {
    /// Finds drift between the catalog and the tenant server. Changes
    /// nothing.
    pub async fn examine(&self, options: DoctorOptions) -> Result<Vec<Finding>> {
        let engine = &self.inner.engine;
        let stem = self.template_stem();
        // The server first, then the catalog (see the module docs).
        let inventory = engine.inventory(&self.inner.prefix, &stem).await?;
        let rows: Vec<tenant_database::Model> = self
            .inner
            .catalog
            .tenant_databases()
            .list(None)
            .await?
            .into_iter()
            .filter(|row| row.server_id == self.inner.server_id)
            .collect();
        let by_tenant: HashMap<Uuid, &tenant_database::Model> = rows.iter().map(|row| (row.tenant_id, row)).collect();

        let mut findings = Vec::new();
        self.examine_databases(&inventory, &by_tenant, &mut findings);
        self.examine_rows(&inventory, &rows, &mut findings).await?;
        if options.check_versions {
            self.examine_versions(&inventory, &rows, options.concurrency.max(1), &mut findings)
                .await;
        }
        self.examine_templates(&inventory, &mut findings).await?;
        for run in self.inner.catalog.migration_runs().abandoned().await? {
            findings.push(Finding {
                problem: Problem::AbandonedRun,
                subject: run.id.to_string(),
                tenant_id: None,
                detail: format!(
                    "fleet migration run started {} stopped without finishing: its process is gone",
                    run.started_at.to_rfc3339()
                ),
                remedy: Remedy::Fix("record it as ABANDONED (run migrate again to finish the fleet)".into()),
                repair: Some(Repair::CloseRun(run.id)),
            });
        }
        Ok(findings)
    }

    /// What is on the server against the rows: orphans, foreign and
    /// misplaced databases, orphan roles.
    fn examine_databases(
        &self,
        inventory: &Inventory,
        by_tenant: &HashMap<Uuid, &tenant_database::Model>,
        findings: &mut Vec<Finding>,
    ) {
        let postgres = matches!(self.inner.engine, Engine::Postgres(_));
        let mut with_database = HashSet::new();
        for db in &inventory.databases {
            if self.inner.reserved.contains(&db.name) {
                continue;
            }
            let Some(tenant) = db.tenant else {
                findings.push(Finding {
                    problem: Problem::ForeignDatabase,
                    subject: db.name.clone(),
                    tenant_id: None,
                    detail: "a database under this deployment's names that this catalog did not create".into(),
                    remedy: Remedy::Manual(
                        "tenantdb never touches it: move it away from the prefix or drop it yourself".into(),
                    ),
                    repair: None,
                });
                continue;
            };
            with_database.insert(tenant);
            match by_tenant.get(&tenant.as_uuid()) {
                None => {
                    let spec = TenantDb {
                        tenant,
                        database: DatabaseName::from_catalog(db.name.clone()),
                        role: db.owner.clone().map_or_else(
                            || RoleName::for_tenant(&self.inner.prefix, tenant),
                            RoleName::from_catalog,
                        ),
                    };
                    findings.push(Finding {
                        problem: Problem::OrphanDatabase,
                        subject: db.name.clone(),
                        tenant_id: Some(tenant.as_uuid()),
                        detail: "a database this catalog created whose tenant has no catalog row".into(),
                        remedy: Remedy::Fix("drop the database and its role".into()),
                        repair: Some(Repair::DropDatabase(spec)),
                    });
                }
                Some(row) if postgres => {
                    let expected = db.name == row.database_name
                        || row.pending_database_name.as_deref() == Some(db.name.as_str())
                        || row.status == DbStatus::Deleting;
                    if !expected {
                        findings.push(Finding {
                            problem: Problem::MisplacedDatabase,
                            subject: db.name.clone(),
                            tenant_id: Some(row.tenant_id),
                            detail: format!(
                                "the tenant's database is named '{}' on the server but '{}' in the catalog",
                                db.name, row.database_name
                            ),
                            remedy: Remedy::Manual(format!(
                                "it holds the tenant's data: rename it back (ALTER DATABASE \"{}\" RENAME TO \"{}\") or drop it once you are sure",
                                db.name, row.database_name
                            )),
                            repair: None,
                        });
                    }
                }
                Some(_) => {}
            }
        }
        for role in &inventory.foreign_roles {
            findings.push(Finding {
                problem: Problem::ForeignRole,
                subject: role.clone(),
                tenant_id: None,
                detail: "a role under this deployment's names that this catalog did not create".into(),
                remedy: Remedy::Manual("tenantdb never touches it: rename or drop it yourself".into()),
                repair: None,
            });
        }
        for role in &inventory.roles {
            if by_tenant.contains_key(&role.tenant.as_uuid()) || with_database.contains(&role.tenant) {
                continue;
            }
            findings.push(Finding {
                problem: Problem::OrphanRole,
                subject: role.name.clone(),
                tenant_id: Some(role.tenant.as_uuid()),
                detail: "a role this catalog created whose tenant has no catalog row and no database".into(),
                remedy: Remedy::Fix("drop the role".into()),
                repair: Some(Repair::DropRole(role.tenant, RoleName::from_catalog(role.name.clone()))),
            });
        }
    }

    /// The rows against the server: missing databases, stuck and failed
    /// rows.
    async fn examine_rows(
        &self,
        inventory: &Inventory,
        rows: &[tenant_database::Model],
        findings: &mut Vec<Finding>,
    ) -> Result<()> {
        for row in rows.iter().filter(|row| row.status == DbStatus::Active) {
            if self.locate(inventory, row).is_some() {
                continue;
            }
            let taken = matches!(self.inner.engine, Engine::Postgres(_))
                && inventory.databases.iter().any(|db| db.name == row.database_name);
            let (problem, detail) = if taken {
                (
                    Problem::NotOurs,
                    "the tenant's database name is taken by a database this catalog did not create for it",
                )
            } else {
                (
                    Problem::MissingDatabase,
                    "the row is ACTIVE but its database is missing",
                )
            };
            findings.push(Finding {
                problem,
                subject: row.database_name.clone(),
                tenant_id: Some(row.tenant_id),
                detail: detail.into(),
                remedy: Remedy::Manual(format!(
                    "restore the database from a backup, or delete the tenant (tenantdb tenants delete {})",
                    row.tenant_id
                )),
                repair: None,
            });
        }
        let abandoned = self.inner.catalog.tenant_databases().abandoned().await?;
        for row in abandoned.iter().filter(|row| row.server_id == self.inner.server_id) {
            findings.push(Finding {
                problem: Problem::StuckRow,
                subject: row.database_name.clone(),
                tenant_id: Some(row.tenant_id),
                detail: format!(
                    "{} with an expired lease: the process doing it is gone",
                    row.status.as_str()
                ),
                remedy: Remedy::Fix("finish or undo the work (reconcile)".into()),
                repair: Some(Repair::Reconcile),
            });
        }
        if matches!(self.inner.engine, Engine::Postgres(_)) {
            let current = self.inner.secret_version;
            for row in rows
                .iter()
                .filter(|row| row.secret_version != current && row.status == DbStatus::Active)
            {
                findings.push(Finding {
                    problem: Problem::StaleSecret,
                    subject: row.role_name.clone(),
                    tenant_id: Some(row.tenant_id),
                    detail: format!(
                        "the role's password derives from secret version {}, this process has version {current}: \
                         new connections to the tenant fail",
                        row.secret_version
                    ),
                    remedy: Remedy::Fix(format!("give the role the password of secret version {current}")),
                    repair: Some(Repair::Rekey {
                        row: row.id,
                        spec: self.tenant_db(row),
                        from: row.secret_version,
                    }),
                });
            }
        }
        for row in rows.iter().filter(|row| row.status == DbStatus::Failed) {
            findings.push(Finding {
                problem: Problem::FailedRow,
                subject: row.database_name.clone(),
                tenant_id: Some(row.tenant_id),
                detail: format!(
                    "FAILED: {}",
                    row.error_message.as_deref().unwrap_or("(no message recorded)")
                ),
                remedy: Remedy::Manual(format!(
                    "fix the cause, then tenantdb tenants retry {} (or delete the tenant)",
                    row.tenant_id
                )),
                repair: None,
            });
        }
        Ok(())
    }

    /// The database of a row, if it is on the server and ours.
    fn locate<'a>(
        &self,
        inventory: &'a Inventory,
        row: &tenant_database::Model,
    ) -> Option<&'a crate::engine::ServerDatabase> {
        let postgres = matches!(self.inner.engine, Engine::Postgres(_));
        inventory.databases.iter().find(|db| {
            db.tenant.map(|t| t.as_uuid()) == Some(row.tenant_id) && (!postgres || db.name == row.database_name)
        })
    }

    /// Each ACTIVE tenant's migration table against its catalog row.
    async fn examine_versions(
        &self,
        inventory: &Inventory,
        rows: &[tenant_database::Model],
        concurrency: usize,
        findings: &mut Vec<Finding>,
    ) {
        let postgres = matches!(self.inner.engine, Engine::Postgres(_));
        let known: Vec<String> = self
            .inner
            .migrations
            .migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let checks: Vec<tenant_database::Model> = rows
            .iter()
            .filter(|row| row.status == DbStatus::Active && self.locate(inventory, row).is_some())
            // A role still on an older secret cannot log in yet
            // (`StaleSecret` says so).
            .filter(|row| !postgres || row.secret_version == self.inner.secret_version)
            .cloned()
            .collect();
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for row in checks {
            let this = self.clone();
            let limit = limit.clone();
            let known = known.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let found = this.read_version(&row, &known).await;
                (row, found)
            });
        }
        let mut found = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(pair) = joined {
                found.push(pair);
            }
        }
        found.sort_by_key(|(row, _)| row.tenant_id);
        for (row, version) in found {
            match version {
                Err(message) => findings.push(Finding {
                    problem: Problem::Unreadable,
                    subject: row.database_name.clone(),
                    tenant_id: Some(row.tenant_id),
                    detail: format!("cannot read the tenant's migration table: {message}"),
                    remedy: Remedy::Manual("check the database and the tenant role's access to it".into()),
                    repair: None,
                }),
                Ok((_, unknown)) if !unknown.is_empty() => findings.push(Finding {
                    problem: Problem::VersionDrift,
                    subject: row.database_name.clone(),
                    tenant_id: Some(row.tenant_id),
                    detail: format!(
                        "the database holds migrations this program does not know ({}): newer code migrated it",
                        unknown.join(", ")
                    ),
                    remedy: Remedy::Manual("run doctor (and serve) with the newer release".into()),
                    repair: None,
                }),
                Ok((actual, _)) if actual != row.schema_version => findings.push(Finding {
                    problem: Problem::VersionDrift,
                    subject: row.database_name.clone(),
                    tenant_id: Some(row.tenant_id),
                    detail: format!(
                        "the catalog says version {} but the database is at {}",
                        row.schema_version.as_deref().unwrap_or("(none)"),
                        actual.as_deref().unwrap_or("(none)")
                    ),
                    remedy: Remedy::Fix(format!(
                        "record version {} in the catalog (then `tenantdb migrate` brings it up to date if behind)",
                        actual.as_deref().unwrap_or("(none)")
                    )),
                    repair: Some(Repair::SetVersion {
                        row: row.id,
                        expected: row.schema_version.clone(),
                        actual,
                    }),
                }),
                Ok(_) => {}
            }
        }
    }

    /// The version a tenant database is at and the applied migrations this
    /// program does not know; reads only.
    async fn read_version(
        &self,
        row: &tenant_database::Model,
        known: &[String],
    ) -> std::result::Result<(Option<String>, Vec<String>), String> {
        let spec = self.tenant_db(row);
        let conn = self.inner.engine.connect(&spec, 1).await.map_err(|err| err.chain())?;
        let applied = migrate::read_applied(&conn).await.map_err(|err| err.to_string());
        let _ = conn.close().await;
        let applied = applied?;
        let version = known.iter().rev().find(|name| applied.contains(*name)).cloned();
        let mut unknown: Vec<String> = applied.into_iter().filter(|name| !known.contains(name)).collect();
        unknown.sort();
        Ok((version, unknown))
    }

    /// Templates on the server and the catalog's pointer against the
    /// current one.
    async fn examine_templates(&self, inventory: &Inventory, findings: &mut Vec<Finding>) -> Result<()> {
        let current = self.template_name();
        let mut seen = HashSet::new();
        let mut current_ready = false;
        for template in &inventory.templates {
            if !seen.insert(template.name.clone()) {
                continue;
            }
            let is_current = current.as_ref().is_some_and(|c| c.name == template.name);
            let half_built = inventory
                .templates
                .iter()
                .any(|t| t.name == template.name && t.version.is_none());
            if is_current && !half_built {
                current_ready = true;
                continue;
            }
            if is_current {
                findings.push(Finding {
                    problem: Problem::TemplateMissing,
                    subject: template.name.clone(),
                    tenant_id: None,
                    detail: "the current template was left half-built".into(),
                    remedy: Remedy::Fix("build it again".into()),
                    repair: Some(Repair::BuildTemplate),
                });
                current_ready = true; // reported; not again below
                continue;
            }
            findings.push(Finding {
                problem: Problem::StaleTemplate,
                subject: template.name.clone(),
                tenant_id: None,
                detail: if half_built {
                    "a template a crash left half-built".into()
                } else {
                    "a template of other tenant migrations than this program's".into()
                },
                remedy: Remedy::Fix("drop it".into()),
                repair: Some(Repair::DropTemplate(template.name.clone())),
            });
        }
        let pointer = self.inner.catalog.template().await?;
        let squatted = |name: &str| {
            inventory
                .databases
                .iter()
                .any(|db| db.name == name && db.tenant.is_none())
        };
        match current {
            Some(current) if !current_ready && squatted(&current.name) => findings.push(Finding {
                problem: Problem::TemplateMissing,
                subject: current.name,
                tenant_id: None,
                detail: "a database this catalog did not create holds the current template's name: new tenants \
                         replay migrations"
                    .into(),
                remedy: Remedy::Manual("tenantdb never touches it: rename or drop it yourself".into()),
                repair: None,
            }),
            Some(current) if !current_ready => findings.push(Finding {
                problem: Problem::TemplateMissing,
                subject: current.name,
                tenant_id: None,
                detail: "templates are on but the current template does not exist: new tenants replay migrations"
                    .into(),
                remedy: Remedy::Fix("build it and point the catalog at it".into()),
                repair: Some(Repair::BuildTemplate),
            }),
            Some(current) if pointer.as_deref() != Some(current.name.as_str()) => findings.push(Finding {
                problem: Problem::TemplateMissing,
                subject: current.name,
                tenant_id: None,
                detail: format!(
                    "the catalog points at template {} instead",
                    pointer.as_deref().unwrap_or("(none)")
                ),
                remedy: Remedy::Fix("point the catalog at the current template".into()),
                repair: Some(Repair::BuildTemplate),
            }),
            None if pointer.is_some() => findings.push(Finding {
                problem: Problem::StaleTemplate,
                subject: pointer.unwrap_or_default(),
                tenant_id: None,
                detail: "templates are off (or there are no migrations) but the catalog points at a template".into(),
                remedy: Remedy::Fix("clear the catalog's pointer".into()),
                repair: Some(Repair::ClearTemplatePointer),
            }),
            _ => {}
        }
        Ok(())
    }

    /// Repairs what is safe among `findings` (see `Remedy::Fix`); the rest
    /// is left as it is. Run `examine` again to see what remains.
    pub async fn repair(&self, findings: &[Finding]) -> Vec<Repaired> {
        let mut repaired = Vec::new();
        // Repairs drop, rebuild and migrate: only with the catalog's set.
        if let Err(err) = self.check_migration_set().await {
            return findings
                .iter()
                .filter(|finding| finding.fixable())
                .map(|finding| Repaired {
                    finding: finding.clone(),
                    outcome: Err(err.to_string()),
                })
                .collect();
        }
        let mut reconciled: Option<std::result::Result<Vec<super::Reconciled>, String>> = None;
        let mut template_built = None;
        for finding in findings {
            let Some(repair) = &finding.repair else { continue };
            let outcome = match repair {
                Repair::DropDatabase(spec) => {
                    self.drop_orphan(spec.tenant, || self.inner.engine.drop_tenant(spec))
                        .await
                }
                Repair::DropRole(tenant, role) => {
                    self.drop_orphan(*tenant, || self.inner.engine.drop_role(*tenant, role))
                        .await
                }
                Repair::Reconcile => {
                    if reconciled.is_none() {
                        reconciled = Some(self.reconcile().await.map_err(|err| err.chain()));
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
                    .inner
                    .catalog
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
                Repair::DropTemplate(name) => self
                    .inner
                    .engine
                    .drop_template(name)
                    .await
                    .map(|()| "dropped".to_owned())
                    .map_err(|err| err.chain()),
                Repair::BuildTemplate => {
                    if template_built.is_none() {
                        self.forget_template();
                        template_built = Some(match self.template().await {
                            Some(name) => Ok(format!("template {name} is ready and the catalog points at it")),
                            None => Err("the template could not be built (see the log)".to_owned()),
                        });
                    }
                    template_built.clone().unwrap_or_else(|| Err("not built".into()))
                }
                Repair::ClearTemplatePointer => self
                    .inner
                    .catalog
                    .set_template(None)
                    .await
                    .map(|()| "cleared".to_owned())
                    .map_err(|err| err.chain()),
                Repair::CloseRun(id) => self
                    .inner
                    .catalog
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
    async fn rekey(&self, row: Uuid, spec: &TenantDb, from: i32) -> std::result::Result<String, String> {
        let to = self.inner.secret_version;
        self.inner.engine.ensure_role(spec).await.map_err(|err| err.chain())?;
        self.inner.engine.flush().await.map_err(|err| err.chain())?;
        let recorded = self
            .inner
            .catalog
            .tenant_databases()
            .set_secret_version(row, from, to)
            .await
            .map_err(|err| err.chain())?;
        self.inner.pools.invalidate(spec.tenant);
        if recorded {
            Ok(format!("the role now has the password of secret version {to}"))
        } else {
            Err("the row changed meanwhile; run doctor again".into())
        }
    }

    /// Runs `drop` for an orphan of `tenant` unless a catalog row for the
    /// tenant appeared since it was examined.
    async fn drop_orphan<F, Fut>(&self, tenant: TenantId, drop: F) -> std::result::Result<String, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        match self
            .inner
            .catalog
            .tenant_databases()
            .find_by_tenant(tenant.as_uuid())
            .await
        {
            Ok(Some(_)) => Err("the tenant has a catalog row now; left alone".into()),
            Ok(None) => drop().await.map(|()| "dropped".to_owned()).map_err(|err| err.chain()),
            Err(err) => Err(err.chain()),
        }
    }
}
