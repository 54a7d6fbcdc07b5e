//! The first release: notes with an author, a title and a body.

use sea_orm_migration::prelude::*;

use super::Notes;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(Notes::Table)
            .col(
                ColumnDef::new(Notes::Id)
                    .integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(ColumnDef::new(Notes::Author).string_len(100).not_null())
            .col(ColumnDef::new(Notes::Title).string_len(200).not_null())
            .col(ColumnDef::new(Notes::Body).text().not_null())
            .col(ColumnDef::new(Notes::CreatedAt).timestamp_with_time_zone().not_null())
            .to_owned();
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Notes::Table).to_owned()).await
    }
}
