//! The outbox channels write well-formed files.

use std::collections::HashSet;
use std::sync::Arc;

use broadcast_channels::{EmailOutbox, EmailSender, TelegramOutbox, TelegramOutboxLine};
use broadcast_domain::{Channel, EmailAddress, ParseMode};

use crate::{email, telegram};

#[tokio::test]
async fn concurrent_telegram_sends_write_whole_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(TelegramOutbox::new(dir.path().join("outbox")).unwrap());
    assert_eq!(
        outbox.describe(),
        format!(
            "outbox ({})",
            dir.path().join("outbox/telegram.jsonl").display()
        )
    );
    // Long texts make interleaving visible if writes were split.
    let mut tasks = tokio::task::JoinSet::new();
    for chat in 1..=50i64 {
        let outbox = Arc::clone(&outbox);
        tasks.spawn(async move {
            let text = format!("Hello {chat} \"quoted\"\nsecond line {}", "x".repeat(5000));
            let delivered = outbox
                .send(&telegram(chat, &text, ParseMode::Html))
                .await
                .unwrap();
            (chat, text, delivered.provider_message_id.unwrap())
        });
    }
    let mut sent = Vec::new();
    while let Some(result) = tasks.join_next().await {
        sent.push(result.unwrap());
    }
    let content = std::fs::read_to_string(outbox.path()).unwrap();
    let lines: Vec<TelegramOutboxLine> = content
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    let ids: HashSet<&str> = lines.iter().map(|l| l.message_id.as_str()).collect();
    assert_eq!(ids.len(), 50);
    for (chat, text, id) in sent {
        let line = lines.iter().find(|l| l.message_id == id).unwrap();
        assert_eq!(line.chat_id, chat);
        assert_eq!(line.text, text);
        assert_eq!(line.parse_mode, ParseMode::Html);
        assert!(!line.link_preview);
        assert_eq!(line.broadcast_id, Some(7));
        assert_eq!(line.user_id, Some(chat));
    }
    // A second outbox on the same directory appends.
    let again = TelegramOutbox::new(dir.path().join("outbox")).unwrap();
    again
        .send(&telegram(99, "more", ParseMode::Plain))
        .await
        .unwrap();
    let content = std::fs::read_to_string(outbox.path()).unwrap();
    assert_eq!(content.lines().count(), 51);
    // The wrong kind of message is refused.
    let err = outbox
        .send(&email("ann@example.org", Some("x"), None, None))
        .await
        .unwrap_err();
    assert!(err.message.contains("cannot send email"), "{err}");
}

#[tokio::test]
async fn emails_become_parseable_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let sender = EmailSender::new(
        EmailAddress::parse("news@broadcast.example.org").unwrap(),
        Some("Competition News".to_owned()),
    );
    let outbox = EmailOutbox::new(dir.path(), &sender).unwrap();
    assert_eq!(outbox.dir(), dir.path().join("email"));
    let delivered = outbox
        .send(&email(
            "ann@example.org",
            Some("Plain hello"),
            Some("<p>HTML hello</p>"),
            Some("https://broadcast.example.org/unsubscribe/tok"),
        ))
        .await
        .unwrap();
    let file_name = delivered.provider_message_id.unwrap();
    assert!(file_name.ends_with(".eml"), "{file_name}");
    let raw = std::fs::read_to_string(outbox.dir().join(&file_name)).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("headers, blank line, body");
    assert!(
        head.contains("Subject: Registration closes tomorrow"),
        "{head}"
    );
    assert!(head.contains("To: \"Ann Lee\" <ann@example.org>"), "{head}");
    assert!(head.contains("Message-ID: <"), "{head}");
    assert!(head.contains("List-Unsubscribe: <https://broadcast.example.org/unsubscribe/tok>"));
    assert!(
        head.contains("Content-Type: multipart/alternative"),
        "{head}"
    );
    assert!(body.contains("Content-Type: text/plain") && body.contains("Plain hello"));
    assert!(body.contains("Content-Type: text/html") && body.contains("<p>HTML hello</p>"));
    let files = std::fs::read_dir(outbox.dir()).unwrap().count();
    assert_eq!(files, 1);
}

#[tokio::test]
async fn a_medium_is_written_with_its_method_and_reference() {
    use broadcast_domain::{MediaKind, MediaRef, MessageBody};
    let dir = tempfile::tempdir().unwrap();
    let outbox = TelegramOutbox::new(dir.path()).unwrap();
    let poster = MediaRef {
        medium: 3,
        name: "poster.png".into(),
        content_type: "image/png".into(),
        kind: MediaKind::Photo,
        size: 2048,
        sha256: "ab".repeat(32),
    };
    let mut message = telegram(5, "<b>Caption</b>", ParseMode::Html);
    if let MessageBody::Chat { message, .. } = &mut message.body {
        message.media = vec![poster.clone()];
    }
    outbox.send(&message).await.unwrap();
    outbox
        .send(&telegram(6, "text only", ParseMode::Plain))
        .await
        .unwrap();
    let content = std::fs::read_to_string(outbox.path()).unwrap();
    let lines: Vec<TelegramOutboxLine> = content
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        (lines[0].method.as_str(), lines[0].text.as_str()),
        ("sendPhoto", "<b>Caption</b>")
    );
    assert_eq!(lines[0].media, vec![poster]);
    assert_eq!(lines[1].method, "sendMessage");
    assert!(lines[1].media.is_empty());
    assert!(!content.lines().nth(1).unwrap().contains("\"media\""));
}
