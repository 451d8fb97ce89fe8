//! Pacing against a Bot API fake as strict as Telegram's documented limits: at most N accepted
//! messages in **any** sliding second, counted at the server's arrival time, and at most one
//! per chat in any second. Worker processes deliver a broadcast at 30/s (one worker, and three
//! on PostgreSQL sharing the bot's rate through the database) and at 1000/s with paid
//! broadcasts, idle and with a busy loop competing for the CPU: no answer 429, no chat above
//! 1/s (also with several messages per chat), and at 30/s the achieved rate at least 98 % of
//! the limit. A bot 50 ms from the server (each way 12.5-37.5 ms) keeps 90 % of 30/s, one
//! worker and three: every message answered late owes the shared slots one move per second,
//! not one per reservation (before, the rate fell to 77-82 %). The 1000/s rate is asserted by the release-built benchmark
//! (`bench --only telegram --check`, figures in docs/performance.md): in the debug build that
//! `cargo test` makes, the worker's and the fake's HTTP stacks, not the pacer, set the pace.
//!
//! Full size (3,000 messages at 30/s, about 100 s; 30,000 at 1000/s) with
//! `STRICT_PACING_FULL=1`; otherwise a tenth of that, so that `cargo test` (and `.ci/run`)
//! stays quick.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broadcast_testkit::TestDb;

use crate::harness::{Env, count, fake_telegram, fake_telegram_away, people, stop_all, tail};

/// Size of a run: messages at 30/s and at 1000/s.
fn sizes() -> (usize, usize) {
    match std::env::var("STRICT_PACING_FULL").as_deref() {
        Ok("1" | "true") => (3_000, 30_000),
        _ => (300, 3_000),
    }
}

/// A thread spinning on one core until dropped: the machine is busy while messages are paced.
struct BusyLoop(Arc<AtomicBool>, Option<std::thread::JoinHandle<u64>>);

impl BusyLoop {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut spins = 0u64;
            while !flag.load(Ordering::Relaxed) {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
            spins
        });
        Self(stop, Some(handle))
    }
}

impl Drop for BusyLoop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// One run: `users` chats, `workers` worker processes, the fake at `rate`/s (paid when
/// `paid`), optionally with a busy loop.
struct Case {
    name: &'static str,
    users: usize,
    rate: usize,
    paid: bool,
    workers: usize,
    busy: bool,
    /// The fake's one-way delay ([`FakeTelegramConfig::one_way_delay`]).
    delay: Duration,
}

