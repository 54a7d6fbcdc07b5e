//! Catalog, engine, provisioning and connection tests against real servers: every
//! behaviour runs on PostgreSQL and on SQLite (see `support`).

mod support;

mod catalog;
mod connections;
mod context;
mod crash;
mod crash_points;
mod create;
mod doctor;
mod export;
mod fleet;
mod instances;
mod migrations;
mod moves;
mod postgres_security;
mod races;
mod rename_delete;
mod replicas;
mod safety;
mod server_faults;
mod servers;
mod templates;
mod trash;
mod warm;
