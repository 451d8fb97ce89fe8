//! Loads the demo fixtures into a test database and computes, in plain Rust from the parsed CSV
//! rows, what every filter should select: the independent side of every comparison.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use broadcast_app::csv_import;
use broadcast_domain::{
    AudienceCount, AudienceFilter, AudienceStore, BroadcastId, ChannelKind, ChannelPolicy,
    DeliveryStatus, DeliveryStore, ErrorKind, NewRegistration, NewUser, PolicyMode, Registration,
    SkipReason, User,
};
use broadcast_store::Store;
use broadcast_store::entity::{
    broadcast_recipients, broadcasts, competitions, registrations, users,
};
use broadcast_testkit::{Backend, TestDb};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

/// A fixture file's text.
pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A fixed "now", so timestamps in assertions are exact.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 9, 0, 0).unwrap()
}

/// A user as the test knows it: the CSV row plus the id the database gave it, and the flags a
/// test may change afterwards.
#[derive(Debug, Clone)]
pub(crate) struct KnownUser {
    pub(crate) id: i64,
    pub(crate) row: NewUser,
    pub(crate) bounced: bool,
}

impl KnownUser {
    /// The user as the domain sees it, from the CSV row alone.
    pub(crate) fn domain(&self) -> User {
        let r = &self.row;
        User {
            id: self.id,
            external_id: Some(r.external_id.clone()),
            telegram_chat_id: r.telegram_chat_id,
            email: r.email.clone(),
            first_name: r.first_name.clone(),
            last_name: r.last_name.clone(),
            username: r.username.clone(),
            language: r.language.clone(),
            country: r.country.clone(),
            city: r.city.clone(),
            attributes: r.attributes.clone(),
            telegram_blocked_at: r.telegram_blocked.then(now),
            email_unsubscribed_at: r.email_unsubscribed.then(now),
            email_bounced_at: self.bounced.then(now),
            created_at: now(),
            updated_at: now(),
        }
    }
}

/// A registration as the test knows it.
#[derive(Debug, Clone)]
pub(crate) struct KnownRegistration {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    pub(crate) competition_id: i64,
    pub(crate) row: NewRegistration,
}

impl KnownRegistration {
    fn domain(&self) -> Registration {
        Registration {
            id: self.id,
            user_id: self.user_id,
            competition_id: self.competition_id,
            role: self.row.role,
            status: self.row.status,
            created_at: now(),
        }
    }
}

/// The fixtures loaded into one database.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) db: TestDb,
    pub(crate) store: Store,
    /// The store as the audience source (the same store as `store`).
    pub(crate) audience: Store,
    pub(crate) users: Vec<KnownUser>,
    pub(crate) registrations: Vec<KnownRegistration>,
    pub(crate) competitions: BTreeMap<String, i64>,
}

impl Loaded {
    /// Every test database (SQLite, and PostgreSQL when available) with the fixtures imported.
    pub(crate) async fn all() -> Vec<Loaded> {
        let mut out = Vec::new();
        for db in TestDb::all().await {
            out.push(Self::load(db).await);
        }
        out
    }

