//! The warm stock: on every server that takes new tenants, a few databases
//! cloned from the current template ahead of need (`Config::warm_databases`),
//! so that creating a tenant claims one (a rename and an ownership change)
//! instead of copying the template. The engine claims one inside
//! `create_database` and clones when none is left; this module keeps the
//! stock full and drops what a new tenant migration made stale, one clone
//! at a time with the admin connection (never a tenant pool's budget).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Provisioner;
use crate::error::Result;
use crate::names::RoleName;
use crate::sites::Site;

/// How often the background task looks at the stock besides being woken
/// by a create that claimed one.
const WARM_RECHECK: Duration = Duration::from_secs(5);

/// The warm stock of one server after a refill.
#[derive(Debug, Clone, Serialize)]
pub struct WarmStock {
    /// The server, by name.
    pub server: String,
    /// Warm databases at the current template, ready to be claimed.
    pub ready: usize,
    /// Made by this refill.
    pub made: usize,
    /// Stale ones (made from an older template) and ones beyond the
    /// stock's size dropped by this refill.
    pub dropped: usize,
    /// Why the refill stopped short, if it did.
    pub error: Option<String>,
}

impl Provisioner {
    /// Fills the warm stock of every ACCEPTING server up to
    /// `Config::warm_databases` and drops stale warm databases (made from
    /// another template than the current one, or half-made) and those
    /// beyond that size; with a stock of 0, on a server that takes no new
    /// tenants or with templates off, drops them all. Does nothing unless
    /// this program's migration set is the one the catalog records.
    /// Several processes may refill at once: the stock may then pass its
    /// size by a few, which the next creates use up or the next refill
    /// drops (as it does when the size was lowered).
    #[tracing::instrument(skip_all)]
    pub async fn refill_warm(&self) -> Result<Vec<WarmStock>> {
        self.each_stock(true).await
    }

    /// The warm stock of every ACCEPTING server as it is (`made` and
    /// `dropped` are 0; stale ones are not counted as ready).
    pub async fn warm_stock(&self) -> Result<Vec<WarmStock>> {
        self.each_stock(false).await
    }

    async fn each_stock(&self, refill: bool) -> Result<Vec<WarmStock>> {
        // Only a program whose migration set is the catalog's (read, never
        // recorded here: a refill must not move the catalog to its set)
        // makes stock or judges it stale.
        let refill =
            refill && crate::migration_set::is_the_catalogs(&self.inner.catalog, &self.inner.migrations).await?;
        let rows = self.inner.catalog.servers().list().await?;
        let mut report = Vec::new();
        for row in rows
            .iter()
            .filter(|r| r.role == crate::catalog::database_servers::PRIMARY)
        {
            if !row.accepts_new_tenants && !refill {
                continue;
            }
            let site = match self.inner.sites.open(row).await {
                Ok(site) => site,
                Err(err) => {
                    report.push(WarmStock {
                        server: row.name.clone(),
                        ready: 0,
                        made: 0,
                        dropped: 0,
                        error: Some(err.chain()),
                    });
                    continue;
                }
            };
            // A server that takes no new tenants keeps no stock.
            let target = if row.accepts_new_tenants {
                self.inner.warm_databases
            } else {
                0
            };
            report.push(self.refill_site(&site, refill, target).await);
        }
        Ok(report)
    }

    async fn refill_site(&self, site: &Arc<Site>, refill: bool, target: usize) -> WarmStock {
        let mut stock = WarmStock {
            server: site.name.clone(),
            ready: 0,
            made: 0,
            dropped: 0,
            error: None,
        };
        // The template the stock must be of: none when the stock is off,
        // the server takes no new tenants, or templates are off (then every
        // warm database goes). A current template that cannot be had now
        // (being built elsewhere, unreachable) leaves the stock as it is.
        let current = match (refill, target, site.templates.current()) {
            (true, 0, _) | (true, _, None) => None,
            (true, _, Some(_)) => match site.templates.ready().await {
                Some(template) => Some(template),
                None => return stock,
            },
            (false, _, template) => template.map(|t| t.name),
        };
        let stem = site.templates.stem();
        let result = async {
            // In name order (every process lists them alike, so refills
            // running at once trim the same ones).
            for warm in site.engine.warm_databases(&stem).await? {
                let surplus = refill && stock.ready >= target;
                if Some(&warm.template) == current.as_ref() && !surplus {
                    stock.ready += 1;
                    continue;
                }
                if !refill {
                    continue;
                }
                if site.engine.drop_warm(&warm.name).await? {
                    stock.dropped += 1;
                }
            }
            let Some(template) = current.as_deref().filter(|_| refill) else {
                return Ok(());
            };
            let owner = RoleName::for_templates(&self.inner.prefix, self.inner.catalog.id());
            while stock.ready < target {
                if let Err(err) = site.engine.make_warm(template, &owner).await {
                    // The template may be gone (replaced by a newer deploy):
                    // found or built again on the next refill.
                    site.templates.forget();
                    return Err(err);
                }
                stock.made += 1;
                stock.ready += 1;
            }
            Ok::<_, crate::error::Error>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(server = %site.name, error = %err.chain(), "refilling the warm stock failed");
            stock.error = Some(err.chain());
        }
        metrics::gauge!("tenantdb_warm_databases", "server" => site.name.clone()).set(stock.ready as f64);
        stock
    }

    /// Keeps the warm stock full in the background until `stop` is
    /// cancelled: after each create that may have claimed one, and every
    /// few seconds. Off (returns at once) when `Config::warm_databases` is 0.
    pub fn spawn_warm_stock(&self, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if this.inner.warm_databases == 0 {
                return;
            }
            loop {
                if let Err(err) = this.refill_warm().await {
                    tracing::warn!(error = %err.chain(), "refilling the warm stock failed");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = this.inner.warm_wanted.notified() => {}
                    () = tokio::time::sleep(WARM_RECHECK) => {}
                }
            }
        })
    }

    /// Wakes the background refill (a create may have claimed a warm
    /// database).
    pub(super) fn warm_used(&self) {
        if self.inner.warm_databases > 0 {
            self.inner.warm_wanted.notify_one();
        }
    }

    /// How many warm databases each server keeps.
    pub fn warm_databases(&self) -> usize {
        self.inner.warm_databases
    }
}