async fn run(case: Case, db: Option<TestDb>) {
    let _serial = crate::SERIAL.lock().await;
    let Case {
        name,
        users,
        rate,
        paid,
        workers,
        busy,
        delay,
    } = case;
    let fake = match paid {
        true => fake_telegram_away(30, rate as u32, delay).await,
        false => fake_telegram_away(rate as u32, 1_000, delay).await,
    };
    let mut env = match &db {
        Some(db) => Env::with_database(db.url()),
        None => Env::sqlite(),
    };
    env.telegram(&fake)
        .set("TELEGRAM_RATE_LIMIT", &rate.to_string())
        .set("LOG", "warn,broadcast_orchestrator::engine::pipeline=debug");
    if paid {
        // At 1000/s a send waits for its slot and then for the answer: the worker keeps a
        // tenth of the rate in flight by itself (docs/operations.md).
        env.set("TELEGRAM_PAID_BROADCAST", "true")
            .set("BATCH_SIZE", "500");
    } else {
        env.set("BATCH_SIZE", "50");
    }
    let audience = people(name, users, false, Some(7_000_000));
    env.import(&audience, None).await;
    let template = env.template(name).await;
    let b = env.create(name, template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let mut procs: Vec<_> = (0..workers)
        .map(|i| env.worker(&format!("{name}-{i}")))
        .collect();
    // Let them connect before there is work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let load = busy.then(BusyLoop::start);
    env.launch(id).await;
    let ideal = Duration::from_secs_f64(users as f64 / rate as f64);
    let refs: Vec<_> = procs.iter().collect();
    env.wait_for_status(id, "completed", ideal * 2 + Duration::from_secs(30), &refs)
        .await;
    drop(load);
    stop_all(&mut procs, &format!("{name}: ")).await;

    let messages = fake.messages();
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in &messages {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    let span = messages
        .last()
        .expect("messages")
        .at
        .duration_since(messages[0].at);
    let achieved = (messages.len() - 1) as f64 / span.as_secs_f64();
    let max_1s = fake.max_in_window(Duration::from_secs(1));
    let throttled = fake.throttled();
    eprintln!(
        "{name}: {} messages by {workers} worker(s) at {rate}/s{}: {achieved:.2}/s ({:.2} % of \
         the limit) over {span:?}; highest count in any second {max_1s}; {} answers 429",
        messages.len(),
        if busy { " under CPU load" } else { "" },
        achieved / rate as f64 * 100.0,
        throttled.len()
    );
    // What the server had counted when it refused: the accepted messages in the second
    // before, and whether the chat had one of them.
    let context: Vec<String> = throttled
        .iter()
        .take(5)
        .map(|t| {
            let recent: Vec<_> = messages
                .iter()
                .filter(|m| m.at <= t.at && t.at.duration_since(m.at) < Duration::from_secs(1))
                .collect();
            let chat = recent.iter().any(|m| Some(m.chat_id) == t.chat_id);
            format!(
                "{:?} after the first message, chat {:?}: {} accepted in the second before{}",
                t.at.duration_since(messages[0].at),
                t.chat_id,
                recent.len(),
                if chat {
                    ", one of them to that chat"
                } else {
                    ""
                }
            )
        })
        .collect();
    assert!(
        throttled.is_empty(),
        "{name}: the fake answered 429 {} times: {context:#?}\n--- a worker's log\n{}",
        throttled.len(),
        tail(&procs[0].stderr(), 3000)
    );
    assert!(max_1s <= rate, "{name}: {max_1s} messages in one second");
    assert!(
        fake.max_per_chat_in_window(Duration::from_secs(1)) <= 1,
        "{name}: a chat got two messages within a second"
    );
    assert_eq!(per_chat.len(), users, "{name}: every chat got its message");
    assert!(
        per_chat.values().all(|n| *n == 1),
        "{name}: a message went twice"
    );
    // At 1000/s the rate is the benchmark's to assert (see the module documentation); it is
    // printed above. The target holds over a run of 100 s or more; a short run (the default
    // size) also carries the start-up of its workers, so it is held to 95 %.
    // Far from the server, a window's messages are spaced by the window plus the latest
    // answer's lateness (about 95 % of the limit at 50 ms).
    let floor = if !delay.is_zero() {
        0.90
    } else if span >= Duration::from_secs(90) {
        0.98
    } else {
        0.95
    };
    if rate <= 100 {
        assert!(
            achieved >= floor * rate as f64,
            "{name}: {achieved:.2}/s is below {:.0} % of {rate}/s",
            floor * 100.0
        );
    }
    let stats = env.stats(id).await;
    assert_eq!(
        count(&stats, &["stats", "by_status", "sent"]),
        users as u64,
        "{stats}"
    );
    drop(procs);
    drop(db);
}

async fn postgres(test: &str) -> Option<TestDb> {
    let db = TestDb::postgres().await;
    if db.is_none() {
        eprintln!("!!! SKIPPED {test}: no PostgreSQL (REQUIRE_POSTGRES=1 makes this a failure)");
    }
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_at_30_per_second_never_meets_a_429() {
    let (users, _) = sizes();
    for busy in [false, true] {
        let case = Case {
            name: if busy { "one30busy" } else { "one30" },
            users,
            rate: 30,
            paid: false,
            workers: 1,
            busy,
            delay: Duration::ZERO,
        };
        run(case, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_postgres_workers_at_30_per_second_never_meet_a_429() {
    let (users, _) = sizes();
    for busy in [false, true] {
        let Some(db) = postgres("three_postgres_workers_at_30_per_second_never_meet_a_429").await
        else {
            return;
        };
        let case = Case {
            name: if busy { "three30busy" } else { "three30" },
            users,
            rate: 30,
            paid: false,
            workers: 3,
            busy,
            delay: Duration::ZERO,
        };
        run(case, Some(db)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_broadcasts_at_1000_per_second_never_meet_a_429() {
    let (_, users) = sizes();
    for busy in [false, true] {
        let case = Case {
            name: if busy { "paid1000busy" } else { "paid1000" },
            users,
            rate: 1000,
            paid: true,
            workers: 1,
            busy,
            delay: Duration::ZERO,
        };
        run(case, None).await;
    }
}

/// A bot 50 ms from the server, one worker on SQLite and three on PostgreSQL: no 429, and
/// the rate stays near what the latency allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_far_from_the_server_keeps_its_rate_without_a_429() {
    let (users, _) = sizes();
    let delay = Duration::from_millis(25);
    let case = Case {
        name: "far30",
        users,
        rate: 30,
        paid: false,
        workers: 1,
        busy: false,
        delay,
    };
    run(case, None).await;
    let Some(db) = postgres("a_bot_far_from_the_server_keeps_its_rate_without_a_429").await else {
        return;
    };
    let case = Case {
        name: "far30three",
        users,
        rate: 30,
        paid: false,
        workers: 3,
        busy: false,
        delay,
    };
    run(case, Some(db)).await;
}

/// Per-chat pacing with several messages per chat: three broadcasts to the same chats,
/// launched together and delivered by one worker, put three messages in each chat, at most
/// one in any second at the server's arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_broadcasts_to_the_same_chats_keep_each_chat_at_one_per_second() {
    const CHATS: usize = 40;
    const BROADCASTS: usize = 3;
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(30, 1_000).await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .set("TELEGRAM_RATE_LIMIT", "30")
        .set("BATCH_SIZE", "50");
    let audience = people("chat", CHATS, false, Some(7_700_000));
    env.import(&audience, None).await;
    let template = env.template("chat").await;
    let mut ids = Vec::new();
    for i in 0..BROADCASTS {
        let b = env
            .create(&format!("Same chats {i}"), template, "telegram", &[], None)
            .await;
        ids.push(b["id"].as_i64().expect("broadcast id"));
    }
    for id in &ids {
        env.launch(*id).await;
    }
    let mut worker = env.worker("chat-0");
    for id in &ids {
        env.wait_for_status(*id, "completed", Duration::from_secs(60), &[&worker])
            .await;
    }
    stop_all(std::slice::from_mut(&mut worker), "").await;

    let messages = fake.messages();
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in &messages {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(per_chat.len(), CHATS, "every chat got messages");
    assert!(
        per_chat.values().all(|n| *n == BROADCASTS),
        "each chat got one message per broadcast: {per_chat:?}"
    );
    // The closest two messages of one chat came, at the server, this far apart.
    let mut last: HashMap<i64, std::time::Instant> = HashMap::new();
    let mut closest = Duration::MAX;
    for m in &messages {
        if let Some(prev) = last.insert(m.chat_id, m.at) {
            closest = closest.min(m.at.duration_since(prev));
        }
    }
    eprintln!(
        "per chat: {} messages to {CHATS} chats, closest two of one chat {closest:?} apart",
        messages.len()
    );
    assert!(
        fake.throttled().is_empty(),
        "the fake answered 429: {:?}",
        fake.throttled()
    );
    assert_eq!(
        fake.max_per_chat_in_window(Duration::from_secs(1)),
        1,
        "a chat got two messages within a second (closest {closest:?})"
    );
    assert!(fake.max_in_window(Duration::from_secs(1)) <= 30);
    for id in ids {
        let stats = env.stats(id).await;
        assert_eq!(
            count(&stats, &["stats", "by_status", "sent"]),
            CHATS as u64,
            "{stats}"
        );
    }
}
