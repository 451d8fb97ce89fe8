//! The circuit breaker through the real binary: an SMTP server that refuses every message
//! pauses the broadcast after the threshold, not after the whole audience; after the operator
//! fixes the server, `resume` sends the rest and `retry` the ones that failed.

use std::collections::HashSet;

use broadcast_testkit::smtp::{Reply, SmtpSink};

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
        .set("WORKER_CONCURRENCY", &CONCURRENCY.to_string());
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

    // The operator fixes the server and resumes: the rest goes out.
    sink.reject_all_at_data(None);
    let resumed = env.json(&["broadcast", "resume", &id.to_string()]).await;
    assert_eq!(resumed["status"], "running", "{resumed}");
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
        (THRESHOLD..=THRESHOLD + CONCURRENCY).contains(&refused),
        "the sink refused {refused} messages before the broadcast paused: the breaker should \
         stop sending after {THRESHOLD} consecutive failures (+ at most {CONCURRENCY} in flight)"
    );
}
