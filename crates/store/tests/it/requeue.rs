//! DeliveryStore::requeue_failed: failed rows back in the queue by error kind, never blocked,
//! unsubscribed or bounced ones, attempts reset, the last error kept as history.

use broadcast_domain::{
    AudienceStore, BroadcastStatus, ChannelKind, DeliveryStatus, DeliveryStore, Error, ErrorKind,
};
use broadcast_store::Store;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};

use crate::support::{Row, broadcast, recipient, row, stores, t, user};

/// Inserts a row of user `n` on `channel` in `status`, failed with `kind` after 5 attempts.
async fn add(
    store: &Store,
    b: i64,
    n: i64,
    channel: ChannelKind,
    status: DeliveryStatus,
    kind: Option<ErrorKind>,
) -> i64 {
    let u = user(store, n).await;
    let id = recipient(
        store,
        b,
        Row {
            channel,
            status,
            ..Row::pending(u, t(0))
        },
    )
    .await;
    let mut m = row(store, id).await.into_active_model();
    m.attempts = Set(5);
    m.error_kind = Set(kind.map(|k| k.as_str().to_owned()));
    m.last_error = Set(kind.map(|k| format!("{k} error")));
    m.update(store.conn()).await.unwrap();
    crate::support::recount(store, b).await;
    id
}

/// Asserts the row went back to the queue at `now`, keeping its error as history.
async fn assert_requeued(store: &Store, id: i64, now: i64, what: &str) {
    let r = row(store, id).await;
    assert_eq!(r.status, DeliveryStatus::Pending.as_str(), "{what}");
    assert_eq!(r.attempts, 0, "{what}");
    assert_eq!(r.next_attempt_at, t(now), "{what}");
    assert_eq!(r.updated_at, t(now), "{what}");
    assert_eq!((r.lease_owner, r.lease_expires_at), (None, None), "{what}");
    assert_eq!(
        r.last_error,
        r.error_kind.as_ref().map(|k| format!("{k} error")),
        "{what}: last error kept"
    );
}

/// Asserts the row is as inserted by [`add`].
async fn assert_untouched(store: &Store, id: i64, status: DeliveryStatus, what: &str) {
    let r = row(store, id).await;
    assert_eq!(r.status, status.as_str(), "{what}");
    assert_eq!(r.attempts, 5, "{what}");
    assert_eq!(r.updated_at, t(0), "{what}");
}

