//! DeliveryStore::claim_due: leases, one worker per row, due order, expired leases.

use std::collections::HashSet;

use broadcast_domain::{
    BroadcastStatus, ChannelKind, ClaimRequest, DeliveryStatus, DeliveryStore, Error, Recipient,
};
use chrono::Duration;

use crate::support::{Row, broadcast, recipient, row, running_with_rows, stores, t, user};

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

fn ids(rows: &[Recipient]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn parallel_claims_get_disjoint_rows() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (_, all) = running_with_rows(&store, 60).await;
        let (c1, c2) = (claim("w1", 1, 25), claim("w2", 1, 25));
        let (x, y) = tokio::join!(store.claim_due(&c1), store.claim_due(&c2));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!((x.len(), y.len()), (25, 25), "{b}");
        let xs: HashSet<i64> = ids(&x).into_iter().collect();
        let ys: HashSet<i64> = ids(&y).into_iter().collect();
        assert!(xs.is_disjoint(&ys), "{b}: {xs:?} and {ys:?} overlap");
        for r in &x {
            assert_eq!(r.status, DeliveryStatus::Sending, "{b}");
            assert_eq!(r.lease_owner.as_deref(), Some("w1"), "{b}");
            assert_eq!(
                r.lease_expires_at,
                Some(t(1) + Duration::seconds(30)),
                "{b}"
            );
            assert_eq!(r.uncertain_sends, 0, "{b}");
            assert_eq!(r.updated_at, t(1), "{b}");
        }
        let rest = store.claim_due(&claim("w3", 2, 100)).await.unwrap();
        assert_eq!(rest.len(), 10, "{b}");
        let mut seen: Vec<i64> = xs.into_iter().chain(ys).chain(ids(&rest)).collect();
        seen.sort_unstable();
        assert_eq!(seen, all, "{b}: every row claimed exactly once");
        assert!(
            store
                .claim_due(&claim("w4", 3, 100))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn many_workers_in_parallel_never_share_a_row() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (_, all) = running_with_rows(&store, 200).await;
        let workers = (0..6).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim_due(&claim(&format!("w{w}"), 1, 7))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(ids(&got));
                }
            })
        });
        let mut seen = Vec::new();
        for w in workers.collect::<Vec<_>>() {
            seen.extend(w.await.unwrap());
        }
        seen.sort_unstable();
        let twice: Vec<i64> = seen
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        assert!(
            twice.is_empty(),
            "{b}: rows claimed more than once: {twice:?}"
        );
        assert_eq!(seen, all, "{b}: every row claimed");
    }
}

