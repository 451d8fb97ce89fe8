//! The store's contract suite: every test runs against each database of `TestDb::all()` (SQLite
//! always, PostgreSQL when reachable; `REQUIRE_POSTGRES=1` makes its absence a failure).

mod admin;
mod broadcasts;
mod claims;
mod connect;
mod import;
mod results;
mod stats;
mod support;
mod templates;
