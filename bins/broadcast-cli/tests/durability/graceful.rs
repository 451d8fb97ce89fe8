//! Graceful stop: SIGTERM makes a worker stop claiming, finish and record the sends in flight,
//! and exit 0 soon, leaving no row `sending` under its name. Checked twice: during the worker's
//! second batch and during its first one (moments after start).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Env, count, fake_telegram, people, tail};

const USERS: usize = 150;
/// `BATCH_SIZE`; at 30 messages/s one batch takes a second.
const BATCH: usize = 30;
const RATE: usize = 30;

/// Starts a worker, waits until the fake has `at` messages, sends SIGTERM and checks that the
/// worker exits 0 within one batch (plus start-up slack) and left nothing `sending`.
async fn stop_during_sends(
    env: &Env,
    fake: &broadcast_testkit::telegram::FakeTelegram,
    id: i64,
    worker_id: &str,
    at: usize,
) -> Duration {
    let mut worker = env.worker(worker_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.message_count() < at {
        assert!(
            worker.exited().is_none() && Instant::now() < deadline,
            "{worker_id}: {} of {at} messages; worker: {:?}\n{}",
            fake.message_count(),
            worker.exited(),
            tail(&worker.stderr(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = fake.message_count();
    let signalled = Instant::now();
    worker.sigterm();
    // One batch in flight at most, then exit.
    let allowed = Duration::from_secs_f64(BATCH as f64 / RATE as f64) + Duration::from_secs(4);
    let status = worker.wait(allowed).await;
    let took = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{worker_id} got SIGTERM with {before} messages delivered (so it was sending) and \
         did not exit 0 within {allowed:?}: {status:?} (a signal-terminated process has no exit \
         code)\n--- stderr\n{}",
        tail(&worker.stderr(), 3000)
    );
    let after = fake.message_count();
    assert!(
        after - before <= BATCH,
        "{worker_id} went on sending after SIGTERM: {before} -> {after}"
    );

    let leftover: Vec<Value> = env
        .recipients(id, Some("sending"))
        .await
        .into_iter()
        .filter(|r| r["lease_owner"] == worker_id)
        .collect();
    assert!(
        leftover.is_empty(),
        "{worker_id} left rows `sending`: {leftover:#?}"
    );
    let stats = env.stats(id).await;
    assert_eq!(
        count(&stats, &["stats", "by_status", "sent"]),
        after as u64,
        "every message the fake received is recorded as sent: {stats}"
    );
    assert_eq!(
        count(&stats, &["stats", "by_status", "sending"]),
        0,
        "{stats}"
    );
    assert!(
        after < USERS,
        "{worker_id} stopped only after the whole broadcast ({after} messages)"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .set("TELEGRAM_RATE_LIMIT", &RATE.to_string())
        .set("BATCH_SIZE", &BATCH.to_string());
    env.import(&people("term", USERS, false, Some(6_000_000)), None)
        .await;
    let template = env.template("term").await;
    let b = env
        .create("Graceful stop", template, "telegram", &[], None)
        .await;
    let id = b["id"].as_i64().expect("broadcast id");
    env.launch(id).await;

    // During the second batch of a worker that has been running for a while.
    let later = stop_during_sends(&env, &fake, id, "graceful-later", BATCH + 5).await;
    // During the first batch, moments after start.
    let sent = fake.message_count();
    let first = stop_during_sends(&env, &fake, id, "graceful-first", sent + 3).await;
    eprintln!(
        "graceful stop: exit {first:?} after SIGTERM in a first batch, {later:?} in a later one"
    );
    assert!(fake.throttled().is_empty(), "{:?}", fake.throttled());
}
