//! [`Store`]: the connection pool plus the little state the store keeps in-process.

use std::sync::Arc;

use broadcast_domain::{Error, Reaches, Result};
use sea_orm::{
    DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, QuerySelect, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::db_err;

/// The sea-orm implementation of the store ports, on SQLite or PostgreSQL.
///
/// Cheap to clone: clones share the connection pool and the SQLite write lock.
#[derive(Clone, Debug)]
pub struct Store {
    conn: DatabaseConnection,
    /// Serialises this process's write transactions on SQLite (claims, result batches, imports).
    ///
    /// SQLite has one writer per database file. A transaction that reads before it writes takes
    /// the write lock only at its first write and fails with `SQLITE_BUSY` (which a busy timeout
    /// does not cure) when another connection wrote in between. Holding this mutex around every
    /// such transaction of the process avoids that and makes concurrent claims of one process
    /// queue up in order instead of failing; other processes are still kept apart by SQLite's own
    /// file lock, under which each claim is one atomic `UPDATE ... RETURNING`. On PostgreSQL the
    /// lock is not taken: claims use `FOR UPDATE SKIP LOCKED` and run in parallel.
    sqlite_writer: Arc<Mutex<()>>,
    /// How each channel reaches users: where a recipient row's address comes from and when a
    /// user is skipped. Telegram and e-mail unless [`Store::with_reaches`] says more.
    reaches: Arc<Reaches>,
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) with the pool settings
    /// of `broadcast_migration::connect`. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store> {
        let conn = broadcast_migration::connect(url).await.map_err(|e| {
            let url = broadcast_migration::redact_url(url);
            match e {
                // A URL that cannot work (unknown scheme, a directory that cannot be created).
                DbErr::Custom(msg) => Error::Invalid(format!("cannot use database {url}: {msg}")),
                other => Error::Unavailable(format!("cannot connect to {url}: {other}")),
            }
        })?;
        Ok(Store::from_conn(conn))
    }

    /// Wraps an existing connection pool.
    pub fn from_conn(conn: DatabaseConnection) -> Store {
        Store {
            conn,
            sqlite_writer: Arc::new(Mutex::new(())),
            reaches: Arc::new(Reaches::default()),
        }
    }

    /// The same store, reaching users on the channels of `reaches` (the composition root's
    /// registered channels).
    pub fn with_reaches(mut self, reaches: Reaches) -> Store {
        self.reaches = Arc::new(reaches);
        self
    }

    /// How each channel reaches users.
    pub fn reaches(&self) -> &Reaches {
        &self.reaches
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        broadcast_migration::Migrator::up(&self.conn, None)
            .await
            .map_err(|e| match db_err(e) {
                Error::Internal(msg) => Error::Internal(format!("migration failed: {msg}")),
                other => other,
            })
    }

    /// Drops every table and applies all migrations again: an empty database. Used by
    /// `broadcast-cli demo --reset`; never called implicitly.
    pub async fn reset(&self) -> Result<()> {
        broadcast_migration::Migrator::fresh(&self.conn)
            .await
            .map_err(|e| match db_err(e) {
                Error::Internal(msg) => Error::Internal(format!("reset failed: {msg}")),
                other => other,
            })
    }

    /// The connection pool (for `broadcast-filter` and tests).
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        self.backend() == DatabaseBackend::Sqlite
    }

    /// The in-process SQLite write lock, or `None` on PostgreSQL. Take it before [`Store::begin`]
    /// and keep it until the transaction ends.
    pub(crate) async fn sqlite_write_lock(&self) -> Option<MutexGuard<'_, ()>> {
        if self.is_sqlite() {
            Some(self.sqlite_writer.lock().await)
        } else {
            None
        }
    }

    /// Starts a transaction.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction> {
        self.conn.begin().await.map_err(db_err)
    }
}

/// `limit` as a SQL limit, where 0 means "no limit".
pub(crate) fn limit_opt(limit: u64) -> Option<u64> {
    (limit > 0).then_some(limit)
}

/// Applies `offset` and `limit` (0: no limit). SQLite accepts `OFFSET` only after a `LIMIT`, so
/// an offset without a limit gets the largest one.
pub(crate) fn paged<Q: QuerySelect>(query: Q, offset: u64, limit: u64) -> Q {
    let limit = match (offset, limit) {
        (0, 0) => return query,
        (_, 0) => i64::MAX as u64,
        (_, limit) => limit,
    };
    query.offset((offset > 0).then_some(offset)).limit(limit)
}

/// Size of the chunks in which long id lists are sent to the database (`IN (...)` lists, bulk
/// updates), well below SQLite's and PostgreSQL's limits on bound parameters.
pub(crate) const CHUNK: usize = 500;
