//! The Telegram channel sending media through the fake Bot API: one upload per medium and bot,
//! `file_id`s after it, and what happens when an id is lost or refused.

use std::sync::Arc;

use async_trait::async_trait;
use broadcast_channels::{TelegramChannel, TelegramConfig};
use broadcast_domain::{
    Channel, Error, FailureKind, MediaId, MediaKind, MediaRef, MediaStore, Medium, MessageBody,
    NewMedium, OutgoingMessage, ParseMode, Result,
};
use broadcast_orchestrator::memory::MemoryStore;
use broadcast_testkit::telegram::FakeTelegram;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::telegram;

fn poster() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/poster.png"
    ))
    .unwrap()
}

fn channel(fake: &FakeTelegram, media: Arc<dyn MediaStore>) -> Arc<TelegramChannel> {
    let mut config = TelegramConfig::new(SecretString::from(fake.token().to_owned()));
    config.api_url = Some(fake.api_url().parse().unwrap());
    config.paid_broadcast = true;
    config.rate_per_sec = 1000;
    Arc::new(TelegramChannel::new(config).unwrap().with_media(media))
}

async fn library() -> (MemoryStore, MediaRef) {
    let store = MemoryStore::new();
    let medium = store
        .add_medium(
            NewMedium::check("poster.png", poster(), "ann").unwrap(),
            false,
            Utc::now(),
        )
        .await
        .unwrap();
    (store, MediaRef::of(&medium))
}

/// A message to `chat` showing `medium` under a caption naming the chat.
fn with_medium(chat: i64, medium: &MediaRef) -> OutgoingMessage {
    let mut message = telegram(chat, &format!("<b>Poster</b> for {chat}"), ParseMode::Html);
    if let MessageBody::Chat { message, .. } = &mut message.body {
        message.media = vec![medium.clone()];
    }
    message
}

