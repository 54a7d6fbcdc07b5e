//! The operator commands over an application's own tenant schema (not the
//! reference app's projects and tasks), parsed by clap as an application's
//! CLI would and run with `tenantdb_cli::execute`, on SQLite and on
//! PostgreSQL.

mod commands;
mod schema;
mod support;
