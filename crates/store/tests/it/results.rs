//! DeliveryStore::record_results: every outcome, lost leases, batches.

use broadcast_domain::{
    ClaimRequest, DeliveryResult, DeliveryStatus, DeliveryStore, ErrorKind, Outcome,
};
use broadcast_store::MAX_ERROR_CHARS;
use chrono::Duration;

use crate::support::{assert_counts, row, running_with_rows, stores, t};

fn claim(worker: &str, now: i64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        now: t(now),
        lease_for: Duration::seconds(30),
        limit: 1000,
        broadcast_id: None,
        channels: Vec::new(),
    }
}

fn result(id: i64, worker: &str, outcome: Outcome) -> DeliveryResult {
    DeliveryResult {
        recipient_id: id,
        worker_id: worker.into(),
        uncertain: false,
        outcome,
    }
}

fn retry(next: i64, count_attempt: bool) -> Outcome {
    Outcome::Retry {
        next_attempt_at: t(next),
        kind: if count_attempt {
            ErrorKind::Transient
        } else {
            ErrorKind::RateLimited
        },
        error: "try later".into(),
        count_attempt,
    }
}

#[tokio::test]
async fn each_outcome_updates_the_row() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (_, ids) = running_with_rows(&store, 4).await;
        store.claim_due(&claim("w", 0)).await.unwrap();
        let long_error = "é".repeat(MAX_ERROR_CHARS + 500);
        let n = store
            .record_results(&[
                result(
                    ids[0],
                    "w",
                    Outcome::Sent {
                        at: t(100),
                        provider_message_id: Some("msg-1".into()),
                    },
                ),
                result(
                    ids[1],
                    "w",
                    Outcome::Failed {
                        at: t(100),
                        kind: ErrorKind::Blocked,
                        error: long_error,
                    },
                ),
                result(ids[2], "w", retry(60_000, true)),
                result(ids[3], "w", retry(5_000, false)),
            ])
            .await
            .unwrap();
        assert_eq!(n, 4, "{b}");

        let sent = row(&store, ids[0]).await;
        assert_eq!(sent.status, "sent", "{b}");
        assert_eq!(sent.sent_at, Some(t(100)), "{b}");
        assert_eq!(sent.provider_message_id.as_deref(), Some("msg-1"));
        assert_eq!(sent.attempts, 1, "{b}");
        assert_eq!(
            (sent.lease_owner, sent.lease_expires_at),
            (None, None),
            "{b}"
        );
        assert_eq!((sent.error_kind, sent.last_error), (None, None), "{b}");

        let failed = row(&store, ids[1]).await;
        assert_eq!(failed.status, "failed", "{b}");
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.error_kind.as_deref(), Some("blocked"), "{b}");
        assert_eq!(
            failed.last_error.unwrap().chars().count(),
            MAX_ERROR_CHARS,
            "{b}"
        );
        assert_eq!(failed.sent_at, None);
        assert_eq!(failed.lease_owner, None, "{b}");

        let retried = row(&store, ids[2]).await;
        assert_eq!(retried.status, "pending", "{b}");
        assert_eq!(retried.attempts, 1, "{b}");
        assert_eq!(retried.next_attempt_at, t(60_000), "{b}");
        assert_eq!(retried.error_kind.as_deref(), Some("transient"));
        assert_eq!(retried.last_error.as_deref(), Some("try later"));
        assert_eq!(retried.lease_owner, None, "{b}");

        let throttled = row(&store, ids[3]).await;
        assert_eq!(
            throttled.attempts, 0,
            "{b}: a rate-limited wait is not an attempt"
        );
        assert_eq!(throttled.next_attempt_at, t(5_000), "{b}");
        assert_eq!(throttled.error_kind.as_deref(), Some("rate_limited"));

        // Retried rows come back when they are due, in order; a success then clears the error.
        assert!(
            store
                .claim_due(&claim("w2", 4_999))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        let again = store.claim_due(&claim("w2", 60_000)).await.unwrap();
        assert_eq!(
            again.iter().map(|r| r.id).collect::<Vec<_>>(),
            [ids[3], ids[2]],
            "{b}"
        );
        let n = store
            .record_results(&[result(
                ids[2],
                "w2",
                Outcome::Sent {
                    at: t(61_000),
                    provider_message_id: None,
                },
            )])
            .await
            .unwrap();
        assert_eq!(n, 1, "{b}");
        let done = row(&store, ids[2]).await;
        assert_eq!(done.attempts, 2, "{b}");
        assert_eq!((done.error_kind, done.last_error), (None, None), "{b}");
        assert_eq!(done.provider_message_id, None);
    }
}

