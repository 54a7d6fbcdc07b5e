//! The catalog's own migrations. Each one is frozen once released: a later
//! schema change is a new migration, never an edit of an old one.

use sea_orm_migration::prelude::*;

/// Every catalog migration, oldest first.
pub fn all() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateCatalog),
        Box::new(AddGeneration),
        Box::new(CreateMigrationRuns),
        Box::new(AddTemplatePointer),
        Box::new(AddSafety),
    ]
}

#[derive(DeriveIden)]
enum CatalogInfo {
    Table,
    Id,
    CatalogId,
    Generation,
    Template,
    TenantMigrations,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DatabaseNames {
    Table,
    ServerId,
    Name,
    TenantId,
}

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

struct CreateCatalog;

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
            .await?;

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
            .await?;

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
            .await?;

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
        manager.create_table(servers).await?;

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
        manager.create_table(dbs).await?;
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
            .await?;

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
}

/// A counter bumped by every catalog write that changes how requests are
/// routed (tenants, tenant databases, memberships, tokens). Every process
/// polls it and flushes its caches when it moves, so a change reaches all of
/// them within a poll interval even without notifications.
struct AddGeneration;

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

#[derive(DeriveIden)]
enum MigrationRuns {
    Table,
    Id,
    Status,
    TargetVersion,
    Total,
    Succeeded,
    Failed,
    Skipped,
    StartedAt,
    FinishedAt,
    LeaseOwner,
    LeaseExpiresAt,
}

/// One row per fleet migration run: what it aimed at and how it went.
struct CreateMigrationRuns;

impl MigrationName for CreateMigrationRuns {
    fn name(&self) -> &str {
        "m0003_migration_runs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMigrationRuns {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MigrationRuns::Table)
                    .col(ColumnDef::new(MigrationRuns::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(MigrationRuns::Status).string_len(16).not_null())
                    .col(ColumnDef::new(MigrationRuns::TargetVersion).string_len(255).null())
                    .col(ColumnDef::new(MigrationRuns::Total).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Succeeded).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Failed).integer().not_null())
                    .col(ColumnDef::new(MigrationRuns::Skipped).integer().not_null())
                    .col(
                        ColumnDef::new(MigrationRuns::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MigrationRuns::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// `catalog_info.template`: the template database new tenants are cloned
/// from (written when it is built; `doctor` compares it with the server).
struct AddTemplatePointer;

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
struct AddSafety;

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
