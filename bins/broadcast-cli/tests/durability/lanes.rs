//! Every channel its own lane (issue 29): a `both` broadcast sends Telegram and e-mail at the
//! same time, so e-mail never waits for Telegram's 30/s; and inside one lane, a small
//! broadcast launched during a large one is served at once, not queued behind it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use broadcast_testkit::TestDb;
use broadcast_testkit::smtp::SmtpSink;
use broadcast_testkit::telegram::FakeTelegram;

use crate::harness::{Env, Proc, count, fake_telegram, people, stop_all, tail};

/// Users of the simultaneous runs: one Telegram message and one e-mail each.
const USERS: usize = 900;
/// Telegram's limit, as the fake enforces it.
const RATE: usize = 30;

/// What the fakes received, seen from the first Telegram message.
struct Arrivals {
    telegram: usize,
    /// The Telegram messages' rate between the first and the last.
    telegram_rate: f64,
    /// When the first and the last e-mail arrived after the first Telegram message (negative
    /// when before it, as a signed number of seconds).
    first_mail: f64,
    last_mail: f64,
    throttled: usize,
}

fn arrivals(fake: &FakeTelegram, sink: &SmtpSink) -> Arrivals {
    let tg = fake.messages();
    let mail = sink.messages();
    assert!(!tg.is_empty() && !mail.is_empty(), "both channels sent");
    let first_tg = tg.iter().map(|m| m.at).min().expect("telegram");
    let last_tg = tg.iter().map(|m| m.at).max().expect("telegram");
    let since = |at: Instant| match at.checked_duration_since(first_tg) {
        Some(d) => d.as_secs_f64(),
        None => -first_tg.duration_since(at).as_secs_f64(),
    };
    let span = last_tg.duration_since(first_tg).as_secs_f64();
    Arrivals {
        telegram: tg.len(),
        telegram_rate: (tg.len() - 1) as f64 / span,
        first_mail: mail.iter().map(|m| since(m.at)).fold(f64::MAX, f64::min),
        last_mail: mail.iter().map(|m| since(m.at)).fold(f64::MIN, f64::max),
        throttled: fake.throttled().len(),
    }
}

/// Every recipient got one message on each channel.
fn once_each(fake: &FakeTelegram, sink: &SmtpSink) {
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in fake.messages() {
        *copies.entry(format!("tg:{}", m.chat_id)).or_default() += 1;
    }
    for m in sink.messages() {
        *copies
            .entry(format!("mail:{}", m.rcpt_to[0].to_ascii_lowercase()))
            .or_default() += 1;
    }
    assert_eq!(copies.len(), 2 * USERS, "everyone got both messages");
    assert!(copies.values().all(|n| *n == 1), "nothing sent twice");
}

fn check_simultaneous(name: &str, a: &Arrivals) {
    eprintln!(
        "{name}: {} Telegram messages at {:.2}/s ({:.1} % of {RATE}/s), {} × 429; first e-mail \
         {:+.2} s, last e-mail {:+.2} s after the first Telegram message",
        a.telegram,
        a.telegram_rate,
        a.telegram_rate / RATE as f64 * 100.0,
        a.throttled,
        a.first_mail,
        a.last_mail
    );
    assert_eq!(a.throttled, 0, "{name}: the fake answered 429");
    assert!(
        a.first_mail <= 1.0,
        "{name}: the first e-mail came {:.2} s after the first Telegram message",
        a.first_mail
    );
    assert!(
        a.last_mail <= 5.0,
        "{name}: the last e-mail came {:.2} s after the first Telegram message",
        a.last_mail
    );
    assert!(
        a.telegram_rate >= 0.98 * RATE as f64,
        "{name}: Telegram at {:.2}/s, below 98 % of {RATE}/s",
        a.telegram_rate
    );
}

async fn setup(env: &mut Env, fake: &FakeTelegram, sink: &SmtpSink, name: &str) -> i64 {
    env.telegram(fake)
        .smtp(sink)
        .set("TELEGRAM_RATE_LIMIT", &RATE.to_string());
    env.import(&people(name, USERS, true, Some(7_900_000)), None)
        .await;
    let template = env.template(name).await;
    let b = env.create(name, template, "both", &[], None).await;
    b["id"].as_i64().expect("broadcast id")
}

