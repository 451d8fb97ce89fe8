//! A fresh, isolated database per test: a SQLite temp file, or a PostgreSQL database of its own.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached, the PostgreSQL helpers
//! print a loud skip message and return `None`, unless `REQUIRE_POSTGRES=1`, which makes them
//! panic instead.

use broadcast_migration::{Migrator, connect, redact_url};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use std::fmt;
use std::io::Write as _;

/// The PostgreSQL server used when `TEST_DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database engine a [`TestDb`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database of its own on the PostgreSQL server of `TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`, handy in assertion messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database that exists for one test and disappears when dropped.
pub struct TestDb {
    // Field order matters: the pool is closed before the guard removes the database.
    conn: DatabaseConnection,
    url: String,
    backend: Backend,
    _guard: Guard,
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// A migrated SQLite database in a fresh temporary file.
    pub async fn sqlite() -> TestDb {
        let db = Self::sqlite_unmigrated().await;
        db.migrate().await;
        db
    }

    /// An empty SQLite database (no tables) in a fresh temporary file.
    pub async fn sqlite_unmigrated() -> TestDb {
        let dir = tempfile::Builder::new()
            .prefix("broadcast-test-")
            .tempdir()
            .expect("cannot create a temporary directory for the SQLite test database");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        let conn = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open SQLite test database {url}: {e}"));
        TestDb {
            conn,
            url,
            backend: Backend::Sqlite,
            _guard: Guard::Sqlite(dir),
        }
    }

    /// A migrated PostgreSQL database `broadcast_test_<uuid>` of its own, or `None` (after a loud
    /// message on stderr) when the server is unreachable and `REQUIRE_POSTGRES` is not `1`.
    pub async fn postgres() -> Option<TestDb> {
        let db = Self::postgres_unmigrated().await?;
        db.migrate().await;
        Some(db)
    }

    /// Like [`TestDb::postgres`], without running the migrations.
    pub async fn postgres_unmigrated() -> Option<TestDb> {
        let server_url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_owned());
        let admin = match admin_connection(&server_url).await {
            Ok(admin) => admin,
            Err(e) => {
                let message = format!(
                    "PostgreSQL at {} is unreachable: {e}",
                    redact_url(&server_url)
                );
                if postgres_required() {
                    panic!("{message} (REQUIRE_POSTGRES=1)");
                }
                // Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip
                // must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "!!! SKIPPING PostgreSQL test database: {message}. Set TEST_DATABASE_URL, or \
                     REQUIRE_POSTGRES=1 to make this a failure."
                );
                return None;
            }
        };

        let name = format!("broadcast_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create PostgreSQL test database {name}: {e}"));
        // The guard exists from here on, so a panic below still drops the database.
        let guard = Guard::Postgres(PgDropGuard {
            server_url: server_url.clone(),
            name: name.clone(),
        });
        let _ = admin.close().await;

        let url = with_database_name(&server_url, &name);
        let conn = connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL test database {}: {e}",
                redact_url(&url)
            )
        });
        Some(TestDb {
            conn,
            url,
            backend: Backend::Postgres,
            _guard: guard,
        })
    }

    /// A migrated SQLite database, then a migrated PostgreSQL one when PostgreSQL is available.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![Self::sqlite().await];
        dbs.extend(Self::postgres().await);
        dbs
    }

    /// The connection pool of this database.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The URL of this database (for a second pool, a binary under test, ...).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The engine this database runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) {
        Migrator::up(&self.conn, None)
            .await
            .unwrap_or_else(|e| panic!("migrations failed on {}: {e}", self.backend));
    }
}

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v.trim() == "1")
}

/// A connection to the server's maintenance database; fails at once when it is unreachable.
async fn admin_connection(server_url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    connect(server_url).await
}

/// `url` with its database name (the path) replaced by `name`, keeping the query string.
fn with_database_name(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{scheme}://{authority}/{name}{query}")
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgDropGuard),
}

/// Drops the PostgreSQL test database, best effort, when the [`TestDb`] goes away.
struct PgDropGuard {
    server_url: String,
    name: String,
}

impl Drop for PgDropGuard {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own, and wait for it so the database is gone when the test ends.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                match admin_connection(&server_url).await {
                    Ok(admin) => {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        if let Err(e) = admin.execute_unprepared(&sql).await {
                            eprintln!("warning: cannot drop PostgreSQL test database {name}: {e}");
                        }
                        let _ = admin.close().await;
                    }
                    Err(e) => {
                        eprintln!("warning: cannot drop PostgreSQL test database {name}: {e}");
                    }
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Runs one SQL statement on the database at `url`, as an operator editing rows by hand would
/// (for tests of what the system does after such a change); returns the rows affected.
pub async fn execute_sql(url: &str, sql: &str) -> u64 {
    let conn = connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact_url(url)));
    let done = conn
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
    let _ = conn.close().await;
    done.rows_affected()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database_name("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database_name("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgresql://h:5432", "x"),
            "postgresql://h:5432/x"
        );
    }
}
