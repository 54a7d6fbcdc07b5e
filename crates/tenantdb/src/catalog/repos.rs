//! Typed repositories for the catalog tables other than `tenant_databases`
//! (which has its own module for the status machine and leases).
//!
//! Unique violations become `Error::AlreadyExists` here, at the call site
//! that knows which value was taken.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    SqlErr,
};
use uuid::Uuid;

use super::ChangeStamp;
use super::entities::{
    MemberRole, SubscriptionStatus, TenantStatus, api_tokens, database_servers, memberships, settings, subscriptions,
    tenants, users,
};
use crate::digest::{hex, sha256_hex};
use crate::error::{Error, Result};
use crate::names::TenantRef;

/// Maps a unique violation to `AlreadyExists` with `what`.
pub(crate) fn taken(what: impl FnOnce() -> String) -> impl FnOnce(DbErr) -> Error {
    move |err| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(what()),
        _ => Error::Catalog(err),
    }
}

macro_rules! repo {
    ($name:ident) => {
        /// A repository of one catalog table, borrowed from the `Catalog`
        /// accessor of the same name.
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            db: &'a DatabaseConnection,
            #[allow(dead_code)]
            changes: &'a ChangeStamp,
        }

        impl<'a> $name<'a> {
            pub(crate) fn new(db: &'a DatabaseConnection, changes: &'a ChangeStamp) -> Self {
                Self { db, changes }
            }
        }
    };
}

repo!(Users);
repo!(ApiTokens);
repo!(Tenants);
repo!(Memberships);
repo!(Subscriptions);
repo!(Servers);
repo!(Settings);

impl Users<'_> {
    /// Creates a user; the email is stored lower case and must be unique.
    pub async fn create(&self, email: &str, name: &str) -> Result<users::Model> {
        let email = email.trim().to_lowercase();
        let now = Utc::now();
        users::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.clone()),
            name: Set(name.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(self.db)
        .await
        .map_err(taken(|| format!("a user with email '{email}' already exists")))
    }

    /// The user with this id, if any.
    pub async fn find(&self, id: Uuid) -> Result<Option<users::Model>> {
        Ok(users::Entity::find_by_id(id).one(self.db).await?)
    }

    /// The user with this email, if any (compared trimmed and lower case).
    pub async fn find_by_email(&self, email: &str) -> Result<Option<users::Model>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email.trim().to_lowercase()))
            .one(self.db)
            .await?)
    }

    /// Every user, ordered by email.
    pub async fn list(&self) -> Result<Vec<users::Model>> {
        Ok(users::Entity::find()
            .order_by_asc(users::Column::Email)
            .all(self.db)
            .await?)
    }
}

impl ApiTokens<'_> {
    /// Creates a token for a user and returns it with the plain token, which
    /// is shown once: only its SHA-256 is stored.
    pub async fn create(&self, user_id: Uuid, name: &str) -> Result<(api_tokens::Model, String)> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("tdb_{}", hex(&bytes));
        let model = api_tokens::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            name: Set(name.to_owned()),
            token_sha256: Set(sha256_hex(&token)),
            created_at: Set(Utc::now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(self.db)
        .await?;
        self.changes.bump(self.db).await?;
        Ok((model, token))
    }

    /// The unrevoked token with this value, if any.
    pub async fn find_active(&self, token: &str) -> Result<Option<api_tokens::Model>> {
        Ok(api_tokens::Entity::find()
            .filter(api_tokens::Column::TokenSha256.eq(sha256_hex(token)))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .one(self.db)
            .await?)
    }

    /// The token with this id (revoked or not), if any.
    pub async fn find(&self, token_id: Uuid) -> Result<Option<api_tokens::Model>> {
        Ok(api_tokens::Entity::find_by_id(token_id).one(self.db).await?)
    }

    /// A user's tokens, revoked ones included, oldest first.
    pub async fn list_for_user(&self, user_id: Uuid) -> Result<Vec<api_tokens::Model>> {
        Ok(api_tokens::Entity::find()
            .filter(api_tokens::Column::UserId.eq(user_id))
            .order_by_asc(api_tokens::Column::CreatedAt)
            .order_by_asc(api_tokens::Column::Id)
            .all(self.db)
            .await?)
    }

    /// Records that a token was used (no routing change: no generation bump).
    pub async fn touch(&self, token_id: Uuid) -> Result<()> {
        api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::LastUsedAt, Utc::now().into())
            .filter(api_tokens::Column::Id.eq(token_id))
            .exec(self.db)
            .await?;
        Ok(())
    }

    /// Revokes a user's token; false when there is no such token.
    pub async fn revoke(&self, user_id: Uuid, token_id: Uuid) -> Result<bool> {
        let result = api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::RevokedAt, Utc::now().into())
            .filter(api_tokens::Column::Id.eq(token_id))
            .filter(api_tokens::Column::UserId.eq(user_id))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .exec(self.db)
            .await?;
        self.changes.bump(self.db).await?;
        Ok(result.rows_affected == 1)
    }
}

