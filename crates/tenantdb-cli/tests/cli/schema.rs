//! An application's tenant schema in two releases: notes, then a `pinned`
//! column on them.

use sea_orm_migration::prelude::*;

pub const FIRST: &str = "m0001_create_notes";
pub const SECOND: &str = "m0002_add_pinned_to_notes";

/// The first release: notes.
pub struct FirstRelease;

impl MigratorTrait for FirstRelease {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateNotes)]
    }
}

/// The second release: the same migration, and one more.
pub struct SecondRelease;

impl MigratorTrait for SecondRelease {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateNotes), Box::new(AddPinned)]
    }
}

#[derive(DeriveIden)]
enum Notes {
    Table,
    Id,
    Body,
    Pinned,
}

struct CreateNotes;

impl MigrationName for CreateNotes {
    fn name(&self) -> &str {
        FIRST
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notes::Table)
                    .col(ColumnDef::new(Notes::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(Notes::Body).text().not_null())
                    .to_owned(),
            )
            .await
    }
}

struct AddPinned;

impl MigrationName for AddPinned {
    fn name(&self) -> &str {
        SECOND
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPinned {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Notes::Table)
                    .add_column(ColumnDef::new(Notes::Pinned).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await
    }
}
