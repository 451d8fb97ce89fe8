//! The records of the system: audience, templates, broadcasts and deliveries.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::{ChannelKind, ChannelPolicy};
use crate::filter::AudienceFilter;
use crate::media::MediaRef;
use crate::types::*;

/// Free-form JSON attributes of a user (shirt size, team, ...), available to templates.
pub type Attributes = serde_json::Map<String, Value>;

/// A member of the audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Database id.
    pub id: UserId,
    /// The platform's own identifier, used by imports to update instead of duplicate.
    pub external_id: Option<String>,
    /// Telegram chat id, when the user talked to the bot.
    pub telegram_chat_id: Option<TelegramChatId>,
    /// E-mail address.
    pub email: Option<EmailAddress>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Telegram user name, without `@`.
    pub username: Option<String>,
    /// Preferred language (e.g. `de`).
    pub language: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Free-form attributes.
    pub attributes: Attributes,
    /// When the user blocked the bot.
    pub telegram_blocked_at: Option<DateTime<Utc>>,
    /// When the user unsubscribed from e-mail.
    pub email_unsubscribed_at: Option<DateTime<Utc>>,
    /// When mail to the user bounced permanently.
    pub email_bounced_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// First and last name joined by a space, without stray spaces.
    pub fn full_name(&self) -> String {
        match (self.first_name.trim(), self.last_name.trim()) {
            ("", l) => l.to_owned(),
            (f, "") => f.to_owned(),
            (f, l) => format!("{f} {l}"),
        }
    }
}

/// A user to insert or update by import.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// Line of the source file, for error messages.
    pub line: u64,
    /// The platform's identifier (required by import so that registrations can refer to it).
    pub external_id: String,
    /// Telegram chat id.
    pub telegram_chat_id: Option<TelegramChatId>,
    /// E-mail address.
    pub email: Option<EmailAddress>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Telegram user name.
    pub username: Option<String>,
    /// Preferred language.
    pub language: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Free-form attributes.
    pub attributes: Attributes,
    /// Imported "blocked the bot" flag (keeps an existing timestamp when already set).
    pub telegram_blocked: bool,
    /// Imported "unsubscribed" flag (keeps an existing timestamp when already set).
    pub email_unsubscribed: bool,
}

/// A competition (or any event users register for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Competition {
    /// Database id.
    pub id: CompetitionId,
    /// Short unique key, used by imports.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Day it starts.
    pub starts_on: Option<NaiveDate>,
    /// Where it happens.
    pub city: Option<String>,
    /// Country where it happens.
    pub country: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A competition to insert or update by import.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCompetition {
    /// Line of the source file.
    pub line: u64,
    /// Unique key.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Day it starts.
    pub starts_on: Option<NaiveDate>,
    /// City.
    pub city: Option<String>,
    /// Country.
    pub country: Option<String>,
}

/// A user's registration to a competition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Database id.
    pub id: RegistrationId,
    /// Who.
    pub user_id: UserId,
    /// To what.
    pub competition_id: CompetitionId,
    /// As what.
    pub role: Role,
    /// In which state.
    pub status: RegistrationStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A registration to insert or update by import, referring to users and competitions by key.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRegistration {
    /// Line of the source file.
    pub line: u64,
    /// The user's external id.
    pub user_external_id: String,
    /// The competition's slug.
    pub competition_slug: String,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: RegistrationStatus,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Rows that created a record.
    pub inserted: u64,
    /// Rows that updated an existing record.
    pub updated: u64,
}

/// The content of a message template: the parts that are rendered per recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateContent {
    /// Telegram message text.
    pub telegram_text: Option<String>,
    /// How Telegram parses the text.
    pub parse_mode: ParseMode,
    /// Show a preview of the first link in the Telegram message.
    #[serde(default)]
    pub link_preview: bool,
    /// What the Telegram message shows above its text (at most
    /// [`MAX_TELEGRAM_MEDIA`](crate::MAX_TELEGRAM_MEDIA)); with a
    /// medium the text is its caption, limited to 1024 characters instead of 4096.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telegram_media: Vec<MediaRef>,
    /// Rows of URL buttons under the Telegram message; labels and URLs are templates, checked
    /// once rendered ([`UrlButton::check`]) and as a whole by [`check_button_rows`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telegram_buttons: Vec<Vec<UrlButton>>,
    /// E-mail subject.
    pub email_subject: Option<String>,
    /// E-mail HTML body.
    pub email_html: Option<String>,
    /// E-mail plain-text body.
    pub email_text: Option<String>,
}