/// Seconds in the CLI's "estimated duration: about 1m 40s" (or "at least 30s ...").
fn estimated_seconds(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("estimated duration: "))
        .unwrap_or_else(|| panic!("no estimate in\n{stderr}"));
    let words = line
        .trim_start_matches("about ")
        .trim_start_matches("at least ");
    let mut seconds = 0.0;
    for part in words.split_whitespace() {
        let (n, unit) = part.split_at(part.len() - 1);
        let Ok(n) = n.parse::<f64>() else { break };
        seconds += n * match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => break,
        };
    }
    seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_email_go_out_at_the_same_time() {
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let sink = SmtpSink::start().await;
    let mut env = Env::sqlite();
    let id = setup(&mut env, &fake, &sink, "lanes").await;

    let run = env
        .run(&["broadcast", "run", &id.to_string(), "--yes", "--json"])
        .await;
    let printed = run.json();
    assert_eq!(
        printed["status"],
        "completed",
        "{}",
        tail(&run.stderr, 3000)
    );
    let a = arrivals(&fake, &sink);
    check_simultaneous("one SQLite worker", &a);
    once_each(&fake, &sink);

    let estimate = estimated_seconds(&run.stderr);
    let took = printed["duration_seconds"].as_f64().expect("duration");
    eprintln!("estimate {estimate} s, the run took {took:.2} s");
    assert!(
        (took - estimate).abs() <= 0.15 * took,
        "the estimate ({estimate} s) is not within 15 % of the run ({took:.2} s)"
    );
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        2 * USERS as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_email_go_out_at_the_same_time_with_three_postgres_workers() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "!!! SKIPPED telegram_and_email_go_out_at_the_same_time_with_three_postgres_workers: \
             no PostgreSQL (REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    };
    let _serial = crate::SERIAL.lock().await;
    let fake = fake_telegram(RATE as u32, 1_000).await;
    let sink = SmtpSink::start().await;
    let mut env = Env::with_database(db.url());
    let id = setup(&mut env, &fake, &sink, "lanes3").await;
    let mut workers: Vec<Proc> = (0..3).map(|i| env.worker(&format!("lane-{i}"))).collect();
    // Let them connect before there is work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    env.launch(id).await;
    let refs: Vec<_> = workers.iter().collect();
    env.wait_for_status(id, "completed", Duration::from_secs(90), &refs)
        .await;
    stop_all(&mut workers, "").await;
    let a = arrivals(&fake, &sink);
    check_simultaneous("three PostgreSQL workers", &a);
    once_each(&fake, &sink);
    drop(db);
}

/// A 20,000-recipient e-mail broadcast at 200/s; a 50-recipient one launched 5 s later
/// finishes within 5 s of its launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_broadcast_is_not_queued_behind_a_large_one() {
    const LARGE: usize = 20_000;
    const SMALL: usize = 50;
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start().await;
    let mut env = Env::sqlite();
    env.smtp(&sink).set("EMAIL_RATE_LIMIT", "200");
    env.import(&people("large", LARGE, true, None), Some("large-cup"))
        .await;
    env.import(&people("small", SMALL, true, None), Some("small-cup"))
        .await;
    let template = env.template("fair").await;
    let large = env
        .create(
            "Large",
            template,
            "email",
            &["--competition", "large-cup"],
            None,
        )
        .await["id"]
        .as_i64()
        .expect("id");
    let small = env
        .create(
            "Small",
            template,
            "email",
            &["--competition", "small-cup"],
            None,
        )
        .await["id"]
        .as_i64()
        .expect("id");
    let mut worker = env.worker("fair-0");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    env.launch(large).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = sink.message_count();
    let launched = Instant::now();
    env.launch(small).await;
    env.wait_for_status(small, "completed", Duration::from_secs(30), &[&worker])
        .await;
    let took = launched.elapsed();
    let during = sink.message_count();
    env.json(&["broadcast", "cancel", &large.to_string()]).await;
    stop_all(std::slice::from_mut(&mut worker), "").await;

    let small_done = sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to[0].starts_with("small"))
        .count();
    eprintln!(
        "fair: the small broadcast finished {took:?} after its launch; {before} e-mails of the \
         large one before it, {during} in all by then"
    );
    assert_eq!(small_done, SMALL, "every small recipient got the e-mail");
    assert!(
        took <= Duration::from_secs(5),
        "the small broadcast took {took:?} after its launch"
    );
    // The large one kept going at about its rate meanwhile.
    assert!(
        before >= 500,
        "the large broadcast was sending: {before} in 5 s"
    );
}