impl Tenants<'_> {
    /// The tenant with this id or slug, if any.
    pub async fn find(&self, tenant: &TenantRef) -> Result<Option<tenants::Model>> {
        let query = match tenant {
            TenantRef::Id(id) => tenants::Entity::find_by_id(id.as_uuid()),
            TenantRef::Slug(slug) => tenants::Entity::find().filter(tenants::Column::Slug.eq(slug.as_str())),
        };
        Ok(query.one(self.db).await?)
    }

    /// The tenant with its database row, in one query (the routing path).
    pub async fn find_with_database(
        &self,
        tenant: &TenantRef,
    ) -> Result<Option<(tenants::Model, Option<super::entities::tenant_databases::Model>)>> {
        let query = match tenant {
            TenantRef::Id(id) => tenants::Entity::find_by_id(id.as_uuid()),
            TenantRef::Slug(slug) => tenants::Entity::find().filter(tenants::Column::Slug.eq(slug.as_str())),
        };
        Ok(query
            .find_also_related(super::entities::tenant_databases::Entity)
            .one(self.db)
            .await?)
    }

    /// Like `find`, but a missing tenant is `Error::TenantNotFound`.
    pub async fn get(&self, tenant: &TenantRef) -> Result<tenants::Model> {
        self.find(tenant)
            .await?
            .ok_or_else(|| Error::TenantNotFound(tenant.to_string()))
    }

    /// Tenants ordered by id (creation order), after `after`, at most `limit`.
    pub async fn list(
        &self,
        status: Option<TenantStatus>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<tenants::Model>> {
        let mut query = tenants::Entity::find().order_by_asc(tenants::Column::Id).limit(limit);
        if let Some(status) = status {
            query = query.filter(tenants::Column::Status.eq(status));
        }
        if let Some(after) = after {
            query = query.filter(tenants::Column::Id.gt(after));
        }
        Ok(query.all(self.db).await?)
    }

    /// Sets a tenant's status (suspends or resumes it) and returns the updated
    /// row; `Error::TenantNotFound` when there is no such tenant.
    pub async fn set_status(&self, id: Uuid, status: TenantStatus) -> Result<tenants::Model> {
        self.update(id, |m| m.status = Set(status)).await
    }

    /// Sets a tenant's display name and returns the updated row;
    /// `Error::TenantNotFound` when there is no such tenant.
    pub async fn set_name(&self, id: Uuid, name: &str) -> Result<tenants::Model> {
        let name = name.to_owned();
        self.update(id, move |m| m.name = Set(name)).await
    }

    /// Deletes a tenant that has no database row; its memberships and
    /// subscription go with it (foreign keys cascade).
    pub async fn delete(&self, id: Uuid) -> Result<()> {
        tenants::Entity::delete_by_id(id).exec(self.db).await?;
        self.changes.bump(self.db).await
    }

    async fn update(&self, id: Uuid, change: impl FnOnce(&mut tenants::ActiveModel)) -> Result<tenants::Model> {
        let mut model = tenants::ActiveModel {
            id: sea_orm::Unchanged(id),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        change(&mut model);
        let updated = match model.update(self.db).await {
            Err(DbErr::RecordNotUpdated) => return Err(Error::TenantNotFound(id.to_string())),
            other => other?,
        };
        self.changes.bump(self.db).await?;
        Ok(updated)
    }
}

impl Memberships<'_> {
    /// Adds the user to the tenant or changes their role.
    pub async fn upsert(&self, tenant_id: Uuid, user_id: Uuid, role: MemberRole) -> Result<memberships::Model> {
        let model = memberships::ActiveModel {
            tenant_id: Set(tenant_id),
            user_id: Set(user_id),
            role: Set(role),
            created_at: Set(Utc::now()),
        };
        memberships::Entity::insert(model)
            .on_conflict(
                OnConflict::columns([memberships::Column::TenantId, memberships::Column::UserId])
                    .update_column(memberships::Column::Role)
                    .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        self.changes.bump(self.db).await?;
        self.find(tenant_id, user_id)
            .await?
            .ok_or_else(|| Error::Catalog(DbErr::RecordNotFound("membership".into())))
    }

    /// The user's membership in the tenant, if any.
    pub async fn find(&self, tenant_id: Uuid, user_id: Uuid) -> Result<Option<memberships::Model>> {
        Ok(memberships::Entity::find_by_id((tenant_id, user_id))
            .one(self.db)
            .await?)
    }

    /// Removes a membership; false when there was none.
    pub async fn remove(&self, tenant_id: Uuid, user_id: Uuid) -> Result<bool> {
        let result = memberships::Entity::delete_by_id((tenant_id, user_id))
            .exec(self.db)
            .await?;
        self.changes.bump(self.db).await?;
        Ok(result.rows_affected == 1)
    }

    /// Every membership of a tenant, ordered by user id.
    pub async fn list_for_tenant(&self, tenant_id: Uuid) -> Result<Vec<memberships::Model>> {
        Ok(memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(tenant_id))
            .order_by_asc(memberships::Column::UserId)
            .all(self.db)
            .await?)
    }

    /// A page of a tenant's members, ordered by user id, after `after`.
    pub async fn page_for_tenant(
        &self,
        tenant_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<memberships::Model>> {
        let mut query = memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(tenant_id))
            .order_by_asc(memberships::Column::UserId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(memberships::Column::UserId.gt(after));
        }
        Ok(query.all(self.db).await?)
    }
}

