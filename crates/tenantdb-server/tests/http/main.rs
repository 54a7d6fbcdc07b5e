//! Black-box tests of `tenantdb serve`: the real service on port 0 (the same
//! startup code as `main`), spoken to over HTTP, on SQLite and PostgreSQL.

mod api;
mod busy;
mod connections;
mod files;
mod fuzz;
mod nul;
mod openapi;
mod restart;
mod servers;
mod support;
mod telemetry;
