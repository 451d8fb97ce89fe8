//! Persistence of the broadcast system with sea-orm, for SQLite and PostgreSQL from the same code.
//!
//! [`Store`] implements the store ports of `broadcast-domain` (`TemplateStore`,
//! `BroadcastStore`, `DeliveryStore`, `AudienceStore`, `AdminStore`, `AuditLog`, `SendBudget`).
//! [`entity`] mirrors the tables that `broadcast-migration` creates; [`csv_import`] reads the
//! audience CSV files that `AudienceStore::import_*` stores.
//!
//! This is the only crate (besides `broadcast-filter`, which compiles audience filters to queries
//! over these entities) that knows sea-orm.

mod admin;
mod audience;
mod broadcasts;
mod budget;
mod claim;
pub mod convert;
pub mod counts;
pub mod csv_import;
mod delivery;
pub mod entity;
mod error;
pub mod password;
mod retry;
mod store;
mod templates;

pub use delivery::MAX_ERROR_CHARS;
pub use error::db_err;
pub use store::Store;