impl TemplateContent {
    /// The source of one part, when present and not blank.
    pub fn part(&self, part: TemplatePart) -> Option<&str> {
        let s = match part {
            TemplatePart::TelegramText => &self.telegram_text,
            TemplatePart::EmailSubject => &self.email_subject,
            TemplatePart::EmailHtml => &self.email_html,
            TemplatePart::EmailText => &self.email_text,
            // Not one text: see `telegram_buttons`.
            TemplatePart::TelegramButtons => return None,
        };
        s.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// True when the template has the parts of a message format: a Telegram text for chat
    /// messages; a subject and an HTML or plain-text body for e-mails.
    pub fn supports(&self, format: MessageFormat) -> bool {
        match format {
            MessageFormat::Chat => self.part(TemplatePart::TelegramText).is_some(),
            MessageFormat::Email => {
                self.part(TemplatePart::EmailSubject).is_some()
                    && (self.part(TemplatePart::EmailHtml).is_some()
                        || self.part(TemplatePart::EmailText).is_some())
            }
        }
    }

    /// The part a template lacks for a format, and what the format needs, for error messages.
    pub fn needs(format: MessageFormat) -> (TemplatePart, &'static str) {
        match format {
            MessageFormat::Chat => (TemplatePart::TelegramText, "a Telegram text"),
            MessageFormat::Email => (
                TemplatePart::EmailSubject,
                "an e-mail subject and an HTML or plain-text body",
            ),
        }
    }
}

/// Most buttons in one row of an inline keyboard (Telegram's clients show no more).
pub const MAX_BUTTONS_PER_ROW: usize = 8;
/// Most buttons under one message.
pub const MAX_BUTTONS: usize = 100;
/// Longest button label, in characters (Telegram documents no limit; clients cut far shorter
/// labels, so this is strict on purpose).
pub const MAX_BUTTON_TEXT: usize = 64;

/// A button under a Telegram message that opens a URL: in a template, the label and the URL
/// are templates; in a rendered message, what the recipient sees and opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlButton {
    /// The label.
    pub text: String,
    /// The URL: `http`, `https` or `tg`.
    pub url: String,
}

impl UrlButton {
    /// Checks a rendered button: a label of 1 to [`MAX_BUTTON_TEXT`] characters, and a URL
    /// Telegram opens (`http` or `https` with a host, or `tg:`); the problem otherwise.
    pub fn check(&self) -> std::result::Result<(), String> {
        let text = self.text.trim();
        if text.is_empty() {
            return Err("the label is empty".into());
        }
        let chars = text.chars().count();
        if chars > MAX_BUTTON_TEXT {
            return Err(format!(
                "the label is {chars} characters long; the limit is {MAX_BUTTON_TEXT}"
            ));
        }
        let shown: String = self.url.chars().take(80).collect();
        let url = url::Url::parse(self.url.trim())
            .map_err(|e| format!("the URL `{shown}` is not a URL ({e})"))?;
        match url.scheme() {
            "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
            "tg" => Ok(()),
            "http" | "https" => Err(format!("the URL `{shown}` has no host")),
            scheme => Err(format!(
                "the URL `{shown}` is `{scheme}:`; a button opens only http, https or tg URLs"
            )),
        }
    }
}

/// Checks the shape of a keyboard: no empty row, at most [`MAX_BUTTONS_PER_ROW`] buttons in a
/// row and [`MAX_BUTTONS`] in all.
pub fn check_button_rows(rows: &[Vec<UrlButton>]) -> std::result::Result<(), String> {
    for (i, row) in rows.iter().enumerate() {
        if row.is_empty() {
            return Err(format!("row {} has no button", i + 1));
        }
        if row.len() > MAX_BUTTONS_PER_ROW {
            return Err(format!(
                "row {} has {} buttons; the limit is {MAX_BUTTONS_PER_ROW}",
                i + 1,
                row.len()
            ));
        }
    }
    let all: usize = rows.iter().map(Vec::len).sum();
    if all > MAX_BUTTONS {
        return Err(format!("{all} buttons; the limit is {MAX_BUTTONS}"));
    }
    Ok(())
}

