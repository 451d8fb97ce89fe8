//! The Telegram channel against the fake Bot API server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broadcast_channels::{TelegramChannel, TelegramConfig};
use broadcast_domain::{Channel, DeliveryError, FailureKind, ParseMode, TelegramChatId};
use broadcast_testkit::telegram::{ChatBehavior, FakeTelegram, FakeTelegramConfig};
use secrecy::SecretString;

use crate::{closed_port, telegram};

const SECRET_TOKEN: &str = "123456:SECRET-TOKEN-abc";

fn channel_for(fake: &FakeTelegram) -> TelegramChannel {
    channel_with(fake.api_url(), fake.token())
}

fn channel_with(api_url: String, token: &str) -> TelegramChannel {
    let mut config = TelegramConfig::new(SecretString::from(token.to_owned()));
    config.api_url = Some(api_url.parse().unwrap());
    config.timeout = Duration::from_secs(15);
    TelegramChannel::new(config).unwrap()
}

async fn fake_with_token(token: &str) -> FakeTelegram {
    FakeTelegram::start_with(FakeTelegramConfig {
        token: token.to_owned(),
        ..FakeTelegramConfig::default()
    })
    .await
}

#[tokio::test]
async fn each_parse_mode_arrives_as_sent() {
    let fake = FakeTelegram::start().await;
    let channel = channel_for(&fake);
    assert_eq!(channel.verify().await.unwrap(), "fake_broadcast_bot");
    let cases = [
        (
            101,
            "<b>Hello</b> Ann &lt;script&gt;",
            ParseMode::Html,
            Some("HTML"),
        ),
        (
            102,
            "*Hello* Ann\\-Marie\\!",
            ParseMode::MarkdownV2,
            Some("MarkdownV2"),
        ),
        (103, "Hello <Ann> & *friends*.", ParseMode::Plain, None),
    ];
    for (chat, text, mode, _) in cases {
        let delivered = channel.send(&telegram(chat, text, mode)).await.unwrap();
        assert_eq!(delivered.migrated_to, None);
        let id = delivered.provider_message_id.unwrap();
        assert!(id.starts_with(&format!("{chat}:")), "{id}");
    }
    let mut with_preview = telegram(104, "see https://example.org", ParseMode::Plain);
    if let broadcast_domain::MessageBody::Chat { message, .. } = &mut with_preview.body {
        message.link_preview = true;
    }
    channel.send(&with_preview).await.unwrap();

    let messages = fake.messages();
    assert_eq!(messages.len(), 4);
    for ((chat, text, _, wire_mode), got) in cases.iter().zip(&messages) {
        assert_eq!(got.chat_id, *chat);
        assert_eq!(got.text, *text);
        assert_eq!(got.parse_mode.as_deref(), *wire_mode);
        assert!(
            got.link_preview_disabled,
            "previews are off unless asked for"
        );
        assert!(!got.paid_broadcast);
    }
    assert!(!messages[3].link_preview_disabled);
    assert!(fake.throttled().is_empty());
}

