//! `tenant_databases`: the status machine and the per-tenant lease.
//!
//! Every status change is one conditional UPDATE that names the status it
//! expects, so two processes can never both move a row. Work on a tenant
//! holds a lease in its row (owner, expiry): claiming a row takes the lease,
//! finishing releases it, and a lease that expired (its process died) can be
//! taken over. The lease is also the per-tenant migration lock, and works
//! the same on SQLite and PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

use super::ChangeStamp;
use super::entities::{DbStatus, database_names, memberships, subscriptions, tenant_databases as td, tenants};
use super::repos::taken;
use crate::error::{Error, Result};

/// Statuses in which a row is being worked on and holds a lease.
pub(super) const WORKING: [DbStatus; 6] = [
    DbStatus::Provisioning,
    DbStatus::Renaming,
    DbStatus::Migrating,
    DbStatus::Deleting,
    DbStatus::Moving,
    DbStatus::Switching,
];

/// Rows made with a new tenant, in its transaction.
#[derive(Debug, Clone, Default)]
pub struct TenantExtras {
    /// A user made the tenant's OWNER.
    pub owner_user_id: Option<Uuid>,
    /// A plan: the tenant's subscription starts TRIALING on it, with one seat.
    pub plan: Option<String>,
}

impl TenantExtras {
    /// The rows these extras make for tenant `tenant_id`: its owner's
    /// membership and its subscription.
    fn rows(&self, tenant_id: Uuid) -> (Option<memberships::ActiveModel>, Option<subscriptions::ActiveModel>) {
        let now = Utc::now();
        let member = self.owner_user_id.map(|owner| memberships::ActiveModel {
            tenant_id: Set(tenant_id),
            user_id: Set(owner),
            role: Set(super::MemberRole::Owner),
            created_at: Set(now),
        });
        let subscription = self.plan.clone().map(|plan| subscriptions::ActiveModel {
            tenant_id: Set(tenant_id),
            plan: Set(plan),
            status: Set(super::SubscriptionStatus::Trialing),
            seats: Set(1),
            current_period_end: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        });
        (member, subscription)
    }
}

/// Who holds a row's lease and for how long each claim or renewal lasts.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Who holds it, as written into the row: `<pid>:<token>`, unique per
    /// operation.
    pub owner: String,
    /// How long a claim or renewal lasts.
    pub ttl: Duration,
}

impl Lease {
    pub(crate) fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// The `tenant_databases` repository: rows, the status machine and leases.
#[derive(Debug, Clone, Copy)]
pub struct TenantDatabases<'a> {
    db: &'a DatabaseConnection,
    changes: &'a ChangeStamp,
}

