//! Placement: which tenant server a new tenant's database goes to.
//!
//! The server named in the request when there is one; else the candidates
//! (the ACCEPTING servers, fewest tenants first, ties by name) in the
//! order the deployment's [`Placement`] gives them, and the first that
//! answers takes the tenant. A server that does not answer is skipped with
//! a warning and the next one tried. The counts are read from the catalog
//! at most once a second (see `TenantCounts`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{NewTenant, Provisioner};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::names::{DatabaseName, TenantId, TenantSlug};
use crate::sites::Site;

/// A tenant server a new tenant may be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The server's name in the catalog.
    pub name: String,
    /// `postgres` or `sqlite`.
    pub engine: String,
    /// Tenant databases on it now.
    pub tenants: u64,
    /// Its connection budget.
    pub budget: u32,
}

/// Chooses the server of a new tenant (by region, plan, load, ...): set it
/// with `Tenancy::set_placement`. The default is [`FewestTenants`].
///
/// ```
/// use tenantdb::{Candidate, NewTenant, Placement};
///
/// /// Tenants on the "enterprise" plan go to servers named `dedicated-*`.
/// #[derive(Debug)]
/// struct ByPlan;
///
/// impl Placement for ByPlan {
///     fn rank(&self, tenant: &NewTenant, candidates: Vec<Candidate>) -> Vec<Candidate> {
///         let dedicated = tenant.plan.as_deref() == Some("enterprise");
///         candidates
///             .into_iter()
///             .filter(|c| c.name.starts_with("dedicated-") == dedicated)
///             .collect()
///     }
/// }
/// ```
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// The servers `tenant` may go to, most wanted first. `candidates` are
    /// the ACCEPTING servers, fewest tenants first, ties by name; a server
    /// left out is not used. The first one that answers gets the tenant;
    /// an empty list refuses the tenant (`Error::NoServerAvailable`).
    fn rank(&self, tenant: &NewTenant, candidates: Vec<Candidate>) -> Vec<Candidate>;
}

/// The default placement: the ACCEPTING server with the fewest tenants,
/// ties by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct FewestTenants;

impl Placement for FewestTenants {
    fn rank(&self, _tenant: &NewTenant, candidates: Vec<Candidate>) -> Vec<Candidate> {
        candidates
    }
}

/// How long placement trusts the tenant counts it read: counting every
/// row on each sign-up would cost more with each tenant.
const COUNTS_FRESH: Duration = Duration::from_secs(1);

/// Tenants per server, read from the catalog at most once a `COUNTS_FRESH`,
/// with the tenants this process placed since added. Placement by fewest
/// tenants is a balance, not a count that must be exact: what other
/// processes placed, and rows deleted, show within a second.
#[derive(Debug, Default)]
pub(super) struct TenantCounts {
    read: Mutex<Option<(Instant, HashMap<Uuid, u64>)>>,
}

impl TenantCounts {
    async fn get(&self, catalog: &Catalog) -> Result<HashMap<Uuid, u64>> {
        if let Some((at, counts)) = &*self.read.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < COUNTS_FRESH
        {
            return Ok(counts.clone());
        }
        let counts = catalog.tenant_databases().count_by_server().await?;
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// A row was inserted for a tenant database on `server`.
    pub(super) fn placed(&self, server: Uuid) {
        if let Some((_, counts)) = &mut *self.read.lock().unwrap_or_else(|e| e.into_inner()) {
            *counts.entry(server).or_default() += 1;
        }
    }
}

/// What `choose_name` needs (see `place_named`).
struct Naming<'a> {
    requested: Option<&'a str>,
    slug: &'a TenantSlug,
    id: TenantId,
}

impl Provisioner {
    /// The site of `row`, opened and answering now (a failure is
    /// remembered: see `Sites::failed_recently`), with the name `naming`
    /// chose on it: looked for at the same time as the ping, it counts only
    /// if the server answered the ping.
    async fn answering_with(
        &self,
        row: &crate::catalog::database_servers::Model,
        naming: Option<&Naming<'_>>,
    ) -> Result<(Arc<Site>, Result<Option<DatabaseName>>)> {
        let site = match self.inner.sites.open(row).await {
            Ok(site) => {
                let name = async {
                    match naming {
                        Some(n) => self.choose_name(&site, n.requested, n.slug, n.id).await.map(Some),
                        None => Ok(None),
                    }
                };
                // A ping that fails (or times out) ends the lookup too.
                tokio::try_join!(site.reachable(), async { Ok(name.await) }).map(|((), done)| (site, done))
            }
            Err(err) => Err(err),
        };
        if site.is_err() {
            self.inner.sites.failed(row.id);
        }
        site
    }

