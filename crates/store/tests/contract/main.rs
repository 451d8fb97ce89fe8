//! The contract every store keeps, through the port traits alone, run on `MemoryStore`, SQLite
//! and PostgreSQL (when reachable; `REQUIRE_POSTGRES=1` makes its absence a failure): imports
//! that apply all rows or none with the same messages, case-insensitive matching of non-ASCII
//! names, the lifecycle's refusals, materialising with the same rows and reasons, and the
//! shared send budget's slots and moves.
//!
//! The SQL-specific suites (`it`, `audience`) check more of the SQL store; this one is where
//! `MemoryStore`, which embedding programs and unit tests use, is held to the same semantics.

use std::collections::BTreeMap;
use std::sync::Arc;

use broadcast_app::csv_import::{parse_competitions, parse_registrations, parse_users};
use broadcast_domain::{
    AdminStore, AudienceFilter, AudienceSource, AudienceStore, AuditEntry, AuditLog, AuditQuery,
    BroadcastStatus, BroadcastStore, ChannelKind, ChannelPolicy, DeliveryStatus, DeliveryStore,
    Error, ImportReport, MaterialiseReport, MediaRef, MediaStore, NewBroadcast, NewMedium,
    NewTemplate, ParseMode, RecipientQuery, SendBudget, SkipReason, StatusChange, TemplateContent,
    TemplateName, TemplateStore, Transition, User, UserQuery,
};
use broadcast_orchestrator::memory::MemoryStore;
use broadcast_store::Store;
use broadcast_testkit::TestDb;
use chrono::{DateTime, TimeZone, Utc};

/// Every port a store implements.
trait Contract:
    TemplateStore
    + BroadcastStore
    + DeliveryStore
    + AudienceStore
    + AudienceSource
    + SendBudget
    + AdminStore
    + AuditLog
    + MediaStore
{
}
impl<
    T: TemplateStore
        + BroadcastStore
        + DeliveryStore
        + AudienceStore
        + AudienceSource
        + SendBudget
        + AdminStore
        + AuditLog
        + MediaStore,
> Contract for T
{
}

/// One store under test, named for messages; keeps its database alive.
struct Subject {
    name: String,
    store: Arc<dyn Contract>,
    _db: Option<TestDb>,
}

async fn subjects() -> Vec<Subject> {
    let mut out = vec![Subject {
        name: "memory".into(),
        store: Arc::new(MemoryStore::new()),
        _db: None,
    }];
    for db in TestDb::all().await {
        out.push(Subject {
            name: db.backend().to_string(),
            store: Arc::new(Store::from_conn(db.conn().clone())),
            _db: Some(db),
        });
    }
    out
}

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 10, minute, 0).unwrap()
}

const USERS: &str = "\
external_id,first_name,last_name,email,telegram_chat_id,country,city,telegram_blocked,email_unsubscribed
u1,Ann,Smith,ann@example.org,101,Polska,Łódź,no,no
u2,Bob,Jones,,102,POLSKA,ŁÓDŹ,yes,no
u3,Cid,,Zoë@Example.org,,polska,łódź,no,yes
u4,Dan,,dan@example.org,104,Deutschland,München,no,no
";

const COMPETITIONS: &str = "\
slug,name,starts_on,city,country
lodz-26,Łódź Open,2026-05-01,Łódź,Polska
";

const REGISTRATIONS: &str = "\
user_external_id,competition_slug,role,status
u1,lodz-26,judge,confirmed
u2,lodz-26,participant,confirmed
";

async fn import_fixture(store: &dyn Contract) {
    let users = parse_users(USERS.as_bytes()).unwrap();
    assert_eq!(
        store.import_users(users, t(0)).await.unwrap(),
        ImportReport {
            inserted: 4,
            updated: 0
        }
    );
    let comps = parse_competitions(COMPETITIONS.as_bytes()).unwrap();
    store.import_competitions(comps, t(0)).await.unwrap();
    let regs = parse_registrations(REGISTRATIONS.as_bytes()).unwrap();
    store.import_registrations(regs, t(0)).await.unwrap();
}

async fn users(store: &dyn Contract) -> Vec<User> {
    let mut users = store.list_users(&UserQuery::default()).await.unwrap().items;
    users.sort_by_key(|u| u.external_id.clone());
    users
}

#[tokio::test]
async fn imports_apply_every_row_or_none_with_the_same_messages() {
    for s in subjects().await {
        let store = s.store.as_ref();
        import_fixture(store).await;
        let before = users(store).await;
        assert_eq!(before.len(), 4, "{}", s.name);

        let refused = [
            (
                "external_id,first_name,email\nu9,Eve,eve@example.org\nu10,Fay,EVE@example.org\n",
                "line 3, column `email`: `EVE@example.org` is also on line 2",
            ),
            (
                "external_id,first_name,email\nu9,Eve,ANN@example.org\n",
                "line 2, column `email`: `ANN@example.org` already belongs to user `u1`",
            ),
            (
                "external_id,first_name,email\nu9,Eve,zoë@EXAMPLE.org\n",
                "line 2, column `email`: `zoë@example.org` already belongs to user `u3`",
            ),
            (
                "external_id,first_name,telegram_chat_id\nu9,Eve,555\nu1,Ann,104\n",
                "line 3, column `telegram_chat_id`: chat id 104 already belongs to user `u4`",
            ),
        ];
        for (csv, expected) in refused {
            let rows = parse_users(csv.as_bytes()).unwrap();
            let err = store.import_users(rows, t(1)).await.unwrap_err();
            assert!(
                matches!(err, Error::Invalid(_)) && err.to_string() == expected,
                "{}: {err:?}, expected {expected}",
                s.name
            );
            assert_eq!(users(store).await, before, "{}: nothing written", s.name);
        }

        // Rows from two files (the CSV parser already refuses a repeat within one file).
        let mut rows = parse_users("external_id,first_name\nu9,Eve\n".as_bytes()).unwrap();
        rows.extend(parse_users("external_id,first_name\nu9,Eve again\n".as_bytes()).unwrap());
        let err = store.import_users(rows, t(1)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2, column `external_id`: `u9` is also on line 2",
            "{}",
            s.name
        );
        assert_eq!(users(store).await, before, "{}: nothing written", s.name);

        // A batch that moves a chat id from one of its rows to another is fine.
        let swap = "external_id,first_name,telegram_chat_id\nu1,Ann,102\nu2,Bob,101\n";
        let report = store
            .import_users(parse_users(swap.as_bytes()).unwrap(), t(2))
            .await
            .unwrap();
        assert_eq!(report.updated, 2, "{}", s.name);
        let after = users(store).await;
        assert_eq!(
            after
                .iter()
                .map(|u| u.telegram_chat_id.map(|c| c.get()))
                .collect::<Vec<_>>(),
            [Some(102), Some(101), None, Some(104)],
            "{}",
            s.name
        );

        let regs = "user_external_id,competition_slug,role,status\n\
                    u3,lodz-26,judge,confirmed\nu7,lodz-26,judge,confirmed\n";
        let err = store
            .import_registrations(parse_registrations(regs.as_bytes()).unwrap(), t(3))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "line 3: unknown user `u7`", "{}", s.name);
        let regs = "user_external_id,competition_slug,role,status\nu3,nope,judge,confirmed\n";
        let err = store
            .import_registrations(parse_registrations(regs.as_bytes()).unwrap(), t(3))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: unknown competition `nope`",
            "{}",
            s.name
        );
        let u3 = after
            .iter()
            .find(|u| u.external_id.as_deref() == Some("u3"));
        let regs_of_u3 = store.registrations_of(u3.unwrap().id).await.unwrap();
        assert!(regs_of_u3.is_empty(), "{}: nothing written", s.name);
    }
}