impl<'a> TenantDatabases<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection, changes: &'a ChangeStamp) -> Self {
        Self { db, changes }
    }

    /// The database row of a tenant, if it has one.
    pub async fn find_by_tenant(&self, tenant_id: Uuid) -> Result<Option<td::Model>> {
        Ok(td::Entity::find()
            .filter(td::Column::TenantId.eq(tenant_id))
            .one(self.db)
            .await?)
    }

    /// The database rows of these tenants (those that have one), in no
    /// particular order.
    pub async fn for_tenants(&self, tenant_ids: &[Uuid]) -> Result<Vec<td::Model>> {
        Ok(td::Entity::find()
            .filter(td::Column::TenantId.is_in(tenant_ids.iter().copied()))
            .all(self.db)
            .await?)
    }

    /// Every database row, or those in `status`, ordered by tenant id.
    pub async fn list(&self, status: Option<DbStatus>) -> Result<Vec<td::Model>> {
        let mut query = td::Entity::find().order_by_asc(td::Column::TenantId);
        if let Some(status) = status {
            query = query.filter(td::Column::Status.eq(status));
        }
        Ok(query.all(self.db).await?)
    }

    /// ACTIVE rows whose schema version is not `latest`, ordered by tenant
    /// id: the fleet's work, found by the index on status and version
    /// rather than by reading every row.
    pub async fn active_behind(&self, latest: Option<&str>) -> Result<Vec<td::Model>> {
        let version = match latest {
            Some(latest) => Condition::any()
                .add(td::Column::SchemaVersion.is_null())
                .add(td::Column::SchemaVersion.ne(latest)),
            None => Condition::all().add(td::Column::SchemaVersion.is_not_null()),
        };
        Ok(td::Entity::find()
            .filter(td::Column::Status.eq(DbStatus::Active))
            .filter(version)
            .order_by_asc(td::Column::TenantId)
            .all(self.db)
            .await?)
    }

    /// How many tenant databases live on `server`.
    pub async fn count_on(&self, server: Uuid) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(td::Entity::find()
            .filter(td::Column::ServerId.eq(server))
            .count(self.db)
            .await?)
    }

    /// How many tenant databases live on each server that holds any.
    pub async fn count_by_server(&self) -> Result<std::collections::HashMap<Uuid, u64>> {
        use sea_orm::QuerySelect;
        let counts: Vec<(Uuid, i64)> = td::Entity::find()
            .select_only()
            .column(td::Column::ServerId)
            .column_as(td::Column::Id.count(), "tenants")
            .group_by(td::Column::ServerId)
            .into_tuple()
            .all(self.db)
            .await?;
        Ok(counts
            .into_iter()
            .map(|(server, n)| (server, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// Whether any tenant's recorded schema version is one of `versions`.
    pub async fn any_at_version(&self, versions: &[String]) -> Result<bool> {
        let row = td::Entity::find()
            .filter(td::Column::SchemaVersion.is_in(versions.iter().cloned()))
            .one(self.db)
            .await?;
        Ok(row.is_some())
    }

    /// Whether a name is the current or pending name of any row on a server.
    pub async fn name_taken(&self, server_id: Uuid, name: &str) -> Result<bool> {
        let row = td::Entity::find()
            .filter(td::Column::ServerId.eq(server_id))
            .filter(
                Condition::any()
                    .add(td::Column::DatabaseName.eq(name))
                    .add(td::Column::PendingDatabaseName.eq(name)),
            )
            .one(self.db)
            .await?;
        Ok(row.is_some())
    }

    /// Inserts a tenant and its PROVISIONING database row, leased to the
    /// caller, in one transaction: a taken slug or name leaves nothing.
    pub async fn insert_with_tenant(
        &self,
        tenant: tenants::ActiveModel,
        row: td::ActiveModel,
        extras: TenantExtras,
    ) -> Result<td::Model> {
        let slug = tenant.slug.clone().unwrap();
        let name = row.database_name.clone().unwrap();
        let server = row.server_id.clone().unwrap();
        // The row must be durable before the tenant's role and database
        // exist (so that one without a row is an orphan). On the same
        // server the log is written in order: the role's commit comes after
        // this one, and the synchronous commit that opens the database
        // flushes both: no need to wait here. (A tenant placed on another
        // server gets a synchronous commit.)
        let lazily = self.changes.shares_log_with(server);
        if self.db.get_database_backend() == DbBackend::Postgres {
            return self.insert_at_once(tenant, row, extras, lazily).await;
        }
        let txn = self.db.begin().await?;
        tenant
            .insert(&txn)
            .await
            .map_err(taken(|| format!("a tenant with slug '{slug}' already exists")))?;
        // After a write: a SQLite transaction that read first could not
        // write once another one had (busy snapshot).
        still_accepting(&txn, server).await?;
        let row = row.insert(&txn).await.map_err(|err| {
            removed_meanwhile(err)
                .unwrap_or_else(|err| taken(|| format!("database name '{name}' is already taken"))(err))
        })?;
        reserve(&txn, &row, &row.database_name).await?;
        let (member, subscription) = extras.rows(row.tenant_id);
        if let Some(member) = member {
            let owner = member.user_id.clone().unwrap();
            member.insert(&txn).await.map_err(|err| match err.sql_err() {
                Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                    Error::invalid("owner_user_id", &owner.to_string(), "must be an existing user")
                }
                _ => Error::Catalog(err),
            })?;
        }
        if let Some(subscription) = subscription {
            subscription.insert(&txn).await?;
        }
        if lazily {
            ChangeStamp::record_without_waiting(&txn).await?;
        } else {
            ChangeStamp::record(&txn).await?;
        }
        txn.commit().await?;
        self.changes.mark();
        Ok(row)
    }

    /// Inserts the database row of an existing tenant.
    pub async fn insert(&self, row: td::ActiveModel) -> Result<td::Model> {
        let name = row.database_name.clone().unwrap();
        let tenant = row.tenant_id.clone().unwrap();
        let server = row.server_id.clone().unwrap();
        let txn = self.db.begin().await?;
        let row = row.insert(&txn).await.map_err(|err| {
            removed_meanwhile(err).unwrap_or_else(|err| {
                taken(|| {
                    format!("tenant '{tenant}' already has a database, or database name '{name}' is already taken")
                })(err)
            })
        })?;
        // After the write (see `insert_with_tenant`).
        still_accepting(&txn, server).await?;
        reserve(&txn, &row, &row.database_name).await?;
        ChangeStamp::record(&txn).await?;
        txn.commit().await?;
        self.changes.mark();
        Ok(row)
    }

    /// Moves `row` to `to` and takes its lease, if the row is still as read
    /// (same version) and its lease is free, expired or already ours.
    /// Returns the updated row, or `None` when another process got there
    /// first. `change` carries any other columns to set.
    pub async fn claim(
        &self,
        row: &td::Model,
        to: DbStatus,
        lease: &Lease,
        mut change: td::ActiveModel,
    ) -> Result<Option<td::Model>> {
        debug_assert!(row.status.can_become(to), "{} -> {to}", row.status);
        let now = Utc::now();
        let pending = match &change.pending_database_name {
            sea_orm::ActiveValue::Set(Some(name)) => Some(name.clone()),
            _ => None,
        };
        change.status = Set(to);
        change.lease_owner = Set(Some(lease.owner.clone()));
        change.lease_expires_at = Set(Some(lease.expiry(now)));
        change.updated_at = Set(now);
        let txn = self.db.begin().await?;
        if let Some(pending) = &pending {
            // The rename's target is reserved for this tenant first: a
            // create or another rename of the same name gets "taken".
            reserve(&txn, row, pending).await?;
        }
        let result = td::Entity::update_many()
            .set(change)
            .col_expr(td::Column::Version, Expr::col(td::Column::Version).add(1))
            .filter(td::Column::Id.eq(row.id))
            .filter(td::Column::Version.eq(row.version))
            .filter(td::Column::Status.eq(row.status))
            .filter(lease_free_or_ours(&lease.owner, now))
            .exec(&txn)
            .await
            // A pending name is unique too: a rename to a name just taken.
            .map_err(taken(|| "database name is already taken".to_owned()))?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        ChangeStamp::record(&txn).await?;
        txn.commit().await?;
        self.changes.mark();
        Ok(td::Entity::find_by_id(row.id).one(self.db).await?)
    }

    /// `insert_with_tenant` on PostgreSQL: the same inserts and the
    /// generation bump as one statement (data-modifying CTEs), so one
    /// round trip and one implicit transaction instead of seven round
    /// trips. A unique or foreign key violation anywhere refuses it all;
    /// the constraint's name says which.
    async fn insert_at_once(
        &self,
        tenant: tenants::ActiveModel,
        row: td::ActiveModel,
        extras: TenantExtras,
        lazily: bool,
    ) -> Result<td::Model> {
        use sea_orm::{FromQueryResult, QueryTrait, Statement};
        let pg = DbBackend::Postgres;
        let slug = tenant.slug.clone().unwrap();
        let name = row.database_name.clone().unwrap();
        let tenant_id = tenant.id.clone().unwrap();
        let reservation = database_names::ActiveModel {
            server_id: row.server_id.clone(),
            name: Set(name.clone()),
            tenant_id: Set(tenant_id),
        };
        let mut parts = vec![database_names::Entity::insert(reservation).build(pg)];
        let (member, subscription) = extras.rows(tenant_id);
        parts.extend(member.map(|m| memberships::Entity::insert(m).build(pg)));
        parts.extend(subscription.map(|s| subscriptions::Entity::insert(s).build(pg)));
        // PostgreSQL runs the sub-statements nothing asks for in an order
        // of its own: they are asked for, so that the locks are taken in
        // the order of every other catalog write (the tenant, its row, the
        // name, the generation last; a create taking the generation's row
        // before a name another transaction reserved could deadlock with
        // it), and a taken slug is what a create of one slug is refused for.
        // The server must still take new tenants, checked under the lock
        // a drain waits for (see `still_accepting`), a failed check
        // failing it all. The main query's one-time filter asks for it
        // before it reads `inserted` (the tenant's insert may run first:
        // PostgreSQL orders the filter's terms by cost, so a taken slug is
        // reported before a draining server; no lock cycle, a drain holds
        // only the server's row).
        let server = row.server_id.clone().unwrap();
        let mut values: Vec<sea_orm::Value> = vec![server.into()];
        let mut ctes = vec![format!(
            "accepting AS MATERIALIZED (SELECT CASE WHEN s.accepts_new_tenants THEN 1 \
             ELSE ('{DRAINING_MARK} ''' || s.name || ''' takes no new tenants')::int END AS ok \
             FROM database_servers s WHERE s.id = $1 FOR KEY SHARE OF s)"
        )];
        let mut with = |name: &str, statement: Statement, returning: &str| {
            let sql = format!(
                "{name} AS ({} RETURNING {returning})",
                shift_placeholders(&statement.sql, values.len())
            );
            values.extend(statement.values.map(|v| v.0).unwrap_or_default());
            sql
        };
        ctes.push(with("tenant", tenants::Entity::insert(tenant).build(pg), "1"));
        ctes.push(with("inserted", td::Entity::insert(row).build(pg), "*"));
        let mut after = vec!["EXISTS (SELECT FROM inserted)".to_owned()];
        for (i, part) in parts.into_iter().enumerate() {
            ctes.push(with(&format!("w{i}"), part, "1"));
            after.push(format!("EXISTS (SELECT FROM w{i})"));
        }
        ctes.push(format!(
            "stamp AS (UPDATE catalog_info SET generation = generation + 1 WHERE id = 1 AND {} RETURNING 1)",
            after.join(" AND ")
        ));
        // Called once, for the one row inserted: the notice goes out when
        // (and only if) the statement commits.
        let mut sql = format!(
            "WITH {} SELECT inserted.*, pg_notify('{}', '')::text AS notified",
            ctes.join(", "),
            super::CHANGES_CHANNEL
        );
        if lazily {
            sql.push_str(", set_config('synchronous_commit', 'off', true) AS commit_mode");
        }
        sql.push_str(" FROM inserted WHERE (SELECT ok FROM accepting) = 1 AND EXISTS (SELECT FROM tenant)");
        let statement = Statement::from_sql_and_values(pg, sql, values);
        let inserted = self.db.query_one_raw(statement).await.map_err(|err| {
            if let Some(draining) = draining_server(&err) {
                return Error::ServerDraining(draining);
            }
            let message = match err.sql_err() {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(message))
                | Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(message)) => message,
                _ => return Error::Catalog(err),
            };
            if message.contains("tenants_slug_key") {
                Error::AlreadyExists(format!("a tenant with slug '{slug}' already exists"))
            } else if message.contains("fk_memberships_user") {
                let owner = extras.owner_user_id.map(|u| u.to_string()).unwrap_or_default();
                Error::invalid("owner_user_id", &owner, "must be an existing user")
            } else if matches!(err.sql_err(), Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))) {
                removed_meanwhile(err).unwrap_or_else(Error::Catalog)
            } else {
                Error::AlreadyExists(format!("database name '{name}' is already taken"))
            }
        })?;
        let inserted = inserted.ok_or(Error::Catalog(sea_orm::DbErr::RecordNotInserted))?;
        let row = td::Model::from_query_result(&inserted, "")?;
        self.changes.mark();
        Ok(row)
    }

    /// Ends work on a row: moves it from `from` to `to` and releases the
    /// lease. Fails with `LeaseLost` if the row is no longer ours.
    pub async fn finish(
        &self,
        id: Uuid,
        from: DbStatus,
        to: DbStatus,
        owner: &str,
        mut change: td::ActiveModel,
    ) -> Result<td::Model> {
        debug_assert!(from.can_become(to), "{from} -> {to}");
        change.status = Set(to);
        change.lease_owner = Set(None);
        change.lease_expires_at = Set(None);
        change.updated_at = Set(Utc::now());
        let update = td::Entity::update_many()
            .set(change)
            .col_expr(td::Column::Version, Expr::col(td::Column::Version).add(1))
            .filter(td::Column::Id.eq(id))
            .filter(td::Column::Status.eq(from))
            .filter(td::Column::LeaseOwner.eq(owner));
        // Ending a lease need not wait for the disk: if a crash loses this
        // commit, the row keeps its lease, which expires, and `reconcile`
        // runs the same idempotent steps again and finishes it. (Claims
        // stay synchronous: a lost claim could let two processes work on
        // one tenant.)
        if self.db.get_database_backend() == DbBackend::Postgres {
            let row = self.finish_at_once(update).await?;
            self.changes.mark();
            return row.ok_or_else(|| Error::LeaseLost { tenant: id.to_string() });
        }
        let txn = self.db.begin().await?;
        let row = update
            .exec_with_returning(&txn)
            .await?
            .pop()
            .ok_or_else(|| Error::LeaseLost { tenant: id.to_string() })?;
        release_unused(&txn, &row).await?;
        ChangeStamp::record_without_waiting(&txn).await?;
        txn.commit().await?;
        self.changes.mark();
        Ok(row)
    }
    /// `finish` on PostgreSQL: the update, the release of unused names and
    /// the generation bump (in that order, as in every other catalog
    /// write) as one statement, committed without waiting for the disk.
    /// `None` when the row was not as expected (nothing changed).
    async fn finish_at_once(&self, update: sea_orm::UpdateMany<td::Entity>) -> Result<Option<td::Model>> {
        use sea_orm::{FromQueryResult, QueryTrait, Statement};
        let update = update.build(DbBackend::Postgres);
        let sql = format!(
            "WITH u AS ({} RETURNING *), \
             d AS (DELETE FROM database_names n USING u WHERE n.tenant_id = u.tenant_id \
                   AND n.name <> u.database_name AND n.name IS DISTINCT FROM u.pending_database_name RETURNING 1), \
             g AS (UPDATE catalog_info SET generation = generation + 1 \
                   WHERE id = 1 AND EXISTS (SELECT FROM u) AND (SELECT count(*) FROM d) >= 0 RETURNING 1) \
             SELECT u.*, pg_notify('{}', '')::text AS notified, \
             set_config('synchronous_commit', 'off', true) AS commit_mode FROM u",
            update.sql,
            super::CHANGES_CHANNEL
        );
        let values = update.values.map(|v| v.0).unwrap_or_default();
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        match self.db.query_one_raw(statement).await? {
            Some(row) => Ok(Some(td::Model::from_query_result(&row, "")?)),
            None => Ok(None),
        }
    }

    /// The moment a move switches servers: the SWITCHING row we hold moves
    /// to server `to` (its name reserved there, its reservation on the old
    /// server freed) and becomes MOVING with `state`, keeping our lease, in
    /// one transaction committed durably. From here on the new server is
    /// authoritative.
    pub async fn switch_server(
        &self,
        row: &td::Model,
        owner: &str,
        to: Uuid,
        secret_version: i32,
        state: serde_json::Value,
    ) -> Result<td::Model> {
        let txn = self.db.begin().await?;
        let moved = td::Model {
            server_id: to,
            ..row.clone()
        };
        reserve(&txn, &moved, &row.database_name).await?;
        database_names::Entity::delete_many()
            .filter(database_names::Column::TenantId.eq(row.tenant_id))
            .filter(database_names::Column::ServerId.eq(row.server_id))
            .exec(&txn)
            .await?;
        let result = td::Entity::update_many()
            .col_expr(td::Column::ServerId, Expr::value(to))
            .col_expr(td::Column::ReadServerId, Expr::value(to))
            .col_expr(td::Column::SecretVersion, Expr::value(secret_version))
            .col_expr(td::Column::Status, Expr::value(DbStatus::Moving))
            .col_expr(td::Column::MoveState, Expr::value(state))
            .col_expr(td::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(td::Column::Version, Expr::col(td::Column::Version).add(1))
            .filter(td::Column::Id.eq(row.id))
            .filter(td::Column::Status.eq(DbStatus::Switching))
            .filter(td::Column::LeaseOwner.eq(owner))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::LeaseLost {
                tenant: row.tenant_id.to_string(),
            });
        }
        ChangeStamp::record(&txn).await?;
        txn.commit().await?;
        self.changes.mark();
        td::Entity::find_by_id(row.id)
            .one(self.db)
            .await?
            .ok_or_else(|| Error::LeaseLost {
                tenant: row.tenant_id.to_string(),
            })
    }

    /// Records the version an ACTIVE row's database is really at (`doctor`),
    /// if the row is still ACTIVE at `expected`; false when it changed.
    pub async fn correct_version(&self, id: Uuid, expected: Option<&str>, actual: Option<&str>) -> Result<bool> {
        let expected = match expected {
            Some(version) => td::Column::SchemaVersion.eq(version),
            None => td::Column::SchemaVersion.is_null(),
        };
        let result = td::Entity::update_many()
            .col_expr(td::Column::SchemaVersion, Expr::value(actual.map(str::to_owned)))
            .col_expr(td::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(td::Column::Version, Expr::col(td::Column::Version).add(1))
            .filter(td::Column::Id.eq(id))
            .filter(td::Column::Status.eq(DbStatus::Active))
            .filter(expected)
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Records that an ACTIVE row's role was given the password of secret
    /// version `to`, if it still records `from`; false when it changed.
    pub async fn set_secret_version(&self, id: Uuid, from: i32, to: i32) -> Result<bool> {
        let result = td::Entity::update_many()
            .col_expr(td::Column::SecretVersion, Expr::value(to))
            .col_expr(td::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(td::Column::Version, Expr::col(td::Column::Version).add(1))
            .filter(td::Column::Id.eq(id))
            .filter(td::Column::Status.eq(DbStatus::Active))
            .filter(td::Column::SecretVersion.eq(from))
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Extends our lease; false when it is no longer ours.
    pub async fn renew(&self, id: Uuid, lease: &Lease) -> Result<bool> {
        let now = Utc::now();
        let result = td::Entity::update_many()
            .col_expr(td::Column::LeaseExpiresAt, Expr::value(lease.expiry(now)))
            .filter(td::Column::Id.eq(id))
            .filter(td::Column::LeaseOwner.eq(lease.owner.as_str()))
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Rows in a working status whose lease has expired (or was never
    /// taken): work a dead process left behind.
    pub async fn abandoned(&self) -> Result<Vec<td::Model>> {
        let now = Utc::now();
        Ok(td::Entity::find()
            .filter(td::Column::Status.is_in(WORKING))
            .filter(
                Condition::any()
                    .add(td::Column::LeaseExpiresAt.is_null())
                    .add(td::Column::LeaseExpiresAt.lt(now)),
            )
            .order_by_asc(td::Column::TenantId)
            .all(self.db)
            .await?)
    }

    /// Removes a DELETING row we hold, and with `purge_tenant` the tenant,
    /// its memberships and subscription, in one transaction.
    pub async fn remove(&self, row: &td::Model, owner: &str) -> Result<()> {
        let txn = self.db.begin().await?;
        let result = td::Entity::delete_many()
            .filter(td::Column::Id.eq(row.id))
            .filter(td::Column::Status.eq(DbStatus::Deleting))
            .filter(td::Column::LeaseOwner.eq(owner))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::LeaseLost {
                tenant: row.tenant_id.to_string(),
            });
        }
        database_names::Entity::delete_many()
            .filter(database_names::Column::TenantId.eq(row.tenant_id))
            .exec(&txn)
            .await?;
        if row.purge_tenant {
            memberships::Entity::delete_many()
                .filter(memberships::Column::TenantId.eq(row.tenant_id))
                .exec(&txn)
                .await?;
            subscriptions::Entity::delete_by_id(row.tenant_id).exec(&txn).await?;
            tenants::Entity::delete_by_id(row.tenant_id).exec(&txn).await?;
        }
        txn.commit().await?;
        self.changes.bump(self.db).await
    }
}

/// Reserves `name` on the row's server for the row's tenant; a name
/// reserved for another tenant is "taken". Idempotent for the same tenant.
/// The insert comes first (`ON CONFLICT DO NOTHING`): on SQLite a
/// transaction that reads before it writes cannot wait for another writer
/// and fails with "database is locked"; on PostgreSQL a failed insert
/// would abort the transaction.
async fn reserve(txn: &impl ConnectionTrait, row: &td::Model, name: &str) -> Result<()> {
    use sea_orm::sea_query::{OnConflict, Query};
    let insert = Query::insert()
        .into_table(database_names::Entity)
        .columns([
            database_names::Column::ServerId,
            database_names::Column::Name,
            database_names::Column::TenantId,
        ])
        .values_panic([row.server_id.into(), name.into(), row.tenant_id.into()])
        .on_conflict(
            OnConflict::columns([database_names::Column::ServerId, database_names::Column::Name])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    txn.execute_raw(txn.get_database_backend().build(&insert)).await?;
    let holder = database_names::Entity::find_by_id((row.server_id, name.to_owned()))
        .one(txn)
        .await?
        .map(|found| found.tenant_id);
    if holder == Some(row.tenant_id) {
        Ok(())
    } else {
        Err(Error::AlreadyExists(format!("database name '{name}' is already taken")))
    }
}

/// Frees the names of the row's tenant that are neither its current nor
/// its pending name (a rename finished or rolled back).
async fn release_unused(txn: &impl ConnectionTrait, row: &td::Model) -> Result<()> {
    let mut keep = vec![row.database_name.clone()];
    keep.extend(row.pending_database_name.clone());
    database_names::Entity::delete_many()
        .filter(database_names::Column::TenantId.eq(row.tenant_id))
        .filter(database_names::Column::Name.is_not_in(keep))
        .exec(txn)
        .await?;
    Ok(())
}

fn lease_free_or_ours(owner: &str, now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(td::Column::LeaseOwner.is_null())
        .add(td::Column::LeaseExpiresAt.lt(now))
        .add(td::Column::LeaseOwner.eq(owner))
}

/// Marks the error `insert_at_once` raises for a server that takes no new
/// tenants (PostgreSQL has no RAISE outside PL/pgSQL: a failed cast of a
/// text that says so).
const DRAINING_MARK: &str = "tenantdb: server";

/// The server named by `insert_at_once`'s "takes no new tenants" error.
fn draining_server(err: &sea_orm::DbErr) -> Option<String> {
    let text = err.to_string();
    let (_, rest) = text.split_once(&format!("{DRAINING_MARK} '"))?;
    let (name, _) = rest.split_once("' takes no new tenants")?;
    Some(name.to_owned())
}

/// Refuses a new tenant database on `server` unless it still takes new
/// tenants (`Error::ServerDraining`), inside the transaction that inserts
/// it. On PostgreSQL the server's row is locked `FOR KEY SHARE` (the lock
/// the row's foreign key takes anyway), which `Servers::set_accepting`'s
/// `FOR UPDATE` waits for: once a drain has committed no new row can land
/// on the server, and every row that did was committed before, so a
/// listing after the drain sees it. (Placement reads the servers before
/// this, so without it a create that chose the server just before a drain
/// could land after it.) SQLite's writes take turns anyway.
async fn still_accepting(txn: &sea_orm::DatabaseTransaction, server: Uuid) -> Result<()> {
    use super::entities::database_servers;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let mut query = database_servers::Entity::find().filter(database_servers::Column::Id.eq(server));
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock(sea_orm::sea_query::LockType::KeyShare);
    }
    match query.one(txn).await? {
        Some(row) if !row.accepts_new_tenants => Err(Error::ServerDraining(row.name)),
        // No row: the server was removed; the insert's foreign key says so.
        _ => Ok(()),
    }
}

/// A row insert refused by a foreign key: the server it was placed on (or
/// its tenant) was removed between the check and the insert. Nothing was
/// made; trying again places it anew. Other errors come back as they were.
fn removed_meanwhile(err: sea_orm::DbErr) -> std::result::Result<Error, sea_orm::DbErr> {
    match err.sql_err() {
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => Ok(Error::NoServerAvailable(
            "the server it was placed on was removed meanwhile; try again".into(),
        )),
        _ => Err(err),
    }
}

/// `sql` (one statement as sea-query writes it for PostgreSQL, every value a
/// `$n` parameter) with its parameters numbered from `by + 1`, to be joined
/// with statements whose values come first.
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                n.push(d);
            }
            let n: usize = n.parse().unwrap_or_default();
            out.push_str(&(n + by).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_shifted() {
        assert_eq!(
            super::shift_placeholders(r#"INSERT INTO "t" ("a", "b") VALUES ($1, $12)"#, 3),
            r#"INSERT INTO "t" ("a", "b") VALUES ($4, $15)"#
        );
        assert_eq!(super::shift_placeholders("SELECT 1", 5), "SELECT 1");
    }
}