/// A stored, named, versioned message template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageTemplate {
    /// Database id.
    pub id: TemplateId,
    /// Unique name.
    pub name: TemplateName,
    /// What it is for.
    pub description: String,
    /// The parts.
    pub content: TemplateContent,
    /// Incremented on every update.
    pub version: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A template to create, or the new state of one to update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTemplate {
    /// Unique name.
    pub name: TemplateName,
    /// What it is for.
    pub description: String,
    /// The parts.
    pub content: TemplateContent,
}

/// An announcement to an audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Database id.
    pub id: BroadcastId,
    /// Name shown to operators (and available to templates as `broadcast_name`).
    pub name: String,
    /// The template it was created from (gone when the template was deleted).
    pub template_id: Option<TemplateId>,
    /// The template as it was at launch; what workers render.
    pub frozen_template: Option<TemplateContent>,
    /// Which channels.
    pub channel_policy: ChannelPolicy,
    /// Who.
    pub filter: AudienceFilter,
    /// Where in its lifecycle.
    pub status: BroadcastStatus,
    /// Why it is paused or failed, when it is.
    pub status_reason: Option<String>,
    /// When it should start, for scheduled broadcasts.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it was launched.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Operator who created it.
    pub created_by: Option<String>,
    /// Recipient rows materialised at launch (all channels, skipped included).
    pub total_recipients: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Set while the broadcast is paused by its circuit breaker: when a worker sends one probe
    /// message to see whether the channel works again. `None` for every other pause.
    #[serde(default)]
    pub probe: Option<BreakerProbe>,
}

/// The half-open state of a broadcast paused by its circuit breaker: at `at`, one worker
/// takes the probe ([`BroadcastStore::take_probe`](crate::BroadcastStore::take_probe)) and
/// sends one message on `channel`. Success resumes the broadcast by itself; failure waits
/// twice the cool-down (up to a limit) before the next probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerProbe {
    /// The channel whose failures tripped the breaker.
    pub channel: ChannelKind,
    /// The cool-down that led to `at`; the next one after a failed probe is twice as long.
    #[serde(with = "millis")]
    pub cooldown: std::time::Duration,
    /// When the next probe is due (while a worker probes: when its probe lease ends).
    pub at: DateTime<Utc>,
}

/// A duration as whole milliseconds (`cooldown_ms` in the database, `cooldown` in JSON).
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A broadcast to create (as a draft, or scheduled when `scheduled_at` is set).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBroadcast {
    /// Name.
    pub name: String,
    /// Template to use.
    pub template_id: TemplateId,
    /// Channels.
    pub channel_policy: ChannelPolicy,
    /// Audience.
    pub filter: AudienceFilter,
    /// Start time for a scheduled broadcast.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Operator.
    pub created_by: Option<String>,
}

/// One delivery: a (broadcast, user, channel) row of the delivery ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// Database id.
    pub id: RecipientId,
    /// Broadcast.
    pub broadcast_id: BroadcastId,
    /// User.
    pub user_id: UserId,
    /// The registration the audience filter matched, giving competition and role to templates.
    pub registration_id: Option<RegistrationId>,
    /// Channel.
    pub channel: ChannelKind,
    /// Address used (chat id or e-mail), empty when skipped for lack of one.
    pub address: String,
    /// Delivery state.
    pub status: DeliveryStatus,
    /// Why it was skipped.
    pub skip_reason: Option<SkipReason>,
    /// Send attempts so far (rate-limited waits do not count).
    pub attempts: i32,
    /// Earliest time of the next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// Worker holding the lease while sending.
    pub lease_owner: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the lease holder started sending (set just before the send, cleared with the
    /// result): a row taken over with this set may have been delivered.
    pub send_started_at: Option<DateTime<Utc>>,
    /// Classification of the last error.
    pub error_kind: Option<ErrorKind>,
    /// Text of the last error.
    pub last_error: Option<String>,
    /// The provider's id of the delivered message.
    pub provider_message_id: Option<String>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// Sends of this row whose outcome is unknown: a lease taken over after its send had
    /// started, or a send after which the connection dropped. Above 0, the row may have been
    /// delivered more than once (a possible duplicate).
    pub uncertain_sends: i32,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Number of recipient rows with one combination of channel, status, error kind and skip reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// Channel.
    pub channel: ChannelKind,
    /// Delivery state.
    pub status: DeliveryStatus,
    /// Error kind of failed or retried rows.
    pub error_kind: Option<ErrorKind>,
    /// Skip reason of skipped rows.
    pub skip_reason: Option<SkipReason>,
    /// How many rows.
    pub count: u64,
}

