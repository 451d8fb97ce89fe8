//! The Telegram channel: `sendMessage` through teloxide, paced by [`crate::pacing`], with every
//! outcome classified into a [`FailureKind`] and the bot token scrubbed from every message.
//!
//! Classification (teloxide matches Telegram's error *descriptions*, not codes):
//!
//! | Telegram answer                                             | kind              |
//! |-------------------------------------------------------------|-------------------|
//! | 429 with `retry_after` (`RequestError::RetryAfter`)           | `RateLimited`     |
//! | 403 bot blocked, user deactivated, bot kicked, can't initiate | `Blocked`         |
//! | any other `Forbidden: ...` description                        | `Blocked`         |
//! | 400 group is deactivated                                      | `Blocked`         |
//! | 400 chat not found, user not found, `PEER_ID_INVALID`, bots   | `InvalidAddress`  |
//! | 401 `Unauthorized` / 404 `Not Found`: the bot token is wrong  | `ChannelFault`    |
//! | other 400 / 401 / 404 / 409 (`Bad Request: ...` etc.)         | `Permanent`       |
//! | 5xx (teloxide: `ApiError::Unknown("Internal Server Error")`)  | `Transient`       |
//! | network errors, timeouts, unparsable answers, I/O             | `Transient`       |
//!
//! A transient error after the connection was open (the connection dropped or timed out while
//! waiting for the answer, an unreadable answer) is marked
//! [`outcome_unknown`](DeliveryError::outcome_unknown): Telegram may have delivered the message,
//! so a retry may deliver it twice and the ledger counts it.
//! | 400 with `migrate_to_chat_id`                                 | resent once there |
//!
//! teloxide waits 10 s before reading the body of an HTTP 5xx answer (its built-in back-off),
//! so a send that meets a server error returns after about 10 s.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;

use broadcast_domain::{
    Channel, ChannelKind, Delivered, DeliveryError, FailureKind, MediaKind, MediaRef, MediaStore,
    MessageBody, OutgoingMessage, ParseMode, TelegramChatId, TelegramMessage, UrlButton,
};
use secrecy::{ExposeSecret, SecretString};
use teloxide::payloads::{
    SendAnimationSetters, SendDocumentSetters, SendMessageSetters, SendPhotoSetters,
    SendVideoSetters,
};
use teloxide::requests::Requester;
use teloxide::types::{
    ChatId, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LinkPreviewOptions,
    Message,
};
use teloxide::{ApiError, Bot, RequestError};
use url::Url;

use crate::error::{Error, Result};
use crate::pacing::{Pacer, TelegramLimits};
use crate::redact::Redactor;
use crate::telegram_files::{Attachment, TelegramFiles};

/// The official Bot API server.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// Telegram's limit for a bot without paid broadcasts, messages per second.
const FREE_MAX_PER_SEC: u32 = 30;
/// Telegram's limit with paid broadcasts (`allow_paid_broadcast`), messages per second.
const PAID_MAX_PER_SEC: u32 = 1000;

/// Settings of the Telegram channel. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// The bot token (`TELEGRAM_BOT_TOKEN`), `<bot id>:<secret>`.
    pub token: SecretString,
    /// The Bot API server (`TELEGRAM_API_URL`); `None` is the official one.
    pub api_url: Option<Url>,
    /// Messages per second for the whole bot (`TELEGRAM_RATE_LIMIT`): at most 30, or 1000 with
    /// paid broadcasts.
    pub rate_per_sec: u32,
    /// Send with `allow_paid_broadcast` (`TELEGRAM_PAID_BROADCAST`), which allows up to 1000/s.
    pub paid_broadcast: bool,
    /// Longest time one request may take, connecting included.
    pub timeout: Duration,
    /// Least time between two messages to one private chat (Telegram: 1 s).
    pub private_chat_interval: Duration,
    /// Least time between two messages to one group, negative chat id (Telegram: 20/min).
    pub group_chat_interval: Duration,
    /// What a send budget shared by several workers adds to the bot's window against the
    /// jitter between workers (`TELEGRAM_PACING_MARGIN_MS`, 10 ms, at most 500 ms): the
    /// workers together send `rate / (1 s + margin)`. The channel's own pacing needs no margin
    /// (see the `pacing` module); this is handed to the budget by
    /// [`ChannelSettings::share_rates`](crate::ChannelSettings::share_rates).
    pub pacing_margin: Duration,
}