#[tokio::test]
async fn non_ascii_names_match_in_any_case_everywhere() {
    for s in subjects().await {
        let store = s.store.as_ref();
        import_fixture(store).await;
        let count = async |filter: AudienceFilter| {
            store
                .count(&filter, ChannelPolicy::BOTH)
                .await
                .unwrap()
                .users
        };
        for city in ["Łódź", "ŁÓDŹ", "łódź", " ŁóDź "] {
            let filter = AudienceFilter {
                cities: vec![city.into()],
                ..AudienceFilter::default()
            };
            assert_eq!(count(filter).await, 3, "{} / {city}", s.name);
        }
        let munich = AudienceFilter {
            cities: vec!["MÜNCHEN".into()],
            countries: vec!["deutschland".into()],
            ..AudienceFilter::default()
        };
        assert_eq!(count(munich).await, 1, "{}", s.name);
        let zoe = AudienceFilter::from_json(r#"{"emails":["ZOË@example.org"]}"#).unwrap();
        let sample = store.sample(&zoe, 10).await.unwrap();
        assert_eq!(
            sample
                .iter()
                .map(|c| c.user.external_id.as_deref())
                .collect::<Vec<_>>(),
            [Some("u3")],
            "{}",
            s.name
        );
        let judges = AudienceFilter::from_json(r#"{"roles":["judge"],"cities":["ŁÓDŹ"]}"#).unwrap();
        let sample = store.sample(&judges, 10).await.unwrap();
        assert_eq!(sample.len(), 1, "{}", s.name);
        assert_eq!(
            sample[0].competition.as_ref().map(|c| c.name.as_str()),
            Some("Łódź Open"),
            "{}",
            s.name
        );
    }
}

fn content() -> TemplateContent {
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

async fn draft(store: &dyn Contract, policy: ChannelPolicy, filter: AudienceFilter) -> i64 {
    let n = store.list_templates().await.unwrap().len();
    let template = store
        .create_template(NewTemplate {
            name: TemplateName::parse(&format!("t{n}")).unwrap(),
            description: String::new(),
            content: content(),
        })
        .await
        .unwrap();
    store
        .create_broadcast(
            NewBroadcast {
                name: format!("b{n}"),
                template_id: template.id,
                channel_policy: policy,
                filter,
                scheduled_at: None,
                created_by: Some("contract".into()),
            },
            t(0),
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn transitions_are_refused_from_the_wrong_status() {
    for s in subjects().await {
        let store = s.store.as_ref();
        let id = draft(store, ChannelPolicy::BOTH, AudienceFilter::default()).await;
        let b = store.set_schedule(id, Some(t(30)), t(1)).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Scheduled, "{}", s.name);
        let b = store.set_schedule(id, None, t(1)).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Draft, "{}", s.name);
        let launch = Transition::Launch.change(t(2), None, Some(content()));
        let b = store.change_status(id, launch.clone()).await.unwrap();
        assert_eq!(
            (b.status, b.started_at, b.frozen_template.is_some()),
            (BroadcastStatus::Running, Some(t(2)), true),
            "{}",
            s.name
        );
        let again = store.change_status(id, launch).await.unwrap_err();
        assert!(matches!(again, Error::Conflict(_)), "{}: {again}", s.name);
        let err = store.set_schedule(id, Some(t(40)), t(3)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "broadcast {id} is running; only a draft or scheduled broadcast can be scheduled"
            ),
            "{}",
            s.name
        );
        let pause = Transition::Pause.change(t(4), Some("why".into()), None);
        let b = store.change_status(id, pause).await.unwrap();
        assert_eq!(
            (b.status, b.status_reason.as_deref()),
            (BroadcastStatus::Paused, Some("why")),
            "{}",
            s.name
        );
        let cancel = Transition::Cancel.change(t(5), None, None);
        let b = store.change_status(id, cancel).await.unwrap();
        assert_eq!(
            (b.status, b.finished_at),
            (BroadcastStatus::Cancelled, Some(t(5))),
            "{}",
            s.name
        );
        let resume = StatusChange {
            from: Transition::Resume.from().to_vec(),
            to: BroadcastStatus::Running,
            at: t(6),
            reason: None,
            freeze: None,
            probe: None,
        };
        assert!(
            matches!(
                store.change_status(id, resume).await,
                Err(Error::Conflict(_))
            ),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn materialising_writes_the_same_rows_and_reasons() {
    for s in subjects().await {
        let store = s.store.as_ref();
        import_fixture(store).await;
        let in_lodz = AudienceFilter {
            cities: vec!["łódź".into()],
            ..AudienceFilter::default()
        };
        let mut reports = Vec::new();
        for policy in [ChannelPolicy::BOTH, ChannelPolicy::TELEGRAM_THEN_EMAIL] {
            let id = draft(store, policy, in_lodz.clone()).await;
            let report = store.materialise(id, &in_lodz, policy, t(1)).await.unwrap();
            let again = store.materialise(id, &in_lodz, policy, t(2)).await.unwrap();
            assert_eq!(
                again.inserted, 0,
                "{}: materialising twice adds nothing",
                s.name
            );
            let rows = store
                .list_recipients(id, &RecipientQuery::default())
                .await
                .unwrap()
                .items;
            let mut view: Vec<(String, ChannelKind, DeliveryStatus, Option<SkipReason>)> =
                Vec::new();
            for r in rows {
                let user = store.get_user(r.user_id).await.unwrap();
                view.push((
                    user.external_id.unwrap(),
                    r.channel,
                    r.status,
                    r.skip_reason,
                ));
            }
            view.sort();
            reports.push((report, view));
        }
        const TELEGRAM: ChannelKind = ChannelKind::TELEGRAM;
        const EMAIL: ChannelKind = ChannelKind::EMAIL;
        use DeliveryStatus::{Pending, Skipped};
        let report = |telegram, email, skipped: &[(SkipReason, u64)], inserted| MaterialiseReport {
            queued: BTreeMap::from([(TELEGRAM, telegram), (EMAIL, email)]),
            skipped: skipped.iter().copied().collect(),
            inserted,
        };
        let expected = [
            (
                report(
                    1,
                    1,
                    &[
                        (SkipReason::TelegramBlocked, 1),
                        (SkipReason::NoTelegram, 1),
                        (SkipReason::NoEmail, 1),
                        (SkipReason::EmailUnsubscribed, 1),
                    ],
                    6,
                ),
                vec![
                    ("u1".to_owned(), TELEGRAM, Pending, None),
                    ("u1".to_owned(), EMAIL, Pending, None),
                    (
                        "u2".to_owned(),
                        TELEGRAM,
                        Skipped,
                        Some(SkipReason::TelegramBlocked),
                    ),
                    ("u2".to_owned(), EMAIL, Skipped, Some(SkipReason::NoEmail)),
                    (
                        "u3".to_owned(),
                        TELEGRAM,
                        Skipped,
                        Some(SkipReason::NoTelegram),
                    ),
                    (
                        "u3".to_owned(),
                        EMAIL,
                        Skipped,
                        Some(SkipReason::EmailUnsubscribed),
                    ),
                ],
            ),
            (
                // E-mail rows only for those TELEGRAM cannot reach.
                report(
                    1,
                    0,
                    &[
                        (SkipReason::TelegramBlocked, 1),
                        (SkipReason::NoTelegram, 1),
                        (SkipReason::NoEmail, 1),
                        (SkipReason::EmailUnsubscribed, 1),
                    ],
                    5,
                ),
                vec![
                    ("u1".to_owned(), TELEGRAM, Pending, None),
                    (
                        "u2".to_owned(),
                        TELEGRAM,
                        Skipped,
                        Some(SkipReason::TelegramBlocked),
                    ),
                    ("u2".to_owned(), EMAIL, Skipped, Some(SkipReason::NoEmail)),
                    (
                        "u3".to_owned(),
                        TELEGRAM,
                        Skipped,
                        Some(SkipReason::NoTelegram),
                    ),
                    (
                        "u3".to_owned(),
                        EMAIL,
                        Skipped,
                        Some(SkipReason::EmailUnsubscribed),
                    ),
                ],
            ),
        ];
        for ((report, mut view), (want_report, mut want_view)) in reports.into_iter().zip(expected)
        {
            view.sort();
            want_view.sort();
            assert_eq!(report, want_report, "{}", s.name);
            assert_eq!(view, want_view, "{}", s.name);
        }
    }
}

/// A late answer owes a move of the slots from the slot a window after its own: the late
/// answers of one window owe it once (the larger, by the earlier time), the reservation that
/// reaches that time makes it, and a move whose slot is out already is made at once (from
/// `now` when the key is idle).
#[tokio::test]
async fn late_answers_owe_one_move_made_when_its_slot_is_reserved() {
    use broadcast_domain::{Moves, Owed};
    use std::time::Duration;
    let ms = |n: u64| Duration::from_millis(n);
    let at = |n: i64| t(0) + chrono::Duration::milliseconds(n);
    let owed = |total: u64, by: i64| Owed {
        total: ms(total),
        by: at(by),
    };
    for s in subjects().await {
        let (name, store) = (&s.name, &s.store);
        let first = store.reserve("telegram", ms(10), 3, t(0)).await.unwrap();
        assert_eq!(
            (first.first, first.moves.moved, first.moves.owed),
            (t(0), Duration::ZERO, None),
            "{name}"
        );
        // Three answers of that reservation, 25, 20 and 40 ms late, owe one move of 40 ms
        // from the earliest of their slots a window later.
        let mut moves = Moves::default();
        for (late, by) in [(25, 990), (20, 1000), (40, 1010)] {
            moves = store
                .move_back("telegram", ms(late), first.moves.moved, at(by), at(5))
                .await
                .unwrap();
        }
        assert_eq!(
            moves,
            Moves {
                moved: Duration::ZERO,
                owed: Some(owed(40, 990)),
            },
            "{name}"
        );
        // Reservations before that time are not moved; the one that reaches it is.
        let before = store.reserve("telegram", ms(10), 10, t(0)).await.unwrap();
        assert_eq!(
            (before.first, before.moves.moved, before.moves.owed),
            (at(30), Duration::ZERO, Some(owed(40, 990))),
            "{name}"
        );
        let reaching = store.reserve("telegram", ms(10), 90, t(0)).await.unwrap();
        assert_eq!(
            (reaching.first, reaching.moves.moved, reaching.moves.owed),
            (at(130 + 40), ms(40), None),
            "{name}"
        );
        // Covered already: nothing more.
        let moves = store
            .move_back("telegram", ms(30), Duration::ZERO, at(990), at(200))
            .await
            .unwrap();
        assert_eq!(moves.moved, ms(40), "{name}");
        assert_eq!(moves.owed, None, "{name}");
        // A message of the new reservation counts only moves made after it; with one whose
        // slot a window later is out already (the slots reach 1070 ms), what is owed is made
        // at once.
        store
            .move_back("telegram", ms(15), reaching.moves.moved, at(1160), at(300))
            .await
            .unwrap();
        let moves = store
            .move_back("telegram", ms(10), reaching.moves.moved, at(500), at(600))
            .await
            .unwrap();
        assert_eq!((moves.moved, moves.owed), (ms(55), None), "{name}");
        let next = store.reserve("telegram", ms(10), 1, t(0)).await.unwrap();
        assert_eq!(next.first, at(1070 + 15), "{name}");
        // An idle key moves from now; other keys are untouched.
        let idle = store.reserve("telegram", ms(10), 1, t(1)).await.unwrap();
        assert_eq!(
            idle.first,
            t(1),
            "{name}: a key idle for a minute starts at now"
        );
        store
            .move_back("telegram", ms(30), idle.moves.moved, t(1), t(1))
            .await
            .unwrap();
        let after = store.reserve("telegram", ms(10), 1, t(1)).await.unwrap();
        assert_eq!(
            after.first,
            t(1) + chrono::Duration::milliseconds(10 + 30),
            "{name}"
        );
        let other = store.reserve("email", ms(10), 1, t(0)).await.unwrap();
        assert_eq!(
            (other.first, other.moves.moved, other.moves.owed),
            (t(0), Duration::ZERO, None),
            "{name}"
        );
    }
}

/// Claimed rows of a paused or cancelled broadcast are not marked as started (so not sent),
/// and handing them back leaves a paused broadcast's rows `pending` and cancels a cancelled
/// one's, also a result written after the cancel.
#[tokio::test]
async fn rows_of_a_stopped_broadcast_are_not_started_and_come_back_right() {
    use broadcast_domain::{ClaimRequest, DeliveryResult, Outcome};
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        import_fixture(store).await;
        let mut rows_of = BTreeMap::new();
        for stop in [Transition::Pause, Transition::Cancel] {
            let id = draft(store, ChannelPolicy::BOTH, AudienceFilter::default()).await;
            let launch = Transition::Launch.change(t(1), None, Some(content()));
            store.change_status(id, launch).await.unwrap();
            store
                .materialise(id, &AudienceFilter::default(), ChannelPolicy::BOTH, t(1))
                .await
                .unwrap();
            let claimed = store
                .claim_due(&ClaimRequest {
                    worker_id: "w".into(),
                    now: t(2),
                    lease_for: chrono::Duration::minutes(5),
                    limit: 1_000,
                    broadcast_id: Some(id),
                    channels: Vec::new(),
                })
                .await
                .unwrap();
            assert!(claimed.len() >= 3, "{name}: {} claimed", claimed.len());
            let ids: Vec<_> = claimed.iter().map(|r| r.id).collect();
            // The first is started while running; then the broadcast stops.
            let started = store.mark_started("w", &ids[..1], t(2)).await.unwrap();
            assert_eq!(started, ids[..1], "{name}");
            store
                .change_status(id, stop.change(t(3), None, None))
                .await
                .unwrap();
            let started = store.mark_started("w", &ids[1..], t(3)).await.unwrap();
            assert!(started.is_empty(), "{name}: {stop:?}: {started:?} started");
            if stop == Transition::Cancel {
                store.cancel_pending(id, t(3)).await.unwrap();
            }
            // The started one was sent; the others come back untried.
            let mut results = vec![DeliveryResult {
                recipient_id: ids[0],
                worker_id: "w".into(),
                outcome: Outcome::Sent {
                    at: t(4),
                    provider_message_id: None,
                },
                uncertain: false,
            }];
            results.extend(ids[1..].iter().map(|id| DeliveryResult {
                recipient_id: *id,
                worker_id: "w".into(),
                outcome: Outcome::Released {
                    next_attempt_at: t(4),
                    note: "held back".into(),
                },
                uncertain: false,
            }));
            store.record_results(&results).await.unwrap();
            let stats = store.stats(id).await.unwrap();
            let back = match stop {
                Transition::Pause => DeliveryStatus::Pending,
                _ => DeliveryStatus::Cancelled,
            };
            rows_of.insert(
                format!("{stop:?}"),
                (
                    stats.count(DeliveryStatus::Sent),
                    stats.count(back) >= ids.len() as u64 - 1,
                    stats.count(DeliveryStatus::Sending),
                ),
            );
            if stop == Transition::Cancel {
                assert_eq!(stats.count(DeliveryStatus::Pending), 0, "{name}: {stats:?}");
            }
        }
        assert_eq!(
            rows_of,
            BTreeMap::from([
                ("Pause".to_owned(), (1, true, 0)),
                ("Cancel".to_owned(), (1, true, 0)),
            ]),
            "{name}"
        );
    }
}

/// A claim over several running broadcasts gives each its share first: a broadcast launched
/// later is not queued behind an older one; what one leaves of its share goes to the others.
#[tokio::test]
async fn claims_share_the_batch_between_running_broadcasts() {
    use broadcast_domain::ClaimRequest;
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        import_fixture(store).await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let id = draft(store, ChannelPolicy::BOTH, AudienceFilter::default()).await;
            let launch = Transition::Launch.change(t(1), None, Some(content()));
            store.change_status(id, launch).await.unwrap();
            store
                .materialise(id, &AudienceFilter::default(), ChannelPolicy::BOTH, t(1))
                .await
                .unwrap();
            ids.push(id);
        }
        let claim = |limit| ClaimRequest {
            worker_id: "w".into(),
            now: t(2),
            lease_for: chrono::Duration::minutes(5),
            limit,
            broadcast_id: None,
            channels: Vec::new(),
        };
        let of = |rows: &[broadcast_domain::Recipient], id| {
            rows.iter().filter(|r| r.broadcast_id == id).count()
        };
        let first = store.claim_due(&claim(2)).await.unwrap();
        assert_eq!(
            (of(&first, ids[0]), of(&first, ids[1])),
            (1, 1),
            "{name}: one row of each, not two of the older one"
        );
        let open = store
            .stats(ids[0])
            .await
            .unwrap()
            .count(DeliveryStatus::Pending);
        assert!(open >= 2, "{name}: the older broadcast has rows left");
        // The newer one has fewer rows left than its share: the older one takes the rest.
        let newer_left = store
            .stats(ids[1])
            .await
            .unwrap()
            .count(DeliveryStatus::Pending);
        let limit = 2 * newer_left + 1;
        let second = store.claim_due(&claim(limit)).await.unwrap();
        assert_eq!(of(&second, ids[1]), newer_left as usize, "{name}");
        assert_eq!(
            second.len() as u64,
            limit.min(open + newer_left),
            "{name}: the batch is filled"
        );
    }
}

/// Rows a dead worker left `sending` in a paused or cancelled broadcast are freed once their
/// lease has expired: pending again (a started one with one more uncertain send) or cancelled,
/// and the counters follow.
#[tokio::test]
async fn expired_rows_of_stopped_broadcasts_are_freed() {
    use broadcast_domain::ClaimRequest;
    let lease = chrono::Duration::minutes(5);
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        import_fixture(store).await;
        let mut running = None;
        for stop in [None, Some(Transition::Pause), Some(Transition::Cancel)] {
            let id = draft(store, ChannelPolicy::BOTH, AudienceFilter::default()).await;
            let launch = Transition::Launch.change(t(1), None, Some(content()));
            store.change_status(id, launch).await.unwrap();
            store
                .materialise(id, &AudienceFilter::default(), ChannelPolicy::BOTH, t(1))
                .await
                .unwrap();
            let claimed = store
                .claim_due(&ClaimRequest {
                    worker_id: "dead".into(),
                    now: t(2),
                    lease_for: lease,
                    limit: 3,
                    broadcast_id: Some(id),
                    channels: Vec::new(),
                })
                .await
                .unwrap();
            assert_eq!(claimed.len(), 3, "{name}");
            let ids: Vec<_> = claimed.iter().map(|r| r.id).collect();
            // One send had started when the worker died; two rows were claimed ahead.
            store.mark_started("dead", &ids[..1], t(2)).await.unwrap();
            match stop {
                Some(stop) => {
                    store
                        .change_status(id, stop.change(t(3), None, None))
                        .await
                        .unwrap();
                }
                None => running = Some(id),
            }
            if stop == Some(Transition::Cancel) {
                store.cancel_pending(id, t(3)).await.unwrap();
            }
        }
        // Not before the lease ends.
        assert_eq!(store.release_expired(t(6)).await.unwrap(), 0, "{name}");
        assert_eq!(store.release_expired(t(8)).await.unwrap(), 6, "{name}");
        assert_eq!(store.release_expired(t(9)).await.unwrap(), 0, "{name}");
        let mut seen = Vec::new();
        for b in store
            .list_broadcasts(
                &[
                    BroadcastStatus::Running,
                    BroadcastStatus::Paused,
                    BroadcastStatus::Cancelled,
                ],
                10,
            )
            .await
            .unwrap()
        {
            let stats = store.stats(b.id).await.unwrap();
            let rows = store
                .list_recipients(b.id, &Default::default())
                .await
                .unwrap()
                .items;
            let count = |status| rows.iter().filter(|r| r.status == status).count() as u64;
            for status in DeliveryStatus::ALL {
                assert_eq!(
                    stats.count(*status),
                    count(*status),
                    "{name}: the counters follow: {status}"
                );
            }
            let sending = count(DeliveryStatus::Sending);
            let uncertain: i32 = rows.iter().map(|r| r.uncertain_sends).sum();
            assert_eq!(stats.possible_duplicates, uncertain as u64, "{name}");
            seen.push((b.status, sending, stats.possible_duplicates));
            let open = count(DeliveryStatus::Pending);
            let skipped = count(DeliveryStatus::Skipped);
            match b.status {
                BroadcastStatus::Paused => {
                    assert_eq!(
                        open + skipped,
                        rows.len() as u64,
                        "{name}: every row is pending again"
                    );
                    assert!(rows.iter().all(|r| r.lease_owner.is_none()), "{name}");
                }
                BroadcastStatus::Cancelled => assert_eq!(
                    count(DeliveryStatus::Cancelled) + skipped,
                    rows.len() as u64,
                    "{name}: every row is cancelled"
                ),
                _ => assert_eq!(Some(b.id), running, "{name}"),
            }
        }
        seen.sort_by_key(|(status, _, _)| status.as_str());
        assert_eq!(
            seen,
            vec![
                (BroadcastStatus::Cancelled, 0, 0),
                (BroadcastStatus::Paused, 0, 1),
                // A running broadcast's rows are left to the claims' takeover.
                (BroadcastStatus::Running, 3, 0),
            ],
            "{name}"
        );
    }
}

/// A breaker's pause carries a probe that exactly one worker takes when it is due; the probe
/// claims one pending row of the paused broadcast on the probed channel, due or not, already
/// marked as started; any other status change clears the probe.
#[tokio::test]
async fn a_breaker_probe_is_taken_once_and_claims_one_row_of_the_paused_broadcast() {
    use broadcast_domain::{BreakerProbe, ClaimRequest, DeliveryResult, Outcome};
    use std::time::Duration;
    let lease = chrono::Duration::minutes(5);
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        import_fixture(store).await;
        let id = draft(store, ChannelPolicy::BOTH, AudienceFilter::default()).await;
        store
            .change_status(id, Transition::Launch.change(t(1), None, Some(content())))
            .await
            .unwrap();
        store
            .materialise(id, &AudienceFilter::default(), ChannelPolicy::BOTH, t(1))
            .await
            .unwrap();
        // One e-mail row fails for now and waits for its retry, due at t(30).
        let claim = |now| ClaimRequest {
            worker_id: "w".into(),
            now,
            lease_for: lease,
            limit: 1,
            broadcast_id: Some(id),
            channels: vec![ChannelKind::EMAIL],
        };
        let first = store.claim_due(&claim(t(2))).await.unwrap().remove(0);
        store
            .record_results(&[DeliveryResult {
                recipient_id: first.id,
                worker_id: "w".into(),
                outcome: Outcome::Retry {
                    next_attempt_at: t(30),
                    kind: broadcast_domain::ErrorKind::Transient,
                    error: "connection refused".into(),
                    count_attempt: true,
                },
                uncertain: false,
            }])
            .await
            .unwrap();
        // Running: no probe to take, no probe row.
        assert_eq!(
            store.take_probe(id, t(9), t(20)).await.unwrap(),
            None,
            "{name}"
        );
        let probe = BreakerProbe {
            channel: ChannelKind::EMAIL,
            cooldown: Duration::from_secs(30),
            at: t(5),
        };
        let mut pause = Transition::Pause.change(t(3), Some("tripped".into()), None);
        pause.probe = Some(probe);
        let b = store.change_status(id, pause).await.unwrap();
        assert_eq!(b.probe, Some(probe), "{name}");
        assert_eq!(
            store.get_broadcast(id).await.unwrap().probe,
            Some(probe),
            "{name}"
        );
        // Not due yet; then due: one worker takes it, the next one finds it taken.
        assert_eq!(
            store.take_probe(id, t(4), t(20)).await.unwrap(),
            None,
            "{name}"
        );
        let taken = store.take_probe(id, t(6), t(20)).await.unwrap();
        assert_eq!(
            taken,
            Some(BreakerProbe { at: t(20), ..probe }),
            "{name}: the lease moves the probe"
        );
        assert_eq!(
            store.take_probe(id, t(6), t(21)).await.unwrap(),
            None,
            "{name}"
        );
        // The probe row: a pending e-mail row of the paused broadcast, started; the normal
        // claim takes nothing from a paused broadcast.
        let row = store
            .claim_probe(id, ChannelKind::EMAIL, "w", t(6), lease)
            .await
            .unwrap()
            .expect("a probe row");
        assert_eq!(
            (
                row.channel,
                row.status,
                row.send_started_at,
                row.lease_owner.as_deref()
            ),
            (
                ChannelKind::EMAIL,
                DeliveryStatus::Sending,
                Some(t(6)),
                Some("w")
            ),
            "{name}"
        );
        assert_ne!(row.id, first.id, "{name}: the row due now comes first");
        assert!(
            store.claim_due(&claim(t(40))).await.unwrap().is_empty(),
            "{name}"
        );
        // Rows not yet due are probed too once nothing else is left.
        let mut probed = vec![row.id];
        while let Some(r) = store
            .claim_probe(id, ChannelKind::EMAIL, "w", t(7), lease)
            .await
            .unwrap()
        {
            probed.push(r.id);
        }
        assert!(probed.contains(&first.id), "{name}: {probed:?}");
        let stats = store.stats(id).await.unwrap();
        assert_eq!(
            stats.by_channel[&ChannelKind::EMAIL].get(&DeliveryStatus::Pending),
            None,
            "{name}: every pending e-mail row was probed"
        );
        assert!(
            stats.by_channel[&ChannelKind::TELEGRAM][&DeliveryStatus::Pending] > 0,
            "{name}: Telegram rows are not probed for e-mail"
        );
        assert_eq!(
            stats.count(DeliveryStatus::Sending),
            probed.len() as u64,
            "{name}: the counters follow"
        );
        // No probe of a channel without pending rows; a resume clears the probe, and a running
        // broadcast gives no probe row.
        assert!(
            store
                .claim_probe(id, ChannelKind::EMAIL, "w", t(8), lease)
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        let b = store
            .change_status(id, Transition::Resume.change(t(9), None, None))
            .await
            .unwrap();
        assert_eq!(b.probe, None, "{name}");
        assert!(
            store
                .claim_probe(id, ChannelKind::TELEGRAM, "w", t(9), lease)
                .await
                .unwrap()
                .is_none(),
            "{name}: not paused"
        );
        // A manual pause has no probe.
        let b = store
            .change_status(id, Transition::Pause.change(t(10), None, None))
            .await
            .unwrap();
        assert_eq!(b.probe, None, "{name}");
        assert_eq!(
            store.take_probe(id, t(59), t(59)).await.unwrap(),
            None,
            "{name}"
        );
    }
}

/// A hold moves the key's next slot to its end and tells every worker; a shorter hold never
/// shortens it; other keys are untouched.
#[tokio::test]
async fn a_hold_delays_every_reservation_and_is_never_shortened() {
    use std::time::Duration;
    let ms = |n: u64| Duration::from_millis(n);
    let at = |n: i64| t(0) + chrono::Duration::milliseconds(n);
    for s in subjects().await {
        let (name, store) = (&s.name, &s.store);
        assert_eq!(store.held_until("telegram").await.unwrap(), None, "{name}");
        let before = store.reserve("telegram", ms(10), 2, t(0)).await.unwrap();
        assert_eq!(before.first, t(0), "{name}");
        store.hold("telegram", at(3_000), at(5)).await.unwrap();
        assert_eq!(
            store.held_until("telegram").await.unwrap(),
            Some(at(3_000)),
            "{name}"
        );
        store.hold("telegram", at(1_000), at(6)).await.unwrap();
        assert_eq!(
            store.held_until("telegram").await.unwrap(),
            Some(at(3_000)),
            "{name}: not shortened"
        );
        let after = store.reserve("telegram", ms(10), 1, at(10)).await.unwrap();
        assert_eq!(
            after.first,
            at(3_000),
            "{name}: no slot before the hold ends"
        );
        // A hold on a key nobody reserved yet, and a key without a hold.
        store.hold("bot-2", at(500), at(0)).await.unwrap();
        let fresh = store.reserve("bot-2", ms(10), 1, at(0)).await.unwrap();
        assert_eq!(fresh.first, at(500), "{name}");
        assert_eq!(store.held_until("email").await.unwrap(), None, "{name}");
        let email = store.reserve("email", ms(10), 1, at(0)).await.unwrap();
        assert_eq!(email.first, at(0), "{name}");
        assert!(
            matches!(store.hold(" ", at(1), at(0)).await, Err(Error::Invalid(_))),
            "{name}"
        );
    }
}

/// Admin panel sessions: found until they end (one, all of a user, a password change) or
/// expire; other users' sessions are untouched.
#[tokio::test]
async fn admin_sessions_end_on_logout_password_change_and_expiry() {
    use broadcast_domain::AdminSession;
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        for user in ["ada", "bob"] {
            store.create_admin(user, "$hash$", t(0)).await.unwrap();
        }
        let session = |id: &str, user: &str, expires| AdminSession {
            id_hash: id.into(),
            username: user.into(),
            created_at: t(0),
            expires_at: t(expires),
        };
        for (id, user, expires) in [
            ("a1", "ada", 30),
            ("a2", "ada", 30),
            ("a3", "ada", 30),
            ("b1", "bob", 30),
            ("old", "bob", 5),
        ] {
            store
                .create_session(session(id, user, expires))
                .await
                .unwrap();
        }
        assert!(
            matches!(
                store.create_session(session("a1", "ada", 30)).await,
                Err(Error::Conflict(_))
            ),
            "{name}"
        );
        let found = |id: &'static str, at| async move {
            store
                .find_session(id, t(at))
                .await
                .unwrap()
                .map(|s| s.username)
        };
        assert_eq!(found("a1", 1).await.as_deref(), Some("ada"), "{name}");
        assert_eq!(found("old", 4).await.as_deref(), Some("bob"), "{name}");
        assert_eq!(found("old", 5).await, None, "{name}: expired");
        assert_eq!(found("nope", 1).await, None, "{name}");
        // Logout ends one session.
        store.end_session("a1").await.unwrap();
        store.end_session("a1").await.unwrap();
        assert_eq!(found("a1", 1).await, None, "{name}");
        assert_eq!(found("a2", 1).await.as_deref(), Some("ada"), "{name}");
        // A password change ends every session of that admin.
        store.set_admin_password("ada", "$new$").await.unwrap();
        assert_eq!(found("a2", 1).await, None, "{name}");
        assert_eq!(found("b1", 1).await.as_deref(), Some("bob"), "{name}");
        // Everywhere: every session of bob; expired ones of anyone go too.
        assert_eq!(store.end_sessions("bob", t(10)).await.unwrap(), 2, "{name}");
        assert_eq!(found("b1", 1).await, None, "{name}");
        assert_eq!(store.end_sessions("ada", t(10)).await.unwrap(), 0, "{name}");
        assert!(
            matches!(
                store.set_admin_password("nobody", "$h$").await,
                Err(Error::NotFound { .. })
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_audit_log_is_searched_the_same_way_everywhere() {
    for s in subjects().await {
        let store = s.store.as_ref();
        let name = &s.name;
        let entries = [
            ("admin", "broadcast.launch", "broadcast", Some(1), 1),
            ("cli:Admin", "broadcast.pause", "broadcast", Some(1), 2),
            ("worker:w1", "broadcast.resume", "broadcast", Some(2), 3),
            ("admin", "template.create", "template", Some(7), 4),
            ("anonymous", "admin.login_failed", "admin", None, 5),
            ("100%_sure", "audience.import", "audience", None, 6),
        ];
        for (actor, action, target_type, target_id, minute) in entries {
            store
                .record(AuditEntry {
                    id: 0,
                    actor: actor.into(),
                    action: action.into(),
                    target_type: target_type.into(),
                    target_id,
                    details: serde_json::json!({}),
                    at: t(minute),
                })
                .await
                .unwrap();
        }
        let found = async |q: AuditQuery| -> Vec<String> {
            store
                .search(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect()
        };
        let all = found(AuditQuery::default()).await;
        assert_eq!(all.len(), 6, "{name}");
        assert_eq!(all[0], "audience.import", "{name}: newest first");
        assert_eq!(
            found(AuditQuery {
                actor: Some("ADMIN".into()),
                ..Default::default()
            })
            .await,
            ["template.create", "broadcast.pause", "broadcast.launch"],
            "{name}: actor contains, any case"
        );
        assert_eq!(
            found(AuditQuery {
                action: Some("Broadcast.".into()),
                ..Default::default()
            })
            .await,
            ["broadcast.resume", "broadcast.pause", "broadcast.launch"],
            "{name}: action starts with"
        );
        assert_eq!(
            found(AuditQuery {
                target_type: Some("broadcast".into()),
                target_id: Some(1),
                ..Default::default()
            })
            .await,
            ["broadcast.pause", "broadcast.launch"],
            "{name}: target"
        );
        assert_eq!(
            found(AuditQuery {
                from: Some(t(2)),
                until: Some(t(4)),
                ..Default::default()
            })
            .await,
            ["broadcast.resume", "broadcast.pause"],
            "{name}: from included, until excluded"
        );
        assert_eq!(
            found(AuditQuery {
                actor: Some("%".into()),
                ..Default::default()
            })
            .await,
            ["audience.import"],
            "{name}: wildcards are plain characters"
        );
        assert_eq!(
            found(AuditQuery {
                actor: Some("0%_".into()),
                ..Default::default()
            })
            .await,
            ["audience.import"],
            "{name}"
        );
        assert_eq!(
            found(AuditQuery {
                action: Some("b_oadcast".into()),
                ..Default::default()
            })
            .await,
            Vec::<String>::new(),
            "{name}: `_` matches only itself"
        );
        assert_eq!(
            found(AuditQuery {
                offset: 1,
                limit: 2,
                ..Default::default()
            })
            .await,
            ["admin.login_failed", "template.create"],
            "{name}: pages"
        );
    }
}

/// The first bytes of a PNG, `tail` making each distinct.
fn png(tail: u8) -> Vec<u8> {
    let mut bytes = vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D,
    ];
    bytes.extend(b"IHDR");
    bytes.push(tail);
    bytes
}

/// The media library: unique names, bytes kept once per content, replaced bytes and removed
/// media taking their bytes with them unless another medium has the same.
#[tokio::test]
async fn media_are_kept_once_by_content_under_unique_names() {
    let new = |name: &str, bytes: Vec<u8>| NewMedium::check(name, bytes, "ann").unwrap();
    for s in subjects().await {
        let (name, store) = (&s.name, &s.store);
        let poster = store
            .add_medium(new("poster.png", png(1)), false, t(0))
            .await
            .unwrap();
        assert_eq!(
            (
                poster.name.as_str(),
                poster.size,
                poster.created_by.as_str()
            ),
            ("poster.png", 17, "ann"),
            "{name}"
        );
        // The same bytes under another name are one copy.
        let copy = store
            .add_medium(new("copy.png", png(1)), false, t(1))
            .await
            .unwrap();
        assert_eq!(copy.sha256, poster.sha256, "{name}");
        assert!(copy.id != poster.id, "{name}");
        // A name is unique unless replaced.
        let err = store
            .add_medium(new("poster.png", png(2)), false, t(2))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m.contains("`poster.png` already exists")),
            "{name}: {err:?}"
        );
        let replaced = store
            .add_medium(new("poster.png", png(2)), true, t(3))
            .await
            .unwrap();
        assert_eq!(replaced.id, poster.id, "{name}");
        assert_ne!(replaced.sha256, poster.sha256, "{name}");
        assert_eq!(
            (replaced.created_at, replaced.updated_at),
            (t(0), t(3)),
            "{name}"
        );
        // The old bytes stay: the copy has them.
        assert_eq!(
            store.medium_bytes(&poster.sha256).await.unwrap(),
            png(1),
            "{name}"
        );
        assert_eq!(
            store.medium_bytes(&replaced.sha256).await.unwrap(),
            png(2),
            "{name}"
        );
        let names: Vec<String> = store
            .list_media()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["copy.png", "poster.png"], "{name}");
        assert_eq!(store.get_medium(copy.id).await.unwrap(), copy, "{name}");
        assert_eq!(
            store.find_medium("copy.png").await.unwrap(),
            Some(copy.clone()),
            "{name}"
        );
        assert_eq!(
            store.find_medium("nothing.png").await.unwrap(),
            None,
            "{name}"
        );
        // Removing the last medium with some bytes removes the bytes.
        store.remove_medium(copy.id).await.unwrap();
        assert!(
            matches!(
                store.medium_bytes(&poster.sha256).await,
                Err(Error::NotFound { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(store.get_medium(copy.id).await, Err(Error::NotFound { .. })),
            "{name}"
        );
        assert!(
            matches!(
                store.remove_medium(copy.id).await,
                Err(Error::NotFound { .. })
            ),
            "{name}"
        );
        assert_eq!(
            store.medium_bytes(&replaced.sha256).await.unwrap(),
            png(2),
            "{name}"
        );
    }
}

/// A medium in a template and frozen into a launched broadcast: the template keeps its
/// reference; the launch holds the bytes it froze, refuses bytes replaced under it, and keeps
/// them after a replace until the broadcast finishes; removal is refused while a template or an
/// unfinished broadcast uses the medium.
#[tokio::test]
async fn media_in_use_stay_until_nothing_needs_them() {
    let new = |bytes: Vec<u8>| NewMedium::check("poster.png", bytes, "ann").unwrap();
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        let poster = store.add_medium(new(png(1)), false, t(0)).await.unwrap();
        let with_poster = TemplateContent {
            telegram_media: vec![MediaRef::of(&poster)],
            ..content()
        };
        let template = store
            .create_template(NewTemplate {
                name: TemplateName::parse("with poster").unwrap(),
                description: String::new(),
                content: with_poster.clone(),
            })
            .await
            .unwrap();
        assert_eq!(
            store.get_template(template.id).await.unwrap().content,
            with_poster,
            "{name}"
        );
        let in_template = store.remove_medium(poster.id).await.unwrap_err();
        assert!(
            matches!(&in_template, Error::Conflict(m) if m.contains("template `with poster`")),
            "{name}: {in_template:?}"
        );
        // A template without it lets it go, as far as templates go.
        store
            .update_template(
                template.id,
                NewTemplate {
                    name: template.name.clone(),
                    description: String::new(),
                    content: content(),
                },
            )
            .await
            .unwrap();

        // A launch freezing bytes the library no longer holds under the id is refused.
        let id = draft(store, ChannelPolicy::TELEGRAM, AudienceFilter::default()).await;
        let replaced = store.add_medium(new(png(2)), true, t(1)).await.unwrap();
        let stale = Transition::Launch.change(t(2), None, Some(with_poster.clone()));
        let err = store.change_status(id, stale).await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m.contains("was replaced while")),
            "{name}: {err:?}"
        );
        assert_eq!(
            store.get_broadcast(id).await.unwrap().status,
            BroadcastStatus::Draft,
            "{name}"
        );
        let frozen = TemplateContent {
            telegram_media: vec![MediaRef::of(&replaced)],
            ..content()
        };
        let launch = Transition::Launch.change(t(2), None, Some(frozen.clone()));
        store.change_status(id, launch).await.unwrap();

        // Replaced again while running: the broadcast's bytes stay, and so does the medium.
        let again = store.add_medium(new(png(3)), true, t(3)).await.unwrap();
        assert_eq!(
            store.medium_bytes(&replaced.sha256).await.unwrap(),
            png(2),
            "{name}"
        );
        let running = store.remove_medium(again.id).await.unwrap_err();
        assert!(
            matches!(&running, Error::Conflict(m) if m.contains(&format!("broadcast {id} `")) && m.contains("has not finished")),
            "{name}: {running:?}"
        );
        // Finished, it lets both go: the medium and the bytes it launched with.
        let cancel = Transition::Cancel.change(t(4), None, None);
        store.change_status(id, cancel).await.unwrap();
        store.remove_medium(again.id).await.unwrap();
        for sha in [&replaced.sha256, &again.sha256] {
            assert!(
                matches!(store.medium_bytes(sha).await, Err(Error::NotFound { .. })),
                "{name}"
            );
        }
        // Removed: a launch naming it is refused.
        let id = draft(store, ChannelPolicy::TELEGRAM, AudienceFilter::default()).await;
        let launch = Transition::Launch.change(t(5), None, Some(frozen));
        let err = store.change_status(id, launch).await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m.contains("was removed")),
            "{name}: {err:?}"
        );
    }
}