#[tokio::test]
async fn due_rows_come_in_next_attempt_order() {
    for (db, store) in stores().await {
        let b = db.backend();
        let running = broadcast(&store, BroadcastStatus::Running).await;
        // Offsets in milliseconds from t(0), chosen so that RFC 3339 text with different
        // fractional precision would sort wrongly if timestamps were compared carelessly.
        let offsets = [10_000, 500, 0, 1_250, 9_999, 86_400_000, 120, -3_600_000];
        let mut rows = Vec::new();
        for (i, off) in offsets.iter().enumerate() {
            let u = user(&store, i as i64 + 1).await;
            rows.push((
                *off,
                recipient(&store, running.id, Row::pending(u, t(*off))).await,
            ));
        }
        // Exactly due (next_attempt_at == now) counts; later ones do not.
        let got = store.claim_due(&claim("w", 10_000, 100)).await.unwrap();
        let mut due: Vec<(i64, i64)> = rows.iter().copied().filter(|(o, _)| *o <= 10_000).collect();
        due.sort();
        assert_eq!(
            ids(&got),
            due.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            "{b}: claimed in next_attempt_at order"
        );

        // With a limit, the earliest rows go first.
        let later = broadcast(&store, BroadcastStatus::Running).await;
        let mut expect = Vec::new();
        for (i, off) in [2_000_i64, 1_000, 1_500, 999, 1_001].iter().enumerate() {
            let u = user(&store, 100 + i as i64).await;
            let id = recipient(&store, later.id, Row::pending(u, t(*off))).await;
            expect.push((*off, id));
        }
        expect.sort();
        let got = store
            .claim_due(&ClaimRequest {
                broadcast_id: Some(later.id),
                ..claim("w", 5_000, 3)
            })
            .await
            .unwrap();
        assert_eq!(
            ids(&got),
            expect[..3].iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn expired_leases_are_reclaimed_and_counted_only_when_their_send_had_started() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (running, all) = running_with_rows(&store, 3).await;
        let first = store.claim_due(&claim("a", 0, 10)).await.unwrap();
        assert_eq!(ids(&first), all, "{b}");
        // `a` starts sending every row; only the lease holder can mark them.
        assert!(
            store
                .mark_started("b", &all, t(1))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert_eq!(
            store.mark_started("a", &all, t(1)).await.unwrap(),
            all,
            "{b}"
        );
        assert_eq!(row(&store, all[0]).await.send_started_at, Some(t(1)), "{b}");
        // The lease (30 s) still holds at 29 s and at exactly 30 s.
        assert!(
            store
                .claim_due(&claim("b", 29_000, 10))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert!(
            store
                .claim_due(&claim("b", 30_000, 10))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        let second = store.claim_due(&claim("b", 30_001, 10)).await.unwrap();
        assert_eq!(ids(&second), all, "{b}");
        for r in &second {
            assert_eq!(r.lease_owner.as_deref(), Some("b"), "{b}");
            assert_eq!(r.uncertain_sends, 1, "{b}");
            assert_eq!(r.send_started_at, None, "a takeover clears the mark");
            assert_eq!(r.lease_expires_at, Some(t(30_001) + Duration::seconds(30)));
        }
        // `b` starts the first row only, and dies too: `c` counts that one again, and the
        // row `b` never started stays at one.
        assert_eq!(
            store.mark_started("b", &all[..1], t(30_002)).await.unwrap(),
            all[..1]
        );
        let third = store.claim_due(&claim("c", 120_000, 3)).await.unwrap();
        assert_eq!(ids(&third), all, "{b}");
        let by_id = |id| third.iter().find(|r| r.id == id).expect("claimed");
        assert_eq!(by_id(all[0]).uncertain_sends, 2, "{b}");
        assert_eq!(by_id(all[1]).uncertain_sends, 1, "{b}");
        assert_eq!(row(&store, all[1]).await.uncertain_sends, 1, "{b}");
        let stats =
            crate::support::assert_counts(&store, running.id, &format!("{b}: takeovers")).await;
        // Uncertain sends: 2 + 1 + 1.
        assert_eq!(stats.possible_duplicates, 4, "{b}");
    }
}

#[tokio::test]
async fn only_running_broadcasts_and_requested_rows_are_claimed() {
    for (db, store) in stores().await {
        let b = db.backend();
        let mut n = 0;
        let mut add = async |broadcast: i64, channel: ChannelKind, status: DeliveryStatus| {
            n += 1;
            let u = user(&store, n).await;
            recipient(
                &store,
                broadcast,
                Row {
                    channel,
                    status,
                    ..Row::pending(u, t(0))
                },
            )
            .await
        };
        let draft = broadcast(&store, BroadcastStatus::Draft).await;
        let paused = broadcast(&store, BroadcastStatus::Paused).await;
        let done = broadcast(&store, BroadcastStatus::Completed).await;
        let r1 = broadcast(&store, BroadcastStatus::Running).await;
        let r2 = broadcast(&store, BroadcastStatus::Running).await;
        for id in [draft.id, paused.id, done.id] {
            add(id, ChannelKind::TELEGRAM, DeliveryStatus::Pending).await;
        }
        let tg1 = add(r1.id, ChannelKind::TELEGRAM, DeliveryStatus::Pending).await;
        let mail1 = add(r1.id, ChannelKind::EMAIL, DeliveryStatus::Pending).await;
        let tg2 = add(r2.id, ChannelKind::TELEGRAM, DeliveryStatus::Pending).await;
        for status in [
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
            DeliveryStatus::Skipped,
            DeliveryStatus::Cancelled,
        ] {
            add(r1.id, ChannelKind::TELEGRAM, status).await;
        }

        let only_r2 = store
            .claim_due(&ClaimRequest {
                broadcast_id: Some(r2.id),
                ..claim("w", 1, 10)
            })
            .await
            .unwrap();
        assert_eq!(ids(&only_r2), [tg2], "{b}");
        let email = store
            .claim_due(&ClaimRequest {
                channels: vec![ChannelKind::EMAIL],
                ..claim("w", 1, 10)
            })
            .await
            .unwrap();
        assert_eq!(ids(&email), [mail1], "{b}");
        assert_eq!(email[0].channel, ChannelKind::EMAIL);
        let rest = store.claim_due(&claim("w", 1, 10)).await.unwrap();
        assert_eq!(
            ids(&rest),
            [tg1],
            "{b}: nothing of draft, paused or completed broadcasts"
        );

        assert!(
            store.claim_due(&claim("w", 1, 0)).await.unwrap().is_empty(),
            "{b}"
        );
        let err = store
            .claim_due(&ClaimRequest {
                lease_for: Duration::zero(),
                ..claim("w", 1, 10)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{b}: {err:?}");
    }
}
