//! Shared helpers: a store per backend, fixed times, and rows inserted with the entities.

use broadcast_domain::{
    AudienceFilter, Broadcast, BroadcastStatus, BroadcastStore, ChannelKind, ChannelPolicy,
    DeliveryStatus, MessageTemplate, NewBroadcast, NewTemplate, ParseMode, StatusChange,
    TemplateContent, TemplateName, TemplateStore,
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
        channel_policy: ChannelPolicy::Both,
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
            channel: ChannelKind::Telegram,
            status: DeliveryStatus::Pending,
            next_attempt_at,
        }
    }
}

/// Inserts a recipient row with the entity; returns its id.
pub(crate) async fn recipient(store: &Store, broadcast: i64, row: Row) -> i64 {
    broadcast_recipients::ActiveModel {
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
        lease_expirations: Set(0),
        created_at: Set(t(0)),
        updated_at: Set(t(0)),
        ..Default::default()
    }
    .insert(store.conn())
    .await
    .unwrap()
    .id
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
