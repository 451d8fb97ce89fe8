//! The circuit breaker through the real binary: an SMTP server that refuses every message
//! pauses the broadcast after the threshold, not after the whole audience, and a probe that
//! fails keeps it paused; after the operator fixes the server, `resume` sends the rest and
//! `retry` the ones that failed. A relay that is down for a while and comes back is found by
//! a probe, and the broadcast finishes by itself.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use broadcast_domain::AuditLog;
use broadcast_store::Store;
use broadcast_testkit::smtp::{Reply, SmtpSink, SmtpSinkConfig};

use crate::harness::{Env, count, people};

const USERS: usize = 300;
/// The default threshold: 50 consecutive failures.
const THRESHOLD: u64 = 50;
/// `WORKER_CONCURRENCY` and `SMTP_POOL_SIZE`: e-mails in flight at once.
const CONCURRENCY: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smtp_server_pauses_the_broadcast_after_the_threshold() {
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start().await;
    sink.reject_all_at_data(Some(Reply::new(
        554,
        "5.7.1 Message rejected: sender not allowed",
    )));
    let mut env = Env::sqlite();
    env.smtp(&sink)
        .set("SMTP_POOL_SIZE", &CONCURRENCY.to_string())
        .set("WORKER_CONCURRENCY", &CONCURRENCY.to_string())
        // One probe a second after the pause, which the sink refuses too; the next would be
        // due after `run` stops waiting for probes.
        .set("BREAKER_COOLDOWN_SECONDS", "1")
        .set("BREAKER_COOLDOWN_MAX_SECONDS", "2");
    let audience = people("brk", USERS, true, None);
    env.import(&audience, None).await;
    let template = env.template("breaker").await;
    let b = env.create("Breaker", template, "email", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "paused", "{printed}");
    assert_eq!(printed["outcome"], "paused", "exit code 3: {printed}");
    let refused = sink.counts().data_refused;
    let failed = count(&printed, &["stats", "by_status", "failed"]);
    eprintln!(
        "breaker: paused after {refused} refused messages (threshold {THRESHOLD}, {CONCURRENCY} \
         in flight); failed rows {failed}"
    );
    assert_eq!(sink.message_count(), 0);
    assert_eq!(failed, refused, "each refusal is one failed row: {printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "pending"]),
        USERS as u64 - failed,
        "the rest waits: {printed}"
    );
    let shown = env.show(id).await;
    assert_eq!(shown["status"], "paused");
    let reason = shown["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("consecutive") && reason.contains("email") && reason.contains("554"),
        "status_reason names the cause: {shown}"
    );
    assert!(
        reason.contains("last probe: probe failed") && reason.contains("next probe at"),
        "status_reason tells about the probe: {shown}"
    );
    assert_eq!(
        shown["probe"]["channel"], "email",
        "the next probe: {shown}"
    );
    assert_eq!(
        shown["probe"]["cooldown_seconds"], 2.0,
        "doubled after the failed probe: {shown}"
    );

    // The operator fixes the server and resumes: the rest goes out.
    sink.reject_all_at_data(None);
    let resumed = env.json(&["broadcast", "resume", &id.to_string()]).await;
    assert_eq!(resumed["status"], "running", "{resumed}");
    assert_eq!(
        resumed["probe"],
        serde_json::Value::Null,
        "a resume ends the probing: {resumed}"
    );
    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(sink.message_count(), USERS as u64 - failed);
    assert_eq!(count(&printed, &["stats", "by_status", "failed"]), failed);

    // ... and a retry of the permanent failures sends the ones the breaker saw fail.
    let retried = env
        .json(&[
            "broadcast",
            "retry",
            &id.to_string(),
            "--error-kind",
            "permanent",
        ])
        .await;
    assert_eq!(retried["requeued_rows"].as_u64(), Some(failed), "{retried}");
    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        USERS as u64
    );
    let received: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m.rcpt_to[0].to_ascii_lowercase())
        .collect();
    let distinct: HashSet<&String> = received.iter().collect();
    assert_eq!(received.len(), USERS, "each address once");
    assert_eq!(distinct.len(), USERS);

    // Last, so that a breaker that trips too late still shows whether resume and retry work.
    assert!(
        (THRESHOLD + 1..=THRESHOLD + CONCURRENCY + 1).contains(&refused),
        "the sink refused {refused} messages before the broadcast stayed paused: the breaker \
         should stop sending after {THRESHOLD} consecutive failures (+ at most {CONCURRENCY} in \
         flight), then let one probe through"
    );
}

