//! `m0003_migration_runs`: the table of fleet migration runs.

use sea_orm_migration::prelude::*;

use super::MigrationRuns;

/// One row per fleet migration run: what it aimed at and how it went.
pub(super) struct CreateMigrationRuns;

impl MigrationName for CreateMigrationRuns {
    fn name(&self) -> &str {
        "m0003_migration_runs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMigrationRuns {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MigrationRuns::Table)
                    .col(ColumnDef::new(MigrationRuns::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(MigrationRuns::Status).string_len(16).not_null())
                    .col(ColumnDef::new(MigrationRuns::TargetVersion).string_len(255).null())
                    .col(ColumnDef::new(MigrationRuns::Total).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Succeeded).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Failed).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Skipped).integer().not_null())
                    .col(
                        ColumnDef::new(MigrationRuns::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MigrationRuns::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