impl TelegramConfig {
    /// Telegram's defaults for the given token: the official server, 30 messages/s, 1 s per
    /// private chat, 3 s per group, 17 s timeout, no paid broadcasts.
    pub fn new(token: SecretString) -> Self {
        let limits = TelegramLimits::default();
        Self {
            token,
            api_url: None,
            rate_per_sec: limits.per_second,
            paid_broadcast: false,
            timeout: Duration::from_secs(17),
            private_chat_interval: limits.private_chat_interval,
            group_chat_interval: limits.group_chat_interval,
            pacing_margin: crate::pacing::DEFAULT_MARGIN,
        }
    }
}

/// Sends Telegram messages through the Bot API.
pub struct TelegramChannel {
    bot: Bot,
    /// The bot's id, the number before the token's colon: whose `file_id`s are whose.
    bot_id: i64,
    pacer: Pacer,
    redactor: Redactor,
    paid_broadcast: bool,
    host: String,
    /// Where media come from and their `file_id`s are kept; `None` sends text only.
    files: Option<TelegramFiles>,
}

impl fmt::Debug for TelegramChannel {
    // Manual: teloxide's `Bot` prints its token in `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("host", &self.host)
            .field("paid_broadcast", &self.paid_broadcast)
            .field("pacer", &self.pacer)
            .finish_non_exhaustive()
    }
}