/// How long the relay is down.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_comes_back_is_found_by_a_probe_and_the_broadcast_finishes() {
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start().await;
    let port = sink.port();
    let mut env = Env::sqlite();
    env.smtp(&sink)
        .set("SMTP_POOL_SIZE", &CONCURRENCY.to_string())
        .set("WORKER_CONCURRENCY", &CONCURRENCY.to_string())
        .set("EMAIL_RATE_LIMIT", "40")
        .set("RETRY_BASE_SECONDS", "1")
        .set("RETRY_MAX_SECONDS", "2")
        // Probes 1, 2, 4 and 8 s apart: the fourth finds the relay back.
        .set("BREAKER_COOLDOWN_SECONDS", "1")
        .set("BREAKER_COOLDOWN_MAX_SECONDS", "16");
    let audience = people("heal", USERS, true, None);
    env.import(&audience, None).await;
    let template = env.template("heal").await;
    let b = env.create("Heal", template, "email", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let id_arg = id.to_string();
    let mut run = env.spawn(&["broadcast", "run", &id_arg, "--yes", "--json"], &[]);
    assert!(
        sink.wait_for_messages(60, Duration::from_secs(30)).await,
        "the broadcast started: {}",
        run.stderr()
    );
    // The relay goes away: connections are refused.
    let mut received = sink.messages();
    drop(sink);
    let down = std::time::Instant::now();
    let shown = env
        .wait_for_status(id, "paused", Duration::from_secs(20), &[&run])
        .await;
    let reason = shown["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("consecutive"), "{shown}");

    // While the breaker is open, the rows it held back are pending and untried.
    let rows = env.recipients(id, None).await;
    let tried = rows.iter().filter(|r| !r["error_kind"].is_null()).count() as u64;
    assert!(
        tried <= THRESHOLD + CONCURRENCY + 1,
        "{tried} rows carry an error: only the ones tried while the relay was down may"
    );
    for r in rows
        .iter()
        .filter(|r| r["status"] == "pending" && r["attempts"] == 0)
    {
        assert!(
            r["error_kind"].is_null(),
            "a held-back row is not an error: {r}"
        );
    }
    let stats = env.stats(id).await;
    let transient = count(&stats, &["by_error_kind", "transient"]);
    assert!(transient <= THRESHOLD + CONCURRENCY + 1, "{stats}");

    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let sink = SmtpSink::start_on(SmtpSinkConfig::default(), port)
        .await
        .expect("the relay comes back on its port");

    let Some(status) = run.wait(Duration::from_secs(60)).await else {
        panic!("`broadcast run` did not finish: {}", run.stderr());
    };
    let printed: serde_json::Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()));
    assert_eq!(status.code(), Some(0), "{printed}\n{}", run.stderr());
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        USERS as u64,
        "nothing lost: {printed}"
    );

    received.extend(sink.messages());
    let mut copies: HashMap<String, u64> = HashMap::new();
    for m in &received {
        *copies.entry(m.rcpt_to[0].to_ascii_lowercase()).or_default() += 1;
    }
    assert_eq!(copies.len(), USERS, "everyone got the message");
    let duplicates: u64 = copies.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= count(&printed, &["stats", "possible_duplicates"]),
        "{duplicates} duplicates, each of them counted: {printed}"
    );

    let store = Store::connect(env.database_url())
        .await
        .expect("open the database");
    let entries = store.recent(50, 0).await.expect("read the audit log");
    assert!(
        entries.iter().any(|e| e.action == "broadcast.resume"
            && e.target_id == Some(id)
            && e.actor.starts_with("worker:")
            && e.details["automatic"] == true
            && e.details["cause"] == "circuit_breaker_probe"),
        "the automatic resume is audited: {entries:#?}"
    );
    eprintln!(
        "heal: {tried} rows tried while the relay was down, {duplicates} duplicates, \
         finished {:?} after the outage began",
        down.elapsed()
    );
}
