//! Three worker processes share one broadcast on PostgreSQL: nothing is sent twice, everything
//! is delivered, and together they keep Telegram's 30 messages/s (the budget is shared through
//! the database, not multiplied by the number of workers). A 429 one of them receives holds
//! all of them back for its `retry_after`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use broadcast_testkit::TestDb;

use crate::harness::{Env, count, fake_telegram, people, stop_all};

const USERS: usize = 300;
const RATE: usize = 30;
const WORKERS: usize = 3;
const BATCH: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_postgres_share_the_rate_and_send_nothing_twice() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "!!! SKIPPED three_workers_on_postgres_share_the_rate_and_send_nothing_twice: no \
             PostgreSQL (REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    };
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::with_database(db.url());
    env.telegram(&fake)
        .set("TELEGRAM_RATE_LIMIT", &RATE.to_string())
        .set("BATCH_SIZE", &BATCH.to_string())
        .set("LOG", "warn,broadcast_store::claim=debug");
    let audience = people("pg", USERS, false, Some(7_000_000));
    env.import(&audience, None).await;
    let template = env.template("shared").await;
    let b = env
        .create("Three workers", template, "telegram", &[], None)
        .await;
    let id = b["id"].as_i64().expect("broadcast id");

    let mut workers: Vec<_> = (0..WORKERS)
        .map(|i| env.worker(&format!("pg-worker-{i}")))
        .collect();
    // Let all three connect before there is work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let launched_at = Instant::now();
    env.launch(id).await;
    let refs: Vec<_> = workers.iter().collect();
    env.wait_for_status(id, "completed", Duration::from_secs(40), &refs)
        .await;
    let wall = launched_at.elapsed();
    stop_all(&mut workers, "").await;

    let messages = fake.messages();
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in &messages {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    let twice: Vec<_> = per_chat.iter().filter(|(_, n)| **n > 1).collect();
    let first = messages.first().expect("messages").at;
    let last = messages.last().expect("messages").at;
    let span = last.duration_since(first);
    let max_1s = fake.max_in_window(Duration::from_secs(1));
    let throttled = fake.throttled();
    let claimed_by: Vec<usize> = workers
        .iter()
        .map(|w| {
            w.stderr()
                .lines()
                .filter(|l| l.contains("claimed due recipient rows") && !l.contains("claimed=0"))
                .count()
        })
        .collect();
    eprintln!(
        "three workers: {} messages, first to last {span:?} (ideal {:.1} s), launch to completed \
         {wall:?}; highest rate {max_1s} in 1 s; {} answers 429; batches claimed per worker \
         {claimed_by:?}",
        messages.len(),
        (USERS - 1) as f64 / RATE as f64,
        throttled.len()
    );
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(per_chat.len(), USERS, "every chat got its message");
    for p in &audience {
        assert!(per_chat.contains_key(&p.chat.expect("chat")));
    }
    let stats = env.stats(id).await;
    assert_eq!(
        count(&stats, &["stats", "by_status", "sent"]),
        USERS as u64,
        "{stats}"
    );
    assert_eq!(
        count(&stats, &["stats", "possible_duplicates"]),
        0,
        "{stats}"
    );
    // The fake counts in any sliding second, at arrival.
    assert!(
        max_1s <= RATE,
        "{max_1s} messages within one second with {WORKERS} workers at {RATE}/s"
    );
    assert!(
        throttled.is_empty(),
        "the fake answered 429 {} times: {:?}",
        throttled.len(),
        &throttled[..throttled.len().min(5)]
    );
    // N messages at 30/s take (N - 1) / 30 s from the first to the last.
    let ideal = Duration::from_secs_f64((USERS - 1) as f64 / RATE as f64);
    assert!(
        span + Duration::from_secs(1) >= ideal && span <= ideal + Duration::from_secs(3),
        "{USERS} messages in {span:?}; at {RATE}/s they take {ideal:?}"
    );
    assert!(
        claimed_by.iter().all(|n| *n > 0),
        "every worker took part: batches per worker {claimed_by:?}"
    );
    drop(workers);
    drop(db);
}

/// The retry_after of the one 429 the fake answers.
const RETRY_AFTER: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_holds_back_every_worker_that_sends_with_the_bot() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "!!! SKIPPED a_429_holds_back_every_worker_that_sends_with_the_bot: no PostgreSQL \
             (REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    };
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::with_database(db.url());
    env.telegram(&fake)
        .set("TELEGRAM_RATE_LIMIT", &RATE.to_string())
        .set("BATCH_SIZE", &BATCH.to_string())
        .set("LOG", "warn,broadcast_store::claim=debug");
    let audience = people("hold", USERS, false, Some(7_500_000));
    env.import(&audience, None).await;
    // A chat in the middle of the audience gets the 429, while every worker is sending.
    let unlucky = audience[USERS / 3].chat.expect("chat");
    fake.set_chat(
        unlucky,
        broadcast_testkit::telegram::ChatBehavior::RateLimitOnce(RETRY_AFTER),
    );
    let template = env.template("held").await;
    let b = env.create("One 429", template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let mut workers: Vec<_> = (0..WORKERS)
        .map(|i| env.worker(&format!("hold-worker-{i}")))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    env.launch(id).await;
    let refs: Vec<_> = workers.iter().collect();
    env.wait_for_status(id, "completed", Duration::from_secs(60), &refs)
        .await;
    stop_all(&mut workers, "").await;

    let throttled = fake.throttled();
    let messages = fake.messages();
    let senders = |w: &crate::harness::Proc| {
        w.stderr()
            .lines()
            .filter(|l| l.contains("claimed due recipient rows") && !l.contains("claimed=0"))
            .count()
    };
    let claimed_by: Vec<usize> = workers.iter().map(senders).collect();
    assert_eq!(
        throttled.len(),
        1,
        "every request during the hold is answered 429 again: {throttled:?}"
    );
    let hit = throttled[0].at;
    let hold = Duration::from_secs(u64::from(RETRY_AFTER));
    let during: Vec<_> = messages
        .iter()
        .filter(|m| m.at > hit && m.at < hit + hold)
        .collect();
    let next = messages
        .iter()
        .filter(|m| m.at > hit)
        .map(|m| m.at.duration_since(hit))
        .min();
    eprintln!(
        "one 429 (retry_after {RETRY_AFTER} s) among {WORKERS} workers: next message {next:?} \
         after it; batches claimed per worker {claimed_by:?}"
    );
    assert!(
        during.is_empty(),
        "{} messages arrived within {hold:?} after the 429",
        during.len()
    );
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in &messages {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(per_chat.len(), USERS, "every chat got its message");
    assert!(per_chat.values().all(|n| *n == 1), "nothing sent twice");
    assert!(
        claimed_by.iter().all(|n| *n > 0),
        "every worker took part: batches per worker {claimed_by:?}"
    );
    drop(workers);
    drop(db);
}
