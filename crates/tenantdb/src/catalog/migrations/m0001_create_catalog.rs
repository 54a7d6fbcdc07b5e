//! `m0001_create_catalog`: the catalog's tables as first released.

use sea_orm_migration::prelude::*;

use super::CatalogInfo;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    Name,
    TokenSha256,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    TenantId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    TenantId,
    Plan,
    Status,
    Seats,
    CurrentPeriodEnd,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DatabaseServers {
    Table,
    Id,
    Name,
    Engine,
    Settings,
    Role,
    PrimaryId,
    ConnectionBudget,
    AcceptsNewTenants,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    Id,
    TenantId,
    ServerId,
    DatabaseName,
    PendingDatabaseName,
    ReadServerId,
    ReadDatabaseName,
    RoleName,
    SecretVersion,
    Status,
    SchemaVersion,
    LastMigrationAt,
    ErrorMessage,
    PurgeTenant,
    LeaseOwner,
    LeaseExpiresAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

/// The catalog's tables, their keys and indexes.
pub(super) struct CreateCatalog;

impl MigrationName for CreateCatalog {
    fn name(&self) -> &str {
        "m0001_create_catalog"
    }
}

fn created_updated(table: &mut TableCreateStatement, created: impl IntoIden, updated: impl IntoIden) {
    table
        .col(ColumnDef::new(created).timestamp_with_time_zone().not_null())
        .col(ColumnDef::new(updated).timestamp_with_time_zone().not_null());
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

fn unique_index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).unique();
    for col in cols {
        index.col(Alias::new(*col));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCatalog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        catalog_info(manager).await?;
        users_and_tokens(manager).await?;
        tenants_and_memberships(manager).await?;
        subscriptions_and_servers(manager).await?;
        tenant_databases(manager).await?;
        tenant_database_indexes(manager).await?;
        settings(manager).await
    }
}

