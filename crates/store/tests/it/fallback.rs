//! DeliveryStore::add_fallback: the e-mail row of a user Telegram could not reach, pending
//! or skipped with its reason, never duplicated, counted in the broadcast's total.

use broadcast_domain::{
    AudienceStore, BroadcastStatus, BroadcastStore, ChannelKind, ClaimRequest, DeliveryStatus,
    DeliveryStore, Error, SkipReason,
};
use broadcast_store::Store;
use broadcast_store::entity::{broadcast_recipients, competitions, registrations, users};
use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
};

use crate::support::{Row, broadcast, recipient, stores, t, user};

/// The broadcast's e-mail row of `user`, if any.
async fn email_row(store: &Store, b: i64, user: i64) -> Option<broadcast_recipients::Model> {
    let mut rows = broadcast_recipients::Entity::find()
        .filter(broadcast_recipients::Column::BroadcastId.eq(b))
        .filter(broadcast_recipients::Column::UserId.eq(user))
        .filter(broadcast_recipients::Column::Channel.eq(ChannelKind::EMAIL.as_str()))
        .all(store.conn())
        .await
        .unwrap();
    assert!(rows.len() <= 1, "more than one e-mail row: {rows:?}");
    rows.pop()
}

async fn total(store: &Store, b: i64) -> i64 {
    store.get_broadcast(b).await.unwrap().total_recipients
}

async fn registration(store: &Store, user: i64) -> i64 {
    let competition = competitions::ActiveModel {
        slug: Set(format!("c{user}")),
        name: Set(format!("Competition {user}")),
        created_at: Set(t(0)),
        ..Default::default()
    }
    .insert(store.conn())
    .await
    .unwrap()
    .id;
    registrations::ActiveModel {
        user_id: Set(user),
        competition_id: Set(competition),
        role: Set("participant".into()),
        status: Set("confirmed".into()),
        created_at: Set(t(0)),
        updated_at: Set(t(0)),
        ..Default::default()
    }
    .insert(store.conn())
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn a_reachable_user_gets_a_pending_row_once() {
    for (db, store) in stores().await {
        let b = db.backend();
        let running = broadcast(&store, BroadcastStatus::Running).await.id;
        let alice = user(&store, 1).await;
        let reg = registration(&store, alice).await;
        // Her Telegram row exists (and failed); the e-mail row is a different channel.
        recipient(&store, running, Row::pending(alice, t(0))).await;
        assert_eq!(total(&store, running).await, 0, "{b}");

        let now = t(2_000);
        assert!(
            store
                .add_fallback(running, alice, Some(reg), &[ChannelKind::EMAIL], now)
                .await
                .unwrap(),
            "{b}: a pending row was added"
        );
        let row = email_row(&store, running, alice).await.expect("e-mail row");
        assert_eq!(row.status, DeliveryStatus::Pending.as_str(), "{b}");
        assert_eq!(row.address, "user1@example.org", "{b}");
        assert_eq!(row.skip_reason, None, "{b}");
        assert_eq!(row.registration_id, Some(reg), "{b}");
        assert_eq!(row.attempts, 0, "{b}");
        assert_eq!(row.uncertain_sends, 0, "{b}");
        assert_eq!(row.lease_owner, None, "{b}");
        assert_eq!(row.error_kind, None, "{b}");
        assert_eq!(row.next_attempt_at, now, "{b}");
        assert_eq!((row.created_at, row.updated_at), (now, now), "{b}");
        assert_eq!(total(&store, running).await, 1, "{b}");

        // Asking again changes nothing.
        assert!(
            !store
                .add_fallback(running, alice, None, &[ChannelKind::EMAIL], t(3_000))
                .await
                .unwrap(),
            "{b}: nothing added the second time"
        );
        let again = email_row(&store, running, alice).await.unwrap();
        assert_eq!(again, row, "{b}");
        assert_eq!(total(&store, running).await, 1, "{b}");

        // The row is due at once: a worker claims it.
        let claimed = store
            .claim_due(&ClaimRequest {
                worker_id: "w".into(),
                now: t(2_000),
                lease_for: Duration::seconds(30),
                limit: 10,
                broadcast_id: Some(running),
                channels: vec![ChannelKind::EMAIL],
            })
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
            [row.id],
            "{b}"
        );
        crate::support::assert_counts(&store, running, &format!("{b}: claimed fallback")).await;
    }
}

