//! The version check: each ACTIVE tenant's own migration table against
//! its catalog row.

use super::{Doctor, Finding, Problem, Repair};
use crate::catalog::{DbStatus, tenant_database};
use crate::engine::{Engine, Inventory};
use crate::migrate;

impl Doctor {
    /// Each ACTIVE tenant's migration table against its catalog row.
    pub(super) async fn examine_versions(
        &self,
        inventory: &Inventory,
        rows: &[tenant_database::Model],
        concurrency: usize,
        findings: &mut Vec<Finding>,
    ) {
        let postgres = matches!(self.engine(), Engine::Postgres(_));
        let known: Vec<String> = self.provisioner.migrations().names();
        let checks: Vec<tenant_database::Model> = rows
            .iter()
            .filter(|row| row.status == DbStatus::Active && self.locate(inventory, row).is_some())
            // A role still on an older secret cannot log in yet
            // (`StaleSecret` says so).
            .filter(|row| !postgres || row.secret_version == self.provisioner.secret_version())
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
                Err(message) => findings.push(Finding::about(Problem::Unreadable, row.database_name.clone(), Some(row.tenant_id), format!("cannot read the tenant's migration table: {message}")).manual("check the database and the tenant role's access to it".into())),
                Ok((_, unknown)) if !unknown.is_empty() => findings.push(Finding::about(Problem::VersionDrift, row.database_name.clone(), Some(row.tenant_id), format!(
                        "the database holds migrations this program does not know ({}): newer code migrated it",
                        unknown.join(", ")
                    )).manual("run doctor (and serve) with the newer release".into())),
                Ok((actual, _)) if actual != row.schema_version => findings.push(Finding::about(Problem::VersionDrift, row.database_name.clone(), Some(row.tenant_id), format!(
                        "the catalog says version {} but the database is at {}",
                        row.schema_version.as_deref().unwrap_or("(none)"),
                        actual.as_deref().unwrap_or("(none)")
                    )).fix(format!(
                        "record version {} in the catalog (then the `migrate` command brings it up to date if behind)",
                        actual.as_deref().unwrap_or("(none)")
                    ), Repair::SetVersion {
                        row: row.id,
                        expected: row.schema_version.clone(),
                        actual,
                    })),
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
        let spec = self.provisioner.tenant_db(row);
        let conn = self.engine().connect(&spec, 1).await.map_err(|err| err.chain())?;
        let applied = migrate::read_applied(&conn).await.map_err(|err| err.to_string());
        let _ = conn.close().await;
        let applied = applied?;
        let version = known.iter().rev().find(|name| applied.contains(*name)).cloned();
        let mut unknown: Vec<String> = applied.into_iter().filter(|name| !known.contains(name)).collect();
        unknown.sort();
        Ok((version, unknown))
    }
}
