//! Database names: validating a requested one and choosing a free one
//! (free in the catalog and on the server).

use super::Provisioner;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, TenantId, TenantSlug};
use crate::sites::Site;

impl Provisioner {
    /// Validates a requested database name: the rules of `DatabaseName` and
    /// the reserved names of this deployment.
    pub fn parse_database_name(&self, name: &str) -> Result<DatabaseName> {
        let parsed = DatabaseName::parse(name, &self.inner.prefix)?;
        if self.inner.reserved.iter().any(|r| r == name) {
            return Err(Error::invalid(
                "database name",
                name,
                "must not be the catalog's own database",
            ));
        }
        Ok(parsed)
    }

    /// Refuses a name that is taken in the catalog or exists on the server.
    pub(super) async fn check_name_free(&self, site: &Site, name: &DatabaseName) -> Result<()> {
        if self.inner.reserved.iter().any(|r| r == name.as_str()) {
            return Err(Error::AlreadyExists(format!(
                "database name '{name}' is the catalog's own database"
            )));
        }
        // Both at once, judged in this order.
        let rows = self.inner.catalog.tenant_databases();
        let (taken, in_use) = tokio::join!(rows.name_taken(site.id, name.as_str()), site.engine.name_in_use(name));
        if taken? {
            return Err(Error::AlreadyExists(format!("database name '{name}' is already taken")));
        }
        if in_use? {
            return Err(Error::AlreadyExists(format!(
                "database '{name}' already exists on the server; tenantdb never adopts a database it did not create"
            )));
        }
        Ok(())
    }

    /// The requested name if it is free; else a generated one, with a
    /// random suffix when the plain one is taken.
    pub(super) async fn choose_name(
        &self,
        site: &Site,
        requested: Option<&str>,
        slug: &TenantSlug,
        id: TenantId,
    ) -> Result<DatabaseName> {
        if let Some(requested) = requested {
            let name = self.parse_database_name(requested)?;
            self.check_name_free(site, &name).await?;
            return Ok(name);
        }
        let mut name = DatabaseName::generate(&self.inner.prefix, slug, id);
        for _ in 0..8 {
            match self.check_name_free(site, &name).await {
                Err(Error::AlreadyExists(_)) => {
                    let suffix = format!("{:08x}", rand::random::<u32>());
                    name = DatabaseName::with_suffix(&self.inner.prefix, slug, &suffix);
                }
                other => return other.map(|()| name),
            }
        }
        Err(Error::AlreadyExists(format!(
            "no free database name could be generated for slug '{slug}'; request one"
        )))
    }
}
