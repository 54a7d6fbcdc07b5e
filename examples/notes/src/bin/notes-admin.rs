//! The operator CLI of the notes service: tenants, migrations, doctor, ...
//! over the notes schema.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantdb_cli::run(tenantdb::TenantMigrations::of::<notes::Migrator>()).await
}
