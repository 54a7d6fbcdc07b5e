//! `migrate --dry-run --sql`: the SQL each pending tenant migration would
//! run, built by running the migration's `up` against SeaORM's recording
//! connection (`MockDatabase`) for the tenant server's dialect. Nothing
//! reaches a database. A migration that reads the database to decide what
//! to do (`has_table`, a query) sees an empty database, so what it prints
//! is what it would run on a fresh one; this is said in the output.

use std::collections::BTreeMap;

use sea_orm::{DatabaseBackend, MockDatabase, MockExecResult};
use sea_orm_migration::SchemaManager;
use tenantdb::TenantMigrations;

/// Statements a recorded migration may run before the recording refuses
/// more.
const MAX_STATEMENTS: usize = 10_000;

/// The SQL of each migration in `names` (in the order of the set), or why
/// it could not be built.
pub(crate) async fn sql_of(
    migrations: &TenantMigrations,
    names: &[String],
    backend: DatabaseBackend,
) -> BTreeMap<String, Result<Vec<String>, String>> {
    let mut out = BTreeMap::new();
    for migration in migrations.migrations() {
        if !names.iter().any(|n| n == migration.name()) {
            continue;
        }
        let db = MockDatabase::new(backend)
            .append_exec_results((0..MAX_STATEMENTS).map(|_| MockExecResult::default()))
            .into_connection();
        let result = migration.up(&SchemaManager::new(&db)).await;
        let statements: Vec<String> = db
            .into_transaction_log()
            .iter()
            .flat_map(|t| t.statements().iter().map(|s| format!("{s};")))
            .collect();
        let outcome = result.map(|()| statements).map_err(|err| {
            format!("could not be rendered without a database ({err}); it reads the database to decide what to run")
        });
        out.insert(migration.name().to_owned(), outcome);
    }
    out
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::prelude::*;

    use super::*;

    struct Migrator;
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateNotes), Box::new(Reads)]
        }
    }

    #[derive(DeriveMigrationName)]
    struct CreateNotes;

    #[async_trait::async_trait]
    impl MigrationTrait for CreateNotes {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("notes")
                        .col(ColumnDef::new("id").integer().not_null().primary_key())
                        .col(ColumnDef::new("body").text().not_null().default("it's"))
                        .to_owned(),
                )
                .await?;
            manager
                .get_connection()
                .execute_unprepared("INSERT INTO notes (id, body) VALUES (1, 'first')")
                .await?;
            Ok(())
        }
    }

    /// A migration that asks the database something first.
    struct Reads;

    impl MigrationName for Reads {
        fn name(&self) -> &str {
            "m2_reads"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Reads {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            if manager.has_table("notes").await? {
                manager.get_connection().execute_unprepared("DELETE FROM notes").await?;
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_pending_migration_is_rendered_in_the_servers_dialect() {
        let set = TenantMigrations::of::<Migrator>();
        let name = CreateNotes.name().to_owned();
        for (backend, text) in [
            (DatabaseBackend::Postgres, r"DEFAULT E'it\'s'"),
            (DatabaseBackend::Sqlite, "DEFAULT 'it''s'"),
        ] {
            let sql = sql_of(&set, std::slice::from_ref(&name), backend).await;
            assert_eq!(sql.len(), 1, "only the pending one");
            let statements = sql[&name].as_ref().unwrap();
            assert_eq!(statements.len(), 2, "{statements:?}");
            assert!(statements[0].starts_with("CREATE TABLE \"notes\""), "{statements:?}");
            assert!(
                statements[0].contains(text),
                "values are inlined, quoted for {backend:?}: {statements:?}"
            );
            assert_eq!(statements[1], "INSERT INTO notes (id, body) VALUES (1, 'first');");
        }
        let reads = sql_of(&set, &["m2_reads".to_owned()], DatabaseBackend::Postgres).await;
        let err = reads["m2_reads"].as_ref().unwrap_err();
        assert!(err.contains("reads the database"), "{err}");
    }
}
