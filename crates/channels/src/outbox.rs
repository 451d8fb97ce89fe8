//! Outbox channels, the default when no real channel is configured: Telegram messages become
//! JSON lines in `<dir>/telegram.jsonl`, e-mails become `.eml` files in `<dir>/email/` (the
//! same MIME message the SMTP channel would send).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use broadcast_domain::{
    BroadcastId, Channel, ChannelKind, Delivered, DeliveryError, FailureKind, MediaRef,
    MessageBody, OutgoingMessage, ParseMode, RecipientId, TelegramChatId, UrlButton, UserId,
};
use chrono::{DateTime, Utc};
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mime::{Composer, EmailSender};

/// File name of the Telegram outbox inside the outbox directory.
const TELEGRAM_FILE: &str = "telegram.jsonl";
/// Directory of the e-mail outbox inside the outbox directory.
const EMAIL_DIR: &str = "email";

/// One line of `telegram.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramOutboxLine {
    /// Chat the message was addressed to.
    pub chat_id: i64,
    /// The Bot API method Telegram would have been called with (`sendMessage`, `sendPhoto`,
    /// ...).
    #[serde(default = "send_message")]
    pub method: String,
    /// Text as Telegram would have received it (the caption when there is a medium).
    pub text: String,
    /// The medium above the text, by name, type and SHA-256 of its bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    /// Rows of URL buttons under it (`reply_markup.inline_keyboard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<UrlButton>>,
    /// Parse mode.
    pub parse_mode: ParseMode,
    /// Whether a link preview was asked for.
    pub link_preview: bool,
    /// Broadcast, `None` for a test send.
    pub broadcast_id: Option<BroadcastId>,
    /// Ledger row, `None` for a test send.
    pub recipient_id: Option<RecipientId>,
    /// User, when known.
    pub user_id: Option<UserId>,
    /// When the line was written.
    pub sent_at: DateTime<Utc>,
    /// The provider message id returned for it (a UUID).
    pub message_id: String,
}

fn send_message() -> String {
    "sendMessage".to_owned()
}

/// Appends Telegram messages to `<dir>/telegram.jsonl`, one JSON object per line. Lines from
/// concurrent sends never interleave: each is written whole under a lock.
#[derive(Debug, Clone)]
pub struct TelegramOutbox {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl TelegramOutbox {
    /// Creates `dir` when missing and opens (or creates) `telegram.jsonl` for appending.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        let path = dir.join(TELEGRAM_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io {
                action: "cannot open the Telegram outbox",
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file the lines go to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Channel for TelegramOutbox {
    fn kind(&self) -> ChannelKind {
        ChannelKind::TELEGRAM
    }

    fn describe(&self) -> String {
        format!("outbox ({})", self.path.display())
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Chat { to, message: body } = &message.body else {
            return Err(DeliveryError::permanent(format!(
                "the Telegram outbox cannot send {} messages",
                message.body.format()
            )));
        };
        let chat_id = &TelegramChatId::parse(to)
            .map_err(|e| DeliveryError::new(FailureKind::InvalidAddress, e.0))?;
        let message_id = uuid::Uuid::new_v4().to_string();
        let line = TelegramOutboxLine {
            chat_id: chat_id.get(),
            method: body
                .media
                .first()
                .map_or("sendMessage", |m| m.kind.telegram_method())
                .to_owned(),
            text: body.text.clone(),
            media: body.media.clone(),
            buttons: body.buttons.clone(),
            parse_mode: body.parse_mode,
            link_preview: body.link_preview,
            broadcast_id: message.broadcast_id,
            recipient_id: message.recipient_id,
            user_id: message.user_id,
            sent_at: Utc::now(),
            message_id: message_id.clone(),
        };
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| DeliveryError::permanent(format!("cannot encode the line: {e}")))?;
        bytes.push(b'\n');
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&bytes)
        })
        .await
        .map_err(|e| DeliveryError::transient(format!("outbox writer stopped: {e}")))?
        .map_err(|e| {
            DeliveryError::transient(format!("cannot append to {}: {e}", path.display()))
        })?;
        Ok(Delivered {
            provider_message_id: Some(message_id),
            migrated_to: None,
        })
    }
}

/// Writes e-mails as `<uuid>.eml` files under `<dir>/email/` with lettre's file transport.
#[derive(Debug, Clone)]
pub struct EmailOutbox {
    dir: PathBuf,
    transport: AsyncFileTransport<Tokio1Executor>,
    composer: Composer,
}

impl EmailOutbox {
    /// Creates `<dir>/email/` when missing; e-mails come from `sender`.
    pub fn new(dir: impl AsRef<Path>, sender: &EmailSender) -> Result<Self> {
        let dir = dir.as_ref().join(EMAIL_DIR);
        create_dir(&dir)?;
        Ok(Self {
            transport: AsyncFileTransport::new(&dir),
            composer: Composer::new(sender)?,
            dir,
        })
    }

    /// The directory the `.eml` files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Channel for EmailOutbox {
    fn kind(&self) -> ChannelKind {
        ChannelKind::EMAIL
    }

    fn describe(&self) -> String {
        format!("outbox ({})", self.dir.display())
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Email {
            to,
            to_name,
            message: email,
            unsubscribe_url,
        } = &message.body
        else {
            return Err(DeliveryError::permanent(format!(
                "the e-mail outbox cannot send {} messages",
                message.body.format()
            )));
        };
        let composed =
            self.composer
                .compose(to, to_name.as_deref(), email, unsubscribe_url.as_deref())?;
        tracing::trace!(from = %self.composer.from(), message_id = %composed.message_id, "writing e-mail");
        let id = self.transport.send(composed.message).await.map_err(|e| {
            DeliveryError::transient(format!(
                "cannot write an e-mail to {}: {e}",
                self.dir.display()
            ))
        })?;
        Ok(Delivered {
            provider_message_id: Some(format!("{id}.eml")),
            migrated_to: None,
        })
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "cannot create the outbox directory",
        path: dir.to_owned(),
        source,
    })
}
