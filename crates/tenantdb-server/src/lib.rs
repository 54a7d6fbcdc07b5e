//! The `tenantdb` binary's parts: the reference HTTP service (`http`), the
//! service's settings and the example tenant schema. The operator commands
//! come from `tenantdb_cli`; `main.rs` parses flags, sets up logging and
//! hands over to the service or to `tenantdb_cli::execute`.

pub mod http;
pub mod settings;
pub mod tenant_schema;