#[tokio::test]
async fn each_error_class_maps_to_its_failure_kind() {
    let fake = FakeTelegram::start().await;
    fake.set_chat(201, ChatBehavior::Blocked);
    fake.set_chat(202, ChatBehavior::Deactivated);
    fake.set_chat(-203, ChatBehavior::Kicked);
    fake.set_chat(204, ChatBehavior::NotFound);
    fake.set_chat(
        205,
        ChatBehavior::Error {
            code: 403,
            description: "Forbidden: bot can't initiate conversation with a user".into(),
        },
    );
    let channel = channel_for(&fake);
    let expect = [
        (201, FailureKind::Blocked, "bot was blocked by the user"),
        (202, FailureKind::Blocked, "user is deactivated"),
        (-203, FailureKind::Blocked, "kicked"),
        (204, FailureKind::InvalidAddress, "chat not found"),
        (205, FailureKind::Blocked, "can't initiate"),
    ];
    for (chat, kind, words) in expect {
        let err = channel
            .send(&telegram(chat, "hi", ParseMode::Plain))
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "chat {chat}: {err}");
        assert!(err.message.contains(words), "chat {chat}: {err}");
        assert!(
            err.message.contains(&chat.to_string()),
            "names the chat: {err}"
        );
    }
    // Other 400s are permanent: markup Telegram cannot parse, an over-long text.
    let err = channel
        .send(&telegram(206, "Hi <script>x</script>", ParseMode::Html))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert!(err.message.contains("can't parse entities"), "{err}");
    let err = channel
        .send(&telegram(207, &"x".repeat(4097), ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    // A wrong token is a fault of the channel, not of the recipient, for sends and for getMe.
    let wrong = channel_with(fake.api_url(), "999:wrong-token");
    let err = wrong
        .send(&telegram(208, "hi", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::ChannelFault, "{err}");
    assert!(!err.outcome_unknown, "Telegram answered: {err:?}");
    assert_eq!(
        wrong.verify().await.unwrap_err().kind,
        FailureKind::ChannelFault
    );
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn server_errors_are_transient_and_the_retry_succeeds() {
    let fake = FakeTelegram::start().await;
    fake.set_chat(301, ChatBehavior::FailTimes(1));
    let channel = channel_for(&fake);
    // teloxide waits 10 s before reading a 5xx answer.
    let err = channel
        .send(&telegram(301, "hi", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
    assert!(err.message.contains("Internal Server Error"), "{err}");
    channel
        .send(&telegram(301, "hi", ParseMode::Plain))
        .await
        .unwrap();
    assert_eq!(fake.messages_to(301).len(), 1);
}

#[tokio::test]
async fn network_errors_are_transient() {
    let channel = channel_with(format!("http://127.0.0.1:{}", closed_port().await), "1:abc");
    let err = channel
        .send(&telegram(1, "hi", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
}

#[tokio::test]
async fn a_migrated_group_is_resent_to_its_new_id() {
    let fake = FakeTelegram::start().await;
    let new_id = -1_001_234_567_890;
    fake.set_chat(-401, ChatBehavior::MigrateTo(new_id));
    let channel = channel_for(&fake);
    let delivered = channel
        .send(&telegram(-401, "moved", ParseMode::Plain))
        .await
        .unwrap();
    assert_eq!(
        delivered.migrated_to,
        Some(TelegramChatId::new(new_id).unwrap())
    );
    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].chat_id, new_id);
    assert_eq!(
        delivered.provider_message_id.unwrap(),
        format!("{new_id}:{}", messages[0].message_id)
    );
}

#[tokio::test]
async fn a_burst_of_100_chats_never_meets_a_429() {
    let fake = FakeTelegram::start().await;
    let channel = Arc::new(channel_for(&fake));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(channel.max_concurrency()));
    for chat in 1000..1100 {
        let channel = Arc::clone(&channel);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            channel
                .send(&telegram(chat, "burst", ParseMode::Plain))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(fake.message_count(), 100);
    assert!(fake.throttled().is_empty(), "{:?}", fake.throttled());
    // 100 messages at 30/s, evenly spaced, take at least 3.2 s; the fake counts at arrival in
    // any sliding second, with no burst allowance.
    assert!(elapsed >= Duration::from_millis(3200), "{elapsed:?}");
    let max = fake.max_in_window(Duration::from_secs(1));
    assert!(max <= 30, "{max} messages within one second");
}

#[tokio::test]
async fn one_chat_gets_at_most_one_message_per_second() {
    let fake = FakeTelegram::start().await;
    let channel = channel_for(&fake);
    let start = Instant::now();
    for _ in 0..3 {
        channel
            .send(&telegram(501, "again", ParseMode::Plain))
            .await
            .unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1950),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.messages_to(501).len(), 3);
    assert!(fake.throttled().is_empty());
}

#[tokio::test]
async fn a_429_is_returned_and_holds_the_whole_channel_back_without_a_burst() {
    let fake = FakeTelegram::start().await;
    fake.set_chat(601, ChatBehavior::RateLimitOnce(1));
    let channel = channel_for(&fake);
    let err = channel
        .send(&telegram(601, "slow down", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        FailureKind::RateLimited {
            retry_after: Duration::from_secs(1)
        },
        "{err}"
    );
    assert!(channel.paused_for().is_some());
    // Another chat, during the wait: not sent, rate limited for the rest of it (its row is due
    // again when the wait ends; sending it at that moment with every other waiting message
    // would be the burst that earns the next 429).
    let held = channel
        .send(&telegram(602, "next", ParseMode::Plain))
        .await
        .unwrap_err();
    match held.kind {
        FailureKind::RateLimited { retry_after } => {
            assert!(retry_after > Duration::from_millis(900), "{retry_after:?}");
            tokio::time::sleep(retry_after).await;
        }
        other => panic!("{other:?}: {held}"),
    }
    assert!(channel.paused_for().is_none());
    channel
        .send(&telegram(602, "next", ParseMode::Plain))
        .await
        .unwrap();
    // The re-queued message goes through afterwards; the fake answered exactly one 429.
    channel
        .send(&telegram(601, "slow down", ParseMode::Plain))
        .await
        .unwrap();
    assert_eq!(fake.throttled().len(), 1, "{:?}", fake.throttled());
    assert_eq!(fake.message_count(), 2);
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let fake = fake_with_token(SECRET_TOKEN).await;
    fake.set_chat(701, ChatBehavior::Blocked);
    fake.set_chat(702, ChatBehavior::NotFound);
    fake.set_chat(703, ChatBehavior::RateLimitOnce(1));
    let channel = channel_for(&fake);
    let mut errors: Vec<DeliveryError> = Vec::new();
    for chat in [701, 702, 703] {
        errors.push(
            channel
                .send(&telegram(chat, "hi", ParseMode::Plain))
                .await
                .unwrap_err(),
        );
    }
    // Connection refused: reqwest names the URL, which holds the token.
    let refused = channel_with(
        format!("http://127.0.0.1:{}", closed_port().await),
        SECRET_TOKEN,
    );
    let err = refused
        .send(&telegram(704, "hi", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
    errors.push(err);
    // A proxy that answers with a page echoing the request line: teloxide puts the raw
    // answer (with the token) in its error; the channel scrubs it.
    let echo = channel_with(echo_server().await, SECRET_TOKEN);
    let err = echo
        .send(&telegram(705, "hi", ParseMode::Plain))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
    assert!(
        err.message.contains("POST /bot<redacted>/SendMessage"),
        "the echoed URL is shown without the token: {err}"
    );
    errors.push(err);
    errors.push(refused.verify().await.unwrap_err());
    for err in &errors {
        for text in [err.to_string(), err.message.clone(), format!("{err:?}")] {
            assert!(!text.contains("SECRET-TOKEN"), "{text}");
        }
    }
    for text in [
        format!("{channel:?}"),
        channel.describe(),
        format!("{refused:?}"),
        refused.describe(),
    ] {
        assert!(!text.contains("SECRET-TOKEN"), "{text}");
    }
}

/// An HTTP server that answers every request with an HTML page quoting its request line.
async fn echo_server() -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                reader.read_line(&mut request_line).await.unwrap();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).await.unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                let page = format!("<html>proxy error for {}</html>", request_line.trim());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{page}",
                    page.len()
                );
                reader.get_mut().write_all(answer.as_bytes()).await.unwrap();
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn paid_broadcasts_are_flagged() {
    let fake = FakeTelegram::start().await;
    let mut config = TelegramConfig::new(SecretString::from(fake.token().to_owned()));
    config.api_url = Some(fake.api_url().parse().unwrap());
    config.paid_broadcast = true;
    config.rate_per_sec = 1000;
    let channel = Arc::new(TelegramChannel::new(config).unwrap());
    assert_eq!(channel.max_concurrency(), 250);
    let mut tasks = tokio::task::JoinSet::new();
    for chat in 2000..2200 {
        let channel = Arc::clone(&channel);
        tasks.spawn(async move {
            channel
                .send(&telegram(chat, "paid", ParseMode::Plain))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let messages = fake.messages();
    assert_eq!(messages.len(), 200);
    assert!(messages.iter().all(|m| m.paid_broadcast));
    assert!(fake.throttled().is_empty(), "{:?}", fake.throttled());
}
