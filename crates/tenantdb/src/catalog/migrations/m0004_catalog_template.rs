//! `m0004_catalog_template`: the pointer to the template new tenants are
//! cloned from.

use sea_orm_migration::prelude::*;

use super::CatalogInfo;

/// `catalog_info.template`: the template database new tenants are cloned
/// from (written when it is built; `doctor` compares it with the server).
pub(super) struct AddTemplatePointer;

impl MigrationName for AddTemplatePointer {
    fn name(&self) -> &str {
        "m0004_catalog_template"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTemplatePointer {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CatalogInfo::Table)
                    .add_column(ColumnDef::new(CatalogInfo::Template).string().null())
                    .to_owned(),
            )
            .await
    }
}
