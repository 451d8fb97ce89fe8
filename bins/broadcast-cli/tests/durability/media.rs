//! A broadcast with a poster and two buttons through the worker and the fake Bot API: the
//! poster is uploaded with the first message, every other message sends the `file_id` Telegram
//! gave it, the caption and a button's URL are each recipient's own, and the next broadcast
//! (another process) reuses the id from the database.

use std::collections::HashMap;

use serde_json::json;

use crate::harness::{Env, count, fake_telegram, people};

const USERS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poster_with_two_buttons_goes_to_500_recipients_with_one_upload() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(30, 1000).await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .set("TELEGRAM_PAID_BROADCAST", "true")
        .set("TELEGRAM_RATE_LIMIT", "1000");
    let audience = people("med", USERS, false, Some(700_000));
    env.import(&audience, None).await;
    let poster = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/poster.png");
    env.json(&["media", "add", poster]).await;
    let file = env.write(
        "template-poster.json",
        &json!({
            "name": "poster",
            "telegram_text": "<b>Hi {{ first_name }}</b>, here is the poster",
            "parse_mode": "html",
            "telegram_media": ["poster.png"],
            "telegram_buttons": [[
                {"text": "Register, {{ first_name }}", "url": "https://example.org/r?chat={{ telegram_id }}"},
                {"text": "Schedule", "url": "https://example.org/schedule"},
            ]],
        })
        .to_string(),
    );
    let template = env
        .json(&["template", "create", "--from-json", &file])
        .await["id"]
        .as_i64()
        .expect("template id");

    let b = env.create("Poster", template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");
    let printed = env.run_broadcast(id).await;
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        USERS as u64,
        "{printed}"
    );
    assert_eq!(fake.upload_count(), 1);
    assert_eq!(fake.file_id_send_count(), USERS - 1);
    let names: HashMap<i64, &str> = audience
        .iter()
        .map(|p| (p.chat.expect("chat"), p.first_name.as_str()))
        .collect();
    for m in fake.messages() {
        assert_eq!(
            m.text,
            format!("<b>Hi {}</b>, here is the poster", names[&m.chat_id])
        );
        assert_eq!(m.media.as_ref().map(|f| f.kind), Some("photo"));
        let register = (
            format!("Register, {}", names[&m.chat_id]),
            format!("https://example.org/r?chat={}", m.chat_id),
        );
        let schedule = (
            "Schedule".to_owned(),
            "https://example.org/schedule".to_owned(),
        );
        assert_eq!(m.buttons, vec![vec![register, schedule]]);
    }

    // The next broadcast, another process: the id from the database, no upload.
    let again = env
        .create("Poster again", template, "telegram", &[], None)
        .await;
    let again = again["id"].as_i64().expect("broadcast id");
    env.run_broadcast(again).await;
    assert_eq!(fake.upload_count(), 1);
    assert_eq!(fake.file_id_send_count(), 2 * USERS - 1);
}
