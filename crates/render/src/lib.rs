//! Message templates for the broadcast system: the [`broadcast_domain::Renderer`] port
//! implemented with tera 2.
//!
//! A template has up to four parts (Telegram text with its parse mode, e-mail subject, e-mail
//! HTML, e-mail plain text). [`TeraRenderer::compile`](broadcast_domain::Renderer::compile)
//! parses each present part once, per broadcast; the resulting [`TeraTemplate`] renders it per
//! recipient from a [`broadcast_domain::RecipientContext`], putting into the context only the
//! catalogue variables the part uses.
//!
//! Escaping follows the target and applies to the values `{{ ... }}` prints (user data), never to
//! the template's own markup: tera's autoescape is switched on for the Telegram text in `html`
//! and `markdownv2` mode and for the e-mail HTML, with an escape function per target; the
//! e-mail subject, the e-mail plain text and Telegram `plain` text are not escaped. Filters and
//! comparisons therefore see the raw values (`{% if city == "St. Gallen" %}`,
//! `{{ first_name | truncate(length=10) }}`) and escaping happens once, on output.
//!
//! The operator's reference (parts, variables, escaping, validation) is `docs/templates.md`.

mod catalogue;
mod escape;
mod links;
mod renderer;
mod sample;
mod source;
mod telegram;

pub use catalogue::{Variable, catalogue};
pub use renderer::{TeraRenderer, TeraTemplate};
pub use sample::{SAMPLE_UNSUBSCRIBE_URL, sample_env, sample_recipient};
pub use telegram::{TELEGRAM_CAPTION_LIMIT, TELEGRAM_TEXT_LIMIT, telegram_length};
