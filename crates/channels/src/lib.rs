//! Delivery channels: adapters of the domain's `Channel` port and the unsubscribe-link signer.
//!
//! - [`TelegramOutbox`] and [`EmailOutbox`] write messages to files (one JSON line per Telegram
//!   message, one `.eml` per e-mail); they are the default when nothing is configured.
//! - [`TelegramChannel`] sends through the Telegram Bot API (teloxide), paced by its own rate
//!   limiter (global, per chat, and a channel-wide pause after a 429).
//! - [`EmailChannel`] sends through SMTP (lettre, pooled connections).
//! - [`SignedUnsubscribeLinks`] makes and checks the per-user one-click unsubscribe URLs.
//!
//! Every failure is classified into a [`broadcast_domain::FailureKind`]; messages never contain
//! the bot token or the SMTP password.

mod email;
mod error;
mod mime;
mod outbox;
mod pacing;
mod redact;
mod settings;
mod smtp_pool;
mod telegram;
mod telegram_files;
mod unsubscribe;

pub use email::{EmailChannel, SmtpConfig, SmtpTls};
pub use error::{Error, Result};
pub use mime::{EmailSender, ListUnsubscribe, ListUnsubscribePost};
pub use outbox::{EmailOutbox, TelegramOutbox, TelegramOutboxLine};
pub use settings::{ChannelSettings, DEFAULT_FROM_EMAIL};
pub use telegram::{DEFAULT_TELEGRAM_API_URL, TelegramChannel, TelegramConfig};
pub use unsubscribe::SignedUnsubscribeLinks;
