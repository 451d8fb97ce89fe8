//! Counting and listing the ledger: status_counts, stats, open_count, cancel_pending,
//! list_recipients.

use broadcast_domain::{
    BroadcastStatus, ChannelKind, DeliveryStatus, DeliveryStore, Error, ErrorKind, RecipientQuery,
    SkipReason, StatusCount,
};
use broadcast_store::Store;
use broadcast_store::entity::broadcast_recipients;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};

use crate::support::{Row, broadcast, recipient, row, stores, t, user};

/// Inserts a row and lets `edit` set more columns.
async fn add(
    store: &Store,
    broadcast: i64,
    n: i64,
    channel: ChannelKind,
    status: DeliveryStatus,
    edit: impl FnOnce(&mut broadcast_recipients::ActiveModel),
) -> i64 {
    let u = user(store, n).await;
    let id = recipient(
        store,
        broadcast,
        Row {
            channel,
            status,
            ..Row::pending(u, t(0))
        },
    )
    .await;
    let mut m = row(store, id).await.into_active_model();
    edit(&mut m);
    m.update(store.conn()).await.unwrap();
    crate::support::recount(store, broadcast).await;
    id
}

/// A running broadcast with a mix of rows; returns its id and the ids by kind.
async fn ledger(store: &Store) -> (i64, Vec<i64>) {
    const TELEGRAM: ChannelKind = ChannelKind::TELEGRAM;
    const EMAIL: ChannelKind = ChannelKind::EMAIL;
    use DeliveryStatus::*;
    let b = broadcast(store, BroadcastStatus::Running).await.id;
    let mut ids = Vec::new();
    ids.push(
        add(store, b, 1, TELEGRAM, Sent, |m| {
            m.sent_at = Set(Some(t(5_000)));
        })
        .await,
    );
    ids.push(
        add(store, b, 2, TELEGRAM, Sent, |m| {
            m.sent_at = Set(Some(t(1_500)));
            m.uncertain_sends = Set(1);
        })
        .await,
    );
    ids.push(
        add(store, b, 3, EMAIL, Sent, |m| {
            m.sent_at = Set(Some(t(900_000)));
        })
        .await,
    );
    ids.push(
        add(store, b, 4, TELEGRAM, Failed, |m| {
            m.error_kind = Set(Some("blocked".into()));
        })
        .await,
    );
    ids.push(
        add(store, b, 5, EMAIL, Failed, |m| {
            m.error_kind = Set(Some("permanent".into()));
        })
        .await,
    );
    ids.push(
        add(store, b, 6, EMAIL, Pending, |m| {
            m.error_kind = Set(Some("transient".into()));
        })
        .await,
    );
    ids.push(add(store, b, 7, EMAIL, Pending, |_| {}).await);
    ids.push(
        add(store, b, 8, TELEGRAM, Sending, |m| {
            m.lease_owner = Set(Some("w".into()));
            m.lease_expires_at = Set(Some(t(60_000)));
            m.uncertain_sends = Set(2);
        })
        .await,
    );
    ids.push(
        add(store, b, 9, TELEGRAM, Skipped, |m| {
            m.skip_reason = Set(Some("no_telegram".into()));
        })
        .await,
    );
    ids.push(
        add(store, b, 10, TELEGRAM, Skipped, |m| {
            m.skip_reason = Set(Some("no_telegram".into()));
        })
        .await,
    );
    ids.push(
        add(store, b, 11, EMAIL, Skipped, |m| {
            m.skip_reason = Set(Some("email_unsubscribed".into()));
        })
        .await,
    );
    (b, ids)
}

