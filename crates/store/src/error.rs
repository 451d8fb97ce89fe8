//! Mapping of sea-orm / sqlx errors onto the domain's [`Error`], grouped by what the caller
//! should do: a taken unique key is a conflict, a lost connection is "unavailable", the rest is
//! internal.

use broadcast_domain::Error;
use sea_orm::{DbErr, RuntimeErr, SqlErr, sqlx};

/// Maps a database error onto the domain's [`Error`] (for crates that query the store's
/// tables directly, such as `broadcast-filter`).
pub fn db_err(e: DbErr) -> Error {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) => {
            return Error::Conflict(format!("a record with the same key already exists: {msg}"));
        }
        Some(SqlErr::ForeignKeyConstraintViolation(msg)) => {
            return Error::Invalid(format!("a referenced record does not exist: {msg}"));
        }
        _ => {}
    }
    if is_unavailable(&e) {
        return Error::Unavailable(e.to_string());
    }
    Error::Internal(format!("database error: {e}"))
}

/// Maps a unique-key violation to [`Error::Conflict`] with `message`, anything else as [`db_err`].
pub(crate) fn unique_or(e: DbErr, message: impl FnOnce() -> String) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(message())
    } else {
        db_err(e)
    }
}

/// True when the error is a violated unique constraint.
pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// True when the error is transient: no connection, a closed pool, a busy SQLite database, a
/// PostgreSQL serialisation failure or deadlock, a server shutting down.
fn is_unavailable(e: &DbErr) -> bool {
    let sqlx_err = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx_err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) with their extended codes.
            // PostgreSQL: serialization_failure, deadlock_detected, too_many_connections,
            // connection exceptions (08...), operator intervention / shutdown (57P..).
            matches!(
                code.as_ref(),
                "5" | "6" | "261" | "262" | "517" | "40001" | "40P01" | "53300"
            ) || code.starts_with("08")
                || code.starts_with("57P")
        }
        _ => false,
    }
}