impl TelegramChannel {
    /// Builds the channel; a malformed token, URL or rate is an error naming the setting.
    pub fn new(config: TelegramConfig) -> Result<Self> {
        let token = config.token.expose_secret();
        check_token(token)?;
        let max = if config.paid_broadcast {
            PAID_MAX_PER_SEC
        } else {
            FREE_MAX_PER_SEC
        };
        if config.rate_per_sec == 0 || config.rate_per_sec > max {
            let hint = if config.paid_broadcast {
                ""
            } else {
                "; paid broadcasts allow up to 1000"
            };
            return Err(Error::config(format!(
                "the Telegram rate limit must be between 1 and {max} messages/s, not {}{hint}",
                config.rate_per_sec
            )));
        }
        if config.pacing_margin > Duration::from_millis(500) {
            return Err(Error::config(format!(
                "the Telegram pacing margin must be at most 500 ms, not {} ms",
                config.pacing_margin.as_millis()
            )));
        }
        if config.timeout.is_zero() {
            return Err(Error::config(
                "the Telegram request timeout must be longer than zero",
            ));
        }
        let api_url = match config.api_url {
            Some(url) => normalise_api_url(url)?,
            None => Url::parse(DEFAULT_TELEGRAM_API_URL).expect("the default API URL parses"),
        };
        let redactor = Redactor::new(token_spellings(token));
        let client = teloxide::net::default_reqwest_settings()
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                Error::config(format!(
                    "cannot build the HTTP client for Telegram: {}",
                    redactor.error_chain(&e)
                ))
            })?;
        let host = match api_url.port() {
            Some(port) => format!("{}:{port}", api_url.host_str().unwrap_or_default()),
            None => api_url.host_str().unwrap_or_default().to_owned(),
        };
        let pacer = Pacer::new(TelegramLimits {
            per_second: config.rate_per_sec,
            private_chat_interval: config.private_chat_interval,
            group_chat_interval: config.group_chat_interval,
        })?;
        let bot_id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .ok_or_else(|| Error::config("the Telegram bot id (before the colon) is too large"))?;
        Ok(Self {
            bot: Bot::with_client(token, client).set_api_url(api_url),
            bot_id,
            pacer,
            redactor,
            paid_broadcast: config.paid_broadcast,
            host,
            files: None,
        })
    }

    /// Sends the media of messages that have one, reading their bytes from `media` and keeping
    /// there the `file_id` Telegram gives the first upload of each (per bot), so that later
    /// messages send the id and not the bytes. Without it a message with a medium fails.
    pub fn with_media(mut self, media: Arc<dyn MediaStore>) -> Self {
        self.files = Some(TelegramFiles::new(media, self.bot_id));
        self
    }

    /// Asks Telegram who the bot is (`getMe`): the bot's user name, or the classified failure
    /// (an invalid token is `Permanent`). Useful at start-up to fail fast on a revoked token.
    pub async fn verify(&self) -> Result<String, DeliveryError> {
        match self.bot.get_me().await {
            Ok(me) => Ok(me.user.username.clone().unwrap_or_default()),
            Err(e) => Err(self.to_delivery_error(&e, None)),
        }
    }

    /// How long the whole channel is still held back after a 429, if at all.
    pub fn paused_for(&self) -> Option<Duration> {
        self.pacer.remaining_pause()
    }

    async fn send_to(
        &self,
        chat: TelegramChatId,
        message: &Outgoing<'_>,
        file: Option<(MediaKind, &InputFile)>,
    ) -> Result<Message, RequestError> {
        let result = match file {
            None => self.send_text(chat, message).await,
            Some((kind, file)) => self.send_medium(chat, message, kind, file.clone()).await,
        };
        if let Err(RequestError::RetryAfter(seconds)) = &result {
            let wait = seconds.duration();
            tracing::warn!(
                chat = chat.get(),
                retry_after_secs = wait.as_secs(),
                "Telegram asked to slow down; holding the channel back"
            );
            self.pacer.pause_for(wait);
        }
        result
    }

    async fn send_text(
        &self,
        chat: TelegramChatId,
        outgoing: &Outgoing<'_>,
    ) -> Result<Message, RequestError> {
        let message = outgoing.body;
        let mut request = self
            .bot
            .send_message(ChatId(chat.get()), message.text.clone());
        if let Some(keyboard) = &outgoing.keyboard {
            request = request.reply_markup(keyboard.clone());
        }
        if let Some(mode) = parse_mode(message.parse_mode) {
            request = request.parse_mode(mode);
        }
        if !message.link_preview {
            request = request.link_preview_options(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
        }
        if self.paid_broadcast {
            request = request.allow_paid_broadcast(true);
        }
        request.await
    }

    /// `sendPhoto`, `sendVideo`, `sendAnimation` or `sendDocument`, the text as the caption.
    async fn send_medium(
        &self,
        chat: TelegramChatId,
        outgoing: &Outgoing<'_>,
        kind: MediaKind,
        file: InputFile,
    ) -> Result<Message, RequestError> {
        let message = outgoing.body;
        // The four requests are different types with the same setters.
        macro_rules! captioned {
            ($request:expr) => {{
                let mut request = $request.caption(message.text.clone());
                if let Some(keyboard) = &outgoing.keyboard {
                    request = request.reply_markup(keyboard.clone());
                }
                if let Some(mode) = parse_mode(message.parse_mode) {
                    request = request.parse_mode(mode);
                }
                if self.paid_broadcast {
                    request = request.allow_paid_broadcast(true);
                }
                request.await
            }};
        }
        let chat = ChatId(chat.get());
        match kind {
            MediaKind::Photo => captioned!(self.bot.send_photo(chat, file)),
            MediaKind::Video => captioned!(self.bot.send_video(chat, file)),
            MediaKind::Animation => captioned!(self.bot.send_animation(chat, file)),
            MediaKind::Document => captioned!(self.bot.send_document(chat, file)),
        }
    }

    /// Sends `body` to `chat` (and once more to the supergroup a group migrated to), paced;
    /// `file` is the medium, when it has one. A failure says whether Telegram refused the
    /// medium's `file_id`.
    async fn deliver(
        &self,
        chat_id: TelegramChatId,
        body: &Outgoing<'_>,
        file: Option<(MediaKind, &InputFile)>,
    ) -> Result<(Message, Option<TelegramChatId>), Failed> {
        let turn = self.pacer.ready(chat_id).await.map_err(held_back)?;
        let sent = self.send_to(chat_id, body, file).await;
        // Answered: the window counts from now.
        drop(turn);
        let error = match sent {
            Ok(sent) => return Ok((sent, None)),
            Err(RequestError::MigrateToChatId(to)) => {
                let Ok(new_chat) = TelegramChatId::new(to.0) else {
                    return Err(DeliveryError::permanent(format!(
                        "chat {chat_id}: Telegram named an invalid new chat id {}",
                        to.0
                    ))
                    .into());
                };
                tracing::info!(
                    from = chat_id.get(),
                    to = new_chat.get(),
                    "group migrated to a supergroup; resending there"
                );
                let turn = self.pacer.ready(new_chat).await.map_err(held_back)?;
                let sent = self.send_to(new_chat, body, file).await;
                drop(turn);
                return match sent {
                    Ok(sent) => Ok((sent, Some(new_chat))),
                    Err(RequestError::MigrateToChatId(again)) => {
                        Err(DeliveryError::permanent(format!(
                            "chat {chat_id} migrated to {new_chat}, which migrated again to {}",
                            again.0
                        ))
                        .into())
                    }
                    Err(e) => {
                        let mut failed = self.failed(&e, new_chat, file.is_some());
                        failed.error.message =
                            format!("after migration from {chat_id}: {}", failed.error.message);
                        Err(failed)
                    }
                };
            }
            Err(e) => self.failed(&e, chat_id, file.is_some()),
        };
        tracing::debug!(kind = %error.error.kind.error_kind(), error = %error.error.message, "Telegram send failed");
        Err(error)
    }

    fn failed(&self, error: &RequestError, chat: TelegramChatId, with_file: bool) -> Failed {
        Failed {
            error: self.to_delivery_error(error, Some(chat)),
            file_refused: with_file && file_refused(error),
        }
    }

    /// Sends a message with a medium: with the `file_id` of an earlier upload when one is
    /// known, else uploading the bytes (keeping the `file_id` Telegram answers with); a
    /// `file_id` Telegram refuses is forgotten and the bytes uploaded instead.
    async fn deliver_medium(
        &self,
        chat_id: TelegramChatId,
        body: &Outgoing<'_>,
        medium: &MediaRef,
    ) -> Result<(Message, Option<TelegramChatId>), DeliveryError> {
        let Some(files) = &self.files else {
            return Err(DeliveryError::permanent(format!(
                "the message shows medium `{}`, and this Telegram channel reads no media library",
                medium.name
            )));
        };
        let mut refused = false;
        loop {
            match files.attachment(medium).await? {
                Attachment::Known(id) => {
                    let file = InputFile::file_id(FileId(id.clone()));
                    match self
                        .deliver(chat_id, body, Some((medium.kind, &file)))
                        .await
                    {
                        Ok(sent) => return Ok(sent),
                        // The next round uploads (unless another message has a new id by then,
                        // which is tried once).
                        Err(failed) if failed.file_refused && !refused => {
                            refused = true;
                            files.refused(medium, &id).await;
                        }
                        Err(failed) => return Err(failed.error),
                    }
                }
                Attachment::Upload { bytes, turn } => {
                    let file = InputFile::memory(bytes).file_name(medium.name.clone());
                    let sent = self
                        .deliver(chat_id, body, Some((medium.kind, &file)))
                        .await
                        .map_err(|failed| failed.error)?;
                    match file_id_of(&sent.0, medium.kind) {
                        Some(id) => files.uploaded(medium, turn, id).await,
                        None => tracing::warn!(
                            medium = %medium.name,
                            "Telegram's answer to an upload names no file; the next message uploads again"
                        ),
                    }
                    return Ok(sent);
                }
            }
        }
    }

    fn to_delivery_error(
        &self,
        error: &RequestError,
        chat: Option<TelegramChatId>,
    ) -> DeliveryError {
        let kind = classify(error);
        let text = match error {
            RequestError::Api(api) => api.to_string(),
            RequestError::RetryAfter(s) => {
                format!("Too Many Requests: retry after {} s", s.seconds())
            }
            RequestError::MigrateToChatId(to) => {
                format!("the group was migrated to the supergroup {}", to.0)
            }
            RequestError::Network(e) => {
                format!("network error: {}", self.redactor.error_chain(&**e))
            }
            RequestError::InvalidJson { source, raw } => {
                let raw: String = raw.chars().take(200).collect();
                format!("unreadable answer from Telegram ({source}): {raw}")
            }
            RequestError::Io(e) => format!("I/O error: {e}"),
        };
        let text = match chat {
            Some(chat) => format!("chat {chat}: {text}"),
            None => text,
        };
        let unknown = outcome_unknown(error);
        let error = DeliveryError::new(kind, self.redactor.scrub(&text));
        match unknown {
            true => error.outcome_unknown(),
            false => error,
        }
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::TELEGRAM
    }

    fn describe(&self) -> String {
        format!("telegram ({})", self.host)
    }

    #[tracing::instrument(name = "telegram.send", skip_all, fields(recipient = ?message.recipient_id))]
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Chat { to, message: body } = &message.body else {
            return Err(DeliveryError::permanent(format!(
                "the Telegram channel cannot send {} messages",
                message.body.format()
            )));
        };
        let chat_id = TelegramChatId::parse(to)
            .map_err(|e| DeliveryError::new(FailureKind::InvalidAddress, e.0))?;
        let outgoing = Outgoing {
            body,
            keyboard: keyboard(&body.buttons)?,
        };
        let (sent, migrated_to) = match body.media.first() {
            Some(medium) => self.deliver_medium(chat_id, &outgoing, medium).await?,
            None => self
                .deliver(chat_id, &outgoing, None)
                .await
                .map_err(|failed| failed.error)?,
        };
        Ok(delivered(&sent, migrated_to))
    }

    fn max_concurrency(&self) -> usize {
        // Enough requests in flight to reach the rate at a few hundred ms of latency.
        (self.pacer.limits().per_second as usize / 4).clamp(16, 256)
    }
}

