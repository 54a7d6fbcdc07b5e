//! Moving a tenant's database to another PostgreSQL server.
//!
//! Online (the default; the source needs `wal_level = logical`):
//! 1. claim: ACTIVE → MOVING (phase COPYING), the move recorded in
//!    `move_state`; served from the source all along;
//! 2. on the target: the tenant's role, an empty database, the schema
//!    (`pg_dump --schema-only | pg_restore` as the tenant's role);
//! 3. a publication on the source, a subscription on the target: rows
//!    are copied, then changes stream;
//! 4. once every table is copied and the target is close behind: MOVING →
//!    SWITCHING (not served: requests wait, then 503), the tenant's role
//!    locked out of the source and its sessions ended, so nothing is
//!    acknowledged there any more; the target applies the log up to that
//!    point; sequences are set;
//! 5. switch: the row names the target, MOVING (phase CLEANING), in one
//!    catalog transaction: served from the target from here on;
//! 6. clean: subscription, slot and publication dropped; the source's
//!    database and role dropped (or, with `keep_source`, left locked out
//!    for `doctor` to report and drop); the row ACTIVE.
//!
//! Offline (`offline`, or no logical decoding on the source): claim
//! straight into SWITCHING, lock the role out, copy everything with
//! `pg_dump | pg_restore`, then 5 and 6.
//!
//! A failure or a crash before the switch rolls back: the target's
//! database, role and replication objects are dropped, the role may log in
//! to the source again, the row is ACTIVE there (with the error). After
//! the switch, cleaning is finished. `reconcile` does both for a move
//! whose process died (its lease expired).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::Set;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::steps::{Change, Row, is_crash};
use super::{DRAIN_WAIT, Provisioner, Step};
use crate::catalog::{DbStatus, database_servers};
use crate::engine::{DatabaseSpec, Engine, PostgresEngine};
use crate::error::{Error, Result};
use crate::names::TenantRef;
use crate::tenant::TenantDatabase;

/// How long the target may take to apply the source's last changes once
/// writes are paused before the move is rolled back.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// How far behind (bytes of log) the target may be when writes are paused:
/// the pause is about as long as applying this much.
const PAUSE_WHEN_BEHIND: i64 = 1 << 20;
/// How long the copy may make no progress (no table finished copying, the
/// target no closer) before the move is rolled back.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// What `move_tenant` needs.
#[derive(Debug, Clone, Default)]
pub struct MoveTenant {
    /// The server to move to, by name; the deployment's [`Placement`]
    /// chooses among the others when `None` (drain the server first to
    /// empty it).
    ///
    /// [`Placement`]: crate::Placement
    pub to: Option<String>,
    /// Copy with `pg_dump | pg_restore` while the tenant is refused,
    /// rather than online with logical replication.
    pub offline: bool,
    /// Leave the source database in place (its role locked out) for
    /// `doctor` to report and drop, instead of dropping it.
    pub keep_source: bool,
}

/// Where a move is (`tenant_databases.move_state`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MoveState {
    pub(crate) from: Uuid,
    pub(crate) from_name: String,
    pub(crate) to: Uuid,
    pub(crate) to_name: String,
    pub(crate) offline: bool,
    pub(crate) keep_source: bool,
    pub(crate) phase: MovePhase,
    pub(crate) started_at: DateTime<Utc>,
}

/// The phase of a move.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum MovePhase {
    /// The target is being filled; the source serves.
    Copying,
    /// Writes are paused; the last changes reach the target.
    Switching,
    /// The target serves; the source's copy is being removed.
    Cleaning,
}

