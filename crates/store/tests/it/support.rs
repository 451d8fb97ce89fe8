//! Shared helpers: a store per backend, fixed times, and rows inserted with the entities.

use broadcast_domain::{
    AudienceFilter, Broadcast, BroadcastStatus, BroadcastStore, ChannelKind, ChannelPolicy,
    DeliveryStats, DeliveryStatus, DeliveryStore, MessageTemplate, NewBroadcast, NewTemplate,
    ParseMode, StatusChange, StatusCount, TemplateContent, TemplateName, TemplateStore,
};
use broadcast_store::Store;
use broadcast_store::entity::{broadcast_recipients, users};
use broadcast_testkit::TestDb;
use chrono::{DateTime, Duration, TimeZone, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, PaginatorTrait};

/// A migrated database and a store on it, for each available backend.
pub(crate) async fn stores() -> Vec<(TestDb, Store)> {
    TestDb::all()
        .await
        .into_iter()
        .map(|db| {
            let store = Store::from_conn(db.conn().clone());
            (db, store)
        })
        .collect()
}

/// A fixed instant plus `millis` milliseconds.
pub(crate) fn t(millis: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::milliseconds(millis)
}

pub(crate) fn content() -> TemplateContent {
    TemplateContent {
        telegram_text: Some("Hi {{ first_name }}".into()),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("News".into()),
        email_html: None,
        email_text: Some("Hi {{ first_name }}".into()),
    }
}

pub(crate) fn new_template(name: &str) -> NewTemplate {
    NewTemplate {
        name: TemplateName::parse(name).unwrap(),
        description: format!("{name} description"),
        content: content(),
    }
}

pub(crate) async fn template(store: &Store, name: &str) -> MessageTemplate {
    store.create_template(new_template(name)).await.unwrap()
}

pub(crate) fn new_broadcast(template_id: i64, name: &str) -> NewBroadcast {
    NewBroadcast {
        name: name.into(),
        template_id,
        channel_policy: ChannelPolicy::BOTH,
        filter: AudienceFilter::default(),
        scheduled_at: None,
        created_by: Some("tester".into()),
    }
}

/// A broadcast in `status`, reached through allowed transitions.
pub(crate) async fn broadcast(store: &Store, status: BroadcastStatus) -> Broadcast {
    let n = store.list_broadcasts(&[], 0).await.unwrap().len();
    let tpl = template(store, &format!("tpl {n}")).await;
    let b = store
        .create_broadcast(new_broadcast(tpl.id, &format!("b{n}")), t(0))
        .await
        .unwrap();
    let go = |from: BroadcastStatus, to: BroadcastStatus| StatusChange {
        from: vec![from],
        to,
        at: t(0),
        reason: None,
        freeze: (to == BroadcastStatus::Running).then(content),
        probe: None,
    };
    let path: &[BroadcastStatus] = match status {
        BroadcastStatus::Draft => &[],
        BroadcastStatus::Running => &[BroadcastStatus::Running],
        BroadcastStatus::Paused => &[BroadcastStatus::Running, BroadcastStatus::Paused],
        BroadcastStatus::Completed => &[BroadcastStatus::Running, BroadcastStatus::Completed],
        other => panic!("helper cannot reach {other}"),
    };
    let mut current = b;
    for to in path {
        current = store
            .change_status(current.id, go(current.status, *to))
            .await
            .unwrap();
    }
    current
}

/// Inserts a user with the entity.
pub(crate) async fn user(store: &Store, n: i64) -> i64 {
    users::ActiveModel {
        external_id: Set(Some(format!("u{n}"))),
        telegram_chat_id: Set(Some(1000 + n)),
        email: Set(Some(format!("user{n}@example.org"))),
        first_name: Set(format!("First{n}")),
        last_name: Set(format!("Last{n}")),
        attributes: Set(serde_json::json!({})),
        created_at: Set(t(0)),
        updated_at: Set(t(0)),
        ..Default::default()
    }
    .insert(store.conn())
    .await
    .unwrap()
    .id
}

