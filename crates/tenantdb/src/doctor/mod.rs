//! `doctor`: finds drift between the catalog and the tenant server,
//! explains each finding, and repairs what is safe to repair.
//!
//! The server is listed before the catalog is read. A tenant's row is
//! always inserted before its role and database are made, so a database
//! seen on the server whose tenant has no row (read afterwards) really is
//! an orphan, not a create in flight. Repairs check the catalog again just
//! before they drop anything.

mod examine;
mod repair;
mod templates;
mod versions;

use serde::Serialize;
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::engine::{DatabaseSpec, Engine};
use crate::names::{RoleName, TenantId};
use crate::provisioner::Provisioner;
use crate::sites::Site;

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
    /// The copy a move left in place (`--keep-source`) on the server the
    /// tenant moved away from; `--fix` drops it.
    MovedSource,
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
    /// A DELETED tenant past its retention period that the sweep has not
    /// purged; `--fix` purges it.
    ExpiredTrash,
    /// The catalog's `schema_version` disagrees with the tenant's own
    /// migration table.
    VersionDrift,
    /// The version check could not read the tenant's database.
    Unreadable,
    /// A tenant role whose password derives from an older secret version
    /// (after `TENANTDB_SECRET` was rotated).
    StaleSecret,
    /// A tenant server's admin password sealed under an older secret
    /// version (after `TENANTDB_SECRET` was rotated; opened with
    /// `TENANTDB_PREVIOUS_SECRET` until sealed again).
    StaleSealedPassword,
    /// A template of another version, or one a crash left half-built.
    StaleTemplate,
    /// A warm database made from another template than the current one
    /// (or half-made); `--fix` drops it.
    StaleWarm,
    /// The current template is missing or half-built, or the catalog does
    /// not point at it.
    TemplateMissing,
    /// A fleet migration run whose process died: it reads ABANDONED.
    AbandonedRun,
}

impl Problem {
    /// The problem's name as reports show it (`orphan_database`), the same as
    /// its JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrphanDatabase => "orphan_database",
            Self::OrphanRole => "orphan_role",
            Self::ForeignDatabase => "foreign_database",
            Self::ForeignRole => "foreign_role",
            Self::MisplacedDatabase => "misplaced_database",
            Self::MovedSource => "moved_source",
            Self::MissingDatabase => "missing_database",
            Self::NotOurs => "not_ours",
            Self::StuckRow => "stuck_row",
            Self::FailedRow => "failed_row",
            Self::ExpiredTrash => "expired_trash",
            Self::VersionDrift => "version_drift",
            Self::Unreadable => "unreadable",
            Self::StaleSecret => "stale_secret",
            Self::StaleSealedPassword => "stale_sealed_password",
            Self::StaleTemplate => "stale_template",
            Self::StaleWarm => "stale_warm",
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
    /// The tenant server it was found on (by name).
    pub server: String,
    /// What is wrong.
    pub problem: Problem,
    /// The database, role or template concerned.
    pub subject: String,
    /// The tenant concerned, when there is one.
    pub tenant_id: Option<Uuid>,
    /// What is wrong, in a sentence.
    pub detail: String,
    /// What can be done about it.
    pub remedy: Remedy,
    #[serde(skip)]
    repair: Option<Repair>,
}

impl Finding {
    /// Whether `repair` can do something about it.
    pub fn fixable(&self) -> bool {
        self.repair.is_some()
    }

    /// A finding; its remedy follows (`fix` or `manual`).
    fn about(problem: Problem, subject: String, tenant_id: Option<Uuid>, detail: String) -> FindingWithoutRemedy {
        FindingWithoutRemedy(Self {
            server: String::new(),
            problem,
            subject,
            tenant_id,
            detail,
            remedy: Remedy::Manual(String::new()),
            repair: None,
        })
    }
}

/// A finding whose remedy is still to be said.
struct FindingWithoutRemedy(Finding);

impl FindingWithoutRemedy {
    /// `repair` does `what` through `repair`.
    fn fix(self, what: String, repair: Repair) -> Finding {
        Finding {
            remedy: Remedy::Fix(what),
            repair: Some(repair),
            ..self.0
        }
    }

    /// Needs an operator, who should do `what`.
    fn manual(self, what: String) -> Finding {
        Finding {
            remedy: Remedy::Manual(what),
            ..self.0
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repair {
    DropDatabase(DatabaseSpec),
    /// The copy a move left, if the tenant is still served from `Uuid`.
    DropMovedSource(DatabaseSpec, Uuid),
    DropRole(TenantId, RoleName),
    Reconcile,
    SetVersion {
        row: Uuid,
        expected: Option<String>,
        actual: Option<String>,
    },
    Rekey {
        row: Uuid,
        spec: DatabaseSpec,
        from: i32,
    },
    DropTemplate(String),
    BuildTemplate,
    ClearTemplatePointer,
    CloseRun(Uuid),
    Reseal,
    /// A DELETED tenant past its retention period.
    Purge(Uuid),
    /// A stale warm database.
    DropWarm(String),
}

/// What `--fix` did about one finding.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    /// What was found.
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

/// Finds drift between the catalog and the tenant server, explains each
/// finding, and repairs what is safe (see the module docs). Reached from
/// `Tenancy::doctor`.
#[derive(Debug, Clone)]
pub struct Doctor {
    provisioner: Provisioner,
    site: std::sync::Arc<Site>,
}

impl Doctor {
    pub(crate) fn new(provisioner: Provisioner, site: std::sync::Arc<Site>) -> Self {
        Self { provisioner, site }
    }

    /// The name of the tenant server it examines.
    pub fn server(&self) -> &str {
        &self.site.name
    }

    /// Whether it examines the server of the settings (which also reports
    /// what belongs to the whole catalog: abandoned runs, the template
    /// pointer).
    fn is_home(&self) -> bool {
        self.site.id == self.provisioner.server_id()
    }

    fn engine(&self) -> &Engine {
        &self.site.engine
    }

    fn templates(&self) -> &crate::templates::Templates {
        &self.site.templates
    }

    fn catalog(&self) -> &Catalog {
        self.provisioner.catalog()
    }
}
