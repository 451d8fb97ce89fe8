//! Database migrations of the broadcast system, and the one way to connect to its database.
//!
//! [`Migrator`] lists the migrations in order; [`connect`] opens a SQLite or PostgreSQL
//! connection pool configured for a delivery queue (used by `bins/migrate`, the store and tests).

use std::path::PathBuf;
use std::time::Duration;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, RuntimeErr};

mod m20261128_000001_create_audience;
mod m20261128_000002_create_templates;
mod m20261128_000003_create_broadcasts;
mod m20261128_000004_create_admin;
mod m20261128_000005_create_send_budgets;
mod m20261128_000006_ledger_counters;
mod m20261203_000007_uncertain_sends;
mod m20261203_000008_folded_keys;
mod m20261203_000009_budget_moves;
mod m20261203_000010_probes_and_holds;
mod m20261204_000011_counted_sends;
mod m20261204_000012_admin_sessions;
mod m20261205_000013_budget_owed_moves;
mod m20261205_000014_media_library;
mod m20261205_000015_template_media;
mod m20261205_000016_template_buttons;

/// Every table the migrations create, in creation order.
pub const TABLES: [&str; 14] = [
    "users",
    "competitions",
    "registrations",
    "message_templates",
    "broadcasts",
    "broadcast_recipients",
    "admin_users",
    "audit_log",
    "send_budgets",
    "broadcast_counts",
    "admin_sessions",
    "media_blobs",
    "media",
    "telegram_files",
];

/// How long a SQLite connection waits for another writer before failing with "database is locked".
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in a PostgreSQL pool.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// The migrations of the broadcast database, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_audience::Migration),
            Box::new(m20261128_000002_create_templates::Migration),
            Box::new(m20261128_000003_create_broadcasts::Migration),
            Box::new(m20261128_000004_create_admin::Migration),
            Box::new(m20261128_000005_create_send_budgets::Migration),
            Box::new(m20261128_000006_ledger_counters::Migration),
            Box::new(m20261203_000007_uncertain_sends::Migration),
            Box::new(m20261203_000008_folded_keys::Migration),
            Box::new(m20261203_000009_budget_moves::Migration),
            Box::new(m20261203_000010_probes_and_holds::Migration),
            Box::new(m20261204_000011_counted_sends::Migration),
            Box::new(m20261204_000012_admin_sessions::Migration),
            Box::new(m20261205_000013_budget_owed_moves::Migration),
            Box::new(m20261205_000014_media_library::Migration),
            Box::new(m20261205_000015_template_media::Migration),
            Box::new(m20261205_000016_template_buttons::Migration),
        ]
    }
}

/// Opens a connection pool for `url` (`sqlite://<path>?mode=rwc`, `sqlite::memory:` or
/// `postgres://...`).
///
/// SQLite: creates the file and its parent directory when missing, and sets on every pooled
/// connection `foreign_keys=ON`, `journal_mode=WAL`, `synchronous=NORMAL` and a busy timeout of
/// [`SQLITE_BUSY_TIMEOUT`]. The pool holds ONE connection (sea-orm's default for SQLite): SQLite
/// has a single writer anyway, and this keeps connection-level pragmas (such as the
/// `foreign_keys=OFF` of `Migrator::fresh`) and transactions consistent. Never await another
/// query on the pool while holding a transaction from it: it would wait for itself.
///
/// PostgreSQL: one probe connection first (an unreachable server fails at once, naming the
/// cause), then a pool of at most [`POSTGRES_MAX_CONNECTIONS`].
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_file(url)
            && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                DbErr::Custom(format!(
                    "cannot create directory {} for the SQLite database: {e}",
                    dir.display()
                ))
            })?;
        }
        options
            .max_connections(1)
            .map_sqlx_sqlite_opts(sqlite_options);
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        probe_postgres(url).await?;
        options.max_connections(POSTGRES_MAX_CONNECTIONS);
    } else {
        return Err(DbErr::Custom(format!(
            "unsupported database URL scheme in {}: expected sqlite:// or postgres://",
            redact_url(url)
        )));
    }
    Database::connect(options).await
}

/// Opens and closes one connection, so that an unreachable server fails at once with its real
/// cause ("Connection refused") instead of a pool timing out after retrying for
/// [`CONNECT_TIMEOUT`].
async fn probe_postgres(url: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::sqlx::{self, ConnectOptions as _, Connection as _};

    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(DbErr::Conn(RuntimeErr::SqlxError(e.into()))),
        Err(_) => Err(DbErr::Conn(RuntimeErr::Internal(format!(
            "no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )))),
    }
}

fn sqlite_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sea_orm_migration::sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
}

/// The file path of a SQLite URL, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = params.split('&').any(|param| param == "mode=memory");
    if path.is_empty() || path == ":memory:" || in_memory {
        return None;
    }
    Some(PathBuf::from(path))
}

/// `url` with any password replaced by `***`, safe to print or log.
///
/// `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`; URLs without a
/// password come back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://bob:s3cr@t@db.example:5432/app?sslmode=require"),
            "postgres://bob:***@db.example:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact_url("sqlite://data/broadcast.db?mode=rwc"),
            "sqlite://data/broadcast.db?mode=rwc"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn finds_the_sqlite_file() {
        assert_eq!(
            sqlite_file("sqlite://data/broadcast.db?mode=rwc"),
            Some(PathBuf::from("data/broadcast.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x/b.db"),
            Some(PathBuf::from("/tmp/x/b.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://file.db?mode=memory"), None);
    }
}
