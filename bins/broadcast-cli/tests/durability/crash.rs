//! Crash safety: a worker killed with SIGKILL mid-way, three times, and started again finishes
//! the broadcast with every recipient delivered; only messages in flight at a kill are sent
//! twice, and the statistics count them honestly: `possible_duplicates` is at least the real
//! number and at most the in-flight bound per kill (rows claimed ahead and never started are
//! not counted).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::{Env, count, fake_telegram, people, tail};
use broadcast_testkit::smtp::SmtpSink;

/// Users; with policy `both` every one gets a Telegram message and an e-mail.
const USERS: usize = 5_000;
/// `WORKER_CONCURRENCY`: messages in flight at once per channel.
const CONCURRENCY: usize = 8;
/// `SMTP_POOL_SIZE`, not below the concurrency so the e-mail channel really has 8 in flight.
const POOL: usize = 8;
/// `BATCH_SIZE`: rows claimed at once.
const BATCH: usize = 50;
/// `LEASE_SECONDS`: how soon a dead worker's rows are taken over.
const LEASE_SECONDS: u64 = 2;
/// Kill the worker when the fakes together have received this many messages.
const KILL_AT: [usize; 3] = [1_500, 4_200, 7_000];

/// The design's promise (design.md section 5, issue 5): "only messages that were in flight at
/// the kill (bounded by concurrency) may be sent twice". Sent or being sent with the result not
/// yet written is at most `WORKER_CONCURRENCY` per channel (whatever the channel's own limit:
/// the SMTP pool bounds only the sends at once); so per kill at most 8 Telegram messages + 8
/// e-mails = 16.
const IN_FLIGHT_BOUND: usize = 2 * CONCURRENCY;

/// For every receipt that repeats an address, the kill that ended the life of the worker that
/// sent the previous copy: index `k` for kill `k`, `kills` when no kill followed (a duplicate
/// without a crash). `cuts[k]` is the number of messages received before kill `k`.
fn duplicates_by_kill(addresses: &[String], cuts: &[usize]) -> Vec<usize> {
    let mut per_kill = vec![0; cuts.len() + 1];
    let segment = |i: usize| cuts.iter().position(|&c| i < c).unwrap_or(cuts.len());
    let mut last_seen: HashMap<&str, usize> = HashMap::new();
    for (i, a) in addresses.iter().enumerate() {
        if let Some(prev) = last_seen.insert(a, i) {
            per_kill[segment(prev)] += 1;
        }
    }
    per_kill
}

