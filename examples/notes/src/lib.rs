//! A notes service on tenantdb: every tenant (a team) has its own database
//! holding its notes.
//!
//! - [`note`]: the SeaORM entity of the tenant's `notes` table;
//! - [`migrations`]: the tenant schema, as a [`Migrator`] tenantdb runs on
//!   every tenant database;
//! - [`auth`]: the service's own signed tokens, through tenantdb-axum's
//!   `Authorizer` hook;
//! - [`routes`]: `GET/POST /notes`, `GET /notes/{id}`;
//! - [`server`]: the routes, the tenant layer and tenantdb's operator API
//!   in one service.
//!
//! The binaries: `notes-admin` (tenantdb's operator commands over these
//! migrations) and `notes-server` (the service, and minting tokens).

#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod migrations;
pub mod note;
pub mod routes;
pub mod server;

pub use migrations::{Migrator, Schema};
