//! The application layer under both front-ends (`broadcast-cli` and `admin-web`): what they
//! would otherwise each rebuild, with its own checks.
//!
//! - [`settings`]: the worker settings from one lookup (the environment, `.env`, or a map in
//!   tests) with one set of checks, so that a bad value is the same clear error naming the
//!   setting in every binary.
//! - [`export`]: the recipients export as CSV, with the same columns and formula-safe cells in
//!   the CLI and the panel.

pub mod export;
pub mod settings;

pub use settings::{SettingsError, worker_id, worker_settings};