/// A message as it goes out: the rendered body and its keyboard.
struct Outgoing<'a> {
    body: &'a TelegramMessage,
    keyboard: Option<InlineKeyboardMarkup>,
}

/// The inline keyboard of URL buttons, or `None` without buttons. The renderer checked every
/// URL; one that still does not parse fails the message as permanent.
fn keyboard(rows: &[Vec<UrlButton>]) -> Result<Option<InlineKeyboardMarkup>, DeliveryError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut keyboard = Vec::with_capacity(rows.len());
    for row in rows {
        let mut buttons = Vec::with_capacity(row.len());
        for b in row {
            let url = Url::parse(&b.url).map_err(|e| {
                DeliveryError::permanent(format!(
                    "button `{}`: the URL does not parse: {e}",
                    b.text
                ))
            })?;
            buttons.push(InlineKeyboardButton::url(b.text.clone(), url));
        }
        keyboard.push(buttons);
    }
    Ok(Some(InlineKeyboardMarkup::new(keyboard)))
}

/// A failed send, and whether Telegram refused the `file_id` it named.
struct Failed {
    error: DeliveryError,
    file_refused: bool,
}

impl From<DeliveryError> for Failed {
    fn from(error: DeliveryError) -> Self {
        Self {
            error,
            file_refused: false,
        }
    }
}

