//! sea-orm entities mirroring the tables created by `broadcast-migration`, one module per table.
//!
//! Enum-like columns are `String`s holding the domain enum's `as_str()` spelling; JSON columns are
//! `serde_json::Value`; timestamps are `DateTime<Utc>`. Conversions to domain types live in
//! `crate::convert`.

pub mod admin_users;
pub mod audit_log;
pub mod broadcast_counts;
pub mod broadcast_recipients;
pub mod broadcasts;
pub mod competitions;
pub mod message_templates;
pub mod registrations;
pub mod send_budgets;
pub mod users;

/// The entities under short names, for `use broadcast_store::entity::prelude::*`.
pub mod prelude {
    pub use super::admin_users::Entity as AdminUsers;
    pub use super::audit_log::Entity as AuditLog;
    pub use super::broadcast_counts::Entity as BroadcastCounts;
    pub use super::broadcast_recipients::Entity as BroadcastRecipients;
    pub use super::broadcasts::Entity as Broadcasts;
    pub use super::competitions::Entity as Competitions;
    pub use super::message_templates::Entity as MessageTemplates;
    pub use super::registrations::Entity as Registrations;
    pub use super::send_budgets::Entity as SendBudgets;
    pub use super::users::Entity as Users;
}