/// A recipient row to insert.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) user: i64,
    pub(crate) channel: ChannelKind,
    pub(crate) status: DeliveryStatus,
    pub(crate) next_attempt_at: DateTime<Utc>,
}

impl Row {
    pub(crate) fn pending(user: i64, next_attempt_at: DateTime<Utc>) -> Row {
        Row {
            user,
            channel: ChannelKind::TELEGRAM,
            status: DeliveryStatus::Pending,
            next_attempt_at,
        }
    }
}

/// Inserts a recipient row with the entity (and recounts); returns its id.
pub(crate) async fn recipient(store: &Store, broadcast: i64, row: Row) -> i64 {
    let id = broadcast_recipients::ActiveModel {
        broadcast_id: Set(broadcast),
        user_id: Set(row.user),
        registration_id: Set(None),
        channel: Set(row.channel.as_str().into()),
        address: Set(format!("addr-{}", row.user)),
        status: Set(row.status.as_str().into()),
        skip_reason: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(row.next_attempt_at),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        error_kind: Set(None),
        last_error: Set(None),
        provider_message_id: Set(None),
        sent_at: Set(None),
        uncertain_sends: Set(0),
        created_at: Set(t(0)),
        updated_at: Set(t(0)),
        ..Default::default()
    }
    .insert(store.conn())
    .await
    .unwrap()
    .id;
    recount(store, broadcast).await;
    id
}

/// A running broadcast with `n` users, each with one pending Telegram row due at `t(0)`.
pub(crate) async fn running_with_rows(store: &Store, n: i64) -> (Broadcast, Vec<i64>) {
    let b = broadcast(store, BroadcastStatus::Running).await;
    let first = users::Entity::find().count(store.conn()).await.unwrap() as i64;
    let mut ids = Vec::new();
    for i in 0..n {
        let u = user(store, first + i + 1).await;
        ids.push(recipient(store, b.id, Row::pending(u, t(0))).await);
    }
    (b, ids)
}

/// The stored row.
pub(crate) async fn row(store: &Store, id: i64) -> broadcast_recipients::Model {
    broadcast_recipients::Entity::find_by_id(id)
        .one(store.conn())
        .await
        .unwrap()
        .unwrap()
}

/// Rebuilds the counters of `broadcast` after rows were written with the entities, outside the
/// store (which keeps them itself).
pub(crate) async fn recount(store: &Store, broadcast: i64) {
    store.recount(broadcast).await.unwrap();
}

/// Asserts that the maintained counters agree with a full `GROUP BY` over the ledger rows of
/// `broadcast` (rows and possible duplicates per key), that `status_counts`, `stats` and
/// `open_count` equal what the old full-scan queries computed, and returns those statistics.
pub(crate) async fn assert_counts(store: &Store, broadcast: i64, what: &str) -> DeliveryStats {
    check_counts(store, broadcast, what, true).await
}

/// [`assert_counts`] after ledger rows were deleted: the first and last delivery times keep
/// the deleted rows' deliveries (a minimum cannot be taken back), so they are not compared.
pub(crate) async fn assert_counts_after_delete(
    store: &Store,
    broadcast: i64,
    what: &str,
) -> DeliveryStats {
    check_counts(store, broadcast, what, false).await
}