#[tokio::test]
async fn unreachable_users_get_a_skipped_row_with_the_reason() {
    for (db, store) in stores().await {
        let b = db.backend();
        let running = broadcast(&store, BroadcastStatus::Running).await.id;

        let no_email = user(&store, 1).await;
        let mut m = users::Entity::find_by_id(no_email)
            .one(store.conn())
            .await
            .unwrap()
            .unwrap()
            .into_active_model();
        m.email = Set(None);
        m.update(store.conn()).await.unwrap();
        let unsubscribed = user(&store, 2).await;
        store
            .mark_email_unsubscribed(unsubscribed, t(1))
            .await
            .unwrap();
        let bounced = user(&store, 3).await;
        store.mark_email_bounced(bounced, t(1)).await.unwrap();
        // Both: unsubscribing is the user's own choice and comes first, as in materialise.
        let both = user(&store, 4).await;
        store.mark_email_unsubscribed(both, t(1)).await.unwrap();
        store.mark_email_bounced(both, t(1)).await.unwrap();
        // A blocked bot says nothing about e-mail.
        let blocked_bot = user(&store, 5).await;
        store
            .mark_telegram_blocked(blocked_bot, t(1))
            .await
            .unwrap();

        let cases = [
            (no_email, Some(SkipReason::NoEmail), ""),
            (
                unsubscribed,
                Some(SkipReason::EmailUnsubscribed),
                "user2@example.org",
            ),
            (bounced, Some(SkipReason::EmailBounced), "user3@example.org"),
            (
                both,
                Some(SkipReason::EmailUnsubscribed),
                "user4@example.org",
            ),
            (blocked_bot, None, "user5@example.org"),
        ];
        for (i, (u, reason, address)) in cases.iter().enumerate() {
            let pending = store
                .add_fallback(running, *u, None, &[ChannelKind::EMAIL], t(100))
                .await
                .unwrap();
            assert_eq!(pending, reason.is_none(), "{b}: user {u}");
            let row = email_row(&store, running, *u).await.expect("a row");
            let status = if reason.is_some() {
                DeliveryStatus::Skipped
            } else {
                DeliveryStatus::Pending
            };
            assert_eq!(row.status, status.as_str(), "{b}: user {u}");
            assert_eq!(
                row.skip_reason.as_deref(),
                reason.map(|r| r.as_str()),
                "{b}: user {u}"
            );
            assert_eq!(row.address, *address, "{b}: user {u}");
            assert_eq!(row.registration_id, None, "{b}");
            // Skipped rows count in the total too, as materialise counts them.
            assert_eq!(total(&store, running).await, i as i64 + 1, "{b}");
        }
        // A skipped row stays: asking again does not turn it pending or add another.
        assert!(
            !store
                .add_fallback(running, bounced, None, &[ChannelKind::EMAIL], t(200))
                .await
                .unwrap()
        );
        assert_eq!(total(&store, running).await, 5, "{b}");

        let stats = crate::support::assert_counts(&store, running, &format!("{b}: fallback")).await;
        assert_eq!(stats.total, 5, "{b}: {stats:?}");
    }
}

#[tokio::test]
async fn missing_records_are_not_found() {
    for (db, store) in stores().await {
        let b = db.backend();
        let running = broadcast(&store, BroadcastStatus::Running).await.id;
        let u = user(&store, 1).await;
        let not_found = |r: broadcast_domain::Result<bool>, what: &str| match r {
            Err(e @ Error::NotFound { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(what), "{b}: {msg}");
            }
            other => panic!("{b}: expected NotFound ({what}), got {other:?}"),
        };
        not_found(
            store
                .add_fallback(running, 999_999, None, &[ChannelKind::EMAIL], t(0))
                .await,
            "user",
        );
        not_found(
            store
                .add_fallback(999_999, u, None, &[ChannelKind::EMAIL], t(0))
                .await,
            "broadcast",
        );
        not_found(
            store
                .add_fallback(running, u, Some(999_999), &[ChannelKind::EMAIL], t(0))
                .await,
            "registration",
        );
        assert!(email_row(&store, running, u).await.is_none(), "{b}");
        assert_eq!(total(&store, running).await, 0, "{b}");
        // The failures left the store usable.
        assert!(
            store
                .add_fallback(running, u, None, &[ChannelKind::EMAIL], t(0))
                .await
                .unwrap()
        );
    }
}
