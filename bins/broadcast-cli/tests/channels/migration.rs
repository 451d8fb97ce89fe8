//! A group that became a supergroup: the message goes to the new chat id, the user's stored
//! chat id follows, and the next broadcast goes there directly.

use std::time::{Duration, Instant};

use broadcast_testkit::telegram::ChatBehavior;
use serde_json::json;

use crate::harness::{Cli, UserRow, fake_telegram, ids_by_external, outcome, row, user};

const GROUP: i64 = -4_000_123;
const SUPERGROUP: i64 = -1_002_000_123_456;

#[tokio::test]
async fn a_migrated_group_gets_the_message_at_its_new_id() {
    let fake = fake_telegram().await;
    let mut cli = Cli::new();
    cli.telegram(&fake);
    fake.set_chat(GROUP, ChatBehavior::MigrateTo(SUPERGROUP));
    cli.import_users(&[
        UserRow::new("g1", "Team", "Chat").chat(GROUP),
        UserRow::new("g2", "Solo", "User").chat(7_200_001),
    ])
    .await;
    let ids = ids_by_external(&cli.users().await);
    let template = cli
        .create_template(&json!({
            "name": "groups",
            "telegram_text": "Hello <i>{{ first_name }}</i>",
            "parse_mode": "html",
        }))
        .await;
    let first = cli
        .create_broadcast("First", template, "telegram", "{}")
        .await;
    let printed = cli.run_broadcast(first).await.json();
    assert_eq!(printed["status"], "completed", "{printed}");

    assert!(fake.messages_to(GROUP).is_empty());
    let moved = fake.messages_to(SUPERGROUP);
    assert_eq!(moved.len(), 1, "delivered once, at the new id");
    assert_eq!(moved[0].text, "Hello <i>Team</i>");
    let rows = cli.recipients(first).await;
    let r = row(&rows, ids["g1"], "telegram");
    assert_eq!(outcome(r), ("sent".into(), String::new(), 1), "{r}");
    assert_eq!(
        r["provider_message_id"],
        format!("{SUPERGROUP}:{}", moved[0].message_id)
    );
    let users = cli.users().await;
    assert_eq!(user(&users, "g1")["telegram_chat_id"], SUPERGROUP);
    assert_eq!(user(&users, "g2")["telegram_chat_id"], 7_200_001);

    // Telegram allows 20 messages a minute to a group: wait out the fake's 3 s interval.
    let due = moved[0].at + Duration::from_millis(3_200);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    let requests = fake.request_count();
    let second = cli
        .create_broadcast("Second", template, "telegram", "{}")
        .await;
    cli.run_broadcast(second).await.ok();
    let rows = cli.recipients(second).await;
    let r = row(&rows, ids["g1"], "telegram");
    assert_eq!(r["address"], SUPERGROUP.to_string(), "{r}");
    assert_eq!(outcome(r), ("sent".into(), String::new(), 1), "{r}");
    assert_eq!(fake.messages_to(SUPERGROUP).len(), 2);
    assert!(fake.messages_to(GROUP).is_empty());
    assert_eq!(
        fake.request_count() - requests,
        2,
        "no request to the old id any more"
    );
}