impl Subscriptions<'_> {
    /// Creates or replaces the tenant's subscription.
    pub async fn upsert(
        &self,
        tenant_id: Uuid,
        plan: &str,
        status: SubscriptionStatus,
        seats: i32,
        current_period_end: Option<DateTime<Utc>>,
    ) -> Result<subscriptions::Model> {
        let now = Utc::now();
        let model = subscriptions::ActiveModel {
            tenant_id: Set(tenant_id),
            plan: Set(plan.to_owned()),
            status: Set(status),
            seats: Set(seats),
            current_period_end: Set(current_period_end),
            created_at: Set(now),
            updated_at: Set(now),
        };
        subscriptions::Entity::insert(model)
            .on_conflict(
                OnConflict::column(subscriptions::Column::TenantId)
                    .update_columns([
                        subscriptions::Column::Plan,
                        subscriptions::Column::Status,
                        subscriptions::Column::Seats,
                        subscriptions::Column::CurrentPeriodEnd,
                        subscriptions::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        self.find(tenant_id)
            .await?
            .ok_or_else(|| Error::Catalog(DbErr::RecordNotFound("subscription".into())))
    }

    /// The tenant's subscription, if it has one.
    pub async fn find(&self, tenant_id: Uuid) -> Result<Option<subscriptions::Model>> {
        Ok(subscriptions::Entity::find_by_id(tenant_id).one(self.db).await?)
    }
}

/// A tenant server as the catalog records it (no secrets).
#[derive(Debug, Clone)]
pub struct NewServer<'a> {
    /// Unique name of the server in the catalog.
    pub name: &'a str,
    /// `postgres` or `sqlite`.
    pub engine: &'a str,
    /// Connection settings as JSON, without secrets.
    pub settings: serde_json::Value,
    /// Connections all tenant pools on the server may hold, shared by the
    /// instances that use it (recorded when the server is first recorded;
    /// then by each instance as it joins, see `Instances::beat`).
    pub connection_budget: i32,
    /// For a read replica, the server it follows (`None`: a primary).
    pub follows: Option<Uuid>,
}

impl NewServer<'_> {
    /// Its row: a primary, ACCEPTING; or a replica, which takes no tenants.
    fn row(self) -> database_servers::ActiveModel {
        let now = Utc::now();
        database_servers::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(self.name.to_owned()),
            engine: Set(self.engine.to_owned()),
            settings: Set(self.settings),
            role: Set(if self.follows.is_some() {
                database_servers::REPLICA
            } else {
                database_servers::PRIMARY
            }
            .to_owned()),
            primary_id: Set(self.follows),
            connection_budget: Set(self.connection_budget),
            accepts_new_tenants: Set(self.follows.is_none()),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
}

/// Takes server `id`'s row `FOR UPDATE` in `tx` (PostgreSQL; SQLite's
/// writes take turns anyway), as a drain and a removal do first: a
/// heartbeat locks the same row first (by updating it), and a create's
/// `FOR KEY SHARE` check waits for this lock.
async fn lock_server_row(tx: &sea_orm::DatabaseTransaction, id: Uuid) -> Result<()> {
    use sea_orm::{ConnectionTrait, QuerySelect};
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        database_servers::Entity::find_by_id(id)
            .lock_exclusive()
            .one(tx)
            .await?;
    }
    Ok(())
}