/// Telegram's parse mode for ours; `None` for plain text.
fn parse_mode(mode: ParseMode) -> Option<teloxide::types::ParseMode> {
    match mode {
        ParseMode::Html => Some(teloxide::types::ParseMode::Html),
        ParseMode::MarkdownV2 => Some(teloxide::types::ParseMode::MarkdownV2),
        ParseMode::Plain => None,
    }
}

/// The `file_id` of the medium a sent message shows (of a photo, its largest size).
fn file_id_of(sent: &Message, kind: MediaKind) -> Option<String> {
    let file = match kind {
        MediaKind::Photo => {
            &sent
                .photo()?
                .iter()
                .max_by_key(|p| u64::from(p.width) * u64::from(p.height))?
                .file
        }
        MediaKind::Video => &sent.video()?.file,
        MediaKind::Animation => &sent.animation()?.file,
        MediaKind::Document => &sent.document()?.file,
    };
    Some(file.id.0.clone())
}

/// Whether Telegram refused the `file_id` a request named (wrong, expired, or of another type);
/// the bytes uploaded again go through.
fn file_refused(error: &RequestError) -> bool {
    match error {
        RequestError::Api(
            ApiError::WrongFileId | ApiError::WrongFileIdOrUrl | ApiError::FileIdInvalid,
        ) => true,
        RequestError::Api(ApiError::Unknown(description)) => {
            let d = description.to_ascii_lowercase();
            d.starts_with("bad request")
                && (d.contains("file identifier")
                    || d.contains("file id")
                    || d.contains("file_reference")
                    || d.contains("file reference")
                    || d.contains("type of file mismatch"))
        }
        _ => false,
    }
}

/// A message not sent because Telegram asked the bot to wait: rate limited for the rest of the
/// wait, no attempt used.
fn held_back(remaining: Duration) -> DeliveryError {
    DeliveryError::new(
        FailureKind::RateLimited {
            retry_after: remaining,
        },
        format!(
            "not sent: the bot waits {:.1} s more after Telegram answered 429",
            remaining.as_secs_f64()
        ),
    )
}

