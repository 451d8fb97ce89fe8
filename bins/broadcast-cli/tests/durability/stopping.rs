//! Pause and cancel stop sending (issue 21): once `broadcast pause` or `broadcast cancel`
//! returns, only the sends already started may still arrive (at most `WORKER_CONCURRENCY` per
//! channel per worker), rows claimed but not started go back (`pending` when paused,
//! `cancelled` when cancelled), and nothing is left `sending`. Against a fake Bot API at 20/s,
//! with one worker on SQLite and three on PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use broadcast_testkit::TestDb;
use broadcast_testkit::telegram::FakeTelegram;

use crate::harness::{Env, Proc, count, fake_telegram, people, stop_all, tail};

const RATE: usize = 20;
const USERS: usize = 200;
/// `WORKER_CONCURRENCY`: sends in flight per channel per worker, the most that may still
/// arrive after a pause or cancel returns.
const IN_FLIGHT: usize = 4;

/// Waits until the fake has `n` messages (the workers must still be running).
async fn until_messages(fake: &FakeTelegram, n: usize, workers: &mut [Proc]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.message_count() < n {
        for w in workers.iter_mut() {
            let exited = w.exited();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{} of {n} messages; {}: {exited:?}\n{}",
                fake.message_count(),
                w.args(),
                tail(&w.stderr(), 3000)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `broadcast <verb> <id>` while `workers` deliver it; answers how many messages arrived after
/// the command returned, once two seconds have passed.
async fn stop(env: &Env, fake: &FakeTelegram, verb: &str, id: i64, workers: &mut [Proc]) -> usize {
    until_messages(fake, 30, workers).await;
    env.json(&["broadcast", verb, &id.to_string()]).await;
    let returned = fake.message_count();
    // Every worker sees it at its next mark; give them a round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.message_count() - returned
}

fn assert_once_each(fake: &FakeTelegram) {
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in fake.messages() {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    assert!(per_chat.values().all(|n| *n == 1), "a message went twice");
}

async fn setup(env: &mut Env, fake: &FakeTelegram, name: &str) -> i64 {
    env.telegram(fake)
        .set("TELEGRAM_RATE_LIMIT", &RATE.to_string())
        .set("WORKER_CONCURRENCY", &IN_FLIGHT.to_string())
        .set("BATCH_SIZE", "50");
    env.import(&people(name, USERS, false, Some(8_000_000)), None)
        .await;
    let template = env.template(name).await;
    let b = env.create(name, template, "telegram", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");
    env.launch(id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_sending_and_resume_delivers_the_rest_once() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::sqlite();
    let id = setup(&mut env, &fake, "pause").await;
    let mut workers = vec![env.worker("pausing")];

    let late = stop(&env, &fake, "pause", id, &mut workers).await;
    eprintln!("pause: {late} messages arrived after `broadcast pause` returned");
    assert!(
        late <= IN_FLIGHT,
        "{late} messages arrived after the pause returned; at most {IN_FLIGHT} were started"
    );
    let stats = env.stats(id).await;
    assert_eq!(
        count(&stats, &["stats", "by_status", "sending"]),
        0,
        "{stats}"
    );
    assert_eq!(
        count(&stats, &["stats", "by_status", "sent"]),
        fake.message_count() as u64,
        "{stats}"
    );
    assert_eq!(env.show(id).await["status"], "paused");

    env.json(&["broadcast", "resume", &id.to_string()]).await;
    let refs: Vec<_> = workers.iter().collect();
    env.wait_for_status(id, "completed", Duration::from_secs(60), &refs)
        .await;
    stop_all(&mut workers, "").await;
    assert_eq!(fake.message_count(), USERS);
    assert_once_each(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_sending_on_three_postgres_workers_and_leaves_nothing_open() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "!!! SKIPPED cancel_stops_sending_on_three_postgres_workers_and_leaves_nothing_open: \
             no PostgreSQL (REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    };
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::with_database(db.url());
    let id = setup(&mut env, &fake, "cancel").await;
    let mut workers: Vec<_> = (0..3).map(|i| env.worker(&format!("cancel-{i}"))).collect();

    let late = stop(&env, &fake, "cancel", id, &mut workers).await;
    eprintln!("cancel: {late} messages arrived after `broadcast cancel` returned (3 workers)");
    assert!(
        late <= 3 * IN_FLIGHT,
        "{late} messages arrived after the cancel returned; at most {} were started",
        3 * IN_FLIGHT
    );
    stop_all(&mut workers, "").await;
    let stats = env.stats(id).await;
    let sent = count(&stats, &["stats", "by_status", "sent"]);
    assert_eq!(sent, fake.message_count() as u64, "{stats}");
    for open in ["pending", "sending"] {
        assert_eq!(count(&stats, &["stats", "by_status", open]), 0, "{stats}");
    }
    assert_eq!(
        count(&stats, &["stats", "by_status", "cancelled"]),
        USERS as u64 - sent,
        "{stats}"
    );
    assert_once_each(&fake);
    drop(db);
}

/// A worker killed with rows in flight, then the broadcast cancelled: the dead worker's
/// `sending` rows do not stay `sending` for ever. Once their lease has expired, the next
/// worker makes them `cancelled`, and nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_rows_of_a_cancelled_broadcast_do_not_stay_sending() {
    const LEASE_SECONDS: u64 = 2;
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::sqlite();
    env.set("LEASE_SECONDS", &LEASE_SECONDS.to_string());
    let id = setup(&mut env, &fake, "stuck").await;
    let mut worker = env.worker("stuck-0");
    until_messages(&fake, 30, std::slice::from_mut(&mut worker)).await;
    worker.sigkill();
    drop(worker);
    let sending = env.recipients(id, Some("sending")).await;
    assert!(!sending.is_empty(), "the killed worker held rows in flight");
    let cancelled = env.json(&["broadcast", "cancel", &id.to_string()]).await;
    assert_eq!(cancelled["broadcast_id"], id, "{cancelled}");
    assert_eq!(env.show(id).await["status"], "cancelled");
    let after_cancel = fake.message_count();

    let mut worker = env.worker("stuck-1");
    let deadline = Instant::now() + Duration::from_secs(5 * LEASE_SECONDS + 10);
    let left = loop {
        let left = env.recipients(id, Some("sending")).await.len();
        if left == 0 || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        left,
        0,
        "rows still `sending` {:?} after the lease expired\n{}",
        Instant::now(),
        tail(&worker.stderr(), 3000)
    );
    stop_all(std::slice::from_mut(&mut worker), "").await;
    let stats = env.stats(id).await;
    let sent = count(&stats, &["stats", "by_status", "sent"]);
    for open in ["pending", "sending"] {
        assert_eq!(count(&stats, &["stats", "by_status", open]), 0, "{stats}");
    }
    assert_eq!(
        count(&stats, &["stats", "by_status", "cancelled"]),
        USERS as u64 - sent,
        "{stats}"
    );
    assert_eq!(
        fake.message_count(),
        after_cancel,
        "nothing is sent after the cancel"
    );
    eprintln!(
        "stuck rows: {} were `sending` at the kill; {sent} sent, the rest cancelled",
        sending.len()
    );
}