/// `catalog_info`: one row about the catalog itself.
async fn catalog_info(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(CatalogInfo::Table)
                .col(ColumnDef::new(CatalogInfo::Id).integer().not_null().primary_key())
                .col(ColumnDef::new(CatalogInfo::CatalogId).uuid().not_null())
                .col(
                    ColumnDef::new(CatalogInfo::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
}

/// `users` and their `api_tokens`.
async fn users_and_tokens(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut users = Table::create();
    users
        .table(Users::Table)
        .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
        .col(ColumnDef::new(Users::Email).string_len(254).not_null().unique_key())
        .col(ColumnDef::new(Users::Name).string_len(200).not_null());
    created_updated(&mut users, Users::CreatedAt, Users::UpdatedAt);
    manager.create_table(users).await?;

    manager
        .create_table(
            Table::create()
                .table(ApiTokens::Table)
                .col(ColumnDef::new(ApiTokens::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(ApiTokens::UserId).uuid().not_null())
                .col(ColumnDef::new(ApiTokens::Name).string_len(200).not_null())
                .col(
                    ColumnDef::new(ApiTokens::TokenSha256)
                        .string_len(64)
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(ApiTokens::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(ApiTokens::LastUsedAt).timestamp_with_time_zone().null())
                .col(ColumnDef::new(ApiTokens::RevokedAt).timestamp_with_time_zone().null())
                .foreign_key(&mut fk(
                    "fk_api_tokens_user",
                    (ApiTokens::Table, ApiTokens::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await
}

/// `tenants` and `memberships` (a user's role in a tenant).
async fn tenants_and_memberships(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut tenants = Table::create();
    tenants
        .table(Tenants::Table)
        .col(ColumnDef::new(Tenants::Id).uuid().not_null().primary_key())
        .col(ColumnDef::new(Tenants::Slug).string_len(63).not_null().unique_key())
        .col(ColumnDef::new(Tenants::Name).string_len(200).not_null())
        .col(ColumnDef::new(Tenants::Status).string_len(16).not_null());
    created_updated(&mut tenants, Tenants::CreatedAt, Tenants::UpdatedAt);
    manager.create_table(tenants).await?;

    manager
        .create_table(
            Table::create()
                .table(Memberships::Table)
                .col(ColumnDef::new(Memberships::TenantId).uuid().not_null())
                .col(ColumnDef::new(Memberships::UserId).uuid().not_null())
                .col(ColumnDef::new(Memberships::Role).string_len(16).not_null())
                .col(
                    ColumnDef::new(Memberships::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(Index::create().col(Memberships::TenantId).col(Memberships::UserId))
                .foreign_key(&mut fk(
                    "fk_memberships_tenant",
                    (Memberships::Table, Memberships::TenantId),
                    (Tenants::Table, Tenants::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_memberships_user",
                    (Memberships::Table, Memberships::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_memberships_user")
                .table(Memberships::Table)
                .col(Memberships::UserId)
                .to_owned(),
        )
        .await
}

/// `subscriptions` (one per tenant) and `database_servers`.
async fn subscriptions_and_servers(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut subscriptions = Table::create();
    subscriptions
        .table(Subscriptions::Table)
        .col(ColumnDef::new(Subscriptions::TenantId).uuid().not_null().primary_key())
        .col(ColumnDef::new(Subscriptions::Plan).string_len(100).not_null())
        .col(ColumnDef::new(Subscriptions::Status).string_len(16).not_null())
        .col(ColumnDef::new(Subscriptions::Seats).integer().not_null())
        .col(
            ColumnDef::new(Subscriptions::CurrentPeriodEnd)
                .timestamp_with_time_zone()
                .null(),
        )
        .foreign_key(&mut fk(
            "fk_subscriptions_tenant",
            (Subscriptions::Table, Subscriptions::TenantId),
            (Tenants::Table, Tenants::Id),
            ForeignKeyAction::Cascade,
        ));
    created_updated(&mut subscriptions, Subscriptions::CreatedAt, Subscriptions::UpdatedAt);
    manager.create_table(subscriptions).await?;

    let mut servers = Table::create();
    servers
        .table(DatabaseServers::Table)
        .col(ColumnDef::new(DatabaseServers::Id).uuid().not_null().primary_key())
        .col(
            ColumnDef::new(DatabaseServers::Name)
                .string_len(100)
                .not_null()
                .unique_key(),
        )
        .col(ColumnDef::new(DatabaseServers::Engine).string_len(16).not_null())
        .col(ColumnDef::new(DatabaseServers::Settings).json_binary().not_null())
        .col(ColumnDef::new(DatabaseServers::Role).string_len(16).not_null())
        .col(ColumnDef::new(DatabaseServers::PrimaryId).uuid().null())
        .col(ColumnDef::new(DatabaseServers::ConnectionBudget).integer().not_null())
        .col(ColumnDef::new(DatabaseServers::AcceptsNewTenants).boolean().not_null());
    created_updated(&mut servers, DatabaseServers::CreatedAt, DatabaseServers::UpdatedAt);
    manager.create_table(servers).await
}

/// `tenant_databases`: where each tenant's database lives, and its status.
async fn tenant_databases(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut dbs = Table::create();
    dbs.table(TenantDatabases::Table)
        .col(ColumnDef::new(TenantDatabases::Id).uuid().not_null().primary_key())
        .col(ColumnDef::new(TenantDatabases::TenantId).uuid().not_null().unique_key())
        .col(ColumnDef::new(TenantDatabases::ServerId).uuid().not_null())
        .col(ColumnDef::new(TenantDatabases::DatabaseName).string_len(63).not_null())
        .col(
            ColumnDef::new(TenantDatabases::PendingDatabaseName)
                .string_len(63)
                .null(),
        )
        .col(ColumnDef::new(TenantDatabases::ReadServerId).uuid().not_null())
        .col(
            ColumnDef::new(TenantDatabases::ReadDatabaseName)
                .string_len(63)
                .not_null(),
        )
        .col(ColumnDef::new(TenantDatabases::RoleName).string_len(63).not_null())
        .col(ColumnDef::new(TenantDatabases::SecretVersion).integer().not_null())
        .col(ColumnDef::new(TenantDatabases::Status).string_len(16).not_null())
        .col(ColumnDef::new(TenantDatabases::SchemaVersion).string_len(255).null())
        .col(
            ColumnDef::new(TenantDatabases::LastMigrationAt)
                .timestamp_with_time_zone()
                .null(),
        )
        .col(ColumnDef::new(TenantDatabases::ErrorMessage).text().null())
        .col(ColumnDef::new(TenantDatabases::PurgeTenant).boolean().not_null())
        .col(ColumnDef::new(TenantDatabases::LeaseOwner).string_len(64).null())
        .col(
            ColumnDef::new(TenantDatabases::LeaseExpiresAt)
                .timestamp_with_time_zone()
                .null(),
        )
        .col(ColumnDef::new(TenantDatabases::Version).big_integer().not_null())
        .foreign_key(&mut fk(
            "fk_tenant_databases_tenant",
            (TenantDatabases::Table, TenantDatabases::TenantId),
            (Tenants::Table, Tenants::Id),
            ForeignKeyAction::Restrict,
        ))
        .foreign_key(&mut fk(
            "fk_tenant_databases_server",
            (TenantDatabases::Table, TenantDatabases::ServerId),
            (DatabaseServers::Table, DatabaseServers::Id),
            ForeignKeyAction::Restrict,
        ));
    created_updated(&mut dbs, TenantDatabases::CreatedAt, TenantDatabases::UpdatedAt);
    manager.create_table(dbs).await
}

/// The indexes of `tenant_databases`.
async fn tenant_database_indexes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // A name is taken while it is current or pending (during a rename).
    for (name, cols) in [
        ("ux_tenant_databases_name", ["server_id", "database_name"]),
        ("ux_tenant_databases_pending", ["server_id", "pending_database_name"]),
    ] {
        manager
            .create_index(unique_index(name, TenantDatabases::Table, &cols))
            .await?;
    }
    manager
        .create_index(
            Index::create()
                .name("ix_tenant_databases_status")
                .table(TenantDatabases::Table)
                .col(TenantDatabases::Status)
                .to_owned(),
        )
        .await
}

/// `settings`: operator settings, one JSON value per key.
async fn settings(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Settings::Table)
                .col(ColumnDef::new(Settings::Key).string_len(200).not_null().primary_key())
                .col(ColumnDef::new(Settings::Value).json_binary().not_null())
                .col(
                    ColumnDef::new(Settings::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
}