async fn send_all(channel: &Arc<TelegramChannel>, chats: std::ops::Range<i64>, medium: &MediaRef) {
    let mut tasks = tokio::task::JoinSet::new();
    for chat in chats {
        let (channel, message) = (Arc::clone(channel), with_medium(chat, medium));
        tasks.spawn(async move { channel.send(&message).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
}

#[tokio::test]
async fn five_hundred_recipients_cost_one_upload_of_the_poster() {
    let fake = FakeTelegram::start().await;
    let (store, poster_ref) = library().await;
    let channel = channel(&fake, Arc::new(store.clone()));
    // All at once: the first uploads, the others wait for its file_id.
    send_all(&channel, 1000..1500, &poster_ref).await;
    assert_eq!(fake.upload_count(), 1);
    assert_eq!(fake.file_id_send_count(), 499);
    let messages = fake.messages();
    let upload = messages
        .iter()
        .find_map(|m| m.media.as_ref().filter(|f| f.uploaded))
        .unwrap();
    assert_eq!(upload.file_name.as_deref(), Some("poster.png"));
    assert_eq!(upload.size, poster().len());
    for m in &messages {
        let media = m.media.as_ref().unwrap();
        assert_eq!(
            (media.kind, media.file_id.as_str()),
            ("photo", upload.file_id.as_str())
        );
        assert_eq!(m.text, format!("<b>Poster</b> for {}", m.chat_id));
        assert_eq!(m.parse_mode.as_deref(), Some("HTML"));
        assert!(m.paid_broadcast);
    }
    // Kept for the next process, per bot.
    assert_eq!(
        store
            .telegram_file_id(123456, &poster_ref.sha256)
            .await
            .unwrap(),
        Some(upload.file_id.clone())
    );
    assert_eq!(
        store
            .telegram_file_id(99, &poster_ref.sha256)
            .await
            .unwrap(),
        None
    );
}

/// A library whose writes of `file_id`s are lost, as if the process died right after the
/// upload.
#[derive(Debug)]
struct Forgetful(MemoryStore);

#[async_trait]
impl MediaStore for Forgetful {
    async fn add_medium(
        &self,
        new: NewMedium,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Medium> {
        self.0.add_medium(new, replace, now).await
    }
    async fn list_media(&self) -> Result<Vec<Medium>> {
        self.0.list_media().await
    }
    async fn get_medium(&self, id: MediaId) -> Result<Medium> {
        self.0.get_medium(id).await
    }
    async fn find_medium(&self, name: &str) -> Result<Option<Medium>> {
        self.0.find_medium(name).await
    }
    async fn medium_bytes(&self, sha256: &str) -> Result<Vec<u8>> {
        self.0.medium_bytes(sha256).await
    }
    async fn remove_medium(&self, id: MediaId) -> Result<Medium> {
        self.0.remove_medium(id).await
    }
    async fn telegram_file_id(&self, bot: i64, sha256: &str) -> Result<Option<String>> {
        self.0.telegram_file_id(bot, sha256).await
    }
    async fn keep_telegram_file_id(
        &self,
        _bot: i64,
        _sha256: &str,
        _kind: MediaKind,
        _file_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        Err(Error::Internal("the process died before writing".into()))
    }
    async fn forget_telegram_file_id(&self, bot: i64, sha256: &str, file_id: &str) -> Result<()> {
        self.0.forget_telegram_file_id(bot, sha256, file_id).await
    }
}

#[tokio::test]
async fn a_file_id_lost_with_its_process_costs_one_more_upload() {
    let fake = FakeTelegram::start().await;
    let (store, poster_ref) = library().await;
    // The first process uploads, delivers, and never writes the file_id down.
    let dying = channel(&fake, Arc::new(Forgetful(store.clone())));
    send_all(&dying, 1..4, &poster_ref).await;
    assert_eq!((fake.upload_count(), fake.file_id_send_count()), (1, 2));
    drop(dying);
    // The next one uploads once more, then sends the id.
    let next = channel(&fake, Arc::new(store.clone()));
    send_all(&next, 4..10, &poster_ref).await;
    assert_eq!((fake.upload_count(), fake.file_id_send_count()), (2, 7));
    assert_eq!(fake.message_count(), 9);
}

#[tokio::test]
async fn a_refused_file_id_is_forgotten_and_the_bytes_go_again() {
    let fake = FakeTelegram::start().await;
    let (store, poster_ref) = library().await;
    let channel = channel(&fake, Arc::new(store.clone()));
    send_all(&channel, 1..3, &poster_ref).await;
    let first = store
        .telegram_file_id(123456, &poster_ref.sha256)
        .await
        .unwrap()
        .unwrap();
    // Telegram no longer knows the id: the recipient still gets the poster, uploaded again.
    fake.expire_file_ids();
    send_all(&channel, 3..6, &poster_ref).await;
    assert_eq!(fake.message_count(), 5);
    assert_eq!((fake.upload_count(), fake.file_id_send_count()), (2, 3));
    let second = store
        .telegram_file_id(123456, &poster_ref.sha256)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second);
}

#[tokio::test]
async fn what_telegram_refuses_in_a_medium_is_a_permanent_failure() {
    let fake = FakeTelegram::start().await;
    let (store, poster_ref) = library().await;
    let channel = channel(&fake, Arc::new(store.clone()));
    // A caption over 1024 characters.
    let mut long = with_medium(1, &poster_ref);
    if let MessageBody::Chat { message, .. } = &mut long.body {
        message.text = "a".repeat(1025);
    }
    let err = channel.send(&long).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert!(err.message.contains("caption is too long"), "{err:?}");
    // Bytes gone from the library.
    let mut gone = poster_ref.clone();
    gone.sha256 = "0".repeat(64);
    let err = channel.send(&with_medium(2, &gone)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert!(
        err.message
            .contains("the bytes of medium `poster.png` are no longer in the media library"),
        "{err:?}"
    );
    // A channel with no library cannot send a medium at all.
    let mut config = TelegramConfig::new(SecretString::from(fake.token().to_owned()));
    config.api_url = Some(fake.api_url().parse().unwrap());
    let bare = TelegramChannel::new(config).unwrap();
    let err = bare.send(&with_medium(3, &poster_ref)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert_eq!(fake.message_count(), 0);
}

#[tokio::test]
async fn buttons_go_with_the_medium_and_a_bad_url_is_refused_by_telegram() {
    use broadcast_domain::UrlButton;
    let fake = FakeTelegram::start().await;
    let (store, poster_ref) = library().await;
    let channel = channel(&fake, Arc::new(store));
    let with_buttons = |chat: i64, url: &str| {
        let mut message = with_medium(chat, &poster_ref);
        if let MessageBody::Chat { message, .. } = &mut message.body {
            message.buttons = vec![
                vec![UrlButton {
                    text: "Register".into(),
                    url: url.into(),
                }],
                vec![UrlButton {
                    text: "Chat".into(),
                    url: "tg://resolve?domain=example".into(),
                }],
            ];
        }
        message
    };
    channel
        .send(&with_buttons(1, "https://example.org/r?u=1"))
        .await
        .unwrap();
    let sent = fake.messages();
    assert_eq!(
        sent[0].buttons,
        vec![
            vec![(
                "Register".to_owned(),
                "https://example.org/r?u=1".to_owned()
            )],
            vec![("Chat".to_owned(), "tg://resolve?domain=example".to_owned())],
        ]
    );
    // A URL that got past the renderer still meets Telegram's own check.
    let err = channel
        .send(&with_buttons(2, "javascript:alert(1)"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err:?}");
    assert!(err.message.contains("BUTTON_URL_INVALID"), "{err:?}");
    assert_eq!(fake.message_count(), 1);
}
