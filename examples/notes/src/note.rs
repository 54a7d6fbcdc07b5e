//! The `notes` table of a tenant database (SeaORM entity).

use sea_orm::entity::prelude::*;

/// One note, as the latest schema stores it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    /// Numbered by the tenant's database.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The user whose token wrote it.
    pub author: String,
    /// A line of text (at most 200 characters).
    pub title: String,
    /// Any text.
    pub body: String,
    /// When it was written.
    pub created_at: ChronoDateTimeUtc,
    /// Listed first (migration 2).
    pub pinned: bool,
}

/// Notes refer to nothing else.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