/// Addresses received more than once: copies beyond the first.
fn extra_copies(addresses: &[String]) -> (usize, HashMap<&str, usize>) {
    let mut by_address: HashMap<&str, usize> = HashMap::new();
    for a in addresses {
        *by_address.entry(a).or_default() += 1;
    }
    let extra = by_address.values().map(|n| n - 1).sum();
    (extra, by_address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_finish_the_broadcast_with_bounded_counted_duplicates() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(1_000, 1_000).await;
    let sink = SmtpSink::start().await;
    let mut env = Env::sqlite();
    env.telegram(&fake)
        .smtp(&sink)
        .set("TELEGRAM_PAID_BROADCAST", "true")
        .set("TELEGRAM_RATE_LIMIT", "1000")
        .set("SMTP_POOL_SIZE", &POOL.to_string())
        .set("WORKER_CONCURRENCY", &CONCURRENCY.to_string())
        .set("BATCH_SIZE", &BATCH.to_string())
        .set("LEASE_SECONDS", &LEASE_SECONDS.to_string());

    let audience = people("crash", USERS, true, Some(5_000_000));
    env.import(&audience, Some("durability-cup")).await;
    let template = env.template("crash").await;
    let b = env
        .create(
            "Crash safety",
            template,
            "both",
            &["--competition", "durability-cup"],
            None,
        )
        .await;
    let id = b["id"].as_i64().expect("broadcast id");
    let launched = env.launch(id).await;
    let queued = &launched["materialised"]["queued"];
    assert_eq!(
        queued["telegram"].as_u64(),
        Some(USERS as u64),
        "{launched}"
    );
    assert_eq!(queued["email"].as_u64(), Some(USERS as u64), "{launched}");
    let total = 2 * USERS;

    let received = || fake.message_count() + sink.message_count() as usize;
    let started = Instant::now();
    let mut tg_cuts = Vec::new();
    let mut mail_cuts = Vec::new();
    let mut kill_report = Vec::new();
    for (k, at) in KILL_AT.into_iter().enumerate() {
        let mut worker = env.worker(&format!("crash-{k}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while received() < at {
            if let Some(status) = worker.exited() {
                panic!(
                    "worker {k} exited ({status}) before the kill\n{}",
                    tail(&worker.stderr(), 3000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "worker {k}: only {} of {at} messages within 60 s\n{}",
                received(),
                tail(&worker.stderr(), 3000)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worker.sigkill();
        // Requests that reached the fakes just before the kill are recorded before the cut.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (tg, mail) = (fake.message_count(), sink.message_count() as usize);
        assert!(tg + mail < total, "kill {k} came too late: all sent");
        tg_cuts.push(tg);
        mail_cuts.push(mail);
        kill_report.push(format!(
            "kill {k} after {:?} of life at {} telegram + {} e-mails",
            worker.started.elapsed(),
            tg,
            mail
        ));
    }
    let mut last = env.worker("crash-final");
    let done = env
        .wait_for_status(id, "completed", Duration::from_secs(60), &[&last])
        .await;
    let elapsed = started.elapsed();
    last.sigterm();
    let status = last.wait(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the last worker did not stop cleanly on SIGTERM: {status:?}\n{}",
        tail(&last.stderr(), 3000)
    );
    drop(last);

    let tg: Vec<String> = fake
        .messages()
        .iter()
        .map(|m| m.chat_id.to_string())
        .collect();
    let mail: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| {
            assert_eq!(m.rcpt_to.len(), 1, "one recipient per e-mail");
            m.rcpt_to[0].to_ascii_lowercase()
        })
        .collect();
    let (tg_extra, tg_by) = extra_copies(&tg);
    let (mail_extra, mail_by) = extra_copies(&mail);

    // Every recipient delivered, nobody else.
    let want_tg: Vec<String> = audience
        .iter()
        .map(|p| p.chat.expect("chat").to_string())
        .collect();
    let want_mail: Vec<String> = audience
        .iter()
        .map(|p| p.email.clone().expect("email"))
        .collect();
    for a in &want_tg {
        assert!(tg_by.contains_key(a.as_str()), "chat {a} got nothing");
    }
    for a in &want_mail {
        assert!(mail_by.contains_key(a.as_str()), "{a} got nothing");
    }
    assert_eq!(tg_by.len(), USERS, "distinct chats");
    assert_eq!(mail_by.len(), USERS, "distinct addresses");

    // Duplicates: only those in flight at a kill, and counted.
    let tg_by_kill = duplicates_by_kill(&tg, &tg_cuts);
    let mail_by_kill = duplicates_by_kill(&mail, &mail_cuts);
    let per_kill: Vec<usize> = (0..=KILL_AT.len())
        .map(|k| tg_by_kill[k] + mail_by_kill[k])
        .collect();
    let stats = env.stats(id).await;
    eprintln!(
        "crash test: {total} messages in {elapsed:?}; {}; duplicates per kill \
         (telegram + e-mail): {:?} + {:?}, without a kill: {}; possible_duplicates {}; bound per \
         kill {IN_FLIGHT_BOUND} (concurrency {CONCURRENCY} x 2 channels), batch {BATCH}",
        kill_report.join(", "),
        &tg_by_kill[..KILL_AT.len()],
        &mail_by_kill[..KILL_AT.len()],
        per_kill[KILL_AT.len()],
        stats["stats"]["possible_duplicates"]
    );
    assert_eq!(
        per_kill[KILL_AT.len()],
        0,
        "a message was sent twice although its worker was never killed"
    );
    let possible = count(&stats, &["stats", "possible_duplicates"]);
    assert!(
        possible as usize >= tg_extra + mail_extra,
        "the statistics count {possible} possible duplicates, the fakes received {} extra copies",
        tg_extra + mail_extra
    );
    assert!(
        possible as usize <= IN_FLIGHT_BOUND * KILL_AT.len(),
        "the statistics count {possible} possible duplicates, more than the {} sends that can \
         be in flight at {} kills",
        IN_FLIGHT_BOUND * KILL_AT.len(),
        KILL_AT.len()
    );

    // The statistics equal what the fakes received.
    assert_eq!(done["status"], "completed");
    assert_eq!(
        count(&stats, &["stats", "by_channel", "telegram", "sent"]),
        tg_by.len() as u64,
        "{stats}"
    );
    assert_eq!(
        count(&stats, &["stats", "by_channel", "email", "sent"]),
        mail_by.len() as u64,
        "{stats}"
    );
    assert_eq!(
        count(&stats, &["stats", "by_status", "sent"]),
        total as u64,
        "{stats}"
    );
    assert_eq!(count(&stats, &["stats", "total"]), total as u64, "{stats}");
    for worker_left in ["pending", "sending", "failed"] {
        assert_eq!(
            count(&stats, &["stats", "by_status", worker_left]),
            0,
            "{stats}"
        );
    }

    for (k, n) in per_kill[..KILL_AT.len()].iter().enumerate() {
        assert!(
            *n <= IN_FLIGHT_BOUND,
            "kill {k}: {n} messages were delivered twice, more than the {IN_FLIGHT_BOUND} that \
             can be in flight (WORKER_CONCURRENCY={CONCURRENCY} per channel, 2 channels); \
             per kill: {per_kill:?} with BATCH_SIZE={BATCH}"
        );
    }
}

#[test]
fn duplicates_are_charged_to_the_kill_before_them() {
    let a = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    // x, y before kill 0; y again (kill 0's), z; z again after kill 1; w twice, no kill.
    let seen = a(&["x", "y", "y", "z", "z", "w", "w"]);
    assert_eq!(duplicates_by_kill(&seen, &[2, 4]), vec![1, 1, 1]);
    assert_eq!(extra_copies(&seen).0, 3);
}
