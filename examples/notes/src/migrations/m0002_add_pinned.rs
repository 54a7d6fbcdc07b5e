//! The second release: a note can be pinned (listed first). The column has
//! a default, so the first release's code keeps working while tenants are
//! migrated one by one.

use sea_orm_migration::prelude::*;

use super::Notes;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let pinned = ColumnDef::new(Notes::Pinned)
            .boolean()
            .not_null()
            .default(false)
            .to_owned();
        let alter = Table::alter().table(Notes::Table).add_column(pinned).to_owned();
        manager.alter_table(alter).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let alter = Table::alter().table(Notes::Table).drop_column(Notes::Pinned).to_owned();
        manager.alter_table(alter).await
    }
}
