//! The orchestrator over the real adapters: sea-orm store, SQL audience and tera renderer, on
//! SQLite and PostgreSQL (see `TestDb`), with scripted channels.

use std::sync::Arc;
use std::time::Duration;

use broadcast_domain::*;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;
use broadcast_testkit::TestDb;

use crate::doubles::{ManualClock, ScriptedChannel};
use crate::op;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

struct Sql {
    _db: TestDb,
    store: Store,
    clock: ManualClock,
    telegram: Arc<ScriptedChannel>,
    email: Arc<ScriptedChannel>,
    orch: Orchestrator,
}

async fn setups() -> Vec<Sql> {
    let mut out = Vec::new();
    for db in TestDb::all().await {
        let store = Store::from_conn(db.conn().clone());
        let clock = ManualClock::new();
        let now = clock.now();
        let read = |f: &str| std::fs::File::open(format!("{FIXTURES}/{f}")).unwrap();
        let comps =
            broadcast_app::csv_import::parse_competitions(read("competitions.csv")).unwrap();
        let users = broadcast_app::csv_import::parse_users(read("users.csv")).unwrap();
        let regs =
            broadcast_app::csv_import::parse_registrations(read("registrations.csv")).unwrap();
        store.import_competitions(comps, now).await.unwrap();
        store.import_users(users, now).await.unwrap();
        store.import_registrations(regs, now).await.unwrap();
        let telegram = ScriptedChannel::new(ChannelKind::TELEGRAM);
        let email = ScriptedChannel::new(ChannelKind::EMAIL);
        let shared = Arc::new(store.clone());
        let ports = Ports {
            templates: shared.clone(),
            broadcasts: shared.clone(),
            deliveries: shared.clone(),
            audience: shared.clone(),
            source: shared.clone(),
            renderer: Arc::new(TeraRenderer::new()),
            channels: Channels::new().with(telegram.clone()).with(email.clone()),
            clock: Arc::new(clock.clone()),
            links: None,
            budget: Some(shared.clone()),
            audit: None,
            admins: None,
            media: Some(shared),
        };
        let settings = Settings {
            worker_id: "sql-worker".into(),
            batch_size: 25,
            idle_poll: Duration::from_millis(1),
            retry_base: Duration::from_secs(10),
            ..Settings::default()
        };
        let orch = Orchestrator::new(ports, settings);
        out.push(Sql {
            _db: db,
            store,
            clock,
            telegram,
            email,
            orch,
        });
    }
    out
}

impl Sql {
    async fn broadcast(&self, policy: ChannelPolicy, filter: AudienceFilter) -> BroadcastId {
        let content: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURES}/templates/registration-reminder.json"))
                .unwrap(),
        )
        .unwrap();
        let name = TemplateName::parse(&format!(
            "reminder-{}",
            self.store.list_templates().await.unwrap().len()
        ))
        .unwrap();
        let get = |k: &str| content[k].as_str().map(str::to_owned);
        let t = self
            .store
            .create_template(NewTemplate {
                name,
                description: String::new(),
                content: TemplateContent {
                    telegram_text: get("telegram_text"),
                    parse_mode: ParseMode::Html,
                    link_preview: false,
                    telegram_media: Vec::new(),
                    telegram_buttons: Vec::new(),
                    email_subject: get("email_subject"),
                    email_html: get("email_html"),
                    email_text: get("email_text"),
                },
            })
            .await
            .unwrap();
        self.orch
            .create_broadcast(
                &op(),
                NewBroadcast {
                    name: "Reminder".into(),
                    template_id: t.id,
                    channel_policy: policy,
                    filter,
                    scheduled_at: None,
                    created_by: None,
                },
            )
            .await
            .unwrap()
            .id
    }
}

fn confirmed_at_first_competition() -> AudienceFilter {
    AudienceFilter {
        competition_ids: vec![1],
        registration_statuses: vec![RegistrationStatus::Confirmed],
        ..AudienceFilter::default()
    }
}