#[tokio::test]
async fn failed_rows_are_requeued_by_kind_except_unreachable_users() {
    const TELEGRAM: ChannelKind = ChannelKind::TELEGRAM;
    const EMAIL: ChannelKind = ChannelKind::EMAIL;
    use DeliveryStatus::{Failed, Pending, Sent, Skipped};
    use ErrorKind::{Blocked, InvalidAddress, Permanent, Transient};
    for (db, store) in stores().await {
        let b = db.backend();
        let bc = broadcast(&store, BroadcastStatus::Paused).await.id;
        let other = broadcast(&store, BroadcastStatus::Paused).await.id;

        let tg_transient = add(&store, bc, 1, TELEGRAM, Failed, Some(Transient)).await;
        let tg_permanent = add(&store, bc, 2, TELEGRAM, Failed, Some(Permanent)).await;
        let tg_failed_blocked = add(&store, bc, 3, TELEGRAM, Failed, Some(Blocked)).await;
        let tg_user_blocked = add(&store, bc, 4, TELEGRAM, Failed, Some(Transient)).await;
        let em_unsubscribed = add(&store, bc, 5, EMAIL, Failed, Some(Transient)).await;
        let em_bounced = add(&store, bc, 6, EMAIL, Failed, Some(Transient)).await;
        let em_bot_blocked = add(&store, bc, 7, EMAIL, Failed, Some(Transient)).await;
        let tg_unsubscribed = add(&store, bc, 8, TELEGRAM, Failed, Some(Transient)).await;
        let em_invalid = add(&store, bc, 9, EMAIL, Failed, Some(InvalidAddress)).await;
        let no_kind = add(&store, bc, 10, TELEGRAM, Failed, None).await;
        let sent = add(&store, bc, 11, TELEGRAM, Sent, None).await;
        let pending = add(&store, bc, 12, TELEGRAM, Pending, Some(Transient)).await;
        let skipped = add(&store, bc, 13, EMAIL, Skipped, None).await;
        let elsewhere = add(&store, other, 14, TELEGRAM, Failed, Some(Transient)).await;

        let user_of = |id: i64| {
            let store = store.clone();
            async move { row(&store, id).await.user_id }
        };
        store
            .mark_telegram_blocked(user_of(tg_user_blocked).await, t(1))
            .await
            .unwrap();
        store
            .mark_email_unsubscribed(user_of(em_unsubscribed).await, t(1))
            .await
            .unwrap();
        store
            .mark_email_bounced(user_of(em_bounced).await, t(1))
            .await
            .unwrap();
        store
            .mark_telegram_blocked(user_of(em_bot_blocked).await, t(1))
            .await
            .unwrap();
        store
            .mark_email_unsubscribed(user_of(tg_unsubscribed).await, t(1))
            .await
            .unwrap();
        // A stale lease on a failed row is cleared too.
        let mut m = row(&store, tg_transient).await.into_active_model();
        m.lease_owner = Set(Some("dead-worker".into()));
        m.lease_expires_at = Set(Some(t(10)));
        m.update(store.conn()).await.unwrap();

        // Transient only: the unsubscribed user's Telegram row and the blocked bot user's
        // e-mail row are still reachable on their channel.
        let n = store
            .requeue_failed(bc, &[Transient], t(5_000))
            .await
            .unwrap();
        assert_eq!(n, 3, "{b}");
        for (id, what) in [
            (tg_transient, "telegram transient"),
            (em_bot_blocked, "e-mail of a user who blocked the bot"),
            (
                tg_unsubscribed,
                "telegram of a user who unsubscribed from e-mail",
            ),
        ] {
            assert_requeued(&store, id, 5_000, &format!("{b}: {what}")).await;
        }
        assert_eq!(
            row(&store, tg_transient).await.error_kind.as_deref(),
            Some("transient"),
            "{b}: error kind kept"
        );
        for (id, what) in [
            (tg_permanent, "another kind"),
            (tg_failed_blocked, "failed as blocked"),
            (tg_user_blocked, "user blocked the bot"),
            (em_unsubscribed, "user unsubscribed"),
            (em_bounced, "address bounced"),
            (em_invalid, "another kind"),
            (no_kind, "no kind"),
            (elsewhere, "another broadcast"),
        ] {
            assert_untouched(&store, id, Failed, &format!("{b}: {what}")).await;
        }
        assert_untouched(&store, sent, Sent, &format!("{b}: sent")).await;
        assert_untouched(&store, pending, Pending, &format!("{b}: pending")).await;
        assert_untouched(&store, skipped, Skipped, &format!("{b}: skipped")).await;

        // Asking for blocked rows explicitly still gives none.
        assert_eq!(
            store
                .requeue_failed(bc, &[Blocked], t(6_000))
                .await
                .unwrap(),
            0,
            "{b}"
        );
        assert_untouched(&store, tg_failed_blocked, Failed, &format!("{b}: blocked")).await;

        // Several kinds at once.
        assert_eq!(
            store
                .requeue_failed(bc, &[Permanent, InvalidAddress], t(7_000))
                .await
                .unwrap(),
            2,
            "{b}"
        );
        assert_requeued(&store, tg_permanent, 7_000, &format!("{b}: permanent")).await;
        assert_requeued(&store, em_invalid, 7_000, &format!("{b}: invalid address")).await;

        // No kinds: every remaining failed row that may be retried, including one without a kind.
        assert_eq!(
            store.requeue_failed(bc, &[], t(8_000)).await.unwrap(),
            1,
            "{b}"
        );
        assert_requeued(&store, no_kind, 8_000, &format!("{b}: no kind")).await;
        for (id, what) in [
            (tg_failed_blocked, "failed as blocked"),
            (tg_user_blocked, "user blocked the bot"),
            (em_unsubscribed, "user unsubscribed"),
            (em_bounced, "address bounced"),
        ] {
            assert_untouched(&store, id, Failed, &format!("{b}: {what}")).await;
        }
        // Requeued rows are not failed any more: nothing left.
        assert_eq!(
            store.requeue_failed(bc, &[], t(9_000)).await.unwrap(),
            0,
            "{b}"
        );
        assert_requeued(
            &store,
            tg_transient,
            5_000,
            &format!("{b}: not requeued twice"),
        )
        .await;
        assert_untouched(
            &store,
            elsewhere,
            Failed,
            &format!("{b}: another broadcast"),
        )
        .await;
        crate::support::assert_counts(&store, bc, &format!("{b}: requeued")).await;
    }
}

#[tokio::test]
async fn an_unknown_broadcast_is_not_found() {
    for (db, store) in stores().await {
        let b = db.backend();
        match store.requeue_failed(999_999, &[], t(0)).await {
            Err(Error::NotFound { entity, .. }) => assert_eq!(entity, "broadcast", "{b}"),
            other => panic!("{b}: expected NotFound, got {other:?}"),
        }
        // A broadcast without failed rows is fine.
        let bc = broadcast(&store, BroadcastStatus::Completed).await.id;
        assert_eq!(store.requeue_failed(bc, &[], t(0)).await.unwrap(), 0, "{b}");
    }
}
