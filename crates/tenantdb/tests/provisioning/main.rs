//! Provisioning, catalog and engine tests against real servers: every
//! behaviour runs on PostgreSQL and on SQLite (see `support`).

mod support;

mod catalog;
mod crash;
mod create;
mod migrations;
mod postgres_security;
mod rename_delete;