    /// The site a new tenant's database goes to (see the module docs).
    pub(super) async fn place(&self, new: &NewTenant) -> Result<Arc<Site>> {
        self.place_with(new, None).await.map(|(site, _)| site)
    }

    /// `place`, and the new tenant's database name on the site chosen
    /// (`choose_name`), found while the server is asked whether it answers
    /// (a sign-up waits for one round trip instead of two).
    pub(super) async fn place_named(
        &self,
        new: &NewTenant,
        slug: &TenantSlug,
        id: TenantId,
    ) -> Result<(Arc<Site>, DatabaseName)> {
        let naming = Naming {
            requested: new.database_name.as_deref(),
            slug,
            id,
        };
        let (site, name) = self.place_with(new, Some(&naming)).await?;
        let name = name.ok_or_else(|| Error::Config("placement chose no name".into()))?;
        Ok((site, name))
    }

    async fn place_with(
        &self,
        new: &NewTenant,
        naming: Option<&Naming<'_>>,
    ) -> Result<(Arc<Site>, Option<DatabaseName>)> {
        let catalog = &self.inner.catalog;
        let mut rows = catalog.servers().list().await?;
        for row in &rows {
            self.inner.sites.remember(row);
        }
        if let Some(name) = new.server.as_deref()
            && rows
                .iter()
                .any(|r| r.name == name && r.role != crate::catalog::database_servers::PRIMARY)
        {
            return Err(Error::invalid("server", name, "a read replica takes no tenants"));
        }
        rows.retain(|r| r.role == crate::catalog::database_servers::PRIMARY);
        if let Some(name) = new.server.as_deref() {
            let row = rows
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| Error::ServerNotFound(name.to_owned()))?;
            if !row.accepts_new_tenants {
                return Err(Error::ServerDraining(row.name.clone()));
            }
            let (site, done) = self.answering_with(row, naming).await?;
            return Ok((site, done?));
        }
        let counts = self.inner.counts.get(catalog).await?;
        let mut candidates: Vec<Candidate> = rows
            .iter()
            .filter(|r| r.accepts_new_tenants)
            .map(|r| Candidate {
                name: r.name.clone(),
                engine: r.engine.clone(),
                tenants: counts.get(&r.id).copied().unwrap_or(0),
                budget: u32::try_from(r.connection_budget).unwrap_or(0),
            })
            .collect();
        if candidates.is_empty() {
            return Err(match rows.as_slice() {
                [only] => Error::ServerDraining(only.name.clone()),
                _ => Error::NoServerAvailable("every server is DRAINING".into()),
            });
        }
        candidates.sort_by(|a, b| a.tenants.cmp(&b.tenants).then_with(|| a.name.cmp(&b.name)));
        let placement = self.placement();
        let ranked = placement.rank(new, candidates);
        let mut refused = Vec::new();
        for candidate in ranked {
            let Some(row) = rows.iter().find(|r| r.name == candidate.name && r.accepts_new_tenants) else {
                continue;
            };
            // A server that just failed is passed by without waiting for it.
            if self.inner.sites.failed_recently(row.id) {
                refused.push(format!("{}: did not answer a moment ago", row.name));
                continue;
            }
            match self.answering_with(row, naming).await {
                Ok((site, done)) => return Ok((site, done?)),
                Err(err) => {
                    tracing::warn!(server = %row.name, error = %err.chain(), "server does not answer: placing the tenant on the next one");
                    metrics::counter!("tenantdb_placement_skipped_total", "server" => row.name.clone()).increment(1);
                    refused.push(format!("{}: {}", row.name, err.chain()));
                }
            }
        }
        Err(Error::NoServerAvailable(if refused.is_empty() {
            format!("the placement ({placement:?}) chose no server")
        } else {
            refused.join("; ")
        }))
    }
}
