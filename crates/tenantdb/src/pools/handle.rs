//! `PoolHandle`: a counted loan of a tenant's pool, usable wherever SeaORM
//! takes a connection (it forwards SeaORM's connection and transaction
//! traits to the pool).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sea_orm::{DatabaseConnection, DbErr, ExecResult, QueryResult, Statement};

use super::pool::TenantPool;

/// A tenant database's pool, as handed out by `TenantPools::get`: use it
/// as a `DatabaseConnection` (it derefs to one and implements sea-orm's
/// connection and transaction traits). While a handle lives, its pool is
/// never evicted or reaped, so acquiring from it cannot meet a pool closed
/// under it; hold it for the work, not for the life of the process (a
/// renamed or deleted tenant's pool still closes under it).
pub struct PoolHandle {
    pub(super) pool: Arc<TenantPool>,
}

impl PoolHandle {
    /// The underlying connection. A clone of it is not counted: it does not
    /// keep the pool from being evicted.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.pool.db
    }
}

impl Clone for PoolHandle {
    fn clone(&self) -> Self {
        // A live handle keeps the count above zero, so no claim can succeed
        // in between: counting the copy is enough.
        self.pool.state.fetch_add(1, Ordering::AcqRel);
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        self.pool.state.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::ops::Deref for PoolHandle {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.pool.db
    }
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle").field("db", &self.pool.db).finish()
    }
}

/// The future every forwarded query returns: the pool's own boxed future,
/// handed back as it is (no second box around it, no move of its state:
/// this is every tenant query's path).
type Forwarded<'a, T> = Pin<Box<dyn Future<Output = std::result::Result<T, DbErr>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`, which would box each
// forwarded future once more.
impl sea_orm::ConnectionTrait for PoolHandle {
    fn get_database_backend(&self) -> sea_orm::DbBackend {
        self.pool.db.get_database_backend()
    }

    fn execute_raw<'a, 'f>(&'a self, stmt: Statement) -> Forwarded<'f, ExecResult>
    where
        'a: 'f,
        Self: 'f,
    {
        self.pool.db.execute_raw(stmt)
    }

    fn execute<'a, 's, 'f, S>(&'a self, stmt: &'s S) -> Forwarded<'f, ExecResult>
    where
        S: 'f + sea_orm::StatementBuilder,
        'a: 'f,
        's: 'f,
        Self: 'f,
    {
        self.pool.db.execute(stmt)
    }

    fn execute_unprepared<'a, 's, 'f>(&'a self, sql: &'s str) -> Forwarded<'f, ExecResult>
    where
        'a: 'f,
        's: 'f,
        Self: 'f,
    {
        self.pool.db.execute_unprepared(sql)
    }

    fn query_one_raw<'a, 'f>(&'a self, stmt: Statement) -> Forwarded<'f, Option<QueryResult>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.pool.db.query_one_raw(stmt)
    }

    fn query_one<'a, 's, 'f, S>(&'a self, stmt: &'s S) -> Forwarded<'f, Option<QueryResult>>
    where
        S: 'f + sea_orm::StatementBuilder,
        'a: 'f,
        's: 'f,
        Self: 'f,
    {
        self.pool.db.query_one(stmt)
    }

    fn query_all_raw<'a, 'f>(&'a self, stmt: Statement) -> Forwarded<'f, Vec<QueryResult>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.pool.db.query_all_raw(stmt)
    }

    fn query_all<'a, 's, 'f, S>(&'a self, stmt: &'s S) -> Forwarded<'f, Vec<QueryResult>>
    where
        S: 'f + sea_orm::StatementBuilder,
        'a: 'f,
        's: 'f,
        Self: 'f,
    {
        self.pool.db.query_all(stmt)
    }

    fn support_returning(&self) -> bool {
        self.pool.db.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.pool.db.is_mock_connection()
    }
}

#[async_trait::async_trait]
impl sea_orm::TransactionTrait for PoolHandle {
    type Transaction = sea_orm::DatabaseTransaction;

    async fn begin(&self) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin_with_config(isolation_level, access_mode).await
    }

    async fn begin_with_options(
        &self,
        options: sea_orm::TransactionOptions,
    ) -> std::result::Result<Self::Transaction, sea_orm::DbErr> {
        self.pool.db.begin_with_options(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> std::result::Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c Self::Transaction,
            )
                -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.pool.db.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> std::result::Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c Self::Transaction,
            )
                -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.pool
            .db
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}
