//! `m0008_trash`: when a tenant was deleted with a way back.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    DeletedAt,
}

/// `tenant_databases.deleted_at`: when the tenant was deleted (status
/// DELETED, its database kept under a trash name); `NULL` otherwise. The
/// sweep purges rows whose retention period has passed.
pub(super) struct AddTrash;

impl MigrationName for AddTrash {
    fn name(&self) -> &str {
        "m0008_trash"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTrash {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantDatabases::Table)
                    .add_column(
                        ColumnDef::new(TenantDatabases::DeletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantDatabases::Table)
                    .drop_column(TenantDatabases::DeletedAt)
                    .to_owned(),
            )
            .await
    }
}
