//! Error types shared across the ports, grouped by what the caller should do about them.

use std::time::Duration;

use crate::types::{ErrorKind, TemplatePart};

/// Result of a port operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a store or audience port can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{entity} {key} not found")]
    NotFound {
        /// What kind of thing, e.g. `"broadcast"`.
        entity: &'static str,
        /// How it was asked for, e.g. the id.
        key: String,
    },
    /// The caller's input is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the current state (a refused transition, a duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// A template failed to compile or render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A transient failure of the backing service; retrying later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, key: impl ToString) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }

    /// True when the caller's input (an id, a filter, a template) is what is wrong.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::Invalid(_) | Self::Conflict(_) | Self::Template(_)
        )
    }
}

impl From<crate::filter::FilterError> for Error {
    fn from(e: crate::filter::FilterError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// A template problem, naming the part of the template it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {kind}")]
pub struct TemplateError {
    /// Which part of the template (Telegram text, e-mail subject, ...).
    pub part: TemplatePart,
    /// What is wrong.
    pub kind: TemplateErrorKind,
}

/// What is wrong with a template part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateErrorKind {
    /// The template does not parse.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's explanation.
        message: String,
    },
    /// The template uses a variable that the catalogue does not define.
    #[error("unknown variable `{name}`{}; known variables: {}", location(*line, *column), known.join(", "))]
    UnknownVariable {
        /// The unknown name.
        name: String,
        /// 1-based line of the first use, when known.
        line: Option<usize>,
        /// 1-based column of the first use, when known.
        column: Option<usize>,
        /// Every variable the catalogue defines.
        known: Vec<String>,
    },
    /// The rendered text is longer than the channel accepts.
    #[error("rendered text is {length} characters long; the limit is {limit}")]
    TooLong {
        /// Length as Telegram counts it (UTF-16 code units after entity parsing).
        length: usize,
        /// The channel's limit.
        limit: usize,
    },
    /// The rendered text is the caption of a medium and longer than Telegram takes there.
    #[error(
        "rendered caption is {length} characters long; the limit for the text of a message with \
         a medium is {limit}"
    )]
    CaptionTooLong {
        /// Length as Telegram counts it.
        length: usize,
        /// Telegram's caption limit.
        limit: usize,
    },
    /// A required part is missing for the channel it is sent on.
    #[error("missing: {0}")]
    Missing(String),
    /// Rendering failed for another reason (a filter error, a bad attribute access).
    #[error("render error: {0}")]
    Render(String),
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// How a delivery failed: the orchestrator decides retries from this, never from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth retrying later (network error, 5xx, 4xx SMTP reply).
    Transient,
    /// Will fail again (bad request, 5xx SMTP reply other than the recipient).
    Permanent,
    /// The user blocked the bot or was deactivated.
    Blocked,
    /// The address does not exist (chat not found, 550 at RCPT).
    InvalidAddress,
    /// The provider asked us to slow down; retry after the given time, no attempt used.
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Duration,
    },
    /// The channel itself is broken for every recipient (SMTP 530/535/538, a refused TLS
    /// handshake, Telegram 401/404 for the bot token): the broadcasts on it are paused and
    /// the recipients stay pending, with no attempt counted.
    ChannelFault,
}

impl FailureKind {
    /// The stored error kind.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Transient => ErrorKind::Transient,
            Self::Permanent => ErrorKind::Permanent,
            Self::Blocked => ErrorKind::Blocked,
            Self::InvalidAddress => ErrorKind::InvalidAddress,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::ChannelFault => ErrorKind::ChannelFault,
        }
    }
}

/// A failed delivery: the classification plus a human-readable message (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.error_kind())]
pub struct DeliveryError {
    /// How the delivery failed.
    pub kind: FailureKind,
    /// What the provider said, with secrets removed.
    pub message: String,
    /// The request was written but no answer came (the connection dropped, the answer timed
    /// out or was unreadable): the provider may have accepted the message. A retry of such a
    /// send may deliver it twice, so the ledger counts the row as a possible duplicate.
    pub outcome_unknown: bool,
}

impl DeliveryError {
    /// Builds an error of the given kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            outcome_unknown: false,
        }
    }

    /// The same error, marked as one after which the message may have been delivered.
    #[must_use]
    pub fn outcome_unknown(mut self) -> Self {
        self.outcome_unknown = true;
        self
    }

    /// A channel fault (see [`FailureKind::ChannelFault`]).
    pub fn channel_fault(message: impl Into<String>) -> Self {
        Self::new(FailureKind::ChannelFault, message)
    }

    /// A transient error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Transient, message)
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Permanent, message)
    }
}
