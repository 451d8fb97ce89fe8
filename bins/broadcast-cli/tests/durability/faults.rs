//! Faults of a channel, not of its recipients, through the real binary: a wrong SMTP password
//! and an invalid bot token pause the broadcast at the first answer, fail nobody and count no
//! attempt, and after the setting is fixed `resume` delivers everyone exactly once. And sends
//! whose outcome is unknown (the server accepted the message, then the connection dropped
//! before its answer) are retried and every resulting duplicate is counted.

use std::collections::HashMap;

use broadcast_domain::{AuditEntry, AuditLog};
use broadcast_store::Store;
use broadcast_testkit::smtp::{SmtpSink, SmtpSinkConfig};
use broadcast_testkit::telegram::{FakeTelegram, FakeTelegramConfig};

use crate::harness::{Env, TOKEN, count, fake_telegram, people};

const USERS: usize = 120;

/// Every row of the broadcast is pending with no attempt and no error kind.
async fn all_pending_untried(env: &Env, id: i64) {
    let rows = env.recipients(id, None).await;
    assert_eq!(rows.len(), USERS);
    for r in &rows {
        assert_eq!(r["status"], "pending", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
        assert!(r["error_kind"].is_null(), "{r}");
    }
}

/// The broadcast was paused by the engine, with a reason naming the channel, and the pause is
/// in the audit log under the worker's name.
async fn paused_for_a_fault_of(env: &Env, id: i64, channel: &str) {
    let shown = env.show(id).await;
    assert_eq!(shown["status"], "paused", "{shown}");
    let reason = shown["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("the {channel} channel failed for every recipient")),
        "the reason names the fault: {shown}"
    );
    let entries = audit(env).await;
    assert!(
        entries.iter().any(|e| e.action == "broadcast.pause"
            && e.target_id == Some(id)
            && e.actor.starts_with("worker:")
            && e.details["cause"] == "channel_fault"),
        "the automatic pause is audited: {entries:#?}"
    );
}

/// The audit log, newest first, read from the test's database.
async fn audit(env: &Env) -> Vec<AuditEntry> {
    let store = Store::connect(env.database_url())
        .await
        .expect("open the database");
    store.recent(50, 0).await.expect("read the audit log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_smtp_password_pauses_without_failing_anyone() {
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start_with(SmtpSinkConfig {
        credentials: Some(("news".into(), "right-password".into())),
        ..SmtpSinkConfig::default()
    })
    .await;
    let mut env = Env::sqlite();
    env.smtp(&sink)
        .set("SMTP_USERNAME", "news")
        .set("SMTP_PASSWORD", "wrong-password");
    let audience = people("auth", USERS, true, None);
    env.import(&audience, None).await;
    let template = env.template("auth").await;
    let b = env.create("Auth", template, "email", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "paused", "{printed}");
    assert_eq!(printed["outcome"], "paused", "exit code 3: {printed}");
    assert_eq!(sink.message_count(), 0);
    assert_eq!(count(&printed, &["stats", "by_status", "failed"]), 0);
    all_pending_untried(&env, id).await;
    paused_for_a_fault_of(&env, id, "email").await;
    let entries = format!("{:?}", audit(&env).await);
    assert!(
        !entries.contains("wrong-password"),
        "no secret in the audit log"
    );

    // The operator fixes the password and resumes: everyone, exactly once.
    env.set("SMTP_PASSWORD", "right-password");
    env.json(&["broadcast", "resume", &id.to_string()]).await;
    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        USERS as u64
    );
    let mut per_address: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        *per_address.entry(m.rcpt_to[0].clone()).or_default() += 1;
    }
    assert_eq!(per_address.len(), USERS);
    assert!(per_address.values().all(|n| *n == 1), "{per_address:?}");
    let rows = env.recipients(id, None).await;
    assert!(rows.iter().all(|r| r["attempts"] == 1), "one attempt each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_bot_token_pauses_without_failing_anyone() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(30, 1_000).await;
    let mut env = Env::sqlite();
    env.telegram(&fake).set(
        "TELEGRAM_BOT_TOKEN",
        "4242424:AAH-revoked_token_000000000000000",
    );
    let audience = people("token", USERS, false, Some(8_100_000));
    env.import(&audience, None).await;
    let template = env.template("token").await;
    let b = env.create("Token", template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "paused", "{printed}");
    assert_eq!(printed["outcome"], "paused", "exit code 3: {printed}");
    assert_eq!(fake.message_count(), 0);
    assert_eq!(count(&printed, &["stats", "by_status", "failed"]), 0);
    all_pending_untried(&env, id).await;
    paused_for_a_fault_of(&env, id, "telegram").await;
    let shown = env.show(id).await.to_string();
    assert!(
        !shown.contains("revoked_token"),
        "no token in the reason: {shown}"
    );

    env.set("TELEGRAM_BOT_TOKEN", TOKEN);
    env.json(&["broadcast", "resume", &id.to_string()]).await;
    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in fake.messages() {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(per_chat.len(), USERS);
    assert!(per_chat.values().all(|n| *n == 1), "{per_chat:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_duplicate_after_a_dropped_connection_is_counted() {
    let _serial = crate::SERIAL.lock().await;
    let fake = FakeTelegram::start_with(FakeTelegramConfig {
        token: TOKEN.to_owned(),
        per_second: 1_000,
        paid_per_second: 1_000,
        drop_every: Some(25),
        ..FakeTelegramConfig::default()
    })
    .await;
    let sink = SmtpSink::start_with(SmtpSinkConfig {
        drop_every: Some(25),
        ..SmtpSinkConfig::default()
    })
    .await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .smtp(&sink)
        .set("TELEGRAM_PAID_BROADCAST", "true")
        .set("TELEGRAM_RATE_LIMIT", "1000")
        .set("RETRY_BASE_SECONDS", "1");
    let users = 300;
    let audience = people("drop", users, true, Some(8_200_000));
    env.import(&audience, None).await;
    let template = env.template("drop").await;
    let b = env.create("Drops", template, "both", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        2 * users as u64
    );

    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in fake.messages() {
        *copies.entry(format!("tg:{}", m.chat_id)).or_default() += 1;
    }
    for m in sink.messages() {
        *copies.entry(format!("mail:{}", m.rcpt_to[0])).or_default() += 1;
    }
    assert_eq!(copies.len(), 2 * users, "everyone got their messages");
    let real: usize = copies.values().map(|n| n - 1).sum();
    let dropped = fake.dropped() + sink.counts().dropped_after_accept as usize;
    let possible = count(&printed, &["stats", "possible_duplicates"]) as usize;
    eprintln!(
        "dropped connections: {dropped} answers lost, {real} real duplicates, \
         possible_duplicates {possible}"
    );
    assert!(dropped >= 20, "the fakes dropped {dropped} answers");
    assert_eq!(
        real, dropped,
        "each lost answer was retried and delivered again"
    );
    assert_eq!(
        possible, dropped,
        "every send with an unknown outcome is counted, and nothing else"
    );
    let rows = env.recipients(id, None).await;
    let uncertain = rows
        .iter()
        .filter(|r| r["uncertain_sends"].as_i64().unwrap_or(0) > 0)
        .count();
    assert_eq!(
        uncertain, dropped,
        "the rows that may have gone twice are marked"
    );
}

/// `possible_duplicates` counts sends, not rows: a chat whose connection drops twice after the
/// server accepted the message got three copies, two duplicates, and counts 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_connection_dropped_twice_counts_two_duplicates() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(30, 1_000).await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .set("RETRY_BASE_SECONDS", "1")
        .set("RETRY_MAX_SECONDS", "1");
    let users = 20;
    let audience = people("twice", users, false, Some(8_300_000));
    env.import(&audience, None).await;
    let unlucky: Vec<i64> = audience
        .iter()
        .step_by(5)
        .map(|p| p.chat.expect("chat"))
        .collect();
    assert_eq!(unlucky.len(), 4);
    for chat in &unlucky {
        fake.set_chat(
            *chat,
            broadcast_testkit::telegram::ChatBehavior::AcceptThenDrop(2),
        );
    }
    let template = env.template("twice").await;
    let b = env.create("Twice", template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    let mut copies: HashMap<i64, usize> = HashMap::new();
    for m in fake.messages() {
        *copies.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(copies.len(), users, "everyone got the message");
    for chat in &unlucky {
        assert_eq!(
            copies[chat], 3,
            "chat {chat}: two dropped answers, then one"
        );
    }
    let real: usize = copies.values().map(|n| n - 1).sum();
    assert_eq!(real, 8);
    assert_eq!(
        count(&printed, &["stats", "possible_duplicates"]),
        8,
        "one per uncertain send: {printed}"
    );
    let rows = env.recipients(id, None).await;
    let per_row: Vec<i64> = rows
        .iter()
        .filter_map(|r| r["uncertain_sends"].as_i64().filter(|n| *n > 0))
        .collect();
    assert_eq!(per_row, vec![2; 4], "{rows:?}");
}
