//! The catalog's own migrations. Each one is frozen once released: a later
//! schema change is a new migration, never an edit of an old one.
//!
//! One file per migration, named as it is recorded; the table and column
//! names that more than one migration uses are declared here.

mod m0001_create_catalog;
mod m0002_catalog_generation;
mod m0003_migration_runs;
mod m0004_catalog_template;
mod m0005_safety;
mod m0006_instances;
mod m0007_moves;
mod m0008_trash;
mod m0009_scale;

use sea_orm_migration::prelude::*;

use m0001_create_catalog::CreateCatalog;
use m0002_catalog_generation::AddGeneration;
use m0003_migration_runs::CreateMigrationRuns;
use m0004_catalog_template::AddTemplatePointer;
use m0005_safety::AddSafety;
use m0006_instances::CreateInstances;
use m0007_moves::AddMoves;
use m0008_trash::AddTrash;
use m0009_scale::AddScaleIndexes;

/// Every catalog migration, oldest first.
pub(super) fn all() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateCatalog),
        Box::new(AddGeneration),
        Box::new(CreateMigrationRuns),
        Box::new(AddTemplatePointer),
        Box::new(AddSafety),
        Box::new(CreateInstances),
        Box::new(AddMoves),
        Box::new(AddTrash),
        Box::new(AddScaleIndexes),
    ]
}

/// `catalog_info`: one row about the catalog itself.
#[derive(DeriveIden)]
enum CatalogInfo {
    Table,
    Id,
    CatalogId,
    Generation,
    Template,
    TenantMigrations,
    CreatedAt,
}

/// `migration_runs`: one row per fleet migration run.
#[derive(DeriveIden)]
enum MigrationRuns {
    Table,
    Id,
    Status,
    TargetVersion,
    Total,
    Succeeded,
    Failed,
    Skipped,
    StartedAt,
    FinishedAt,
    LeaseOwner,
    LeaseExpiresAt,
}