async fn check_counts(
    store: &Store,
    broadcast: i64,
    what: &str,
    sent_range: bool,
) -> DeliveryStats {
    use broadcast_store::entity::broadcast_counts;
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    use std::collections::BTreeMap;

    type C = broadcast_recipients::Column;
    /// channel, status, error_kind, skip_reason, rows, uncertain sends
    type Grouped = (String, String, Option<String>, Option<String>, i64, i64);
    let dup = Expr::col(C::UncertainSends)
        .sum()
        .cast_as(sea_orm::sea_query::Alias::new("BIGINT"));
    let grouped: Vec<Grouped> = broadcast_recipients::Entity::find()
        .select_only()
        .column(C::Channel)
        .column(C::Status)
        .column(C::ErrorKind)
        .column(C::SkipReason)
        .column_as(Expr::col(C::Id).count(), "n")
        .column_as(dup, "duplicates")
        .filter(C::BroadcastId.eq(broadcast))
        .group_by(C::Channel)
        .group_by(C::Status)
        .group_by(C::ErrorKind)
        .group_by(C::SkipReason)
        .into_tuple()
        .all(store.conn())
        .await
        .unwrap();
    let keyed = |status: &str, kind: &Option<String>| match status {
        "failed" | "pending" => kind.clone().unwrap_or_default(),
        _ => String::new(),
    };

    // Rows and duplicates per key: the ledger against the counters (shards added up).
    let mut expected: BTreeMap<(String, String, String, String), (i64, i64)> = BTreeMap::new();
    for (channel, status, kind, reason, n, d) in &grouped {
        let key = (
            channel.clone(),
            status.clone(),
            keyed(status, kind),
            reason.clone().unwrap_or_default(),
        );
        let e = expected.entry(key).or_default();
        e.0 += n;
        e.1 += d;
    }
    let mut counters: BTreeMap<(String, String, String, String), (i64, i64)> = BTreeMap::new();
    for m in broadcast_counts::Entity::find()
        .filter(broadcast_counts::Column::BroadcastId.eq(broadcast))
        .order_by_asc(broadcast_counts::Column::Shard)
        .all(store.conn())
        .await
        .unwrap()
    {
        let e = counters
            .entry((m.channel, m.status, m.error_kind, m.skip_reason))
            .or_default();
        e.0 += m.n;
        e.1 += m.duplicates;
    }
    counters.retain(|_, v| *v != (0, 0));
    assert_eq!(counters, expected, "{what}: counters against GROUP BY");

    // The statistics as they were computed before the counters existed.
    let old_counts: Vec<StatusCount> = grouped
        .iter()
        .map(|(channel, status, kind, reason, n, _)| StatusCount {
            channel: channel.parse().unwrap(),
            status: status.parse().unwrap(),
            error_kind: kind.as_deref().map(|s| s.parse().unwrap()),
            skip_reason: reason.as_deref().map(|s| s.parse().unwrap()),
            count: *n as u64,
        })
        .collect();
    let mut old = DeliveryStats::from_counts(&old_counts);
    let extra: (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        broadcast_recipients::Entity::find()
            .select_only()
            .column_as(
                Expr::col(C::UncertainSends)
                    .sum()
                    .cast_as(sea_orm::sea_query::Alias::new("BIGINT")),
                "duplicates",
            )
            .column_as(Expr::col(C::SentAt).min(), "first_sent_at")
            .column_as(Expr::col(C::SentAt).max(), "last_sent_at")
            .filter(C::BroadcastId.eq(broadcast))
            .into_tuple()
            .one(store.conn())
            .await
            .unwrap()
            .unwrap();
    old.possible_duplicates = extra.0 as u64;
    (old.first_sent_at, old.last_sent_at) = (extra.1, extra.2);
    let stats = store.stats(broadcast).await.unwrap();
    if !sent_range {
        (old.first_sent_at, old.last_sent_at) = (stats.first_sent_at, stats.last_sent_at);
    }
    assert_eq!(stats, old, "{what}: stats() against the old full scan");

    let mut keyed_counts: BTreeMap<_, u64> = BTreeMap::new();
    for c in &old_counts {
        let kind = match c.status {
            DeliveryStatus::Failed | DeliveryStatus::Pending => c.error_kind,
            _ => None,
        };
        *keyed_counts
            .entry((c.channel, c.status, kind, c.skip_reason))
            .or_default() += c.count;
    }
    let mut got: Vec<_> = store
        .status_counts(broadcast)
        .await
        .unwrap()
        .into_iter()
        .map(|c| ((c.channel, c.status, c.error_kind, c.skip_reason), c.count))
        .collect();
    got.sort();
    assert_eq!(
        got,
        keyed_counts.into_iter().collect::<Vec<_>>(),
        "{what}: status_counts"
    );
    assert_eq!(
        store.open_count(broadcast).await.unwrap(),
        old.open(),
        "{what}: open_count"
    );
    stats
}
