//! The maintained counters (`broadcast_counts`) through a broadcast's whole life: after every
//! kind of write they equal a full `GROUP BY` over the ledger, and `stats()` equals the
//! statistics computed from the ledger the old way.

use broadcast_domain::{
    AudienceStore, BroadcastStatus, ChannelKind, ClaimRequest, DeliveryResult, DeliveryStatus,
    DeliveryStore, ErrorKind, Outcome, Recipient, RecipientQuery,
};
use broadcast_store::Store;
use broadcast_store::entity::users;
use chrono::Duration;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};

use crate::support::{
    Row, assert_counts, assert_counts_after_delete, broadcast, recipient, row, stores, t, user,
};

fn claim(worker: &str, now: i64, limit: u64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        now: t(now),
        lease_for: Duration::seconds(30),
        limit,
        broadcast_id: None,
        channels: Vec::new(),
    }
}

fn result(r: &Recipient, worker: &str, outcome: Outcome) -> DeliveryResult {
    DeliveryResult {
        recipient_id: r.id,
        worker_id: worker.into(),
        uncertain: false,
        outcome,
    }
}

fn sent(at: i64) -> Outcome {
    Outcome::Sent {
        at: t(at),
        provider_message_id: Some(format!("m{at}")),
    }
}

fn failed(kind: ErrorKind) -> Outcome {
    Outcome::Failed {
        at: t(0),
        kind,
        error: format!("{kind}"),
    }
}

fn retry(next: i64, kind: ErrorKind, count_attempt: bool) -> Outcome {
    Outcome::Retry {
        next_attempt_at: t(next),
        kind,
        error: "later".into(),
        count_attempt,
    }
}

/// A recipient row like a launch writes it (with the counters rebuilt, as a launch keeps them).
async fn launched(store: &Store, b: i64, n: i64, channel: ChannelKind, skip: Option<&str>) -> i64 {
    let u = user(store, n).await;
    let id = recipient(
        store,
        b,
        Row {
            channel,
            status: DeliveryStatus::Pending,
            ..Row::pending(u, t(0))
        },
    )
    .await;
    if let Some(reason) = skip {
        let mut m = row(store, id).await.into_active_model();
        m.status = Set(DeliveryStatus::Skipped.as_str().into());
        m.skip_reason = Set(Some(reason.into()));
        m.update(store.conn()).await.unwrap();
        store.recount(b).await.unwrap();
    }
    id
}

