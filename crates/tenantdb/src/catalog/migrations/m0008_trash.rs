//! `m0008_trash`: when a tenant was deleted with a way back.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    DeletedAt,
    PurgeAfter,
}

/// `tenant_databases.deleted_at` and `purge_after`: when the tenant was
/// deleted (status DELETED, its database kept under a trash name) and when
/// its retention period, as set by the process that deleted it, ends (the
/// sweep purges it then); `NULL` otherwise.
pub(super) struct AddTrash;

impl MigrationName for AddTrash {
    fn name(&self) -> &str {
        "m0008_trash"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTrash {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [TenantDatabases::DeletedAt, TenantDatabases::PurgeAfter] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TenantDatabases::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [TenantDatabases::DeletedAt, TenantDatabases::PurgeAfter] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TenantDatabases::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
