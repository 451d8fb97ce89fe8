//! Port traits: what the orchestrator and the binaries need from storage, audiences, templates,
//! channels and time. Adapters in other crates implement them; everything is `Send + Sync` so it
//! can be shared as `Arc<dyn Trait>`.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::budget::{Moves, Slots};
use crate::channel::{ChannelKind, ChannelPolicy};
use crate::error::{DeliveryError, Result, TemplateError};
use crate::filter::AudienceFilter;
use crate::media::{MediaId, MediaKind, MediaRef, Medium, NewMedium};
use crate::model::*;
use crate::types::*;

/// Stored message templates.
#[async_trait]
pub trait TemplateStore: Send + Sync + Debug {
    /// Creates a template; a taken name is a [`crate::Error::Conflict`].
    async fn create_template(&self, new: NewTemplate) -> Result<MessageTemplate>;
    /// Replaces a template's name, description and content, bumping its version.
    async fn update_template(&self, id: TemplateId, update: NewTemplate)
    -> Result<MessageTemplate>;
    /// One template by id.
    async fn get_template(&self, id: TemplateId) -> Result<MessageTemplate>;
    /// One template by name.
    async fn find_template(&self, name: &TemplateName) -> Result<Option<MessageTemplate>>;
    /// Every template, by name.
    async fn list_templates(&self) -> Result<Vec<MessageTemplate>>;
    /// Deletes a template; broadcasts keep their frozen copy.
    async fn delete_template(&self, id: TemplateId) -> Result<()>;
}

