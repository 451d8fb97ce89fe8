//! `broadcast retry --error-kind transient`: rows that ran out of attempts on a 451 go back in
//! the queue and are delivered by the next run; addresses that bounced (550) never do.

use broadcast_testkit::smtp::{Reply, SmtpSink};

use crate::harness::{Env, count, people};

const USERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_requeues_transient_failures_but_never_bounces() {
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start().await;
    let mut env = Env::sqlite();
    env.smtp(&sink).set("MAX_ATTEMPTS", "1");
    let audience = people("rty", USERS, true, None);
    let address = |i: usize| audience[i].email.clone().expect("email");
    let deferred: Vec<String> = (0..4).map(address).collect();
    let bounced: Vec<String> = (10..13).map(address).collect();
    for a in &deferred {
        sink.reject_recipient(a, Reply::new(451, "4.7.1 Greylisted, try again later"));
    }
    for a in &bounced {
        sink.reject_recipient(a, Reply::new(550, "5.1.1 No such user"));
    }
    env.import(&audience, None).await;
    let template = env.template("retry").await;
    let b = env.create("Retry", template, "email", &[], None).await;
    let id = b["id"].as_i64().expect("broadcast id");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        13,
        "{printed}"
    );
    assert_eq!(
        count(&printed, &["stats", "by_status", "failed"]),
        7,
        "{printed}"
    );
    assert_eq!(
        count(&printed, &["stats", "by_error_kind", "transient"]),
        4,
        "{printed}"
    );
    assert_eq!(
        count(&printed, &["stats", "by_error_kind", "invalid_address"]),
        3,
        "{printed}"
    );
    let failed = env.recipients(id, Some("failed")).await;
    for r in &failed {
        let a = r["address"].as_str().unwrap_or_default().to_owned();
        let kind = if deferred.contains(&a) {
            "transient"
        } else {
            assert!(bounced.contains(&a), "unexpected failure {r}");
            "invalid_address"
        };
        assert_eq!(r["error_kind"], kind, "{r}");
        assert_eq!(r["attempts"], 1, "MAX_ATTEMPTS=1: {r}");
    }

    // The greylisting ends; the operator retries the transient failures only.
    for a in &deferred {
        sink.accept_recipient(a);
    }
    let retried = env
        .json(&[
            "broadcast",
            "retry",
            &id.to_string(),
            "--error-kind",
            "transient",
        ])
        .await;
    assert_eq!(retried["requeued_rows"], 4, "{retried}");
    assert_eq!(env.show(id).await["status"], "running");
    let pending = env.recipients(id, Some("pending")).await;
    let mut requeued: Vec<String> = pending
        .iter()
        .map(|r| r["address"].as_str().unwrap_or_default().to_owned())
        .collect();
    requeued.sort();
    assert_eq!(requeued, deferred, "only the 451 rows are queued again");

    let printed = env.run_broadcast(id).await;
    assert_eq!(printed["status"], "completed", "{printed}");
    assert_eq!(
        count(&printed, &["stats", "by_status", "sent"]),
        17,
        "{printed}"
    );
    assert_eq!(
        count(&printed, &["stats", "by_status", "failed"]),
        3,
        "{printed}"
    );
    for a in &deferred {
        assert_eq!(
            sink.messages_to(a).len(),
            1,
            "{a} delivered once by the retry"
        );
    }

    // Nothing else is retried: bounced addresses are never queued again, whatever the kind.
    for args in [vec!["--error-kind", "invalid_address"], vec![]] {
        let mut all = vec!["broadcast", "retry"];
        let id = id.to_string();
        all.push(&id);
        all.extend(args);
        let retried = env.json(&all).await;
        assert_eq!(retried["requeued_rows"], 0, "{retried}");
    }
    assert_eq!(env.show(id).await["status"], "completed");
    for a in &bounced {
        assert!(
            sink.messages_to(a).is_empty(),
            "{a} bounced and got a message"
        );
    }
    assert_eq!(sink.message_count(), 17);
}