#[tokio::test]
async fn results_of_a_lost_lease_are_ignored() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (_, ids) = running_with_rows(&store, 2).await;
        store.claim_due(&claim("old", 0)).await.unwrap();
        // The lease expires and another worker takes the rows over.
        store.claim_due(&claim("new", 31_000)).await.unwrap();
        let sent = |id| {
            result(
                id,
                "old",
                Outcome::Sent {
                    at: t(40_000),
                    provider_message_id: Some("late".into()),
                },
            )
        };
        assert_eq!(
            store
                .record_results(&[sent(ids[0]), sent(ids[1])])
                .await
                .unwrap(),
            0,
            "{b}"
        );
        let r = row(&store, ids[0]).await;
        assert_eq!(r.status, "sending", "{b}");
        assert_eq!(r.lease_owner.as_deref(), Some("new"), "{b}");
        assert_eq!(r.provider_message_id, None, "{b}");

        // The new owner's result counts; a second result for a finished row does not.
        let mine = result(ids[0], "new", retry(100_000, true));
        assert_eq!(
            store
                .record_results(std::slice::from_ref(&mine))
                .await
                .unwrap(),
            1,
            "{b}"
        );
        assert_eq!(
            store.record_results(&[mine]).await.unwrap(),
            0,
            "{b}: row no longer sending"
        );
        // A mixed batch updates only the rows whose lease it holds.
        let n = store
            .record_results(&[
                result(ids[1], "old", retry(1, true)),
                result(ids[1], "new", retry(2, false)),
            ])
            .await
            .unwrap();
        assert_eq!(n, 1, "{b}");
        let r = row(&store, ids[1]).await;
        assert_eq!(
            r.next_attempt_at,
            t(2),
            "{b}: the lease holder's result was applied"
        );
        assert_eq!(r.attempts, 0, "{b}");
        assert_eq!(store.record_results(&[]).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn large_batches_are_written_in_one_call() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (broadcast, ids) = running_with_rows(&store, 600).await;
        let claimed = store.claim_due(&claim("w", 0)).await.unwrap();
        assert_eq!(claimed.len(), 600, "{b}");
        let results: Vec<DeliveryResult> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let outcome = match i % 3 {
                    0 => Outcome::Sent {
                        at: t(i as i64),
                        provider_message_id: Some(format!("m{i}")),
                    },
                    1 => Outcome::Failed {
                        at: t(i as i64),
                        kind: ErrorKind::Permanent,
                        error: format!("bad {i}"),
                    },
                    _ => retry(1_000 + i as i64, true),
                };
                result(*id, "w", outcome)
            })
            .collect();
        // More than one statement holds (500): one transaction, one counter upsert.
        assert_eq!(store.record_results(&results).await.unwrap(), 600, "{b}");
        let stats = assert_counts(&store, broadcast.id, &format!("{b}: large batch")).await;
        assert_eq!(stats.count(DeliveryStatus::Sent), 200, "{b}");
        assert_eq!(stats.count(DeliveryStatus::Failed), 200, "{b}");
        assert_eq!(stats.count(DeliveryStatus::Pending), 200, "{b}");
        assert_eq!(stats.first_sent_at, Some(t(0)), "{b}");
        assert_eq!(stats.last_sent_at, Some(t(597)), "{b}");
        let last = row(&store, ids[599]).await;
        assert_eq!(last.next_attempt_at, t(1_599), "{b}");
        let r = row(&store, ids[301]).await;
        assert_eq!(r.last_error.as_deref(), Some("bad 301"), "{b}");
    }
}
