//! sea-orm entities mirroring the tables created by `broadcast-migration`, one module per table.
//!
//! Enum-like columns are `String`s holding the domain enum's `as_str()` spelling; JSON columns are
//! `serde_json::Value`; timestamps are `DateTime<Utc>`. Conversions to domain types live in
//! `crate::convert`.

pub mod admin_sessions;
pub mod admin_users;
pub mod audit_log;
pub mod broadcast_counts;
pub mod broadcast_recipients;
pub mod broadcasts;
pub mod competitions;
pub mod media;
pub mod media_blobs;
pub mod message_templates;
pub mod registrations;
pub mod send_budgets;
pub mod telegram_files;
pub mod users;
