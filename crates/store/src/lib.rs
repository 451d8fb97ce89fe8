//! Persistence of the broadcast system with sea-orm, for SQLite and PostgreSQL from the same code.
//!
//! [`Store`] implements the store ports of `broadcast-domain` (`TemplateStore`,
//! `BroadcastStore`, `DeliveryStore`, `AudienceStore`, `AdminStore`, `AuditLog`, `SendBudget`)
//! and the `AudienceSource`, running the statements `broadcast-filter` compiles. It is the one
//! owner of the ledger: its entities (mirroring the tables of `broadcast-migration`), counters
//! and converters are private, so every write of `broadcast_recipients` and `broadcast_counts`
//! happens here, under the SQLite writer lock and in one transaction with its counters.

mod admin;
mod audience;
mod broadcasts;
mod budget;
mod claim;
mod convert;
mod counts;
mod delivery;
mod media;
// Crate-private: the ledger's rows and counters are written here alone. The store's own tests
// see the entities through the `test-entities` feature.
#[cfg(feature = "test-entities")]
pub mod entity;
// Its items are `pub` for that feature; without it they are reachable from this crate only.
#[cfg(not(feature = "test-entities"))]
#[allow(unreachable_pub)]
mod entity;
mod error;
mod retry;
mod source;
mod store;
mod templates;

pub use delivery::MAX_ERROR_CHARS;
pub use error::db_err;
pub use store::Store;