/// Stored broadcasts and their lifecycle.
#[async_trait]
pub trait BroadcastStore: Send + Sync + Debug {
    /// Creates a broadcast as a draft (or scheduled, when it has a time).
    async fn create_broadcast(&self, new: NewBroadcast, now: DateTime<Utc>) -> Result<Broadcast>;
    /// One broadcast.
    async fn get_broadcast(&self, id: BroadcastId) -> Result<Broadcast>;
    /// Broadcasts, newest first, optionally only those in the given statuses.
    async fn list_broadcasts(
        &self,
        statuses: &[BroadcastStatus],
        limit: u64,
    ) -> Result<Vec<Broadcast>>;
    /// Changes the status when the current one is allowed by the change, atomically; otherwise
    /// a [`crate::Error::Conflict`] naming the current status.
    async fn change_status(&self, id: BroadcastId, change: StatusChange) -> Result<Broadcast>;
    /// Sets or clears the scheduled time of a draft or scheduled broadcast.
    async fn set_schedule(
        &self,
        id: BroadcastId,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast>;
    /// Takes the breaker probe of a paused broadcast whose probe is due (`probe.at <= now`)
    /// for one worker, atomically: moves `probe.at` to `lease_until`, so no other worker takes
    /// it until then (a worker that dies mid-probe leaves it to the next one). Returns the
    /// probe taken, or `None` when the broadcast is not paused, has no probe, its probe is not
    /// due, or another worker took it first.
    async fn take_probe(
        &self,
        id: BroadcastId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BreakerProbe>>;
}

/// The delivery ledger: one row per (broadcast, user, channel), which is also the queue.
#[async_trait]
pub trait DeliveryStore: Send + Sync + Debug {
    /// Leases due rows of running broadcasts: pending rows whose time has come and rows whose
    /// lease expired. Each row is given to one worker only.
    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<Recipient>>;
    /// Writes results back in one batch. Results whose lease was lost are ignored. A result
    /// that hands a row back (`pending`) of a broadcast that has been cancelled cancels the
    /// row instead, so no result resurrects a cancelled broadcast's row. Returns the number of
    /// rows updated.
    async fn record_results(&self, results: &[DeliveryResult]) -> Result<u64>;
    /// Marks rows whose sends are about to start (`send_started_at = at`), only rows that are
    /// `sending` under `worker_id`'s lease and whose broadcast is still `running`. A claim that
    /// takes over an expired lease counts a marked row as a possible duplicate and an unmarked
    /// one (claimed, never started) not. Returns the rows marked: a row missing from the
    /// answer has lost its lease to another worker, or its broadcast was paused or cancelled,
    /// and must not be sent.
    async fn mark_started(
        &self,
        worker_id: &str,
        rows: &[RecipientId],
        at: DateTime<Utc>,
    ) -> Result<Vec<RecipientId>>;
    /// Frees the rows left `sending` under an expired lease (their worker died) of broadcasts
    /// that are no longer running, which no claim takes over: a **paused** broadcast's row goes
    /// back to `pending` (with one more uncertain send when its send had started, since it will
    /// be sent again after the resume), a **cancelled** broadcast's row becomes `cancelled`.
    /// Returns the number of rows freed.
    async fn release_expired(&self, now: DateTime<Utc>) -> Result<u64>;
    /// Leases one pending row of a **paused** broadcast on `channel` for a breaker probe, due or
    /// not (earliest `next_attempt_at` first), and marks its send as started, as
    /// [`mark_started`](Self::mark_started) would: the probe is sent at once. `None` when the
    /// broadcast is not paused or has no pending row on that channel. The result is written
    /// with [`record_results`](Self::record_results) like any other.
    async fn claim_probe(
        &self,
        broadcast: BroadcastId,
        channel: ChannelKind,
        worker_id: &str,
        now: DateTime<Utc>,
        lease_for: chrono::Duration,
    ) -> Result<Option<Recipient>>;
    /// Counts per channel, status, error kind and skip reason.
    async fn status_counts(&self, broadcast: BroadcastId) -> Result<Vec<StatusCount>>;
    /// Statistics of a broadcast.
    async fn stats(&self, broadcast: BroadcastId) -> Result<DeliveryStats>;
    /// Rows still pending or sending.
    async fn open_count(&self, broadcast: BroadcastId) -> Result<u64>;
    /// Marks every pending row cancelled; returns how many.
    async fn cancel_pending(&self, broadcast: BroadcastId, now: DateTime<Utc>) -> Result<u64>;
    /// Recipient rows of a broadcast, by id.
    async fn list_recipients(
        &self,
        broadcast: BroadcastId,
        query: &RecipientQuery,
    ) -> Result<Page<Recipient>>;
    /// Up to `query.limit` rows matching the query's filters whose id is above `after`, by id
    /// (`query.offset` is ignored; `limit` 0: all). Keyset paging: reading a whole ledger page
    /// by page costs each page the same, where offsets get slower with every page. A store
    /// should answer this from its primary key; the default filters a full listing.
    async fn list_recipients_after(
        &self,
        broadcast: BroadcastId,
        query: &RecipientQuery,
        after: RecipientId,
    ) -> Result<Vec<Recipient>> {
        let all = RecipientQuery {
            offset: 0,
            limit: 0,
            ..query.clone()
        };
        let limit = usize::try_from(query.limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let mut rows: Vec<Recipient> = self
            .list_recipients(broadcast, &all)
            .await?
            .items
            .into_iter()
            .filter(|r| r.id > after)
            .collect();
        rows.sort_by_key(|r| r.id);
        rows.truncate(limit);
        Ok(rows)
    }
    /// Adds the fallback row of a `first_reachable` broadcast for a user whose delivery failed
    /// for good on one channel, on the channels after it (`chain`, in order): a pending row on
    /// the first of them that reaches the user, or, when none does, a skipped row on the first
    /// with its reason; nothing when the user has a row on any of them. Returns true when a
    /// pending row was added.
    async fn add_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        chain: &[ChannelKind],
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Rebuilds a broadcast's statistics from its ledger rows: a repair after rows were changed
    /// outside the store. A store that counts on every read has nothing to rebuild. Run it
    /// while no worker delivers the broadcast.
    async fn recount(&self, broadcast: BroadcastId) -> Result<()>;
    /// Puts failed rows back in the queue (attempts reset, due now), only those of the given
    /// error kinds (all when empty), never rows whose user blocked the bot (Telegram) or
    /// unsubscribed or bounced (e-mail), and never rows that failed as blocked. Returns how many.
    async fn requeue_failed(
        &self,
        broadcast: BroadcastId,
        kinds: &[ErrorKind],
        now: DateTime<Utc>,
    ) -> Result<u64>;
}

/// A send rate shared by every worker process, kept where they all see it (the database).
///
/// Workers reserve consecutive time slots of a key (e.g. `telegram`): `n` slots spaced
/// `interval` apart. The reservation is atomic, so workers together never exceed one message
/// per `interval`, however many there are. A worker whose message was answered later than its
/// slot allows owes the key a move ([`move_back`](Self::move_back)): the slot a window after
/// the late one, and every slot after it, must come later by as much, so that the others do not
/// send into a window the late message still occupies. The move is made when the first slot
/// at or after that time is handed out, so that the late answers of one window, each owing the
/// same move, move the slots once (see [`BudgetState`], whose arithmetic every store applies).
#[async_trait]
pub trait SendBudget: Send + Sync + Debug {
    /// Reserves `n` consecutive slots; the first is never before `now`. A move owed by a slot
    /// in this reservation or before is made first.
    async fn reserve(
        &self,
        key: &str,
        interval: std::time::Duration,
        n: u32,
        now: DateTime<Utc>,
    ) -> Result<Slots>;

    /// A message sent in a slot reserved when the key had been moved back by `moved_then` (its
    /// [`Slots::moved`]) came back `late` after what its slot allows: the slots nobody has
    /// reserved yet from `by` on (the slot a window after the late one) must come after a move
    /// of what the moves since then have not covered, `late - (moved now - moved_then)`, if
    /// that is positive. It is made at once when a slot at or after `by` has been handed out
    /// already (counting from `now` when the key is idle), else owed until one is. Returns the
    /// key's moves made and owed.
    async fn move_back(
        &self,
        key: &str,
        late: std::time::Duration,
        moved_then: std::time::Duration,
        by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Moves>;

    /// The service asked to wait until `until` (Telegram's 429 `retry_after`): no slot of the
    /// key is handed out before then, and [`held_until`](Self::held_until) tells every worker,
    /// so that slots they reserved earlier are not used. A hold never shortens a longer one.
    async fn hold(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()>;

    /// The end of the key's latest hold, if it has one (it may be in the past).
    async fn held_until(&self, key: &str) -> Result<Option<DateTime<Utc>>>;
}

/// The media library ([`Medium`]): files kept once by the SHA-256 of their bytes, under
/// unique names.
#[async_trait]
pub trait MediaStore: Send + Sync + Debug {
    /// Adds a checked upload under its name; with `replace`, gives the medium of that name
    /// these bytes instead (a name taken without `replace` is a [`Error::Conflict`] naming
    /// it). Bytes already kept (the same SHA-256) are not stored twice.
    async fn add_medium(&self, new: NewMedium, replace: bool, now: DateTime<Utc>)
    -> Result<Medium>;
    /// Every medium, by name.
    async fn list_media(&self) -> Result<Vec<Medium>>;
    /// One medium.
    async fn get_medium(&self, id: MediaId) -> Result<Medium>;
    /// The medium of that name, if any.
    async fn find_medium(&self, name: &str) -> Result<Option<Medium>>;
    /// The bytes kept under a SHA-256 (lowercase hex).
    async fn medium_bytes(&self, sha256: &str) -> Result<Vec<u8>>;
    /// Removes a medium, and its bytes when no other medium has the same; answers what it
    /// removed.
    async fn remove_medium(&self, id: MediaId) -> Result<Medium>;
    /// The `file_id` Telegram gave bot `bot` (the number before the token's colon) for an
    /// upload of these bytes, if one is kept.
    async fn telegram_file_id(&self, bot: i64, sha256: &str) -> Result<Option<String>>;
    /// Keeps the `file_id` of an upload (the last one kept wins).
    async fn keep_telegram_file_id(
        &self,
        bot: i64,
        sha256: &str,
        kind: MediaKind,
        file_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets a `file_id` Telegram refused, unless another has replaced it.
    async fn forget_telegram_file_id(&self, bot: i64, sha256: &str, file_id: &str) -> Result<()>;
}

/// The audience: users, competitions and registrations.
#[async_trait]
pub trait AudienceStore: Send + Sync + Debug {
    /// Inserts or updates users by external id, all or nothing.
    async fn import_users(&self, rows: Vec<NewUser>, now: DateTime<Utc>) -> Result<ImportReport>;
    /// Inserts or updates competitions by slug, all or nothing.
    async fn import_competitions(
        &self,
        rows: Vec<NewCompetition>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport>;
    /// Inserts or updates registrations by (user, competition), all or nothing; an unknown user
    /// or competition is an error naming the line.
    async fn import_registrations(
        &self,
        rows: Vec<NewRegistration>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport>;
    /// One user.
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// Users matching a search, by id.
    async fn list_users(&self, query: &UserQuery) -> Result<Page<User>>;
    /// Every competition.
    async fn list_competitions(&self) -> Result<Vec<Competition>>;
    /// A user's registrations with their competitions.
    async fn registrations_of(&self, user: UserId) -> Result<Vec<(Registration, Competition)>>;
    /// Template contexts for recipient rows, in the order given.
    async fn contexts(&self, recipients: &[Recipient]) -> Result<Vec<RecipientContext>>;
    /// Records that the user blocked the bot.
    async fn mark_telegram_blocked(&self, user: UserId, at: DateTime<Utc>) -> Result<()>;
    /// Records that the user unsubscribed from e-mail.
    async fn mark_email_unsubscribed(&self, user: UserId, at: DateTime<Utc>) -> Result<()>;
    /// Records that mail to the user bounced permanently.
    async fn mark_email_bounced(&self, user: UserId, at: DateTime<Utc>) -> Result<()>;
    /// Moves a user to a new chat id (a group that became a supergroup).
    async fn update_chat_id(&self, user: UserId, chat_id: TelegramChatId) -> Result<()>;
}

/// Turns an [`AudienceFilter`] into recipients.
#[async_trait]
pub trait AudienceSource: Send + Sync + Debug {
    /// Counts the audience, and per channel of `policy` the users it reaches and the messages
    /// a launch would queue, without loading it.
    async fn count(&self, filter: &AudienceFilter, policy: ChannelPolicy) -> Result<AudienceCount>;
    /// Writes the broadcast's recipient rows, one per user and channel, in one set-based
    /// statement per channel; idempotent (rows that exist are kept).
    async fn materialise(
        &self,
        broadcast: BroadcastId,
        filter: &AudienceFilter,
        policy: ChannelPolicy,
        now: DateTime<Utc>,
    ) -> Result<MaterialiseReport>;
    /// Up to `limit` recipients of the filter, for previews.
    async fn sample(&self, filter: &AudienceFilter, limit: u64) -> Result<Vec<RecipientContext>>;
}

/// An administrator of the panel and CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Database id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Password hash (PHC string); never shown.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A signed-in session of the admin panel, kept on the server so that it can be ended before
/// it expires (logout, a password change, "log out everywhere").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// SHA-256 (hex) of the session's secret token: the token itself lives only in the
    /// browser's cookie, so a copy of the database opens no session.
    pub id_hash: String,
    /// The administrator's login name.
    pub username: String,
    /// Signed in.
    pub created_at: DateTime<Utc>,
    /// Ends by itself at this time.
    pub expires_at: DateTime<Utc>,
}

/// Administrators.
#[async_trait]
pub trait AdminStore: Send + Sync + Debug {
    /// Creates an administrator; a taken name is a conflict.
    async fn create_admin(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<AdminUser>;
    /// One administrator by login name.
    async fn find_admin(&self, username: &str) -> Result<Option<AdminUser>>;
    /// Replaces an administrator's password hash and ends every session of theirs (a panel
    /// that changes the password of the admin signed in starts a new session afterwards).
    async fn set_admin_password(&self, username: &str, password_hash: &str) -> Result<()>;
    /// Stores a new session.
    async fn create_session(&self, session: AdminSession) -> Result<()>;
    /// The session with this id hash, unless it has ended or expired by `now`.
    async fn find_session(&self, id_hash: &str, now: DateTime<Utc>)
    -> Result<Option<AdminSession>>;
    /// Ends one session (logout); ending an unknown one is not an error.
    async fn end_session(&self, id_hash: &str) -> Result<()>;
    /// Ends every session of `username` ("log out everywhere"), and removes expired sessions
    /// of anyone; returns how many of the user's sessions ended.
    async fn end_sessions(&self, username: &str, now: DateTime<Utc>) -> Result<u64>;
    /// Records a successful login.
    async fn record_login(&self, username: &str, at: DateTime<Utc>) -> Result<()>;
    /// Every administrator.
    async fn list_admins(&self) -> Result<Vec<AdminUser>>;
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Database id (0 before it is stored).
    pub id: i64,
    /// Who (an admin user name, `cli:<user>`, or `worker:<id>`).
    pub actor: String,
    /// What, e.g. `broadcast.launch`.
    pub action: String,
    /// Kind of object, e.g. `broadcast`.
    pub target_type: String,
    /// Its id.
    pub target_id: Option<i64>,
    /// Details as JSON.
    pub details: serde_json::Value,
    /// When.
    pub at: DateTime<Utc>,
}

/// A search of the audit log: every field narrows it (AND); `limit` 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries whose actor contains this (ASCII letters in any case): `admin` finds `admin`
    /// and `cli:admin`.
    pub actor: Option<String>,
    /// Entries whose action starts with this (any case): `broadcast.` finds every broadcast
    /// action, `broadcast.launch` that one.
    pub action: Option<String>,
    /// Entries about this kind of record (`broadcast`, `template`, `user`, `admin`, ...).
    pub target_type: Option<String>,
    /// ... with this id.
    pub target_id: Option<i64>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// Skip this many of the newest matching entries.
    pub offset: u64,
    /// Return at most this many (0: all).
    pub limit: u64,
}

impl AuditQuery {
    /// The definition of a match, which every store implements.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let lower = |s: &str| s.to_ascii_lowercase();
        self.actor
            .as_deref()
            .is_none_or(|a| lower(&e.actor).contains(&lower(a)))
            && self
                .action
                .as_deref()
                .is_none_or(|a| lower(&e.action).starts_with(&lower(a)))
            && self
                .target_type
                .as_deref()
                .is_none_or(|t| e.target_type == t)
            && self.target_id.is_none_or(|id| e.target_id == Some(id))
            && self.from.is_none_or(|from| e.at >= from)
            && self.until.is_none_or(|until| e.at < until)
    }
}

/// Who does an operation, as the audit log names them: an admin's user name, `cli:<user>`,
/// `api:<token id>`, `worker:<id>`, or whatever name an embedding program gives itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// Checks a name: 1 to 200 characters, no control characters, no surrounding spaces.
    pub fn new(name: impl Into<String>) -> crate::Result<Self> {
        let name = name.into();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(crate::Error::Invalid(format!(
                "an actor name has 1 to 200 characters, got {}",
                name.chars().count()
            )));
        }
        if name.trim() != name || name.chars().any(char::is_control) {
            return Err(crate::Error::Invalid(format!(
                "the actor name {name:?} has surrounding spaces or control characters"
            )));
        }
        Ok(Self(name))
    }

    /// The worker with this id (`worker:<id>`), for what the engine does on its own.
    pub fn worker(id: &str) -> Self {
        Self(format!("worker:{id}"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who did what, when.
#[async_trait]
pub trait AuditLog: Send + Sync + Debug {
    /// Appends an entry.
    async fn record(&self, entry: AuditEntry) -> Result<()>;
    /// The entries `query` matches ([`AuditQuery::matches`]), newest first (by time, then id).
    async fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// The newest entries first; `limit` 0 returns every entry after `offset`.
    async fn recent(&self, limit: u64, offset: u64) -> Result<Vec<AuditEntry>> {
        self.search(&AuditQuery {
            limit,
            offset,
            ..AuditQuery::default()
        })
        .await
    }
}

/// A rendered Telegram message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramMessage {
    /// Text.
    pub text: String,
    /// Parse mode.
    pub parse_mode: ParseMode,
    /// Show link preview.
    pub link_preview: bool,
    /// The medium the text is the caption of, if any (the frozen reference: its bytes by
    /// SHA-256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    /// Rows of URL buttons under it, rendered and checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<UrlButton>>,
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    /// Subject.
    pub subject: String,
    /// HTML body.
    pub html: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
}

/// Where and what to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// A chat message ([`MessageFormat::Chat`]): to a Telegram chat id, or to the address of
    /// another chat-like channel.
    Chat {
        /// The recipient's address on the channel (for Telegram, the chat id).
        to: String,
        /// Message.
        message: TelegramMessage,
    },
    /// An e-mail to an address.
    Email {
        /// Address.
        to: EmailAddress,
        /// Display name of the recipient.
        to_name: Option<String>,
        /// Message.
        message: EmailMessage,
        /// One-click unsubscribe URL for `List-Unsubscribe`.
        unsubscribe_url: Option<String>,
    },
}

impl MessageBody {
    /// The format of this body.
    pub fn format(&self) -> MessageFormat {
        match self {
            Self::Chat { .. } => MessageFormat::Chat,
            Self::Email { .. } => MessageFormat::Email,
        }
    }

    /// The recipient's address.
    pub fn to(&self) -> String {
        match self {
            Self::Chat { to, .. } => to.clone(),
            Self::Email { to, .. } => to.to_string(),
        }
    }
}

/// A message handed to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Broadcast it belongs to (`None` for a test send).
    pub broadcast_id: Option<BroadcastId>,
    /// Ledger row (`None` for a test send).
    pub recipient_id: Option<RecipientId>,
    /// User it goes to, when known.
    pub user_id: Option<UserId>,
    /// What and where.
    pub body: MessageBody,
}

/// A successful delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The provider's id of the message.
    pub provider_message_id: Option<String>,
    /// The chat moved to this id (group upgraded to supergroup) and the message went there.
    pub migrated_to: Option<TelegramChatId>,
}

/// A way of delivering messages (Telegram, e-mail, an outbox, a webhook...).
#[async_trait]
pub trait Channel: Send + Sync + Debug {
    /// Which channel kind this serves.
    fn kind(&self) -> ChannelKind;
    /// One line for operators, e.g. `outbox (data/outbox/telegram.jsonl)`. Never a secret.
    fn describe(&self) -> String;
    /// Sends one message, classifying any failure.
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError>;
    /// Most messages this channel should have in flight at once.
    fn max_concurrency(&self) -> usize {
        16
    }
}

/// Values a template can use besides the recipient's own data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderEnv {
    /// `broadcast_name`.
    pub broadcast_name: String,
    /// `app_name`.
    pub app_name: String,
    /// `current_date`.
    pub current_date: chrono::NaiveDate,
}

/// A template compiled once per broadcast and rendered per recipient.
pub trait CompiledTemplate: Send + Sync + Debug {
    /// Renders the Telegram message.
    fn render_telegram(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<TelegramMessage, TemplateError>;
    /// Renders the e-mail.
    fn render_email(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<EmailMessage, TemplateError>;
}

/// A variable templates can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableInfo {
    /// Name as written in templates.
    pub name: String,
    /// What it holds.
    pub description: String,
}

/// Compiles and validates templates.
pub trait Renderer: Send + Sync + Debug {
    /// Compiles every present part, rejecting syntax errors and unknown variables.
    fn compile(
        &self,
        content: &TemplateContent,
    ) -> Result<Box<dyn CompiledTemplate>, TemplateError>;
    /// Every problem of the template (empty when it is valid).
    fn validate(&self, content: &TemplateContent) -> Vec<TemplateError>;
    /// The variable catalogue.
    fn variables(&self) -> Vec<VariableInfo>;
}

/// Makes the per-recipient unsubscribe link.
pub trait UnsubscribeLinks: Send + Sync + Debug {
    /// The URL that unsubscribes this user, or `None` when no public URL is configured.
    fn url_for(&self, user: UserId) -> Option<String>;
}

/// The current time, injectable so that schedules, backoff and leases are testable.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