impl MoveState {
    pub(crate) fn of(row: &Row) -> Option<Self> {
        serde_json::from_value(row.move_state.clone()?).ok()
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn at(&self, phase: MovePhase) -> Self {
        Self { phase, ..self.clone() }
    }
}

impl Provisioner {
    /// Moves the tenant's database to another server and returns once it
    /// is ACTIVE there (see the module docs). The tenant is served all
    /// along but for the switch (online) or the copy (offline).
    #[tracing::instrument(skip_all, fields(tenant = %tenant, to = ?options.to))]
    pub async fn move_tenant(&self, tenant: &TenantRef, options: MoveTenant) -> Result<TenantDatabase> {
        let (_, work) = self.begin_move(tenant, options).await?;
        work.await.map_err(|err| Error::Task(err.to_string()))?
    }

    /// Starts a move: checks it, claims the row (MOVING or SWITCHING) and
    /// returns it with the work, which goes on in a task the provisioner
    /// owns whether or not the handle is awaited.
    pub async fn begin_move(
        &self,
        tenant: &TenantRef,
        options: MoveTenant,
    ) -> Result<(TenantDatabase, tokio::task::JoinHandle<Result<TenantDatabase>>)> {
        let (found, row) = self.load(tenant).await?;
        let to = match &options.to {
            Some(name) => name.clone(),
            None => {
                let chosen = self
                    .place(&super::NewTenant {
                        slug: found.slug.clone(),
                        ..Default::default()
                    })
                    .await?;
                chosen.name.clone()
            }
        };
        let target_row = self
            .inner
            .catalog
            .servers()
            .named(&to)
            .await?
            .ok_or_else(|| Error::ServerNotFound(to.clone()))?;
        if target_row.role != database_servers::PRIMARY {
            return Err(Error::invalid("server", &to, "a read replica takes no tenants"));
        }
        if !target_row.accepts_new_tenants {
            return Err(Error::ServerDraining(target_row.name.clone()));
        }
        if target_row.id == row.server_id {
            let why = if options.to.is_some() {
                "the tenant is on that server already"
            } else {
                "placement chose the server the tenant is on: name a server, or drain this one first"
            };
            return Err(Error::invalid("server", &to, why));
        }
        self.expect(&row, &[DbStatus::Active], "move its database")?;
        let source = self.site_of(&row).await?;
        let target = self.inner.sites.open(&target_row).await?;
        target.reachable().await?;
        let (Engine::Postgres(source_pg), Engine::Postgres(_)) = (&source.engine, &target.engine) else {
            return Err(Error::invalid(
                "server",
                &to,
                "only tenants on PostgreSQL servers move, to PostgreSQL servers",
            ));
        };
        let spec = self.tenant_db(&row);
        self.check_name_free(&target, &spec.database).await?;
        let offline = options.offline || !source_pg.logical_decoding().await?;
        if !offline {
            let obstacles = source_pg.online_obstacles(&spec).await?;
            if !obstacles.is_empty() {
                return Err(Error::invalid(
                    "move",
                    &row.database_name,
                    &format!(
                        "logical replication would not carry all of it ({}): move it --offline \
                         (or give those tables a primary key)",
                        obstacles.join(", ")
                    ),
                ));
            }
        }
        // A role of that name on the target that this catalog did not make
        // would never be dropped or used: refused before anything starts.
        if let Engine::Postgres(target_pg) = &target.engine {
            target_pg.check_role_ours(&spec).await?;
        }
        let state = MoveState {
            from: source.id,
            from_name: source.name.clone(),
            to: target.id,
            to_name: target.name.clone(),
            offline,
            keep_source: options.keep_source,
            phase: if offline {
                MovePhase::Switching
            } else {
                MovePhase::Copying
            },
            started_at: Utc::now(),
        };
        let status = if offline { DbStatus::Switching } else { DbStatus::Moving };
        let change = Change {
            move_state: Set(Some(state.to_json())),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.claim(&row, status, change).await?;
        tracing::info!(tenant.id = %row.tenant_id, from = %state.from_name, to = %state.to_name, offline, "moving a tenant");
        self.step(Step::MoveClaimed, row.tenant_id)?;
        let public = self.public(&row);
        let this = self.clone();
        let work = self.spawn_tracked(async move { this.run_move(row).await.map(|row| this.public(&row)) });
        Ok((public, work))
    }

    /// Runs a claimed move to its end, or rolls it back (see module docs).
    pub(super) async fn run_move(&self, row: Row) -> Result<Row> {
        let Some(state) = MoveState::of(&row) else {
            // A working row without a move: back to ACTIVE where it is.
            let change = Change {
                move_state: Set(None),
                ..Default::default()
            };
            return self.finish(&row, DbStatus::Active, change).await;
        };
        let keeper = self.keep(&row);
        if state.phase == MovePhase::Cleaning {
            return self.clean_move(row, &state, &keeper).await;
        }
        match self.copy_and_switch(row.clone(), &state, &keeper).await {
            Ok(row) => self.clean_move(row, &state, &keeper).await,
            Err(err) if is_crash(&err) => Err(err),
            Err(err) => {
                tracing::warn!(tenant.id = %row.tenant_id, error = %err.chain(), "the move failed: rolling back");
                let current = self
                    .inner
                    .catalog
                    .tenant_databases()
                    .find_by_tenant(row.tenant_id)
                    .await?
                    .unwrap_or(row);
                self.roll_back_move(current, &state, Some(&err)).await?;
                Err(err)
            }
        }
    }

    /// Steps 2 to 5: the copy, the pause and the switch. Returns the row
    /// switched to the target (MOVING, CLEANING).
    async fn copy_and_switch(&self, row: Row, state: &MoveState, keeper: &super::lease::LeaseKeeper) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let (source, target) = self.move_engines(state).await?;
        let source_site = self.inner.sites.get(state.from).await?;
        // Whatever an earlier attempt left goes first.
        source.unpublish(&spec).await?;
        remove_target(&target, &spec).await?;
        let mut row = row;
        if !state.offline {
            make_target(&target, &spec).await?;
            self.step(Step::MoveTargetCreated, row.tenant_id)?;
            source.copy_to(&target, &spec, true).await?;
            source.publish(&spec).await?;
            target.subscribe(&source, &spec).await?;
            self.step(Step::MoveCopying, row.tenant_id)?;
            wait_copied(&source, &target, &spec, keeper).await?;
            self.step(Step::MoveCaughtUp, row.tenant_id)?;
            let change = Change {
                move_state: Set(Some(state.at(MovePhase::Switching).to_json())),
                ..Default::default()
            };
            row = self.claim_ours(&row, DbStatus::Switching, change).await?;
        }
        // Paused: no pool hands out the source any more (this process's
        // closed here, the others' when they see SWITCHING), the role is
        // locked out and its sessions ended.
        let paused = std::time::Instant::now();
        source_site.pools.invalidate_and_wait(spec.tenant, DRAIN_WAIT).await;
        source.lock_out(&spec).await?;
        // Every commit acknowledged so far is in the log from here on (one
        // synchronous commit flushes all before it), below this position.
        source.flush().await?;
        self.step(Step::MovePaused, row.tenant_id)?;
        keeper.check()?;
        if state.offline {
            make_target(&target, &spec).await?;
            self.step(Step::MoveTargetCreated, row.tenant_id)?;
            source.copy_to(&target, &spec, false).await?;
        } else {
            let position = source.wal_position().await?;
            let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
            let mut pause = Duration::from_millis(1);
            loop {
                match source.slot_behind(&spec, position).await? {
                    Some(0) => break,
                    Some(_) if tokio::time::Instant::now() < deadline => {}
                    Some(behind) => {
                        return Err(Error::Config(format!(
                            "the target did not apply the last {behind} bytes of changes within {CATCH_UP_LIMIT:?}"
                        )));
                    }
                    None => return Err(Error::Config("the move's replication slot is gone".into())),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            source.copy_sequences(&target, &spec).await?;
            target.unsubscribe(&spec).await?;
        }
        target.flush().await?;
        keeper.check()?;
        let row = self
            .inner
            .catalog
            .tenant_databases()
            .switch_server(
                &row,
                &self.lease_of(&row).owner,
                state.to,
                // The role on the target has the current secret's password.
                self.inner.secret_version,
                state.at(MovePhase::Cleaning).to_json(),
            )
            .await?;
        metrics::histogram!("tenantdb_move_pause_seconds").record(paused.elapsed().as_secs_f64());
        tracing::info!(tenant.id = %row.tenant_id, to = %state.to_name, paused_ms = paused.elapsed().as_millis() as u64, "switched the tenant to its new server");
        self.step(Step::MoveSwitched, row.tenant_id)?;
        Ok(row)
    }

    /// Step 6: removes the replication objects and the source's copy, then
    /// the row is ACTIVE on the target.
    async fn clean_move(&self, row: Row, state: &MoveState, keeper: &super::lease::LeaseKeeper) -> Result<Row> {
        let spec = self.tenant_db(&row);
        let (source, target) = self.move_engines(state).await?;
        target.unsubscribe(&spec).await?;
        source.unpublish(&spec).await?;
        self.step(Step::MoveReplicationDropped, row.tenant_id)?;
        keeper.check()?;
        if state.keep_source {
            source.lock_out(&spec).await?;
            source.mark_moved(&spec, state.to).await?;
        } else {
            source.drop_tenant(&spec).await?;
        }
        source.flush().await?;
        let change = Change {
            move_state: Set(None),
            error_message: Set(None),
            ..Default::default()
        };
        let row = self.finish(&row, DbStatus::Active, change).await?;
        tracing::info!(tenant.id = %row.tenant_id, to = %state.to_name, "moved the tenant");
        Ok(row)
    }

    /// Before the switch: drops what the move made on the target, lets the
    /// role log in to the source again, and makes the row ACTIVE there.
    pub(super) async fn roll_back_move(&self, row: Row, state: &MoveState, why: Option<&Error>) -> Result<Row> {
        if row.server_id != state.from {
            // Never: the switch moves the row and the phase together. Drop
            // nothing on a server that may hold the tenant's only copy.
            return Err(Error::Config(format!(
                "the move of tenant {} is switched already; it cannot be rolled back",
                row.tenant_id
            )));
        }
        let spec = self.tenant_db(&row);
        // The source first: the tenant is served again even when the
        // target does not answer (what the move made there is then left
        // for `doctor` to report).
        let source = self.move_engine(state.from).await?;
        source.unpublish(&spec).await?;
        source.let_in(&spec).await?;
        let left = match self.move_engine(state.to).await {
            Ok(target) => remove_target(&target, &spec).await.err(),
            Err(err) => Some(err),
        };
        if let Some(err) = &left {
            tracing::warn!(tenant.id = %row.tenant_id, server = %state.to_name, error = %err.chain(), "cannot remove what the move made on the target; doctor reports it");
        }
        let mut message = why.map(|err| format!("move to '{}' failed: {}", state.to_name, err.chain()));
        if let Some(err) = left {
            let note = format!("; its copy on '{}' is left: {}", state.to_name, err.chain());
            message = Some(message.unwrap_or_default() + &note);
        }
        let change = Change {
            move_state: Set(None),
            error_message: Set(message),
            ..Default::default()
        };
        let row = self.finish(&row, DbStatus::Active, change).await?;
        tracing::info!(tenant.id = %row.tenant_id, "rolled the move back: the tenant stays where it was");
        Ok(row)
    }

    /// A tenant whose move goes from or to `server`, if any.
    pub(crate) async fn moving_through(&self, server: Uuid) -> Result<Option<Uuid>> {
        for status in [DbStatus::Moving, DbStatus::Switching] {
            for row in self.inner.catalog.tenant_databases().list(Some(status)).await? {
                if MoveState::of(&row).is_some_and(|state| state.from == server || state.to == server) {
                    return Ok(Some(row.tenant_id));
                }
            }
        }
        Ok(None)
    }

    /// What reconcile does with a move whose process died.
    pub(super) async fn finish_abandoned_move(&self, row: Row) -> Result<Row> {
        match MoveState::of(&row) {
            Some(state) if state.phase == MovePhase::Cleaning && row.server_id == state.to => {
                let keeper = self.keep(&row);
                self.clean_move(row, &state, &keeper).await
            }
            Some(state) => self.roll_back_move(row, &state, None).await,
            None => self.run_move(row).await,
        }
    }

    async fn move_engines(&self, state: &MoveState) -> Result<(PostgresEngine, PostgresEngine)> {
        Ok((self.move_engine(state.from).await?, self.move_engine(state.to).await?))
    }

    async fn move_engine(&self, server: Uuid) -> Result<PostgresEngine> {
        match &self.inner.sites.get(server).await?.engine {
            Engine::Postgres(pg) => Ok(pg.clone()),
            Engine::Sqlite(_) => Err(Error::Config("only PostgreSQL servers move tenants".into())),
        }
    }

    /// Moves a row we hold from one working status to another, keeping our
    /// lease.
    async fn claim_ours(&self, row: &Row, to: DbStatus, change: Change) -> Result<Row> {
        let claimed = self
            .inner
            .catalog
            .tenant_databases()
            .claim(row, to, &self.lease_of(row), change)
            .await?;
        claimed.ok_or_else(|| Error::LeaseLost {
            tenant: row.tenant_id.to_string(),
        })
    }
}

/// The tenant's role and an empty database of its own on the target.
async fn make_target(target: &PostgresEngine, spec: &DatabaseSpec) -> Result<()> {
    target.ensure_role(spec).await?;
    target.create_database(spec, None, false).await?;
    target.open_database(spec).await
}

/// Drops what a move made on the target: its subscription, database and
/// role (only if they are this catalog's).
async fn remove_target(target: &PostgresEngine, spec: &DatabaseSpec) -> Result<()> {
    target.unsubscribe(spec).await?;
    match target.drop_tenant(spec).await {
        // A role of that name the catalog did not make: not ours to drop.
        Err(Error::NotOurs { .. }) => Ok(()),
        other => other,
    }
}

/// Waits until every table is copied and the target is within
/// `PAUSE_WHEN_BEHIND` of the source, checking the lease as it goes.
async fn wait_copied(
    source: &PostgresEngine,
    target: &PostgresEngine,
    spec: &DatabaseSpec,
    keeper: &super::lease::LeaseKeeper,
) -> Result<()> {
    let mut pause = Duration::from_millis(5);
    // (tables still copying, bytes behind) when it last got closer.
    let mut best = (i64::MAX, i64::MAX);
    let mut progressed = tokio::time::Instant::now();
    loop {
        keeper.check()?;
        if target.subscription_errors(spec).await? > 0 {
            return Err(Error::Config(
                "the target could not apply the source's changes (DDL on the tenant during the move?)".into(),
            ));
        }
        let copying = match target.tables_copying(spec).await? {
            None => return Err(Error::Config("the move's subscription is gone".into())),
            Some((copying, _)) => copying,
        };
        let position = source.wal_position().await?;
        let behind = source
            .slot_behind(spec, position)
            .await?
            .ok_or_else(|| Error::Config("the move's replication slot is gone".into()))?;
        if copying == 0 && behind <= PAUSE_WHEN_BEHIND {
            return Ok(());
        }
        if copying < best.0 || (copying == best.0 && behind < best.1) {
            best = (copying, behind);
            progressed = tokio::time::Instant::now();
        } else if progressed.elapsed() > STALL_LIMIT {
            // The slot keeps the source's log meanwhile: give up rather
            // than fill its disk.
            return Err(Error::Config(format!(
                "the copy made no progress for {STALL_LIMIT:?} ({copying} table(s) copying, {behind} bytes behind)"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
