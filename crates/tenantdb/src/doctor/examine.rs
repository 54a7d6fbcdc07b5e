//! What `examine` looks at: the server's databases and roles against the
//! catalog's rows.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::{Doctor, DoctorOptions, Finding, Problem, Repair};
use crate::catalog::{DbStatus, tenant_database};
use crate::engine::{DatabaseSpec, Engine, Inventory};
use crate::error::Result;
use crate::names::{DatabaseName, RoleName};

impl Doctor {
    /// Finds drift between the catalog and the tenant server. ChangeStamp
    /// nothing.
    pub async fn examine(&self, options: DoctorOptions) -> Result<Vec<Finding>> {
        let engine = &self.engine();
        let stem = self.templates().stem();
        // The server first, then the catalog (see the module docs).
        let inventory = engine.inventory(self.provisioner.prefix(), &stem).await?;
        let (rows, elsewhere): (Vec<tenant_database::Model>, Vec<tenant_database::Model>) = self
            .catalog()
            .tenant_databases()
            .list(None)
            .await?
            .into_iter()
            .partition(|row| row.server_id == self.site.id);
        let by_tenant: HashMap<Uuid, &tenant_database::Model> = rows.iter().map(|row| (row.tenant_id, row)).collect();
        // Tenants whose row names another server: what of theirs is here is
        // never an orphan (the same server recorded twice, a copy being
        // moved), and never dropped.
        let elsewhere: HashMap<Uuid, Uuid> = elsewhere.iter().map(|row| (row.tenant_id, row.server_id)).collect();

        let mut findings = Vec::new();
        self.examine_databases(&inventory, &by_tenant, &elsewhere, &mut findings);
        self.examine_rows(&inventory, &rows, &mut findings).await?;
        if options.check_versions {
            self.examine_versions(&inventory, &rows, options.concurrency.max(1), &mut findings)
                .await;
        }
        self.examine_templates(&inventory, &mut findings).await?;
        // Runs are the catalog's, not a server's: reported once, by the
        // doctor of the server of the settings.
        let runs = if self.is_home() {
            self.catalog().migration_runs().abandoned().await?
        } else {
            Vec::new()
        };
        for run in runs {
            findings.push(
                Finding::about(
                    Problem::AbandonedRun,
                    run.id.to_string(),
                    None,
                    format!(
                        "fleet migration run started {} stopped without finishing: its process is gone",
                        run.started_at.to_rfc3339()
                    ),
                )
                .fix(
                    "record it as ABANDONED (run migrate again to finish the fleet)".into(),
                    Repair::CloseRun(run.id),
                ),
            );
        }
        for finding in &mut findings {
            finding.server.clone_from(&self.site.name);
        }
        Ok(findings)
    }