/// Delivery statistics of a broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// Rows in total.
    pub total: u64,
    /// Per status, all channels.
    pub by_status: BTreeMap<DeliveryStatus, u64>,
    /// Per channel, per status.
    pub by_channel: BTreeMap<ChannelKind, BTreeMap<DeliveryStatus, u64>>,
    /// Per error kind (failed rows and rows waiting for a retry).
    pub by_error_kind: BTreeMap<ErrorKind, u64>,
    /// Per skip reason.
    pub by_skip_reason: BTreeMap<SkipReason, u64>,
    /// Messages that may have been delivered once more than recorded: the sum of the rows'
    /// `uncertain_sends`, each a send that had started when its worker died or whose connection
    /// dropped after the request was written. A row retried twice after dropped connections
    /// counts 2. Never below the real number of duplicates.
    pub possible_duplicates: u64,
    /// First delivery.
    pub first_sent_at: Option<DateTime<Utc>>,
    /// Last delivery.
    pub last_sent_at: Option<DateTime<Utc>>,
}

impl DeliveryStats {
    /// Builds statistics from grouped counts.
    pub fn from_counts(counts: &[StatusCount]) -> Self {
        let mut stats = Self::default();
        for c in counts {
            stats.total += c.count;
            *stats.by_status.entry(c.status).or_default() += c.count;
            *stats
                .by_channel
                .entry(c.channel)
                .or_default()
                .entry(c.status)
                .or_default() += c.count;
            if let Some(kind) = c.error_kind
                && matches!(c.status, DeliveryStatus::Failed | DeliveryStatus::Pending)
            {
                *stats.by_error_kind.entry(kind).or_default() += c.count;
            }
            if let Some(reason) = c.skip_reason {
                *stats.by_skip_reason.entry(reason).or_default() += c.count;
            }
        }
        stats
    }

    /// Rows with the given status.
    pub fn count(&self, status: DeliveryStatus) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Rows with the given status on the given channel.
    pub fn channel_count(&self, channel: ChannelKind, status: DeliveryStatus) -> u64 {
        self.by_channel
            .get(&channel)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Rows still to be worked on.
    pub fn open(&self) -> u64 {
        self.count(DeliveryStatus::Pending) + self.count(DeliveryStatus::Sending)
    }

    /// Delivered messages per second between the first and the last delivery.
    pub fn send_rate(&self) -> Option<f64> {
        let (first, last) = (self.first_sent_at?, self.last_sent_at?);
        let secs = (last - first).num_milliseconds() as f64 / 1000.0;
        (secs > 0.0).then(|| self.count(DeliveryStatus::Sent) as f64 / secs)
    }
}

/// How many users a filter selects and, for a channel policy, how many each of its channels
/// reaches and how many messages a broadcast with the policy would queue on it at launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceCount {
    /// Users matching the filter.
    pub users: u64,
    /// Per channel of the policy: users it reaches (an address, no refusal).
    pub reachable: BTreeMap<ChannelKind, u64>,
    /// Per channel of the policy: messages queued at launch. For `all`, the users it reaches;
    /// for `first_reachable`, those it reaches whom no earlier channel reaches (a delivery
    /// that fails for good adds a message on the next channel later).
    pub messages: BTreeMap<ChannelKind, u64>,
    /// Users no channel of the policy reaches.
    pub unreachable: u64,
}

impl AudienceCount {
    /// Messages queued at launch on `kind` (0 for a channel the policy does not use).
    pub fn messages_on(&self, kind: ChannelKind) -> u64 {
        self.messages.get(&kind).copied().unwrap_or(0)
    }

    /// Users `kind` reaches (0 for a channel the policy does not use).
    pub fn reachable_on(&self, kind: ChannelKind) -> u64 {
        self.reachable.get(&kind).copied().unwrap_or(0)
    }

    /// Every message queued at launch.
    pub fn total_messages(&self) -> u64 {
        self.messages.values().sum()
    }
}