impl Servers<'_> {
    /// Records the server under its name, or updates its settings; returns
    /// the row. Safe to call from several processes at once.
    pub async fn ensure(&self, server: NewServer<'_>) -> Result<database_servers::Model> {
        let name = server.name;
        let model = server.row();
        database_servers::Entity::insert(model)
            .on_conflict(
                OnConflict::column(database_servers::Column::Name)
                    .update_columns([
                        database_servers::Column::Engine,
                        database_servers::Column::Settings,
                        database_servers::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        database_servers::Entity::find()
            .filter(database_servers::Column::Name.eq(name))
            .one(self.db)
            .await?
            .ok_or_else(|| Error::Catalog(DbErr::RecordNotFound(format!("database server '{name}'"))))
    }

    /// Records a new server; `Error::AlreadyExists` if the name is taken.
    pub async fn add(&self, server: NewServer<'_>) -> Result<database_servers::Model> {
        let name = server.name;
        let model = server.row();
        match model.insert(self.db).await {
            Ok(row) => Ok(row),
            Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                Err(Error::AlreadyExists(format!("a server named '{name}' already exists")))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Rewrites a server's settings (its admin password sealed again).
    pub async fn set_settings(&self, id: Uuid, settings: serde_json::Value) -> Result<()> {
        database_servers::Entity::update_many()
            .col_expr(
                database_servers::Column::Settings,
                sea_orm::sea_query::Expr::value(settings),
            )
            .col_expr(
                database_servers::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(database_servers::Column::Id.eq(id))
            .exec(self.db)
            .await?;
        Ok(())
    }

    /// Removes a server that holds no tenant database (its instance rows
    /// go with it). `Ok(false)` when a tenant database row refers to it:
    /// the catalog's foreign key refuses, so a create placed on it
    /// meanwhile is never orphaned.
    pub async fn remove(&self, id: Uuid) -> Result<bool> {
        use sea_orm::TransactionTrait;
        let tx = self.db.begin().await?;
        // The server row first, as a heartbeat takes it before its
        // instance row (the other order could deadlock with a beat).
        lock_server_row(&tx, id).await?;
        super::entities::instances::Entity::delete_many()
            .filter(super::entities::instances::Column::ServerId.eq(id))
            .exec(&tx)
            .await?;
        match database_servers::Entity::delete_by_id(id).exec(&tx).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The server with this id, if any.
    pub async fn find(&self, id: Uuid) -> Result<Option<database_servers::Model>> {
        Ok(database_servers::Entity::find_by_id(id).one(self.db).await?)
    }

    /// Lets the server take new tenant databases (`true`, ACCEPTING) or
    /// not (`false`, DRAINING); false if there is no such server.
    ///
    /// A drain takes the row `FOR UPDATE` first (PostgreSQL): it waits for
    /// the creates that checked the server under `FOR KEY SHARE` and are
    /// not committed yet, and those that check after it see DRAINING (see
    /// `tenant_databases::still_accepting`). So when this returns, every
    /// tenant database a create will place here is already in the catalog.
    pub async fn set_accepting(&self, id: Uuid, accepting: bool) -> Result<bool> {
        use sea_orm::TransactionTrait;
        let tx = self.db.begin().await?;
        lock_server_row(&tx, id).await?;
        let updated = database_servers::Entity::update_many()
            .col_expr(
                database_servers::Column::AcceptsNewTenants,
                sea_orm::sea_query::Expr::value(accepting),
            )
            .col_expr(
                database_servers::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(database_servers::Column::Id.eq(id))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        Ok(updated.rows_affected == 1)
    }

    /// The server named `name`, if any.
    pub async fn named(&self, name: &str) -> Result<Option<database_servers::Model>> {
        Ok(database_servers::Entity::find()
            .filter(database_servers::Column::Name.eq(name))
            .one(self.db)
            .await?)
    }

    /// Every server, by id.
    pub async fn list(&self) -> Result<Vec<database_servers::Model>> {
        Ok(database_servers::Entity::find()
            .order_by_asc(database_servers::Column::Id)
            .all(self.db)
            .await?)
    }
}

impl Settings<'_> {
    /// Every setting, ordered by key.
    pub async fn all(&self) -> Result<Vec<settings::Model>> {
        Ok(settings::Entity::find()
            .order_by_asc(settings::Column::Key)
            .all(self.db)
            .await?)
    }

    /// The value of a setting, if set.
    pub async fn get(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(settings::Entity::find_by_id(key.to_owned())
            .one(self.db)
            .await?
            .map(|row| row.value))
    }

    /// Sets a setting, replacing any value it had.
    pub async fn put(&self, key: &str, value: serde_json::Value) -> Result<()> {
        let model = settings::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(value),
            updated_at: Set(Utc::now()),
        };
        settings::Entity::insert(model)
            .on_conflict(
                OnConflict::column(settings::Column::Key)
                    .update_columns([settings::Column::Value, settings::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        Ok(())
    }
}