    /// What is on the server against the rows: orphans, foreign and
    /// misplaced databases, orphan roles.
    fn examine_databases(
        &self,
        inventory: &Inventory,
        by_tenant: &HashMap<Uuid, &tenant_database::Model>,
        elsewhere: &HashMap<Uuid, Uuid>,
        findings: &mut Vec<Finding>,
    ) {
        let postgres = matches!(self.engine(), Engine::Postgres(_));
        let mut with_database = HashSet::new();
        for db in &inventory.databases {
            if self.provisioner.reserved().contains(&db.name) {
                continue;
            }
            let Some(tenant) = db.tenant else {
                findings.push(
                    Finding::about(
                        Problem::ForeignDatabase,
                        db.name.clone(),
                        None,
                        "a database under this deployment's names that this catalog did not create".into(),
                    )
                    .manual("tenantdb never touches it: move it away from the prefix or drop it yourself".into()),
                );
                continue;
            };
            with_database.insert(tenant);
            // What a repair would drop, if this finding has one.
            let spec = DatabaseSpec {
                tenant,
                database: DatabaseName::from_catalog(db.name.clone()),
                role: db.owner.clone().map_or_else(
                    || RoleName::for_tenant(self.provisioner.prefix(), tenant),
                    RoleName::from_catalog,
                ),
            };
            match by_tenant.get(&tenant.as_uuid()) {
                None if db.moved_to.is_some() && elsewhere.get(&tenant.as_uuid()) == db.moved_to.as_ref() => {
                    let to = elsewhere[&tenant.as_uuid()];
                    findings.push(
                        Finding::about(
                            Problem::MovedSource,
                            db.name.clone(),
                            Some(tenant.as_uuid()),
                            format!(
                                "the copy a move to server {} left in place (--keep-source), its role locked out",
                                self.provisioner.sites().name_of(to)
                            ),
                        )
                        .fix("drop it and its role".into(), Repair::DropMovedSource(spec, to)),
                    );
                }
                None if elsewhere.contains_key(&tenant.as_uuid()) => findings.push(
                    Finding::about(
                        Problem::MisplacedDatabase,
                        db.name.clone(),
                        Some(tenant.as_uuid()),
                        format!(
                            "a database this catalog created for a tenant whose row is on server {}",
                            self.provisioner.sites().name_of(elsewhere[&tenant.as_uuid()])
                        ),
                    )
                    .manual(
                        "it may hold the tenant's data (is this server recorded twice, or a move under way?): \
                         tenantdb never drops it; compare it with the tenant's database and drop it yourself"
                            .into(),
                    ),
                ),
                None => {
                    findings.push(
                        Finding::about(
                            Problem::OrphanDatabase,
                            db.name.clone(),
                            Some(tenant.as_uuid()),
                            "a database this catalog created whose tenant has no catalog row".into(),
                        )
                        .fix("drop the database and its role".into(), Repair::DropDatabase(spec)),
                    );
                }
                Some(row) if postgres => {
                    let expected = db.name == row.database_name
                        || row.pending_database_name.as_deref() == Some(db.name.as_str())
                        || row.status == DbStatus::Deleting;
                    if !expected {
                        findings.push(Finding::about(Problem::MisplacedDatabase, db.name.clone(), Some(row.tenant_id), format!(
                                "the tenant's database is named '{}' on the server but '{}' in the catalog",
                                db.name, row.database_name
                            )).manual(format!(
                                "it holds the tenant's data: rename it back (ALTER DATABASE \"{}\" RENAME TO \"{}\") or drop it once you are sure",
                                db.name, row.database_name
                            )));
                    }
                }
                Some(_) => {}
            }
        }
        for role in &inventory.foreign_roles {
            findings.push(
                Finding::about(
                    Problem::ForeignRole,
                    role.clone(),
                    None,
                    "a role under this deployment's names that this catalog did not create".into(),
                )
                .manual("tenantdb never touches it: rename or drop it yourself".into()),
            );
        }
        for role in &inventory.roles {
            if by_tenant.contains_key(&role.tenant.as_uuid())
                || with_database.contains(&role.tenant)
                || elsewhere.contains_key(&role.tenant.as_uuid())
            {
                continue;
            }
            findings.push(
                Finding::about(
                    Problem::OrphanRole,
                    role.name.clone(),
                    Some(role.tenant.as_uuid()),
                    "a role this catalog created whose tenant has no catalog row and no database".into(),
                )
                .fix(
                    "drop the role".into(),
                    Repair::DropRole(role.tenant, RoleName::from_catalog(role.name.clone())),
                ),
            );
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
        for row in rows
            .iter()
            .filter(|row| matches!(row.status, DbStatus::Active | DbStatus::Deleted))
        {
            if self.locate(inventory, row).is_some() {
                continue;
            }
            let taken = matches!(self.engine(), Engine::Postgres(_))
                && inventory.databases.iter().any(|db| db.name == row.database_name);
            let (problem, detail) = if taken {
                (
                    Problem::NotOurs,
                    "the tenant's database name is taken by a database this catalog did not create for it",
                )
            } else {
                (
                    Problem::MissingDatabase,
                    if row.status == DbStatus::Deleted {
                        "the tenant is DELETED but its kept database is missing: it cannot be restored"
                    } else {
                        "the row is ACTIVE but its database is missing"
                    },
                )
            };
            findings.push(
                Finding::about(problem, row.database_name.clone(), Some(row.tenant_id), detail.into()).manual(
                    if row.status == DbStatus::Deleted {
                        format!("purge the tenant (the `tenants purge {} --yes` command)", row.tenant_id)
                    } else {
                        format!(
                            "restore the database from a backup, or delete the tenant (the `tenants delete {} --yes --now` command)",
                            row.tenant_id
                        )
                    },
                ),
            );
        }
        let now = chrono::Utc::now();
        for row in rows.iter().filter(|row| row.status == DbStatus::Deleted) {
            let Some(end) = row.purge_after else { continue };
            if end > now {
                continue;
            }
            findings.push(
                Finding::about(
                    Problem::ExpiredTrash,
                    row.database_name.clone(),
                    Some(row.tenant_id),
                    format!(
                        "deleted at {}: its retention period ended at {end} and the sweep has not purged it \
                         (is a service with the reconciler running?)",
                        row.deleted_at.map(|at| at.to_rfc3339()).unwrap_or_default()
                    ),
                )
                .fix(
                    "purge it (drop its kept database and role, and the tenant)".into(),
                    Repair::Purge(row.tenant_id),
                ),
            );
        }
        let abandoned = self.catalog().tenant_databases().abandoned().await?;
        for row in abandoned.iter().filter(|row| row.server_id == self.site.id) {
            findings.push(
                Finding::about(
                    Problem::StuckRow,
                    row.database_name.clone(),
                    Some(row.tenant_id),
                    format!(
                        "{} with an expired lease: the process doing it is gone",
                        row.status.as_str()
                    ),
                )
                .fix("finish or undo the work (reconcile)".into(), Repair::Reconcile),
            );
        }
        if matches!(self.engine(), Engine::Postgres(_)) {
            let current = self.provisioner.secret_version();
            for row in rows
                .iter()
                .filter(|row| row.secret_version != current && row.status == DbStatus::Active)
            {
                findings.push(
                    Finding::about(
                        Problem::StaleSecret,
                        row.role_name.clone(),
                        Some(row.tenant_id),
                        format!(
                            "the role's password derives from secret version {}, this process has version {current}: \
                         new connections to the tenant fail",
                            row.secret_version
                        ),
                    )
                    .fix(
                        format!("give the role the password of secret version {current}"),
                        Repair::Rekey {
                            row: row.id,
                            spec: self.provisioner.tenant_db(row),
                            from: row.secret_version,
                        },
                    ),
                );
            }
        }
        if let Some(secret) = &self.provisioner.sites().parts().secret
            && let Some(server) = self.catalog().servers().find(self.site.id).await?
            && let Some(sealed) = crate::sites::ServerSettings::of(&server).sealed_version()
            && sealed != secret.version()
        {
            findings.push(
                Finding::about(
                    Problem::StaleSealedPassword,
                    server.name.clone(),
                    None,
                    format!(
                        "the server's admin password is sealed under secret version {sealed}, this process has \
                         version {}: instances without the previous secret cannot reach the server",
                        secret.version()
                    ),
                )
                .fix(
                    format!("seal it again under secret version {}", secret.version()),
                    Repair::Reseal,
                ),
            );
        }
        for row in rows.iter().filter(|row| row.status == DbStatus::Failed) {
            findings.push(
                Finding::about(
                    Problem::FailedRow,
                    row.database_name.clone(),
                    Some(row.tenant_id),
                    format!(
                        "FAILED: {}",
                        row.error_message.as_deref().unwrap_or("(no message recorded)")
                    ),
                )
                .manual(format!(
                    "fix the cause, then the `tenants retry {}` command (or delete the tenant)",
                    row.tenant_id
                )),
            );
        }
        Ok(())
    }

    /// The database of a row, if it is on the server and ours.
    pub(super) fn locate<'a>(
        &self,
        inventory: &'a Inventory,
        row: &tenant_database::Model,
    ) -> Option<&'a crate::engine::ServerDatabase> {
        let postgres = matches!(self.engine(), Engine::Postgres(_));
        inventory.databases.iter().find(|db| {
            db.tenant.map(|t| t.as_uuid()) == Some(row.tenant_id) && (!postgres || db.name == row.database_name)
        })
    }
}
