//! `m0007_moves`: what a tenant move records on its row.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    MoveState,
}

/// `tenant_databases.move_state`: while a tenant's database moves to
/// another server (status MOVING or SWITCHING), where from and to, how,
/// and how far it got; `NULL` otherwise. It is how the next process
/// finishes or rolls back a move whose process died.
pub(super) struct AddMoves;

impl MigrationName for AddMoves {
    fn name(&self) -> &str {
        "m0007_moves"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddMoves {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantDatabases::Table)
                    .add_column(ColumnDef::new(TenantDatabases::MoveState).json_binary().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantDatabases::Table)
                    .drop_column(TenantDatabases::MoveState)
                    .to_owned(),
            )
            .await
    }
}