/// Telegram's `file_id`s: per bot and content, the last kept wins, and a refused one is
/// forgotten only if it is still the one kept.
#[tokio::test]
async fn telegram_file_ids_are_kept_per_bot_and_content() {
    use broadcast_domain::MediaKind;
    let sha = "ab".repeat(32);
    for s in subjects().await {
        let (name, store) = (&s.name, s.store.as_ref());
        assert_eq!(
            store.telegram_file_id(1, &sha).await.unwrap(),
            None,
            "{name}"
        );
        store
            .keep_telegram_file_id(1, &sha, MediaKind::Photo, "first", t(0))
            .await
            .unwrap();
        store
            .keep_telegram_file_id(1, &sha, MediaKind::Photo, "second", t(1))
            .await
            .unwrap();
        store
            .keep_telegram_file_id(2, &sha, MediaKind::Photo, "other bot", t(1))
            .await
            .unwrap();
        assert_eq!(
            store.telegram_file_id(1, &sha).await.unwrap().as_deref(),
            Some("second"),
            "{name}"
        );
        // Forgetting an id replaced meanwhile keeps the new one.
        store
            .forget_telegram_file_id(1, &sha, "first")
            .await
            .unwrap();
        assert_eq!(
            store.telegram_file_id(1, &sha).await.unwrap().as_deref(),
            Some("second"),
            "{name}"
        );
        store
            .forget_telegram_file_id(1, &sha, "second")
            .await
            .unwrap();
        assert_eq!(
            store.telegram_file_id(1, &sha).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.telegram_file_id(2, &sha).await.unwrap().as_deref(),
            Some("other bot"),
            "{name}"
        );
    }
}
