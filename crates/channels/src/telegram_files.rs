//! Media for the Telegram channel: the first message that shows a medium uploads its bytes; the
//! `file_id` Telegram answers with is kept (in memory and through [`MediaStore`], per bot and
//! content) and every later message sends that id instead.
//!
//! - **Concurrent first sends.** The messages of one process that want the same medium queue
//!   behind one lock per SHA-256: the first uploads, the others wait for its `file_id` (or, if
//!   its send failed, the next one uploads). Processes do not wait for each other: each may
//!   upload once before it finds another's `file_id`.
//! - **A crash between the upload and the write of the `file_id`** leaves no id: the next
//!   process uploads once more.
//! - **A refused `file_id`** (Telegram answers 400: wrong, expired or of another type) is
//!   forgotten and the message is sent again with an upload, so the recipient still gets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use broadcast_domain::{DeliveryError, Error, FailureKind, MediaRef, MediaStore};
use chrono::Utc;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// What a message sends for its medium.
pub(crate) enum Attachment {
    /// The bytes, uploaded with this message; `turn` keeps the other messages that want the
    /// medium waiting until the `file_id` is known.
    Upload {
        bytes: Vec<u8>,
        turn: OwnedMutexGuard<Option<String>>,
    },
    /// The `file_id` of an earlier upload.
    Known(String),
}

/// The `file_id`s of one bot.
pub(crate) struct TelegramFiles {
    store: Arc<dyn MediaStore>,
    bot: i64,
    slots: Mutex<HashMap<String, Arc<AsyncMutex<Option<String>>>>>,
}

impl std::fmt::Debug for TelegramFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramFiles")
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

impl TelegramFiles {
    pub(crate) fn new(store: Arc<dyn MediaStore>, bot: i64) -> Self {
        Self {
            store,
            bot,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, sha256: &str) -> Arc<AsyncMutex<Option<String>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slots.entry(sha256.to_owned()).or_default())
    }

    /// What to send for `medium`: its `file_id` when one is known (here or in the store),
    /// else its bytes, with the turn to upload them.
    pub(crate) async fn attachment(&self, medium: &MediaRef) -> Result<Attachment, DeliveryError> {
        let mut turn = self.slot(&medium.sha256).lock_owned().await;
        if let Some(id) = turn.as_ref() {
            return Ok(Attachment::Known(id.clone()));
        }
        let stored = self
            .store
            .telegram_file_id(self.bot, &medium.sha256)
            .await
            .map_err(|e| store_failure(medium, &e))?;
        if let Some(id) = stored {
            *turn = Some(id.clone());
            return Ok(Attachment::Known(id));
        }
        let bytes = self
            .store
            .medium_bytes(&medium.sha256)
            .await
            .map_err(|e| store_failure(medium, &e))?;
        Ok(Attachment::Upload { bytes, turn })
    }

    /// Keeps the `file_id` an upload of `medium` was given; the messages waiting for it go on.
    /// A failure to store it costs one more upload later, never this message.
    pub(crate) async fn uploaded(
        &self,
        medium: &MediaRef,
        mut turn: OwnedMutexGuard<Option<String>>,
        file_id: String,
    ) {
        *turn = Some(file_id.clone());
        drop(turn);
        if let Err(e) = self
            .store
            .keep_telegram_file_id(self.bot, &medium.sha256, medium.kind, &file_id, Utc::now())
            .await
        {
            tracing::warn!(medium = %medium.name, error = %e, "could not keep the file_id of an upload; another process will upload it again");
        }
    }

    /// Forgets a `file_id` Telegram refused, here and in the store, unless another message
    /// has replaced it already.
    pub(crate) async fn refused(&self, medium: &MediaRef, file_id: &str) {
        {
            let mut known = self.slot(&medium.sha256).lock_owned().await;
            if known.as_deref() == Some(file_id) {
                *known = None;
            }
        }
        if let Err(e) = self
            .store
            .forget_telegram_file_id(self.bot, &medium.sha256, file_id)
            .await
        {
            tracing::warn!(medium = %medium.name, error = %e, "could not forget a refused file_id");
        }
        tracing::info!(medium = %medium.name, "Telegram refused a file_id; uploading again");
    }
}

/// A failure of the library while sending: its bytes gone is permanent for this message, any
/// other failure transient.
fn store_failure(medium: &MediaRef, error: &Error) -> DeliveryError {
    match error {
        Error::NotFound { .. } => DeliveryError::permanent(format!(
            "the bytes of medium `{}` are no longer in the media library",
            medium.name
        )),
        e => DeliveryError::new(
            FailureKind::Transient,
            format!("cannot read medium `{}` from the library: {e}", medium.name),
        ),
    }
}
