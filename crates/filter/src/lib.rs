//! Audience filters compiled to set-based SQL, for SQLite and PostgreSQL from the same code.
//!
//! A pure compiler: it turns an [`AudienceFilter`](broadcast_domain::AudienceFilter) into
//! sea-query statements and runs none of them. The store (`broadcast-store`) executes them: it
//! counts an audience in one aggregate query, materialises a broadcast's recipient rows with one
//! `INSERT ... SELECT` per channel under its own writer lock and counters, and samples
//! recipients for previews. The statements follow [`AudienceFilter::matches`], the domain's
//! definition of the audience, which the store's tests use as their oracle.
//!
//! ```
//! use broadcast_domain::AudienceFilter;
//! use sea_orm::sea_query::PostgresQueryBuilder;
//!
//! let filter = AudienceFilter::from_json(r#"{"roles":["judge"],"countries":["Germany"]}"#)?;
//! let sql = broadcast_filter::audience_query(&filter).to_string(PostgresQueryBuilder);
//! assert!(sql.contains(r#""users"."country_key" IN ('germany')"#));
//! # Ok::<(), broadcast_domain::FilterError>(())
//! ```
//!
//! [`AudienceFilter::matches`]: broadcast_domain::AudienceFilter::matches

mod compile;
pub mod schema;

pub use compile::*;