fn delivered(sent: &Message, migrated_to: Option<TelegramChatId>) -> Delivered {
    Delivered {
        provider_message_id: Some(format!("{}:{}", sent.chat.id.0, sent.id.0)),
        migrated_to,
    }
}

/// Accepts `<digits>:<letters, digits, '-' or '_'>`; the message never repeats the token.
fn check_token(token: &str) -> Result<()> {
    let ok = token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "the Telegram bot token must look like `<bot id>:<secret>` (digits, a colon, then \
             letters, digits, `-` or `_`), as @BotFather gives it",
        ))
    }
}

/// The token as it may appear in text: raw and percent-encoded as a URL path segment.
fn token_spellings(token: &str) -> Vec<String> {
    let mut url = Url::parse("http://x/").expect("static URL parses");
    url.path_segments_mut()
        .expect("http URLs have a path")
        .push(token);
    let encoded = url.path().trim_start_matches('/').to_owned();
    vec![token.to_owned(), encoded]
}

fn normalise_api_url(mut url: Url) -> Result<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::config(format!(
            "the Telegram API URL must be an http(s) URL with a host, not `{url}`"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!(
            "the Telegram API URL must not have a query or fragment: `{url}`"
        )));
    }
    // teloxide appends `/bot<token>/<method>`; a trailing slash would double it.
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Whether the request may have reached Telegram and been carried out although no answer
/// says so: the connection dropped or timed out after it was opened, or the answer was
/// unreadable. A connection that could not be opened sent nothing; an answer from Telegram
/// (an API error, a 429) says what happened.
fn outcome_unknown(error: &RequestError) -> bool {
    match error {
        RequestError::Network(e) => !e.is_connect() && !e.is_builder(),
        RequestError::InvalidJson { .. } | RequestError::Io(_) => true,
        RequestError::Api(_) | RequestError::RetryAfter(_) | RequestError::MigrateToChatId(_) => {
            false
        }
    }
}

/// The failure kind of a teloxide error (see the module documentation for the table).
fn classify(error: &RequestError) -> FailureKind {
    match error {
        RequestError::RetryAfter(s) => FailureKind::RateLimited {
            retry_after: s.duration(),
        },
        RequestError::Api(api) => classify_api(api),
        // Only reaches here when the resend after a migration migrates again.
        RequestError::MigrateToChatId(_) => FailureKind::Permanent,
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            FailureKind::Transient
        }
    }
}

fn classify_api(error: &ApiError) -> FailureKind {
    match error {
        ApiError::BotBlocked
        | ApiError::UserDeactivated
        | ApiError::BotKicked
        | ApiError::BotKickedFromSupergroup
        | ApiError::BotKickedFromChannel
        | ApiError::CantInitiateConversation
        | ApiError::GroupDeactivated => FailureKind::Blocked,
        ApiError::ChatNotFound | ApiError::UserNotFound | ApiError::CantTalkWithBots => {
            FailureKind::InvalidAddress
        }
        // 401 "Unauthorized" / 404 "Not Found" for the token: no message can go out.
        ApiError::InvalidToken => FailureKind::ChannelFault,
        ApiError::Unknown(description) => classify_description(description),
        _ => FailureKind::Permanent,
    }
}

/// Descriptions teloxide does not know: Telegram prefixes them with the HTTP reason phrase
/// (`Bad Request: ...`, `Forbidden: ...`); 5xx answers carry only the phrase.
fn classify_description(description: &str) -> FailureKind {
    let head = description.split(':').next().unwrap_or_default().trim();
    match head {
        // Every 403 on sendMessage means this bot cannot write to this chat (blocked, kicked,
        // not a member, deactivated); newer spellings of known errors land here too.
        "Forbidden" => FailureKind::Blocked,
        "Bad Request" if description.contains("PEER_ID_INVALID") => FailureKind::InvalidAddress,
        "Too Many Requests" => FailureKind::RateLimited {
            retry_after: retry_after_in(description).unwrap_or(Duration::from_secs(1)),
        },
        // The bare phrases are teloxide's `InvalidToken`; with a detail they concern the chat.
        "Unauthorized" | "Not Found" if !description.contains(':') => FailureKind::ChannelFault,
        "Bad Request"
        | "Unauthorized"
        | "Not Found"
        | "Conflict"
        | "Request Entity Too Large"
        | "Method Not Allowed" => FailureKind::Permanent,
        _ => FailureKind::Transient,
    }
}

