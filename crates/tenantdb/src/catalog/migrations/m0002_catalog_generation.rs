//! `m0002_catalog_generation`: the routing change counter.

use sea_orm_migration::prelude::*;

use super::CatalogInfo;

/// A counter bumped by every catalog write that changes how requests are
/// routed (tenants, tenant databases, memberships, tokens). Every process
/// polls it and flushes its caches when it moves, so a change reaches all of
/// them within a poll interval even without notifications.
pub(super) struct AddGeneration;

impl MigrationName for AddGeneration {
    fn name(&self) -> &str {
        "m0002_catalog_generation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddGeneration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CatalogInfo::Table)
                    .add_column(
                        ColumnDef::new(CatalogInfo::Generation)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }
}
