//! Integration tests of `broadcast-filter` on every test database (SQLite, and PostgreSQL when
//! reachable; `REQUIRE_POSTGRES=1` makes its absence a failure), over the demo fixtures loaded
//! through the store's CSV import.

mod filters;
mod harness;
mod large;
mod materialise;
