//! SendBudget::reserve: consecutive, never overlapping slots shared by every worker, on both
//! backends, including concurrent reservations through separate connection pools.

use std::time::Duration;

use broadcast_domain::{Error, SendBudget};
use broadcast_store::Store;
use broadcast_store::entity::send_budgets;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::EntityTrait;

use crate::support::{stores, t};

/// 30 messages per second, in whole microseconds.
const IV: Duration = Duration::from_micros(33_334);

fn iv(k: i64) -> TimeDelta {
    TimeDelta::microseconds(33_334 * k)
}

async fn stored(store: &Store, key: &str) -> send_budgets::Model {
    send_budgets::Entity::find_by_id(key.to_owned())
        .one(store.conn())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no send budget row for {key}"))
}

#[tokio::test]
async fn reservations_are_consecutive_per_key() {
    for (db, store) in stores().await {
        let b = db.backend();
        // A fresh key starts at now.
        assert_eq!(
            store.reserve("telegram", IV, 5, t(0)).await.unwrap().first,
            t(0)
        );
        // The next reservation starts where the previous one ended.
        assert_eq!(
            store.reserve("telegram", IV, 3, t(0)).await.unwrap().first,
            t(0) + iv(5),
            "{b}"
        );
        // A caller whose clock is behind the budget still gets the next free slot.
        assert_eq!(
            store.reserve("telegram", IV, 1, t(10)).await.unwrap().first,
            t(0) + iv(8),
            "{b}"
        );
        let row = stored(&store, "telegram").await;
        assert_eq!(row.next_free_at, t(0) + iv(9), "{b}");
        assert_eq!(row.updated_at, t(10), "{b}");

        // Keys are independent.
        assert_eq!(
            store
                .reserve("email", Duration::from_millis(100), 2, t(1))
                .await
                .unwrap()
                .first,
            t(1),
            "{b}"
        );
        assert_eq!(
            store
                .reserve("email", Duration::from_millis(100), 1, t(1))
                .await
                .unwrap()
                .first,
            t(201),
            "{b}"
        );
        assert_eq!(
            stored(&store, "telegram").await.next_free_at,
            t(0) + iv(9),
            "{b}"
        );
    }
}

#[tokio::test]
async fn an_idle_key_restarts_at_now_and_never_before_it() {
    for (db, store) in stores().await {
        let b = db.backend();
        assert_eq!(
            store.reserve("telegram", IV, 30, t(0)).await.unwrap().first,
            t(0),
            "{b}"
        );
        // Long after the reserved second: slots in the past are not handed out.
        assert_eq!(
            store
                .reserve("telegram", IV, 2, t(60_000))
                .await
                .unwrap()
                .first,
            t(60_000),
            "{b}"
        );
        assert_eq!(
            store
                .reserve("telegram", IV, 1, t(60_000))
                .await
                .unwrap()
                .first,
            t(60_000) + iv(2),
            "{b}"
        );
        // Exactly at the next free slot.
        assert_eq!(
            store
                .reserve("telegram", IV, 1, t(60_000) + iv(3))
                .await
                .unwrap()
                .first,
            t(60_000) + iv(3),
            "{b}"
        );
    }
}

#[tokio::test]
async fn microseconds_are_kept_and_sub_microseconds_round_up() {
    for (db, store) in stores().await {
        let b = db.backend();
        let now = t(0) + TimeDelta::microseconds(7);
        assert_eq!(
            store.reserve("k", IV, 1, now).await.unwrap().first,
            now,
            "{b}"
        );
        assert_eq!(stored(&store, "k").await.next_free_at, now + iv(1), "{b}");

        // A `now` between two microseconds rounds up, so the slot is not before it.
        let later = t(5_000) + TimeDelta::nanoseconds(1);
        let first = store.reserve("k", IV, 1, later).await.unwrap().first;
        assert!(first >= later, "{b}: {first} is before {later}");
        assert_eq!(first, t(5_000) + TimeDelta::microseconds(1), "{b}");

        // 1/30 s (33,333,333 ns) rounds up to 33,334 µs: never faster than asked.
        let thirtieth = Duration::from_secs(1) / 30;
        let a = store.reserve("j", thirtieth, 2, t(0)).await.unwrap().first;
        let c = store.reserve("j", thirtieth, 1, t(0)).await.unwrap().first;
        assert_eq!((a, c), (t(0), t(0) + iv(2)), "{b}");
    }
}