/// `N` of "... retry after N" in a description.
fn retry_after_in(description: &str) -> Option<Duration> {
    let (_, rest) = description.split_once("retry after ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::Seconds;

    fn config(token: &str) -> TelegramConfig {
        TelegramConfig::new(SecretString::from(token.to_owned()))
    }

    #[test]
    fn classification_follows_the_table() {
        use FailureKind::*;
        let cases: Vec<(RequestError, FailureKind)> = vec![
            (
                RequestError::RetryAfter(Seconds::from_seconds(7)),
                RateLimited {
                    retry_after: Duration::from_secs(7),
                },
            ),
            (RequestError::Api(ApiError::BotBlocked), Blocked),
            (RequestError::Api(ApiError::UserDeactivated), Blocked),
            (
                RequestError::Api(ApiError::BotKickedFromSupergroup),
                Blocked,
            ),
            (
                RequestError::Api(ApiError::CantInitiateConversation),
                Blocked,
            ),
            (RequestError::Api(ApiError::ChatNotFound), InvalidAddress),
            (RequestError::Api(ApiError::MessageIsTooLong), Permanent),
            (RequestError::Api(ApiError::InvalidToken), ChannelFault),
            (
                RequestError::Api(ApiError::Unknown("Unauthorized: bot can't do that".into())),
                Permanent,
            ),
            (
                RequestError::Api(ApiError::Unknown("Internal Server Error".into())),
                Transient,
            ),
            (
                RequestError::Api(ApiError::Unknown("Bad Gateway".into())),
                Transient,
            ),
            (
                RequestError::Api(ApiError::Unknown(
                    "Forbidden: bot can't initiate conversation with a user".into(),
                )),
                Blocked,
            ),
            (
                RequestError::Api(ApiError::Unknown(
                    "Bad Request: can't parse entities: unexpected end".into(),
                )),
                Permanent,
            ),
            (
                RequestError::Api(ApiError::Unknown("Bad Request: PEER_ID_INVALID".into())),
                InvalidAddress,
            ),
            (
                RequestError::Api(ApiError::Unknown("Too Many Requests: retry after 5".into())),
                RateLimited {
                    retry_after: Duration::from_secs(5),
                },
            ),
            (
                RequestError::Io(std::sync::Arc::new(std::io::Error::other("x"))),
                Transient,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(classify(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn bad_settings_are_refused_without_showing_the_token() {
        for token in [
            "",
            "abc",
            "123:",
            ":abc",
            "12 3:abc",
            "123:a/b",
            "123:SECRET TOKEN",
        ] {
            let err = TelegramChannel::new(config(token)).unwrap_err().to_string();
            assert!(err.contains("bot token must look like"), "{err}");
            if !token.is_empty() {
                assert!(!err.contains(token), "{err}");
            }
        }
        let mut c = config("1:abc");
        c.rate_per_sec = 31;
        let err = TelegramChannel::new(c.clone()).unwrap_err().to_string();
        assert!(
            err.contains("between 1 and 30") && err.contains("paid"),
            "{err}"
        );
        c.paid_broadcast = true;
        assert!(TelegramChannel::new(c.clone()).is_ok());
        c.rate_per_sec = 1001;
        assert!(TelegramChannel::new(c).is_err());
        let mut c = config("1:abc");
        c.api_url = Some(Url::parse("ftp://x/").unwrap());
        assert!(
            TelegramChannel::new(c)
                .unwrap_err()
                .to_string()
                .contains("http(s)")
        );
    }

    #[test]
    fn describe_and_debug_show_the_host_but_never_the_token() {
        let mut c = config("123456:SECRET-TOKEN-abc");
        let channel = TelegramChannel::new(c.clone()).unwrap();
        assert_eq!(channel.describe(), "telegram (api.telegram.org)");
        c.api_url = Some(Url::parse("http://127.0.0.1:8081/tg/").unwrap());
        let channel = TelegramChannel::new(c.clone()).unwrap();
        assert_eq!(channel.describe(), "telegram (127.0.0.1:8081)");
        assert_eq!(channel.bot.api_url().as_str(), "http://127.0.0.1:8081/tg");
        for text in [format!("{channel:?}"), format!("{c:?}")] {
            assert!(!text.contains("SECRET-TOKEN"), "{text}");
        }
    }
}