#[tokio::test]
async fn counts_and_statistics() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (id, _) = ledger(&store).await;
        let mut counts = store.status_counts(id).await.unwrap();
        counts.sort_by_key(|c| (c.channel, c.status, c.error_kind, c.skip_reason));
        let c = |channel, status, error_kind, skip_reason, count| StatusCount {
            channel,
            status,
            error_kind,
            skip_reason,
            count,
        };
        const TELEGRAM: ChannelKind = ChannelKind::TELEGRAM;
        const EMAIL: ChannelKind = ChannelKind::EMAIL;
        use DeliveryStatus::*;
        assert_eq!(
            counts,
            vec![
                c(TELEGRAM, Sending, None, None, 1),
                c(TELEGRAM, Sent, None, None, 2),
                c(TELEGRAM, Failed, Some(ErrorKind::Blocked), None, 1),
                c(TELEGRAM, Skipped, None, Some(SkipReason::NoTelegram), 2),
                c(EMAIL, Pending, None, None, 1),
                c(EMAIL, Pending, Some(ErrorKind::Transient), None, 1),
                c(EMAIL, Sent, None, None, 1),
                c(EMAIL, Failed, Some(ErrorKind::Permanent), None, 1),
                c(EMAIL, Skipped, None, Some(SkipReason::EmailUnsubscribed), 1),
            ],
            "{b}"
        );

        let stats = store.stats(id).await.unwrap();
        assert_eq!(stats.total, 11, "{b}");
        assert_eq!(stats.count(Sent), 3);
        assert_eq!(stats.channel_count(TELEGRAM, Skipped), 2);
        assert_eq!(
            stats.by_error_kind.get(&ErrorKind::Transient),
            Some(&1),
            "{b}"
        );
        assert_eq!(stats.by_skip_reason.get(&SkipReason::NoTelegram), Some(&2));
        // Uncertain sends, not rows: one row has 2, another 1.
        assert_eq!(stats.possible_duplicates, 3, "{b}");
        assert_eq!(stats.first_sent_at, Some(t(1_500)), "{b}");
        assert_eq!(stats.last_sent_at, Some(t(900_000)), "{b}");
        assert_eq!(stats.open(), 3);
        assert_eq!(store.open_count(id).await.unwrap(), 3, "{b}");

        // An empty broadcast has empty statistics; an unknown one is NotFound.
        let empty = broadcast(&store, BroadcastStatus::Draft).await.id;
        assert!(store.status_counts(empty).await.unwrap().is_empty(), "{b}");
        let stats = store.stats(empty).await.unwrap();
        assert_eq!((stats.total, stats.first_sent_at), (0, None), "{b}");
        assert_eq!(store.open_count(empty).await.unwrap(), 0);
        for err in [
            store.status_counts(999).await.unwrap_err(),
            store.stats(999).await.unwrap_err(),
            store.open_count(999).await.unwrap_err(),
            store.cancel_pending(999, t(0)).await.unwrap_err(),
            store
                .list_recipients(999, &RecipientQuery::default())
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::NotFound {
                        entity: "broadcast",
                        ..
                    }
                ),
                "{b}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn cancel_pending_leaves_leased_and_finished_rows() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (id, ids) = ledger(&store).await;
        assert_eq!(store.cancel_pending(id, t(70_000)).await.unwrap(), 2, "{b}");
        let r = row(&store, ids[6]).await;
        assert_eq!(r.status, "cancelled", "{b}");
        assert_eq!(r.updated_at, t(70_000), "{b}");
        assert_eq!(
            row(&store, ids[7]).await.status,
            "sending",
            "{b}: leased row keeps going"
        );
        assert_eq!(row(&store, ids[0]).await.status, "sent", "{b}");
        assert_eq!(store.open_count(id).await.unwrap(), 1, "{b}");
        assert_eq!(store.cancel_pending(id, t(80_000)).await.unwrap(), 0, "{b}");
        crate::support::assert_counts(&store, id, &format!("{b}: cancelled")).await;
    }
}

#[tokio::test]
async fn list_recipients_filters_and_pages() {
    for (db, store) in stores().await {
        let b = db.backend();
        let (id, ids) = ledger(&store).await;
        let list = |q: RecipientQuery| {
            let store = store.clone();
            async move { store.list_recipients(id, &q).await.unwrap() }
        };
        let all = list(RecipientQuery::default()).await;
        assert_eq!(all.total, 11, "{b}");
        assert_eq!(
            all.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            ids,
            "{b}: by id, limit 0 = all"
        );

        let page = list(RecipientQuery {
            offset: 3,
            limit: 4,
            ..Default::default()
        })
        .await;
        assert_eq!(page.total, 11, "{b}");
        assert_eq!(
            page.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            ids[3..7],
            "{b}"
        );

        let tail = list(RecipientQuery {
            offset: 9,
            ..Default::default()
        })
        .await;
        assert_eq!(
            tail.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            ids[9..],
            "{b}"
        );

        let failed = list(RecipientQuery {
            status: Some(DeliveryStatus::Failed),
            ..Default::default()
        })
        .await;
        assert_eq!(failed.total, 2, "{b}");
        let failed_mail = list(RecipientQuery {
            status: Some(DeliveryStatus::Failed),
            channel: Some(ChannelKind::EMAIL),
            ..Default::default()
        })
        .await;
        assert_eq!(
            failed_mail.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            [ids[4]],
            "{b}"
        );
        assert_eq!(failed_mail.items[0].error_kind, Some(ErrorKind::Permanent));
        let transient = list(RecipientQuery {
            error_kind: Some(ErrorKind::Transient),
            ..Default::default()
        })
        .await;
        assert_eq!(
            transient.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            [ids[5]],
            "{b}"
        );
        let skipped = list(RecipientQuery {
            status: Some(DeliveryStatus::Skipped),
            channel: Some(ChannelKind::TELEGRAM),
            limit: 1,
            ..Default::default()
        })
        .await;
        assert_eq!((skipped.total, skipped.items.len()), (2, 1), "{b}");
        assert_eq!(skipped.items[0].skip_reason, Some(SkipReason::NoTelegram));
        let none = list(RecipientQuery {
            status: Some(DeliveryStatus::Cancelled),
            ..Default::default()
        })
        .await;
        assert_eq!((none.total, none.items.len()), (0, 0), "{b}");
    }
}