#[tokio::test]
async fn delivers_on_every_backend_and_statistics_match_what_the_channels_got() {
    for h in setups().await {
        let id = h
            .broadcast(ChannelPolicy::BOTH, confirmed_at_first_competition())
            .await;
        let count = h
            .orch
            .count_audience(&confirmed_at_first_competition(), ChannelPolicy::BOTH)
            .await
            .unwrap();
        let report = h.orch.launch(&op(), id).await.unwrap();
        assert_eq!(
            report.materialised.queued[&ChannelKind::TELEGRAM],
            count.messages_on(ChannelKind::TELEGRAM)
        );
        assert_eq!(
            report.materialised.queued[&ChannelKind::EMAIL],
            count.messages_on(ChannelKind::EMAIL)
        );
        let stats = h.orch.run_until_done(id).await.unwrap();
        let b = h.store.get_broadcast(id).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Completed);
        assert!(b.frozen_template.is_some());
        assert_eq!(
            stats.channel_count(ChannelKind::TELEGRAM, DeliveryStatus::Sent),
            h.telegram.sent_to().len() as u64
        );
        assert_eq!(
            stats.channel_count(ChannelKind::EMAIL, DeliveryStatus::Sent),
            h.email.sent_to().len() as u64
        );
        assert_eq!(stats.by_skip_reason[&SkipReason::TelegramBlocked], 1);
        assert_eq!(stats.by_skip_reason[&SkipReason::EmailUnsubscribed], 1);
        // Rendered per recipient with the competition of the matched registration.
        for m in h.telegram.sent.lock().unwrap().iter() {
            let MessageBody::Chat { message, .. } = &m.body else {
                unreachable!()
            };
            assert!(
                message.text.contains(
                    "<b>European Robotics Challenge 2027</b> starts on <b>2027-03-19</b>"
                ),
                "{}",
                message.text
            );
        }
        let rows = h
            .store
            .list_recipients(
                id,
                &RecipientQuery {
                    status: Some(DeliveryStatus::Sent),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(
            rows.items
                .iter()
                .all(|r| r.attempts == 1 && r.provider_message_id.is_some() && r.sent_at.is_some())
        );
    }
}

#[tokio::test]
async fn retries_and_failures_are_recorded_in_the_ledger() {
    for h in setups().await {
        let filter = confirmed_at_first_competition();
        let id = h.broadcast(ChannelPolicy::TELEGRAM, filter).await;
        h.orch.launch(&op(), id).await.unwrap();
        let rows = h
            .store
            .list_recipients(
                id,
                &RecipientQuery {
                    status: Some(DeliveryStatus::Pending),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let (a, b, c) = (
            &rows.items[0].address,
            &rows.items[1].address,
            &rows.items[2].address,
        );
        h.telegram.fail_next(a, &[FailureKind::Transient]);
        h.telegram.fail_always(b, FailureKind::Blocked);
        h.telegram.fail_next(
            c,
            &[FailureKind::RateLimited {
                retry_after: Duration::from_secs(3),
            }],
        );
        while h.orch.tick(Some(id)).await.unwrap().claimed > 0 {}
        let pending = h
            .store
            .list_recipients(
                id,
                &RecipientQuery {
                    status: Some(DeliveryStatus::Pending),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // The transient and the rate-limited rows wait with their error; the 429 holds the
        // whole bot for its `retry_after`, so rows not yet sent wait for its end untried.
        let tried: Vec<_> = pending
            .items
            .iter()
            .filter(|r| r.error_kind.is_some())
            .map(|r| &r.address)
            .collect();
        assert_eq!(tried.len(), 2, "{tried:?}");
        let hold_end = h.clock.now() + chrono::Duration::seconds(3);
        for row in pending.items.iter().filter(|r| r.error_kind.is_none()) {
            assert_eq!(row.attempts, 0, "{row:?}");
            assert!(row.next_attempt_at >= hold_end, "{row:?}");
        }
        let row_c = pending.items.iter().find(|r| &r.address == c).unwrap();
        assert_eq!(
            (row_c.attempts, row_c.error_kind),
            (0, Some(ErrorKind::RateLimited))
        );
        let row_a = pending.items.iter().find(|r| &r.address == a).unwrap();
        assert_eq!(
            (row_a.attempts, row_a.error_kind),
            (1, Some(ErrorKind::Transient))
        );
        h.clock.advance(Duration::from_secs(30));
        let stats = h.orch.run_until_done(id).await.unwrap();
        assert_eq!(stats.by_error_kind[&ErrorKind::Blocked], 1);
        assert_eq!(stats.count(DeliveryStatus::Failed), 1);
        let blocked = h
            .store
            .list_recipients(
                id,
                &RecipientQuery {
                    status: Some(DeliveryStatus::Failed),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let user = h.store.get_user(blocked.items[0].user_id).await.unwrap();
        assert!(
            user.telegram_blocked_at.is_some(),
            "the user is marked blocked"
        );
    }
}

#[tokio::test]
async fn pause_cancel_and_lease_takeover_on_every_backend() {
    for h in setups().await {
        let id = h
            .broadcast(ChannelPolicy::EMAIL, confirmed_at_first_competition())
            .await;
        h.orch.launch(&op(), id).await.unwrap();
        // A worker that dies holding a lease.
        let dead = h
            .store
            .claim_due(&ClaimRequest {
                worker_id: "dead".into(),
                now: h.clock.now(),
                lease_for: chrono::Duration::seconds(60),
                limit: 5,
                broadcast_id: Some(id),
                channels: vec![],
            })
            .await
            .unwrap();
        assert_eq!(dead.len(), 5);
        // It had started sending three of them.
        let started: Vec<_> = dead[..3].iter().map(|r| r.id).collect();
        let marked = h
            .store
            .mark_started("dead", &started, h.clock.now())
            .await
            .unwrap();
        assert_eq!(marked.len(), 3);
        h.orch.tick(Some(id)).await.unwrap();
        h.orch.pause(&op(), id, None).await.unwrap();
        assert_eq!(h.orch.tick(None).await.unwrap().claimed, 0);
        h.orch.resume(&op(), id).await.unwrap();
        h.clock.advance(Duration::from_secs(61));
        let stats = h.orch.run_until_done(id).await.unwrap();
        assert_eq!(
            stats.possible_duplicates, 3,
            "rows claimed ahead and never started are no possible duplicates"
        );
        assert_eq!(stats.open(), 0);
        assert_eq!(
            h.email.sent_to().len() as u64,
            stats.count(DeliveryStatus::Sent)
        );

        let id = h
            .broadcast(ChannelPolicy::EMAIL, confirmed_at_first_competition())
            .await;
        h.orch.launch(&op(), id).await.unwrap();
        h.orch.tick(Some(id)).await.unwrap();
        let (_, cancelled) = h.orch.cancel(&op(), id).await.unwrap();
        assert!(cancelled > 0);
        let stats = h.orch.stats(id).await.unwrap();
        assert_eq!(stats.count(DeliveryStatus::Cancelled), cancelled);
        assert_eq!(stats.count(DeliveryStatus::Sent), 25);
    }
}