#[tokio::test]
async fn counters_follow_every_write_of_the_ledger() {
    for (db, store) in stores().await {
        let be = db.backend();
        let b = broadcast(&store, BroadcastStatus::Running).await.id;
        const TELEGRAM: ChannelKind = ChannelKind::TELEGRAM;
        const EMAIL: ChannelKind = ChannelKind::EMAIL;
        // Eight users with a Telegram row each (two skipped), two with an e-mail row too.
        let mut users = Vec::new();
        for n in 1..=8 {
            let skip = match n {
                7 => Some("no_telegram"),
                8 => Some("telegram_blocked"),
                _ => None,
            };
            let id = launched(&store, b, n, TELEGRAM, skip).await;
            users.push(row(&store, id).await.user_id);
        }
        for n in [1, 2] {
            let u = users[n - 1];
            recipient(
                &store,
                b,
                Row {
                    channel: EMAIL,
                    ..Row::pending(u, t(0))
                },
            )
            .await;
        }
        assert_counts(&store, b, &format!("{be}: launched")).await;

        // Claims: w1 takes 3 rows, w2 takes 2.
        let w1 = store.claim_due(&claim("w1", 0, 3)).await.unwrap();
        let w2 = store.claim_due(&claim("w2", 0, 2)).await.unwrap();
        assert_eq!((w1.len(), w2.len()), (3, 2), "{be}");
        assert_counts(&store, b, &format!("{be}: claimed")).await;

        // w1 started sending all of its rows, w2 one of its two.
        let started: Vec<_> = w1.iter().map(|r| r.id).collect();
        assert_eq!(
            store
                .mark_started("w1", &started, t(10))
                .await
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            store
                .mark_started("w2", &[w2[0].id], t(10))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_counts(&store, b, &format!("{be}: started")).await;

        // Both leases expire: w3 takes them over and the 3 rows left; the 4 whose sends had
        // started are possible duplicates, the one claimed ahead and never started is not.
        let w3 = store.claim_due(&claim("w3", 31_000, 100)).await.unwrap();
        assert_eq!(w3.len(), 8, "{be}");
        let stats = assert_counts(&store, b, &format!("{be}: takeover")).await;
        assert_eq!(stats.possible_duplicates, 4, "{be}");
        assert_eq!(stats.count(DeliveryStatus::Sending), 8, "{be}");

        // w1's results come too late: its lease was lost, nothing is written.
        let late: Vec<_> = w1.iter().map(|r| result(r, "w1", sent(1_000))).collect();
        assert_eq!(store.record_results(&late).await.unwrap(), 0, "{be}");
        assert_counts(&store, b, &format!("{be}: lost lease")).await;

        // w3's results: every kind.
        let outcomes = [
            sent(40_000),
            sent(45_000),
            failed(ErrorKind::Permanent),
            failed(ErrorKind::Blocked),
            retry(50_000, ErrorKind::Transient, true),
            retry(50_000, ErrorKind::RateLimited, false),
            failed(ErrorKind::Transient),
        ];
        let results: Vec<_> = w3
            .iter()
            .zip(outcomes)
            .map(|(r, o)| result(r, "w3", o))
            .collect();
        assert_eq!(store.record_results(&results).await.unwrap(), 7, "{be}");
        let stats = assert_counts(&store, b, &format!("{be}: results")).await;
        assert_eq!(
            (stats.first_sent_at, stats.last_sent_at),
            (Some(t(40_000)), Some(t(45_000))),
            "{be}"
        );
        assert_eq!(stats.by_error_kind.get(&ErrorKind::Transient), Some(&2));

        // The retried rows come back: pending with an error kind, then sending without one.
        let w4 = store.claim_due(&claim("w4", 50_000, 100)).await.unwrap();
        assert_eq!(w4.len(), 2, "{be}");
        assert_counts(&store, b, &format!("{be}: retried rows claimed")).await;
        let before = store.stats(b).await.unwrap().possible_duplicates;
        let results = [
            // Handed back untried: pending, no error kind, no attempt.
            result(
                &w4[0],
                "w4",
                Outcome::Released {
                    next_attempt_at: t(51_000),
                    note: "held back".into(),
                },
            ),
            // The connection dropped after the request went out: one more uncertain send.
            DeliveryResult {
                uncertain: true,
                ..result(&w4[1], "w4", retry(90_000, ErrorKind::Transient, true))
            },
            // The row w3 still holds (the eighth), sent.
            result(&w3[7], "w3", sent(52_000)),
        ];
        assert_eq!(store.record_results(&results).await.unwrap(), 3, "{be}");
        let stats = assert_counts(&store, b, &format!("{be}: second results")).await;
        let released = row(&store, w4[0].id).await;
        assert_eq!(
            (
                released.status.as_str(),
                released.error_kind.as_deref(),
                released.attempts
            ),
            ("pending", None, w4[0].attempts),
            "{be}"
        );
        let dropped = row(&store, w4[1].id).await;
        assert_eq!(dropped.uncertain_sends, w4[1].uncertain_sends + 1, "{be}");
        assert_eq!(
            stats.possible_duplicates,
            before + u64::from(w4[1].uncertain_sends == 0),
            "{be}"
        );

        // E-mail fallback: a pending row, a skipped one (unsubscribed), and none twice.
        assert!(
            store
                .add_fallback(b, users[2], None, &[ChannelKind::EMAIL], t(60_000))
                .await
                .unwrap(),
            "{be}"
        );
        store
            .mark_email_unsubscribed(users[6], t(60_000))
            .await
            .unwrap();
        assert!(
            !store
                .add_fallback(b, users[6], None, &[ChannelKind::EMAIL], t(60_000))
                .await
                .unwrap(),
            "{be}"
        );
        assert!(
            !store
                .add_fallback(b, users[2], None, &[ChannelKind::EMAIL], t(60_000))
                .await
                .unwrap(),
            "{be}"
        );
        assert_counts(&store, b, &format!("{be}: fallback")).await;

        // Requeue the failed rows (not the blocked one), then cancel what is pending.
        let requeued = store.requeue_failed(b, &[], t(70_000)).await.unwrap();
        assert_eq!(requeued, 2, "{be}: permanent and transient, not blocked");
        assert_counts(&store, b, &format!("{be}: requeued")).await;
        let leased = store.claim_due(&claim("w5", 70_000, 1)).await.unwrap();
        assert_eq!(leased.len(), 1, "{be}");
        let cancelled = store.cancel_pending(b, t(80_000)).await.unwrap();
        // The two requeued, the fallback, the retry and the row handed back, less the leased one.
        assert_eq!(cancelled, 4, "{be}");
        let stats = assert_counts(&store, b, &format!("{be}: cancelled")).await;
        assert_eq!(stats.open(), 1, "{be}: the leased row is still being sent");
        assert_eq!(
            stats.count(DeliveryStatus::Cancelled),
            cancelled,
            "{be}: cancelled"
        );

        // Listing totals come from the counters, and agree with the rows.
        for query in [
            RecipientQuery::default(),
            RecipientQuery {
                status: Some(DeliveryStatus::Failed),
                ..Default::default()
            },
            RecipientQuery {
                channel: Some(EMAIL),
                ..Default::default()
            },
            RecipientQuery {
                status: Some(DeliveryStatus::Failed),
                error_kind: Some(ErrorKind::Blocked),
                ..Default::default()
            },
            RecipientQuery {
                error_kind: Some(ErrorKind::Transient),
                ..Default::default()
            },
        ] {
            let page = store.list_recipients(b, &query).await.unwrap();
            assert_eq!(page.total, page.items.len() as u64, "{be}: {query:?}");
        }

        // Deleting a user (which deletes its ledger rows) keeps the counters right too.
        users::Entity::delete_by_id(users[0])
            .exec(store.conn())
            .await
            .unwrap();
        let stats = assert_counts_after_delete(&store, b, &format!("{be}: user deleted")).await;
        assert_eq!(
            stats.first_sent_at,
            Some(t(40_000)),
            "{be}: the deleted user's delivery stays the first"
        );

        // Recount rebuilds the same counters.
        store.recount(b).await.unwrap();
        assert_counts(&store, b, &format!("{be}: recounted")).await;
    }
}

#[tokio::test]
async fn keyset_pages_walk_the_ledger_by_id() {
    for (db, store) in stores().await {
        let be = db.backend();
        let b = broadcast(&store, BroadcastStatus::Running).await.id;
        let mut ids = Vec::new();
        for n in 1..=7 {
            ids.push(launched(&store, b, n, ChannelKind::TELEGRAM, None).await);
        }
        let query = RecipientQuery {
            limit: 3,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.list_recipients_after(b, &query, after).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3, "{be}");
            after = page.last().unwrap().id;
            seen.extend(page.iter().map(|r| r.id));
        }
        assert_eq!(seen, ids, "{be}");
        let sent_only = RecipientQuery {
            status: Some(DeliveryStatus::Sent),
            ..Default::default()
        };
        assert!(
            store
                .list_recipients_after(b, &sent_only, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let err = store
            .list_recipients_after(999, &query, 0)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                broadcast_domain::Error::NotFound {
                    entity: "broadcast",
                    ..
                }
            ),
            "{be}: {err:?}"
        );
    }
}