/// What materialising a broadcast's audience wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialiseReport {
    /// Rows queued for delivery, per channel.
    pub queued: BTreeMap<ChannelKind, u64>,
    /// Rows skipped, per reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Rows written by this call (0 when the audience was already materialised).
    pub inserted: u64,
}

/// Everything a template may refer to for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientContext {
    /// The user.
    pub user: User,
    /// The competition of the matched registration.
    pub competition: Option<Competition>,
    /// The matched registration.
    pub registration: Option<Registration>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Items matching in total.
    pub total: u64,
}

/// A user search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Case-insensitive substring of name, e-mail or user name.
    pub search: Option<String>,
    /// Skip this many.
    pub offset: u64,
    /// Return at most this many.
    pub limit: u64,
}

/// A recipient search within one broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientQuery {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this channel.
    pub channel: Option<ChannelKind>,
    /// Only this error kind.
    pub error_kind: Option<ErrorKind>,
    /// Skip this many.
    pub offset: u64,
    /// Return at most this many (0: all).
    pub limit: u64,
}

/// A request to lease due recipient rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker asking (stored as lease owner).
    pub worker_id: String,
    /// Rows due at or before this time.
    pub now: DateTime<Utc>,
    /// How long the lease lasts.
    pub lease_for: chrono::Duration,
    /// At most this many rows.
    pub limit: u64,
    /// Only rows of this broadcast (it must be running); `None`: any running broadcast.
    pub broadcast_id: Option<BroadcastId>,
    /// Only rows of these channels; empty: any.
    pub channels: Vec<ChannelKind>,
}

impl ClaimRequest {
    /// Checks the request: a lease longer than zero and a worker id.
    pub fn check(&self) -> crate::Result<()> {
        if self.lease_for <= chrono::Duration::zero() {
            return Err(crate::Error::Invalid(format!(
                "a lease must last longer than 0 seconds, got {}",
                self.lease_for
            )));
        }
        if self.worker_id.trim().is_empty() {
            return Err(crate::Error::Invalid(
                "a worker id must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// How many due pending rows each of `broadcasts` running broadcasts gets first, so that a
    /// small broadcast launched during a large one is not queued behind it: an equal share of
    /// the limit (rounded up). Rows a broadcast leaves of its share go to the others, in
    /// launch order, in a second pass. Taken-over expired leases come before either.
    pub fn fair_share(&self, broadcasts: usize) -> u64 {
        match broadcasts {
            0 => self.limit,
            n => self.limit.div_ceil(n as u64),
        }
    }
}

/// The result of one delivery attempt, to be written back to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    /// The row.
    pub recipient_id: RecipientId,
    /// The worker that held the lease; the result is dropped if the lease was lost.
    pub worker_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The send may have reached the recipient although no success was seen (see
    /// [`crate::DeliveryError::outcome_unknown`]): the row counts as a possible duplicate.
    pub uncertain: bool,
}

/// What happened to a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent {
        /// When.
        at: DateTime<Utc>,
        /// The provider's message id.
        provider_message_id: Option<String>,
    },
    /// Failed for good.
    Failed {
        /// When.
        at: DateTime<Utc>,
        /// Classification.
        kind: ErrorKind,
        /// Message.
        error: String,
    },
    /// Put back in the queue.
    Retry {
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
        /// Classification of the error that caused the retry.
        kind: ErrorKind,
        /// Message.
        error: String,
        /// Whether this counts as an attempt (rate-limited waits do not).
        count_attempt: bool,
    },
    /// Handed back without being tried (the worker is stopping, the channel's circuit breaker
    /// is open, the channel has a fault): pending again, no attempt counted, no error kind.
    Released {
        /// When it may be claimed again.
        next_attempt_at: DateTime<Utc>,
        /// Why, for operators (kept as the row's last error text).
        note: String,
    },
}

/// A change of a broadcast's status, applied only when the current status is one of `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// Allowed current statuses.
    pub from: Vec<BroadcastStatus>,
    /// New status.
    pub to: BroadcastStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Reason shown to operators (pause and failure reasons); cleared when `None`.
    pub reason: Option<String>,
    /// Template to freeze (on launch).
    pub freeze: Option<TemplateContent>,
    /// The breaker probe to schedule (on a pause by the circuit breaker); every other change
    /// clears the broadcast's probe.
    pub probe: Option<BreakerProbe>,
}
