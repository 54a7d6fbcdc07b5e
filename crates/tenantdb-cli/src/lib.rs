//! The tenantdb operator CLI over an application's own tenant migrations:
//! users, members, tenants (create, list, show, rename-database, delete,
//! retry, suspend, resume, migrate, check), reconcile, migrate and migrate
//! status, status and doctor, with the flags, `TENANTDB_*` variables,
//! output, `--json` and exit codes of the `tenantdb` binary.
//!
//! An application's whole operator binary:
//!
//! ```no_run
//! # mod my_app {
//! #     use sea_orm_migration::prelude::*;
//! #     pub struct Migrator;
//! #     impl MigratorTrait for Migrator {
//! #         fn migrations() -> Vec<Box<dyn MigrationTrait>> { vec![] }
//! #     }
//! # }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     tenantdb_cli::run(tenantdb::TenantMigrations::of::<my_app::Migrator>()).await
//! }
//! ```
//!
//! An application with commands of its own flattens [`ConfigArgs`] and
//! [`Command`] into its CLI, connects, and hands the operator commands to
//! [`execute`]:
//!
//! ```no_run
//! # mod my_app {
//! #     use sea_orm_migration::prelude::*;
//! #     pub struct Migrator;
//! #     impl MigratorTrait for Migrator {
//! #         fn migrations() -> Vec<Box<dyn MigrationTrait>> { vec![] }
//! #     }
//! # }
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     config: tenantdb_cli::ConfigArgs,
//!     #[command(subcommand)]
//!     command: AppCommand,
//! }
//!
//! #[derive(clap::Subcommand)]
//! enum AppCommand {
//!     /// The application's own command.
//!     Hello,
//!     #[command(flatten)]
//!     Operator(tenantdb_cli::Command),
//! }
//!
//! # async fn example() -> anyhow::Result<std::process::ExitCode> {
//! let cli = Cli::parse();
//! match cli.command {
//!     AppCommand::Hello => Ok(std::process::ExitCode::SUCCESS),
//!     AppCommand::Operator(command) => {
//!         let migrations = tenantdb::TenantMigrations::of::<my_app::Migrator>();
//!         let tenancy = tenantdb::Tenancy::connect(cli.config.to_config()?, migrations).await?;
//!         let code = tenantdb_cli::execute(&tenancy, command).await;
//!         tenancy.close().await;
//!         code
//!     }
//! }
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod access;
mod args;
mod doctor;
mod exec;
pub mod exit;
mod export;
mod fleet;
mod listing;
mod logging;
mod migration_sql;
mod moves;
mod output;
mod per_tenant;
mod progress;
mod seed;
mod servers;
mod settings;
mod tenants;
mod users;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tenantdb::{Tenancy, TenantMigrations};

pub use async_trait::async_trait;
pub use logging::{LogFormat, init_logging};
pub use seed::Seed;
pub use settings::{ConfigArgs, secret_setting};

/// The operator commands: a clap [`Subcommand`] an application flattens
/// into its own subcommands (`#[command(flatten)] Operator(Command)`) and
/// runs with [`execute`]. What each variant holds is the command's flags,
/// read by clap; they are not meant to be built by hand.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Create and list users and their API tokens.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Revoke API tokens.
    #[command(subcommand)]
    Tokens(users::TokensCommand),
    /// Add, list and remove tenant members.
    #[command(subcommand)]
    Members(users::MembersCommand),
    /// Create, list, inspect, rename, repair and delete tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// The tenant servers: budget, tenants, the instances sharing the budget.
    #[command(subcommand)]
    Servers(servers::ServersCommand),
    /// One screen: tenants by status and version, servers, pools, last runs.
    Status(fleet::StatusArgs),
    /// Bring every tenant that is behind up to the latest tenant migration
    /// (`migrate status`: runs and tenants per version).
    Migrate(fleet::MigrateArgs),
    /// Finish work a dead process left half-done (rows in PROVISIONING,
    /// RENAMING, MIGRATING or DELETING whose lease expired).
    Reconcile(doctor::ReconcileArgs),
    /// Find drift between the catalog and the tenant server (orphan and
    /// foreign databases, missing databases, stuck or failed rows, version
    /// drift, stale templates) and explain it; exits 3 while problems
    /// remain (1 when it could not check).
    Doctor(doctor::DoctorArgs),
    /// Print this binary's shell completions (`source <(tenantdb
    /// completions bash)`); needs no database.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Database-per-tenant operator commands: create, inspect, migrate, repair
/// and delete tenant databases.
///
/// With no configuration everything lives in SQLite files under ./data.
/// Point TENANTDB_DATABASE_URL (catalog) and TENANTDB_TENANT_SERVER_URL
/// (tenant server) at PostgreSQL, and set TENANTDB_SECRET, for production.
#[derive(Debug, Parser)]
#[command(
    version = VERSION,
    subcommand_required = true,
    arg_required_else_help = true,
    after_long_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

/// `--version` names the running binary, then this crate.
/// What `--help` says after the options: where secrets come from, and the
/// exit codes.
pub const AFTER_HELP: &str = "\
Secrets come only from the environment, never from flags (which `ps` shows
to every user): TENANTDB_SECRET, and URLs with a password in
TENANTDB_DATABASE_URL and TENANTDB_TENANT_SERVER_URL. Each may instead name
a file holding it: TENANTDB_SECRET_FILE, TENANTDB_DATABASE_URL_FILE,
TENANTDB_TENANT_SERVER_URL_FILE.

