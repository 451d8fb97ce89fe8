//! Integration tests of the migrations, on SQLite and (when reachable) PostgreSQL.

mod constraints;
mod counters;
mod folded_keys;
mod schema;

use broadcast_testkit::TestDb;

/// A fresh unmigrated SQLite database, then a PostgreSQL one when available.
async fn unmigrated() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite_unmigrated().await];
    dbs.extend(TestDb::postgres_unmigrated().await);
    dbs
}
