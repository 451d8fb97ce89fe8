//! Telegram pacing: the channel's limiter keeps a burst within the fake's real limits, and a 429
//! with `retry_after` holds the channel back without costing an attempt.

use std::time::Duration;

use broadcast_testkit::telegram::ChatBehavior;
use serde_json::json;

use crate::harness::{Cli, UserRow, count, fake_telegram, ids_by_external, outcome, row};

async fn telegram_template(cli: &Cli, name: &str) -> i64 {
    cli.create_template(&json!({
        "name": name,
        "telegram_text": "Hi {{ first_name }}, message for chat {{ telegram_id }}",
        "parse_mode": "plain",
    }))
    .await
}

#[tokio::test]
async fn a_burst_of_100_messages_never_meets_a_429() {
    let fake = fake_telegram().await;
    let mut cli = Cli::new();
    cli.telegram(&fake);
    let people: Vec<UserRow> = (0..100)
        .map(|i| UserRow::new(&format!("p{i:03}"), &format!("P{i}"), "Burst").chat(7_000_000 + i))
        .collect();
    cli.import_users(&people).await;
    let template = telegram_template(&cli, "burst").await;
    let id = cli
        .create_broadcast("Burst", template, "telegram", "{}")
        .await;
    let printed = cli.run_broadcast(id).await.json();
    assert_eq!(printed["status"], "completed", "{printed}");

    assert_eq!(fake.message_count(), 100);
    assert!(
        fake.throttled().is_empty(),
        "the fake answered 429: {:?}",
        fake.throttled()
    );
    assert_eq!(fake.request_count(), 100, "one request per message");
    // The limiter holds the pace: at most 30 in any sliding second at arrival, as the fake
    // counts (no burst allowance), so 100 messages take over 3 s.
    let per_second = fake.max_in_window(Duration::from_secs(1));
    assert!(per_second <= 30, "{per_second} messages within one second");
    let messages = fake.messages();
    let span = messages[99].at.duration_since(messages[0].at);
    assert!(
        span >= Duration::from_millis(3_200),
        "100 messages in {span:?}"
    );
    let chats: std::collections::BTreeSet<i64> =
        fake.messages().iter().map(|m| m.chat_id).collect();
    assert_eq!(chats, (7_000_000..7_000_100).collect());
    for m in &messages {
        assert_eq!(
            m.text,
            format!(
                "Hi P{}, message for chat {}",
                m.chat_id - 7_000_000,
                m.chat_id
            )
        );
        assert_eq!(m.parse_mode, None, "plain text has no parse mode");
    }
    let rows = cli.recipients(id).await;
    assert_eq!(rows.len(), 100);
    assert!(
        rows.iter()
            .all(|r| outcome(r) == ("sent".into(), String::new(), 1))
    );
    assert_eq!(count(&printed, &["stats", "by_status", "sent"]), 100);
}

#[tokio::test]
async fn a_429_is_obeyed_and_costs_no_attempt() {
    let fake = fake_telegram().await;
    let mut cli = Cli::new();
    cli.telegram(&fake);
    let people: Vec<UserRow> = (0..4)
        .map(|i| UserRow::new(&format!("r{i}"), &format!("R{i}"), "Limited").chat(7_100_000 + i))
        .collect();
    // The first request to this chat gets 429 retry_after 2, and the fake then refuses every
    // request for 2 s, as Telegram does.
    fake.set_chat(7_100_000, ChatBehavior::RateLimitOnce(2));
    cli.import_users(&people).await;
    let ids = ids_by_external(&cli.users().await);
    let template = telegram_template(&cli, "limited").await;
    let id = cli
        .create_broadcast("Limited", template, "telegram", "{}")
        .await;
    let run = cli.run_broadcast(id).await;
    let printed = run.json();
    assert_eq!(printed["status"], "completed", "{printed}");

    let throttled = fake.throttled();
    let first = throttled.first().expect("the configured 429");
    assert_eq!(first.chat_id, Some(7_100_000));
    assert!(
        throttled.iter().all(|t| !t.enforced),
        "the limiter broke the fake's limits: {throttled:?}"
    );
    // Only requests already in flight may meet the hold; nothing is sent again until it ends.
    let hold = Duration::from_secs(2);
    assert!(
        throttled
            .iter()
            .all(|t| t.at.duration_since(first.at) < hold / 2),
        "requests kept coming during the hold: {throttled:?}"
    );
    let limited = fake.messages_to(7_100_000);
    assert_eq!(limited.len(), 1, "delivered once after the wait");
    assert!(
        limited[0].at.duration_since(first.at) >= hold,
        "delivered {:?} after the 429",
        limited[0].at.duration_since(first.at)
    );
    assert_eq!(fake.message_count(), 4);
    assert_eq!(
        fake.request_count(),
        4 + throttled.len() as u64,
        "each refused request was sent again exactly once"
    );

    // The wait is not a failed attempt.
    let rows = cli.recipients(id).await;
    for u in &people {
        let r = row(&rows, ids[&u.external_id], "telegram");
        assert_eq!(outcome(r), ("sent".into(), String::new(), 1), "{r}");
    }
    let stats = cli.stats(id).await;
    assert_eq!(count(&stats, &["stats", "by_status", "failed"]), 0);
    assert!(
        run.stderr.contains("Telegram asked to slow down"),
        "the hold is logged:\n{}",
        run.stderr
    );
}
