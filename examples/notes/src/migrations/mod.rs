//! The tenant schema: every tenant database gets these migrations, in
//! order. tenantdb replays them on new tenants (or clones a template at
//! the latest one) and `notes-admin migrate` brings existing tenants up.
//!
//! To change the schema, add a migration at the end of [`ALL`] and roll it
//! out with `notes-admin migrate`; never edit or reorder one that ran.

mod m0001_create_notes;
mod m0002_add_pinned;

use sea_orm_migration::prelude::*;

/// The migrations, oldest first.
const ALL: [fn() -> Box<dyn MigrationTrait>; 2] = [
    || Box::new(m0001_create_notes::Migration),
    || Box::new(m0002_add_pinned::Migration),
];

/// The application's tenant migrations, as tenantdb takes them:
/// `tenantdb::TenantMigrations::of::<notes::Migrator>()`.
///
/// The set depends on [`Schema::from_env`] (`NOTES_SCHEMA`), so that one
/// build can play the release before the latest migration (`v1`) and the
/// release with it: a way to try a rollout, not something an application
/// needs.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let schema = Schema::from_env().unwrap_or_else(|err| panic!("{err}"));
        ALL[..schema.migrations()].iter().map(|make| make()).collect()
    }
}

/// Which release of the schema this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Only the first migration (notes without `pinned`).
    V1,
    /// Every migration.
    Latest,
}

/// The variable that selects the [`Schema`]: `v1`, or `latest` (the
/// default when unset).
pub const SCHEMA_VAR: &str = "NOTES_SCHEMA";

impl Schema {
    /// From `NOTES_SCHEMA`: unset, empty or `latest` is [`Schema::Latest`],
    /// `v1` is [`Schema::V1`]; anything else is an error naming the
    /// variable.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(SCHEMA_VAR).as_deref() {
            Err(_) | Ok("" | "latest") => Ok(Self::Latest),
            Ok("v1") => Ok(Self::V1),
            Ok(other) => Err(format!("{SCHEMA_VAR} must be `v1` or `latest`, not {other:?}")),
        }
    }

    /// How many migrations of [`ALL`] this release has.
    fn migrations(self) -> usize {
        match self {
            Self::V1 => 1,
            Self::Latest => ALL.len(),
        }
    }

    /// Whether notes have the `pinned` column (migration 2).
    pub fn has_pinned(self) -> bool {
        self.migrations() >= 2
    }
}

/// The `notes` table's identifiers, shared by the migrations.
#[derive(DeriveIden)]
enum Notes {
    Table,
    Id,
    Author,
    Title,
    Body,
    CreatedAt,
    Pinned,
}
