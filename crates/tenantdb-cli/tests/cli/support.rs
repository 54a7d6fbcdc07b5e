//! One test's operator: the flags of a catalog and a tenant server of one
//! backend (a temporary directory, or a scratch namespace of the shared
//! PostgreSQL server dropped at the end), and an application's CLI that
//! flattens `tenantdb_cli`'s settings and commands.

use std::process::ExitCode;

use clap::Parser;
use sea_orm::ConnectionTrait;
use tenantdb::{Tenancy, TenantMigrations, TenantRef};
use tenantdb_cli::{Command, ConfigArgs};
pub use tenantdb_test_support::Backend;
use tenantdb_test_support::{PgScratch, postgres_url};

const TEST_SECRET: &str = "cli-test-secret-0123456789abcdef0123";

/// An application's CLI: its settings and the operator commands.
#[derive(Debug, Parser)]
#[command(name = "notes-admin")]
pub struct AppCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: AppCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// The application's own command.
    Export,
    #[command(flatten)]
    Operator(Command),
}

pub struct Operator {
    flags: Vec<String>,
    pub dir: tempfile::TempDir,
    pub scratch: Option<PgScratch>,
}

impl Operator {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data").display().to_string();
        let mut flags = vec!["--data-dir".to_owned(), data_dir];
        let scratch = match backend {
            Backend::Sqlite => {
                flags.extend(["--database-prefix".into(), "t_".into()]);
                None
            }
            Backend::Postgres => {
                let scratch = PgScratch::new();
                flags.extend([
                    "--database-url".into(),
                    scratch.create_database("cat").await,
                    "--tenant-server-url".into(),
                    postgres_url(),
                    "--database-prefix".into(),
                    format!("{}_", scratch.prefix()),
                ]);
                Some(scratch)
            }
        };
        // The shared server has about 97 usable connections for every run.
        flags.extend(["--pool-budget", "6", "--pool-max-per-tenant", "2"].map(String::from));
        Self { flags, dir, scratch }
    }

    /// The application's CLI, parsed from this operator's flags and `words`.
    pub fn parse(&self, words: &[&str]) -> AppCli {
        let args = std::iter::once("notes-admin")
            .chain(self.flags.iter().map(String::as_str))
            .chain(words.iter().copied());
        AppCli::try_parse_from(args).unwrap_or_else(|err| panic!("{words:?} does not parse: {err}"))
    }

    /// A process of the application with this tenant schema.
    pub async fn connect(&self, migrations: TenantMigrations) -> Tenancy {
        // The secret is never a flag: a process gets it from its environment.
        let env = |name: &str| (name == "TENANTDB_SECRET").then(|| TEST_SECRET.to_owned());
        let mut config = self.parse(&["status"]).config.to_config_with(&env).unwrap();
        config.catalog_max_connections = 2;
        Tenancy::connect(config, migrations).await.unwrap()
    }

    /// Runs an operator command as the application does; it must run to
    /// the end (`Ok`), and its exit code is returned.
    pub async fn execute(&self, tenancy: &Tenancy, words: &[&str]) -> ExitCode {
        let AppCommand::Operator(command) = self.parse(words).command else {
            panic!("{words:?} is not an operator command");
        };
        tenantdb_cli::execute(tenancy, command)
            .await
            .unwrap_or_else(|err| panic!("{words:?} failed: {err:#}"))
    }
}

impl Operator {
    /// Runs an operator command with an application's hooks; `Err` when
    /// it could not do its work.
    pub async fn execute_with(
        &self,
        hooks: &tenantdb_cli::Operator,
        tenancy: &Tenancy,
        words: &[&str],
    ) -> anyhow::Result<ExitCode> {
        let AppCommand::Operator(command) = self.parse(words).command else {
            panic!("{words:?} is not an operator command");
        };
        hooks.execute(tenancy, command).await
    }
}

/// The first column of the first row `sql` reads in the tenant's own
/// database, as a number.
pub async fn count_in_tenant(tenancy: &Tenancy, tenant: &str, sql: &str) -> i64 {
    let db = tenancy
        .connections()
        .connection(&TenantRef::parse(tenant).unwrap())
        .await
        .unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Whether `sql` runs in the tenant's own database.
pub async fn runs_in_tenant(tenancy: &Tenancy, tenant: &str, sql: &str) -> bool {
    let db = tenancy
        .connections()
        .connection(&TenantRef::parse(tenant).unwrap())
        .await
        .unwrap();
    db.execute_unprepared(sql).await.is_ok()
}
