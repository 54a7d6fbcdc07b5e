//! The `tenantdb` binary's parts: the operator CLI, the reference HTTP
//! service (`http`), the settings it reads and the example tenant schema.
//! `main.rs` only parses flags and sets up logging.

pub mod cli;
mod fleet_cli;
pub mod http;
pub mod settings;
pub mod tenant_schema;
