//! Templates on the server and the catalog's pointer against the current
//! one.

use std::collections::HashSet;

use super::{Doctor, Finding, Problem, Repair};
use crate::engine::Inventory;
use crate::error::Result;

impl Doctor {
    /// Templates on the server and the catalog's pointer against the
    /// current one.
    pub(super) async fn examine_templates(&self, inventory: &Inventory, findings: &mut Vec<Finding>) -> Result<()> {
        let current = self.templates().current();
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
                findings.push(
                    Finding::about(
                        Problem::TemplateMissing,
                        template.name.clone(),
                        None,
                        "the current template was left half-built".into(),
                    )
                    .fix("build it again".into(), Repair::BuildTemplate),
                );
                current_ready = true; // reported; not again below
                continue;
            }
            findings.push(
                Finding::about(
                    Problem::StaleTemplate,
                    template.name.clone(),
                    None,
                    if half_built {
                        "a template a crash left half-built".into()
                    } else {
                        "a template of other tenant migrations than this program's".into()
                    },
                )
                .fix("drop it".into(), Repair::DropTemplate(template.name.clone())),
            );
        }
        let current_name = current.as_ref().map(|c| c.name.as_str());
        for warm in &inventory.warm {
            if Some(warm.template.as_str()) == current_name {
                continue;
            }
            findings.push(
                Finding::about(
                    Problem::StaleWarm,
                    warm.name.clone(),
                    None,
                    if warm.template.is_empty() {
                        "a warm database a crash left half-made".into()
                    } else {
                        format!(
                            "a warm database made from template '{}', not the current one",
                            warm.template
                        )
                    },
                )
                .fix(
                    "drop it (the stock is refilled from the current template)".into(),
                    Repair::DropWarm(warm.name.clone()),
                ),
            );
        }
        let pointer = self.catalog().template().await?;
        let squatted = |name: &str| {
            inventory
                .databases
                .iter()
                .any(|db| db.name == name && db.tenant.is_none())
        };
        match current {
            Some(current) if !current_ready && squatted(&current.name) => findings.push(
                Finding::about(
                    Problem::TemplateMissing,
                    current.name,
                    None,
                    "a database this catalog did not create holds the current template's name: new tenants \
                         replay migrations"
                        .into(),
                )
                .manual("tenantdb never touches it: rename or drop it yourself".into()),
            ),
            // Never built (a new deployment, or a server that never had a
            // tenant): the first create on it builds it.
            Some(_) if !current_ready && (pointer.is_none() || !self.is_home()) => {}
            Some(current) if !current_ready => findings.push(
                Finding::about(
                    Problem::TemplateMissing,
                    current.name,
                    None,
                    "templates are on but the current template does not exist: new tenants replay migrations".into(),
                )
                .fix("build it and point the catalog at it".into(), Repair::BuildTemplate),
            ),
            Some(current) if self.is_home() && pointer.as_deref() != Some(current.name.as_str()) => findings.push(
                Finding::about(
                    Problem::TemplateMissing,
                    current.name,
                    None,
                    format!(
                        "the catalog points at template {} instead",
                        pointer.as_deref().unwrap_or("(none)")
                    ),
                )
                .fix(
                    "point the catalog at the current template".into(),
                    Repair::BuildTemplate,
                ),
            ),
            None if pointer.is_some() && self.is_home() => findings.push(
                Finding::about(
                    Problem::StaleTemplate,
                    pointer.unwrap_or_default(),
                    None,
                    "templates are off (or there are no migrations) but the catalog points at a template".into(),
                )
                .fix("clear the catalog's pointer".into(), Repair::ClearTemplatePointer),
            ),
            _ => {}
        }
        Ok(())
    }
}
