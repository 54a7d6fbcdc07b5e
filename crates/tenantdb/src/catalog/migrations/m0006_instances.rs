//! `m0006_instances`: the processes that hold tenant pools, and each one's
//! share of a server's connection budget.

use sea_orm_migration::prelude::*;

/// One row per running process (instance) and server: its lease and the
/// share of the server's budget it may hold.
pub(super) struct CreateInstances;

impl MigrationName for CreateInstances {
    fn name(&self) -> &str {
        "m0006_instances"
    }
}

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    ServerId,
    Host,
    Pid,
    StartedAt,
    LeaseExpiresAt,
    Share,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateInstances {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Instances::Table)
                    .col(ColumnDef::new(Instances::Id).uuid().not_null())
                    .col(ColumnDef::new(Instances::ServerId).uuid().not_null())
                    .col(ColumnDef::new(Instances::Host).string_len(255).not_null())
                    .col(ColumnDef::new(Instances::Pid).integer().not_null())
                    .col(
                        ColumnDef::new(Instances::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Instances::LeaseExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Instances::Share).integer().not_null())
                    .primary_key(Index::create().col(Instances::Id).col(Instances::ServerId))
                    .to_owned(),
            )
            .await
    }
}
