//! Errors of building a channel (bad configuration, an outbox directory that cannot be created).
//! Failures of sending are `broadcast_domain::DeliveryError`s, not these.

use std::path::PathBuf;

/// Result of building a channel.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is wrong; the message names the setting and what to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or directory could not be created or opened.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"cannot create outbox directory"`.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }
}
