//! The application layer under both front-ends (`broadcast-cli` and `admin-web`): what they
//! would otherwise each rebuild, with its own checks. It knows every adapter and neither clap
//! nor axum; the binaries parse arguments or routes, call this and the orchestrator, and print
//! or render.
//!
//! - [`settings`]: the worker settings from one lookup (the environment, `.env`, or a map in
//!   tests) with one set of checks, so that a bad value is the same clear error naming the
//!   setting in every binary.
//! - [`compose`]: the store opened and migrated, the ports over it, the orchestrator with the
//!   channels' rates shared through the database, and the shutdown signal.
//! - [`documents`]: documents the CLI's `--json` and the JSON API both print.
//! - [`csv_import`]: the audience CSV files read into import rows, every bad cell reported with
//!   its file, line and column.
//! - [`password`]: argon2id hashes of administrator passwords.
//! - [`export`]: the recipients export as CSV, with the same columns and formula-safe cells in
//!   the CLI and the panel.

pub mod compose;
pub mod csv_import;
pub mod documents;
pub mod export;
pub mod names;
pub mod password;
pub mod settings;

pub use settings::{SettingsError, worker_id, worker_settings};