Logs go to stderr: RUST_LOG filters them, TENANTDB_LOG_FORMAT=json makes one
JSON object per line, NO_COLOR (or a non-terminal) turns colours off.

Exit codes: 0 done; 1 failure; 2 invalid flags or settings; 3 doctor found
problems.";

const VERSION: &str = concat!("(tenantdb-cli ", env!("CARGO_PKG_VERSION"), ")");

/// The operator commands with an application's hooks: its [`Seed`] for
/// `tenants seed`. [`run`] and [`execute`] are `Operator::new()`'s.
#[derive(Clone, Default)]
pub struct Operator {
    seed: Option<Arc<dyn Seed>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator").field("seed", &self.seed.is_some()).finish()
    }
}

impl Operator {
    /// The operator commands with no hooks (`tenants seed` does nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// `tenants seed` runs `seed`.
    pub fn seed(mut self, seed: impl Seed) -> Self {
        self.seed = Some(Arc::new(seed));
        self
    }

    /// The whole operator binary of an application: parses the process's
    /// arguments (the program is named after the running binary), logs to
    /// stderr ([`init_logging`]: `RUST_LOG`, default `warn`), connects with
    /// `migrations` as the tenant schema, runs the command, closes, and
    /// returns the exit code. An error is printed as `error: ...`; the exit
    /// codes are those of [`exit`] (1 failure, 2 invalid flags or settings,
    /// 3 problems found by `doctor`).
    pub async fn run(self, migrations: TenantMigrations) -> ExitCode {
        let cli = parse_args();
        if let Command::Completions { shell } = cli.command {
            return completions::<Cli>(shell);
        }
        if let Err(err) = init_logging("warn") {
            eprintln!("error: {err:#}");
            return ExitCode::from(exit::USAGE);
        }
        match self.connect_and_execute(cli, migrations).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs one operator command on `tenancy`: its results on stdout,
    /// progress and the reason for a non-zero code on stderr.
    ///
    /// `Ok(code)`: the command ran to the end; `code` is not success when
    /// it leaves problems it reported (doctor findings remain, tenants
    /// failed to migrate, abandoned work could not be finished). `Err`: the
    /// command could not do its work (invalid input, unknown tenant, a
    /// database error).
    ///
    /// On Ctrl-C it stops waiting and returns an error, while work the
    /// provisioner already started goes on: [`Tenancy::close`] waits for it.
    pub async fn execute(&self, tenancy: &Tenancy, command: Command) -> anyhow::Result<ExitCode> {
        tokio::select! {
            result = self.dispatch(tenancy, command) => result,
            () = ctrl_c() => {
                eprintln!("interrupted: waiting for work under way to finish");
                Err(anyhow::anyhow!("interrupted"))
            }
        }
    }

    async fn dispatch(&self, tenancy: &Tenancy, command: Command) -> anyhow::Result<ExitCode> {
        let done = |()| ExitCode::SUCCESS;
        match command {
            Command::Users(command) => users::users(tenancy, command).await.map(done),
            Command::Tokens(command) => users::tokens(tenancy, command).await.map(done),
            Command::Members(command) => users::members(tenancy, command).await.map(done),
            Command::Tenants(command) => tenants::tenants(tenancy, command, self.seed.clone()).await.map(done),
            Command::Servers(command) => servers::servers(tenancy, command).await.map(done),
            Command::Status(args) => fleet::overview(tenancy, args).await.map(done),
            Command::Migrate(args) => fleet::migrate(tenancy, args).await,
            Command::Reconcile(args) => doctor::reconcile(tenancy, args).await,
            Command::Doctor(args) => doctor::doctor(tenancy, args).await,
            // An application that flattens these commands into its own CLI
            // answers this before connecting, with its own command tree
            // (`completions::<AppCli>`); this prints the operator commands'.
            Command::Completions { shell } => Ok(completions::<Cli>(shell)),
        }
    }

    async fn connect_and_execute(&self, cli: Cli, migrations: TenantMigrations) -> anyhow::Result<ExitCode> {
        // Settings that do not make a valid configuration are a usage error.
        let config = match cli.config.to_config() {
            Ok(config) => config,
            Err(err) => {
                eprintln!("error: {err:#}");
                return Ok(ExitCode::from(exit::USAGE));
            }
        };
        let tenancy = Tenancy::connect(config, migrations).await.context("failed to start")?;
        let result = self.execute(&tenancy, cli.command).await;
        tenancy.close().await;
        result
    }
}

/// [`Operator::run`] with no hooks: the whole operator binary of an
/// application.
pub async fn run(migrations: TenantMigrations) -> ExitCode {
    Operator::new().run(migrations).await
}

/// [`Operator::execute`] with no hooks: one operator command on `tenancy`.
pub async fn execute(tenancy: &Tenancy, command: Command) -> anyhow::Result<ExitCode> {
    Operator::new().execute(tenancy, command).await
}

/// Prints the shell completions of the CLI `C` (an application's own,
/// flattening [`Command`]) for `shell`, under the running binary's name.
pub fn completions<C: CommandFactory>(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write;
    let name = program_name();
    let mut command = C::command().bin_name(&name);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(&script) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: {err}");
            ExitCode::from(exit::FAILURE)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The arguments, with usage, help and `--version` naming the running
/// binary (an application's binary has its own name).
fn parse_args() -> Cli {
    let name = program_name();
    let matches = Cli::command().bin_name(&name).display_name(&name).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| Some(Path::new(&arg0).file_stem()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| env!("CARGO_PKG_NAME").to_owned())
}

/// Resolves on Ctrl-C; never, where the signal cannot be listened to.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
