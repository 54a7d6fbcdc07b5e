//! `m0005_safety`: database name reservations, fleet run leases and the
//! recorded tenant migration set.

use sea_orm_migration::prelude::*;

use super::{CatalogInfo, MigrationRuns};

#[derive(DeriveIden)]
enum DatabaseNames {
    Table,
    ServerId,
    Name,
    TenantId,
}

/// What the safety work needs in the catalog:
/// - `database_names`: one row per database name in use or pending (a
///   rename's target) on a server, so a name is reserved for one tenant,
///   in the catalog, before any DDL uses it (current and pending names in
///   one uniqueness domain);
/// - `migration_runs.lease_owner` / `lease_expires_at`: a fleet run holds a
///   lease like a tenant's work does, so a run whose process died shows as
///   abandoned instead of running forever;
/// - `catalog_info.tenant_migrations`: the ordered names of the tenant
///   migration set this catalog serves, so a program with another set
///   refuses to create, migrate, build templates or repair.
pub(super) struct AddSafety;

impl MigrationName for AddSafety {
    fn name(&self) -> &str {
        "m0005_safety"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddSafety {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DatabaseNames::Table)
                    .col(ColumnDef::new(DatabaseNames::ServerId).uuid().not_null())
                    .col(ColumnDef::new(DatabaseNames::Name).string_len(63).not_null())
                    .col(ColumnDef::new(DatabaseNames::TenantId).uuid().not_null())
                    .primary_key(Index::create().col(DatabaseNames::ServerId).col(DatabaseNames::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_database_names_tenant")
                    .table(DatabaseNames::Table)
                    .col(DatabaseNames::TenantId)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO database_names (server_id, name, tenant_id) \
             SELECT server_id, database_name, tenant_id FROM tenant_databases",
        )
        .await?;
        db.execute_unprepared(
            // Before this table, a pending name could equal another row's
            // current name (two unique indexes, one per column): the
            // current name keeps its reservation, the rename will fail.
            "INSERT INTO database_names (server_id, name, tenant_id) \
             SELECT server_id, pending_database_name, tenant_id FROM tenant_databases \
             WHERE pending_database_name IS NOT NULL \
             ON CONFLICT (server_id, name) DO NOTHING",
        )
        .await?;
        for column in [
            ColumnDef::new(MigrationRuns::LeaseOwner)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(MigrationRuns::LeaseExpiresAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(Table::alter().table(MigrationRuns::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(CatalogInfo::Table)
                    .add_column(ColumnDef::new(CatalogInfo::TenantMigrations).text().null())
                    .to_owned(),
            )
            .await
    }
}
