//! Audience filters compiled to set-based SQL: the [`AudienceSource`] port over the store's
//! tables, for SQLite and PostgreSQL from the same code.
//!
//! [`SqlAudience`] counts an audience in one aggregate query without loading it, materialises a
//! broadcast's recipient rows with one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per channel,
//! and samples recipients for previews. All SQL is composed in [`compile`].
//!
//! ```no_run
//! # async fn demo(conn: sea_orm::DatabaseConnection) -> broadcast_domain::Result<()> {
//! use broadcast_domain::{AudienceFilter, AudienceSource};
//! use broadcast_filter::SqlAudience;
//!
//! let audience = SqlAudience::new(conn);
//! let filter = AudienceFilter::from_json(r#"{"roles":["judge"],"countries":["germany"]}"#)?;
//! let count = audience.count(&filter).await?;
//! println!("{} judges in Germany, {} reachable on Telegram", count.users, count.telegram);
//! # Ok(()) }
//! ```
//!
//! [`AudienceSource`]: broadcast_domain::AudienceSource

pub mod compile;
mod source;

pub use source::SqlAudience;
