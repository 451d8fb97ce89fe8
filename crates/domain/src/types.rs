//! Validated newtypes for input that enters the system, and the closed sets (enums) of the model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Database id of a user.
pub type UserId = i64;
/// Database id of a competition.
pub type CompetitionId = i64;
/// Database id of a registration.
pub type RegistrationId = i64;
/// Database id of a message template.
pub type TemplateId = i64;
/// Database id of a broadcast.
pub type BroadcastId = i64;
/// Database id of a broadcast recipient (one delivery on one channel).
pub type RecipientId = i64;

/// Why a value could not be parsed into a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// An e-mail address that passed a syntactic check (one `@`, a non-empty local part, a domain
/// with a dot, no whitespace or control characters, at most 254 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalises (trims, lower-cases the domain) an address.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        let bad = |why: &str| {
            Err(ParseError(format!(
                "`{s}` is not a valid e-mail address: {why}"
            )))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() > 254 {
            return bad("it is longer than 254 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("it contains whitespace");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return bad("it has no `@`");
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') && !local.starts_with('"') {
            return bad("the part before `@` is empty, too long or has another `@`");
        }
        if !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || domain
                .chars()
                .any(|c| !(c.is_alphanumeric() || c == '-' || c == '.'))
        {
            return bad("the domain is not a valid host name");
        }
        if s.contains(['<', '>', ',', ';']) {
            return bad("it contains `<`, `>`, `,` or `;`");
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmailAddress {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A Telegram chat id: positive for private chats, negative for groups and channels, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TelegramChatId(i64);

impl TelegramChatId {
    /// Validates a chat id.
    pub fn new(id: i64) -> Result<Self, ParseError> {
        if id == 0 {
            return Err(ParseError("0 is not a valid Telegram chat id".into()));
        }
        Ok(Self(id))
    }

    /// Parses a chat id from text.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let id = raw.trim().parse::<i64>().map_err(|_| {
            ParseError(format!(
                "`{raw}` is not a valid Telegram chat id (an integer)"
            ))
        })?;
        Self::new(id)
    }

    /// The numeric id.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Group chats (negative ids) have a stricter per-chat rate limit.
    pub fn is_group(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for TelegramChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TelegramChatId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for TelegramChatId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A template name: 1 to 100 characters of letters, digits, `-`, `_`, `.` and spaces, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TemplateName(String);

impl TemplateName {
    /// Validates a template name.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ParseError("a template name must not be empty".into()));
        }
        if s.chars().count() > 100 {
            return Err(ParseError(format!(
                "template name `{s}` is longer than 100 characters"
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')))
        {
            return Err(ParseError(format!(
                "template name `{s}` contains `{c}`; use letters, digits, `-`, `_`, `.` and spaces"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl AsRef<str> for TemplateName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TemplateName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Declares a closed set of values stored and exchanged as lower-case strings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(raw: &str) -> Result<Self, ParseError> {
                let s = raw.trim().to_ascii_lowercase();
                match s.as_str() {
                    $($s => Ok($name::$variant),)+
                    _ => Err(ParseError(format!(
                        "unknown {} `{}`; expected one of: {}",
                        $what,
                        raw,
                        [$($s),+].join(", ")
                    ))),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum! {
    /// A user's role in a competition.
    Role, "role" {
        /// Competes.
        Participant => "participant",
        /// Judges.
        Judge => "judge",
        /// Mentors participants.
        Mentor => "mentor",
        /// Organises.
        Organizer => "organizer",
        /// Helps on site.
        Volunteer => "volunteer",
    }
}

string_enum! {
    /// The state of a registration.
    RegistrationStatus, "registration status" {
        /// Waiting for confirmation.
        Pending => "pending",
        /// Confirmed.
        Confirmed => "confirmed",
        /// On the waiting list.
        Waitlisted => "waitlisted",
        /// Cancelled by the user or the organisers.
        Cancelled => "cancelled",
    }
}

string_enum! {
    /// How Telegram should parse a message's text.
    ParseMode, "parse mode" {
        /// Telegram's HTML subset; user data is HTML-escaped.
        Html => "html",
        /// Telegram's MarkdownV2; user data has reserved characters escaped.
        MarkdownV2 => "markdownv2",
        /// No formatting; nothing is escaped.
        Plain => "plain",
    }
}

impl Default for ParseMode {
    /// HTML, the richest of the modes and the one templates start with.
    fn default() -> Self {
        ParseMode::Html
    }
}

string_enum! {
    /// How a channel policy uses its channels.
    PolicyMode, "policy mode" {
        /// Every channel that reaches the user.
        All => "all",
        /// The first channel that reaches the user; the next one when it fails for good.
        FirstReachable => "first_reachable",
    }
}

string_enum! {
    /// Which part of a template a channel renders, and so the shape of its messages.
    MessageFormat, "message format" {
        /// A chat message: the template's Telegram text, with its parse mode and link preview.
        Chat => "chat",
        /// An e-mail: the template's subject and its HTML and/or plain-text body.
        Email => "email",
    }
}

string_enum! {
    /// Lifecycle of a broadcast: draft -> scheduled -> running <-> paused -> completed | cancelled | failed.
    BroadcastStatus, "broadcast status" {
        /// Being prepared; can be edited.
        Draft => "draft",
        /// Waits for its scheduled time.
        Scheduled => "scheduled",
        /// Workers deliver it.
        Running => "running",
        /// Workers leave it alone until resumed.
        Paused => "paused",
        /// Every recipient row reached a final status.
        Completed => "completed",
        /// Stopped by an operator; pending rows were cancelled.
        Cancelled => "cancelled",
        /// Could not run (e.g. its template no longer renders).
        Failed => "failed",
    }
}

impl BroadcastStatus {
    /// True for the states a broadcast never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

string_enum! {
    /// State of one delivery (one recipient row).
    DeliveryStatus, "delivery status" {
        /// Waiting to be sent (first time or after a retryable failure).
        Pending => "pending",
        /// Claimed by a worker under a lease.
        Sending => "sending",
        /// Accepted by the provider.
        Sent => "sent",
        /// Failed for good.
        Failed => "failed",
        /// Never attempted; the skip reason says why.
        Skipped => "skipped",
        /// Cancelled with its broadcast before it was sent.
        Cancelled => "cancelled",
    }
}

impl DeliveryStatus {
    /// True for rows that still need work.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Sending)
    }
}

string_enum! {
    /// Classification of a delivery error as stored on the recipient row.
    ErrorKind, "error kind" {
        /// Retryable.
        Transient => "transient",
        /// Not retryable.
        Permanent => "permanent",
        /// The user blocked the bot.
        Blocked => "blocked",
        /// The address does not exist.
        InvalidAddress => "invalid_address",
        /// The provider throttled us.
        RateLimited => "rate_limited",
        /// The template failed to render for this recipient.
        Render => "render",
        /// The channel itself is broken (wrong credentials, refused TLS, invalid bot token):
        /// not the recipient's fault. Rows are never left with this kind; the broadcast is
        /// paused instead and the rows stay pending.
        ChannelFault => "channel_fault",
    }
}

string_enum! {
    /// Why a recipient row was skipped at launch instead of queued.
    SkipReason, "skip reason" {
        /// The user has no Telegram chat id.
        NoTelegram => "no_telegram",
        /// The user has no e-mail address.
        NoEmail => "no_email",
        /// The user blocked the bot.
        TelegramBlocked => "telegram_blocked",
        /// The user unsubscribed from e-mail.
        EmailUnsubscribed => "email_unsubscribed",
        /// Mail to the address bounced before.
        EmailBounced => "email_bounced",
        /// The user has no address on a channel other than Telegram and e-mail.
        NoAddress => "no_address",
    }
}

string_enum! {
    /// A part of a message template.
    TemplatePart, "template part" {
        /// The Telegram message text.
        TelegramText => "telegram_text",
        /// The e-mail subject line.
        EmailSubject => "email_subject",
        /// The HTML body of the e-mail.
        EmailHtml => "email_html",
        /// The plain-text body of the e-mail.
        EmailText => "email_text",
        /// The URL buttons under the Telegram message (labels and URLs).
        TelegramButtons => "telegram_buttons",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_checked_and_normalised() {
        assert_eq!(
            EmailAddress::parse(" Ann@Example.ORG ").unwrap().as_ref(),
            "Ann@example.org"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.org",
            "ann@localhost",
            "a b@x.org",
            "ann@x..org",
            "<a@x.org>",
        ] {
            let err = EmailAddress::parse(bad).unwrap_err();
            assert!(err.0.contains("not a valid e-mail address"), "{bad}: {err}");
        }
    }

    #[test]
    fn chat_ids_reject_zero_and_text() {
        assert!(TelegramChatId::new(0).is_err());
        assert!(TelegramChatId::parse("abc").is_err());
        assert!(TelegramChatId::parse("-100123").unwrap().is_group());
    }

    #[test]
    fn template_names_are_restricted() {
        assert!(TemplateName::parse("Reminder v2").is_ok());
        assert!(TemplateName::parse("   ").is_err());
        assert!(TemplateName::parse("a/b").unwrap_err().0.contains('/'));
    }

    #[test]
    fn enums_round_trip_and_name_the_expected_values() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        let err = "jduge".parse::<Role>().unwrap_err();
        assert_eq!(
            err.0,
            "unknown role `jduge`; expected one of: participant, judge, mentor, organizer, volunteer"
        );
    }
}