    async fn load(db: TestDb) -> Loaded {
        let store = Store::from_conn(db.conn().clone());
        let user_rows =
            csv_import::parse_users(fixture("users.csv").as_bytes()).expect("users.csv parses");
        let competition_rows =
            csv_import::parse_competitions(fixture("competitions.csv").as_bytes())
                .expect("competitions.csv parses");
        let registration_rows =
            csv_import::parse_registrations(fixture("registrations.csv").as_bytes())
                .expect("registrations.csv parses");
        assert_eq!(user_rows.len(), 200, "the fixtures have 200 users");
        store.import_users(user_rows.clone(), now()).await.unwrap();
        store
            .import_competitions(competition_rows, now())
            .await
            .unwrap();
        store
            .import_registrations(registration_rows.clone(), now())
            .await
            .unwrap();

        // Only the generated ids come from the database; everything else from the CSV rows.
        let ids: HashMap<String, i64> = users::Entity::find()
            .all(db.conn())
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.external_id.expect("imported users have one"), u.id))
            .collect();
        let competitions: BTreeMap<String, i64> = competitions::Entity::find()
            .all(db.conn())
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.slug, c.id))
            .collect();
        let registration_ids: HashMap<(i64, i64), i64> = registrations::Entity::find()
            .all(db.conn())
            .await
            .unwrap()
            .into_iter()
            .map(|r| ((r.user_id, r.competition_id), r.id))
            .collect();
        let users = user_rows
            .into_iter()
            .map(|row| KnownUser {
                id: ids[&row.external_id],
                row,
                bounced: false,
            })
            .collect();
        let registrations = registration_rows
            .into_iter()
            .map(|row| {
                let user_id = ids[&row.user_external_id];
                let competition_id = competitions[&row.competition_slug];
                KnownRegistration {
                    id: registration_ids[&(user_id, competition_id)],
                    user_id,
                    competition_id,
                    row,
                }
            })
            .collect();
        let audience = store.clone();
        Loaded {
            db,
            store,
            audience,
            users,
            registrations,
            competitions,
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub(crate) fn competition(&self, slug: &str) -> i64 {
        self.competitions[slug]
    }

    pub(crate) fn user(&self, external_id: &str) -> &KnownUser {
        self.users
            .iter()
            .find(|u| u.row.external_id == external_id)
            .unwrap_or_else(|| panic!("no fixture user {external_id}"))
    }

    /// The expected audience by the domain's definition ([`AudienceFilter::matches`]) over the
    /// parsed CSV rows: user id -> the matched registration (`None` without registration fields).
    pub(crate) fn expected(&self, f: &AudienceFilter) -> BTreeMap<i64, Option<i64>> {
        let registrations: Vec<Registration> = self
            .registrations
            .iter()
            .map(KnownRegistration::domain)
            .collect();
        self.users
            .iter()
            .filter_map(|u| Some((u.id, f.matches(&u.domain(), &registrations)?)))
            .collect()
    }

    /// The expected count of a filter for a policy.
    pub(crate) fn expected_count(
        &self,
        f: &AudienceFilter,
        policy: ChannelPolicy,
    ) -> AudienceCount {
        let selected = self.expected(f);
        let mut count = AudienceCount::default();
        for kind in policy.channels() {
            count.reachable.insert(*kind, 0);
            count.messages.insert(*kind, 0);
        }
        for u in self.users.iter().filter(|u| selected.contains_key(&u.id)) {
            count.users += 1;
            let mut reached = false;
            for kind in policy.channels() {
                let reaches = match *kind {
                    ChannelKind::TELEGRAM => telegram_reachable(u),
                    ChannelKind::EMAIL => email_reachable(u),
                    other => panic!("the model knows no channel {other}"),
                };
                if !reaches {
                    continue;
                }
                *count.reachable.get_mut(kind).unwrap() += 1;
                if !(reached && policy.mode() == PolicyMode::FirstReachable) {
                    *count.messages.get_mut(kind).unwrap() += 1;
                }
                reached = true;
            }
            count.unreachable += u64::from(!reached);
        }
        count
    }

    /// The expected recipient rows of a broadcast with this filter and policy.
    pub(crate) fn expected_rows(
        &self,
        f: &AudienceFilter,
        policy: ChannelPolicy,
    ) -> BTreeSet<RowView> {
        let selected = self.expected(f);
        let mut rows = BTreeSet::new();
        for u in self.users.iter().filter(|u| selected.contains_key(&u.id)) {
            let registration_id = selected[&u.id];
            let r = &u.row;
            let telegram = || {
                let address = r
                    .telegram_chat_id
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let reason = if r.telegram_chat_id.is_none() {
                    Some(SkipReason::NoTelegram)
                } else if r.telegram_blocked {
                    Some(SkipReason::TelegramBlocked)
                } else {
                    None
                };
                RowView::new(
                    u.id,
                    registration_id,
                    ChannelKind::TELEGRAM,
                    address,
                    reason,
                )
            };
            let email = || {
                let address = r
                    .email
                    .as_ref()
                    .map(|e| e.as_ref().to_owned())
                    .unwrap_or_default();
                let reason = if r.email.is_none() {
                    Some(SkipReason::NoEmail)
                } else if r.email_unsubscribed {
                    Some(SkipReason::EmailUnsubscribed)
                } else if u.bounced {
                    Some(SkipReason::EmailBounced)
                } else {
                    None
                };
                RowView::new(u.id, registration_id, ChannelKind::EMAIL, address, reason)
            };
            match policy {
                ChannelPolicy::TELEGRAM => {
                    rows.insert(telegram());
                }
                ChannelPolicy::EMAIL => {
                    rows.insert(email());
                }
                ChannelPolicy::BOTH => {
                    rows.insert(telegram());
                    rows.insert(email());
                }
                ChannelPolicy::TELEGRAM_THEN_EMAIL => {
                    rows.insert(telegram());
                    if !telegram_reachable(u) {
                        rows.insert(email());
                    }
                }
                other => panic!("the model knows no policy {other}"),
            }
        }
        rows
    }

    /// A draft broadcast row to materialise into.
    pub(crate) async fn new_broadcast(&self, f: &AudienceFilter, policy: ChannelPolicy) -> i64 {
        broadcasts::ActiveModel {
            name: Set(format!("test: {}", f.describe())),
            template_id: Set(None),
            frozen_template: Set(None),
            channel_policy: Set(policy.to_string()),
            filter: Set(serde_json::to_value(f).unwrap()),
            status: Set("draft".to_owned()),
            total_recipients: Set(0),
            created_at: Set(now()),
            updated_at: Set(now()),
            ..Default::default()
        }
        .insert(self.db.conn())
        .await
        .unwrap()
        .id
    }

    /// Asserts that the store's counters and statistics of `broadcast` agree with its ledger
    /// rows, grouped here (error kinds count for failed and pending rows only).
    pub(crate) async fn assert_counted(&self, broadcast: BroadcastId) {
        let rows = broadcast_recipients::Entity::find()
            .filter(broadcast_recipients::Column::BroadcastId.eq(broadcast))
            .all(self.db.conn())
            .await
            .unwrap();
        let mut grouped: BTreeMap<_, u64> = BTreeMap::new();
        let (mut duplicates, mut first, mut last) = (0, None, None);
        for m in &rows {
            let status: DeliveryStatus = m.status.parse().unwrap();
            let error_kind: Option<ErrorKind> = match status {
                DeliveryStatus::Failed | DeliveryStatus::Pending => {
                    m.error_kind.as_deref().map(|k| k.parse().unwrap())
                }
                _ => None,
            };
            let skip_reason: Option<SkipReason> =
                m.skip_reason.as_deref().map(|r| r.parse().unwrap());
            let channel: ChannelKind = m.channel.parse().unwrap();
            *grouped
                .entry((channel, status, error_kind, skip_reason))
                .or_default() += 1;
            duplicates += u64::from(m.uncertain_sends > 0);
            if let Some(at) = m.sent_at {
                first = Some(first.map_or(at, |f: DateTime<Utc>| f.min(at)));
                last = Some(last.map_or(at, |l: DateTime<Utc>| l.max(at)));
            }
        }
        let what = format!("{}: broadcast {broadcast}", self.backend());
        let counts = match self.store.status_counts(broadcast).await {
            Err(broadcast_domain::Error::NotFound { .. }) if rows.is_empty() => return,
            counts => counts.unwrap(),
        };
        let counts: BTreeMap<_, u64> = counts
            .into_iter()
            .map(|c| ((c.channel, c.status, c.error_kind, c.skip_reason), c.count))
            .collect();
        assert_eq!(counts, grouped, "{what}: counters against the rows");
        let stats = self.store.stats(broadcast).await.unwrap();
        assert_eq!(stats.total, rows.len() as u64, "{what}");
        assert_eq!(
            (
                stats.possible_duplicates,
                stats.first_sent_at,
                stats.last_sent_at
            ),
            (duplicates, first, last),
            "{what}"
        );
        assert_eq!(
            self.store.open_count(broadcast).await.unwrap(),
            stats.open(),
            "{what}"
        );
    }

    /// The recipient rows of a broadcast, checking the columns every fresh row shares and that
    /// the counters agree with them.
    pub(crate) async fn rows(&self, broadcast: BroadcastId) -> Vec<RowView> {
        self.assert_counted(broadcast).await;
        let rows = broadcast_recipients::Entity::find()
            .filter(broadcast_recipients::Column::BroadcastId.eq(broadcast))
            .order_by_asc(broadcast_recipients::Column::Id)
            .all(self.db.conn())
            .await
            .unwrap();
        rows.into_iter()
            .map(|m| {
                assert_eq!(m.attempts, 0);
                assert_eq!(m.uncertain_sends, 0);
                assert_eq!(m.next_attempt_at, now());
                assert_eq!(m.created_at, now());
                assert_eq!(m.updated_at, now());
                assert!(m.lease_owner.is_none() && m.error_kind.is_none() && m.sent_at.is_none());
                RowView {
                    user_id: m.user_id,
                    registration_id: m.registration_id,
                    channel: m.channel.parse().unwrap(),
                    address: m.address,
                    status: m.status.parse().unwrap(),
                    skip_reason: m.skip_reason.map(|r| r.parse().unwrap()),
                }
            })
            .collect()
    }

    pub(crate) async fn total_recipients(&self, broadcast: BroadcastId) -> i64 {
        broadcasts::Entity::find_by_id(broadcast)
            .one(self.db.conn())
            .await
            .unwrap()
            .unwrap()
            .total_recipients
    }
}

pub(crate) fn telegram_reachable(u: &KnownUser) -> bool {
    u.row.telegram_chat_id.is_some() && !u.row.telegram_blocked
}

pub(crate) fn email_reachable(u: &KnownUser) -> bool {
    u.row.email.is_some() && !u.row.email_unsubscribed && !u.bounced
}

/// The columns of a recipient row that depend on the user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RowView {
    pub(crate) user_id: i64,
    pub(crate) channel: ChannelKind,
    pub(crate) registration_id: Option<i64>,
    pub(crate) address: String,
    pub(crate) status: DeliveryStatus,
    pub(crate) skip_reason: Option<SkipReason>,
}

impl RowView {
    fn new(
        user_id: i64,
        registration_id: Option<i64>,
        channel: ChannelKind,
        address: String,
        skip_reason: Option<SkipReason>,
    ) -> Self {
        let status = if skip_reason.is_some() {
            DeliveryStatus::Skipped
        } else {
            DeliveryStatus::Pending
        };
        Self {
            user_id,
            channel,
            registration_id,
            address,
            status,
            skip_reason,
        }
    }
}
