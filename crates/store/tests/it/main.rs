//! The store's contract suite: every test runs against each database of `TestDb::all()` (SQLite
//! always, PostgreSQL when reachable; `REQUIRE_POSTGRES=1` makes its absence a failure).

mod admin;
mod broadcasts;
mod budget;
mod claims;
mod connect;
mod counters;
mod fallback;
mod import;
mod requeue;
mod results;
mod stats;
mod support;
mod templates;