#[tokio::test]
async fn bad_reservations_are_refused() {
    for (db, store) in stores().await {
        let b = db.backend();
        for (result, needle) in [
            (store.reserve("", IV, 1, t(0)).await, "key"),
            (
                store.reserve("telegram", IV, 0, t(0)).await,
                "at least 1 slot",
            ),
            (
                store.reserve("telegram", Duration::MAX, 1, t(0)).await,
                "too long",
            ),
        ] {
            match result {
                Err(Error::Invalid(msg)) => assert!(msg.contains(needle), "{b}: {msg}"),
                other => panic!("{b}: expected Invalid ({needle}), got {other:?}"),
            }
        }
        // Nothing was written by the refused calls.
        assert!(
            send_budgets::Entity::find_by_id("telegram".to_owned())
                .one(store.conn())
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
    }
}

/// Every slot of a reservation.
fn slots(first: DateTime<Utc>, n: u32) -> impl Iterator<Item = DateTime<Utc>> {
    (0..i64::from(n)).map(move |i| first + iv(i))
}

#[tokio::test]
async fn concurrent_workers_never_share_a_slot() {
    for (db, store) in stores().await {
        let b = db.backend();
        // Two connection pools, as two worker processes would have.
        let other = Store::connect(db.url()).await.unwrap();
        let workers = [store.clone(), store.clone(), other.clone(), other]
            .into_iter()
            .enumerate()
            .map(|(w, store)| {
                tokio::spawn(async move {
                    // 25 slots per worker, reserved 1, 2, 3, ... at a time.
                    let mut mine = Vec::new();
                    let mut left = 25_u32;
                    let mut n = 1 + w as u32 % 3;
                    while left > 0 {
                        let take = n.min(left);
                        let first = store
                            .reserve("telegram", IV, take, t(0))
                            .await
                            .unwrap()
                            .first;
                        assert!(first >= t(0), "slot {first} before now");
                        mine.extend(slots(first, take));
                        left -= take;
                        n = n % 4 + 1;
                    }
                    mine
                })
            })
            .collect::<Vec<_>>();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        assert_eq!(all.len(), 100, "{b}");
        for pair in all.windows(2) {
            assert!(
                pair[1] - pair[0] >= iv(1),
                "{b}: slots {} and {} are closer than the interval",
                pair[0],
                pair[1]
            );
        }
        // With one `now` for everybody the slots are also gap-free.
        let expected: Vec<DateTime<Utc>> = slots(t(0), 100).collect();
        assert_eq!(all, expected, "{b}");
        assert_eq!(
            stored(&store, "telegram").await.next_free_at,
            t(0) + iv(100),
            "{b}"
        );
    }
}

#[tokio::test]
async fn concurrent_workers_with_moving_clocks_keep_the_spacing() {
    for (db, store) in stores().await {
        let b = db.backend();
        let other = Store::connect(db.url()).await.unwrap();
        let workers = [store.clone(), other.clone(), store.clone(), other]
            .into_iter()
            .enumerate()
            .map(|(w, store)| {
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for i in 0..25_i64 {
                        // Clocks that move on and differ between workers.
                        let now = t(i * 40 + w as i64 * 7);
                        let first = store.reserve("telegram", IV, 1, now).await.unwrap().first;
                        assert!(first >= now, "slot {first} before now {now}");
                        mine.push(first);
                    }
                    mine
                })
            })
            .collect::<Vec<_>>();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        assert_eq!(all.len(), 100, "{b}");
        for pair in all.windows(2) {
            assert!(
                pair[1] - pair[0] >= iv(1),
                "{b}: slots {} and {} are closer than the interval",
                pair[0],
                pair[1]
            );
        }
    }
}
