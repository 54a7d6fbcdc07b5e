//! An application as a user would write it: its own tenant schema and
//! routes behind the tenant layer, the operator API mounted next to them,
//! served on port 0 and spoken to over HTTP, on SQLite and PostgreSQL.

mod app;
mod support;
