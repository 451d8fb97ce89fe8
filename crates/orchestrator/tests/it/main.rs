//! Orchestrator behaviour over in-memory doubles of every port.

mod doubles;
mod example;
mod open_set;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use broadcast_domain::*;
use broadcast_orchestrator::memory::MemoryStore;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};

use doubles::{ManualClock, ScriptedChannel, SubstRenderer};

struct Harness {
    store: MemoryStore,
    clock: ManualClock,
    telegram: Arc<ScriptedChannel>,
    email: Arc<ScriptedChannel>,
    orch: Orchestrator,
}

fn user(ext: &str, first: &str, chat: Option<i64>, email: Option<&str>) -> NewUser {
    NewUser {
        line: 0,
        external_id: ext.into(),
        telegram_chat_id: chat.map(|c| TelegramChatId::new(c).unwrap()),
        email: email.map(|e| EmailAddress::parse(e).unwrap()),
        first_name: first.into(),
        last_name: "Tester".into(),
        username: None,
        language: None,
        country: Some("Germany".into()),
        city: Some("Berlin".into()),
        attributes: Attributes::new(),
        telegram_blocked: false,
        email_unsubscribed: false,
    }
}

/// The operator of these tests, as the audit log names them.
fn op() -> Actor {
    Actor::new("tester").unwrap()
}

fn content() -> TemplateContent {
    TemplateContent {
        telegram_text: Some("Hi {{ first_name }}, {{ broadcast_name }}".into()),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("News for {{ first_name }}".into()),
        email_html: Some("<p>Hi {{ first_name }}</p>".into()),
        email_text: Some("Hi {{ first_name }}".into()),
    }
}

impl Harness {
    async fn new() -> Self {
        Self::with_settings(Settings {
            worker_id: "w1".into(),
            batch_size: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(600),
            idle_poll: Duration::from_millis(1),
            ..Settings::default()
        })
        .await
    }

    async fn with_settings(settings: Settings) -> Self {
        let store = MemoryStore::new();
        let clock = ManualClock::new();
        let telegram = ScriptedChannel::new(ChannelKind::TELEGRAM);
        let email = ScriptedChannel::new(ChannelKind::EMAIL);
        let mut blocked = user("u4", "Dora", Some(104), Some("dora@example.org"));
        blocked.telegram_blocked = true;
        let mut unsub = user("u5", "Emil", None, Some("emil@example.org"));
        unsub.email_unsubscribed = true;
        store
            .import_users(
                vec![
                    user("u1", "Anna", Some(101), Some("anna@example.org")),
                    user("u2", "Ben", Some(102), None),
                    user("u3", "Chen", None, Some("chen@example.org")),
                    blocked,
                    unsub,
                    user("u6", "Farid", Some(106), Some("farid@example.org")),
                ],
                clock.now(),
            )
            .await
            .unwrap();
        let ports = Ports {
            templates: Arc::new(store.clone()),
            broadcasts: Arc::new(store.clone()),
            deliveries: Arc::new(store.clone()),
            audience: Arc::new(store.clone()),
            source: Arc::new(store.clone()),
            renderer: Arc::new(SubstRenderer),
            channels: Channels::new().with(telegram.clone()).with(email.clone()),
            clock: Arc::new(clock.clone()),
            links: None,
            // Used only for the channels of `settings.shared_rates` (none by default).
            budget: Some(Arc::new(store.clone())),
            audit: Some(Arc::new(store.clone())),
            admins: Some(Arc::new(store.clone())),
            media: Some(Arc::new(store.clone())),
        };
        let orch = Orchestrator::new(ports, settings);
        Self {
            store,
            clock,
            telegram,
            email,
            orch,
        }
    }

    async fn broadcast(&self, policy: ChannelPolicy) -> BroadcastId {
        let name = TemplateName::parse(&format!(
            "t{}",
            self.store.list_templates().await.unwrap().len()
        ))
        .unwrap();
        let t = self
            .store
            .create_template(NewTemplate {
                name,
                description: String::new(),
                content: content(),
            })
            .await
            .unwrap();
        self.orch
            .create_broadcast(
                &op(),
                NewBroadcast {
                    name: "Spring news".into(),
                    template_id: t.id,
                    channel_policy: policy,
                    filter: AudienceFilter::default(),
                    scheduled_at: None,
                    created_by: None,
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn status(&self, id: BroadcastId) -> BroadcastStatus {
        self.store.get_broadcast(id).await.unwrap().status
    }

    async fn user_by_ext(&self, ext: &str) -> User {
        let page = self.store.list_users(&UserQuery::default()).await.unwrap();
        page.items
            .into_iter()
            .find(|u| u.external_id.as_deref() == Some(ext))
            .unwrap()
    }
}

/// Starts a broadcast's delivery with one send in flight per channel, each held at its
/// channel; then `act`s on the broadcast and lets the held sends finish. Answers the harness,
/// the broadcast and the messages sent.
async fn act_with_sends_in_flight(
    act: impl AsyncFnOnce(&Orchestrator, BroadcastId),
) -> (Harness, BroadcastId, usize) {
    let h = Harness::with_settings(Settings {
        worker_id: "w1".into(),
        batch_size: 10,
        concurrency: Some(1),
        ..Settings::default()
    })
    .await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    let (tg, mail) = (h.telegram.close_gate(), h.email.close_gate());
    let driver = async {
        let started = || {
            h.telegram.started.load(std::sync::atomic::Ordering::SeqCst)
                + h.email.started.load(std::sync::atomic::Ordering::SeqCst)
        };
        while started() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        act(&h.orch, id).await;
        tg.add_permits(10);
        mail.add_permits(10);
    };
    let (report, ()) = tokio::join!(h.orch.tick(Some(id)), driver);
    assert_eq!(report.unwrap().claimed, 7);
    let sent = h.telegram.sent_to().len() + h.email.sent_to().len();
    (h, id, sent)
}

#[tokio::test]
async fn pause_stops_sends_that_have_not_started_and_hands_their_rows_back() {
    let (h, id, sent) = act_with_sends_in_flight(async |orch, id| {
        orch.pause(&op(), id, None).await.unwrap();
    })
    .await;
    // The two sends on the wire finished; nothing else started.
    assert_eq!(sent, 2);
    let stats = h.orch.stats(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Sent), 2);
    assert_eq!(stats.count(DeliveryStatus::Pending), 5, "{stats:?}");
    assert_eq!(stats.count(DeliveryStatus::Sending), 0, "{stats:?}");
    assert_eq!(h.status(id).await, BroadcastStatus::Paused);
    // Resumed, the rest go, each once.
    h.orch.resume(&op(), id).await.unwrap();
    let stats = h.orch.run_until_done(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Sent), 7);
    assert_eq!(h.telegram.sent_to().len() + h.email.sent_to().len(), 7);
}

#[tokio::test]
async fn cancel_stops_sends_that_have_not_started_and_leaves_nothing_open() {
    let (h, id, sent) = act_with_sends_in_flight(async |orch, id| {
        orch.cancel(&op(), id).await.unwrap();
    })
    .await;
    assert_eq!(sent, 2);
    let stats = h.orch.stats(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Sent), 2, "{stats:?}");
    assert_eq!(stats.count(DeliveryStatus::Cancelled), 5, "{stats:?}");
    assert_eq!(
        stats.count(DeliveryStatus::Pending) + stats.count(DeliveryStatus::Sending),
        0,
        "{stats:?}"
    );
    assert_eq!(h.status(id).await, BroadcastStatus::Cancelled);
}

/// Sends the three Telegram rows of a broadcast through a shared budget of 10/s with a
/// 15 ms margin, all answered 300 ms after the first slot (by the manual clock), with every
/// send failing with `failure` if given; answers how far the budget's slots moved back or
/// owe a move back (made when the slot a window after the late one is reserved).
async fn shared_slots_moved_by_late_answers(failure: Option<FailureKind>) -> Duration {
    let h = Harness::with_settings(Settings {
        worker_id: "w1".into(),
        shared_rates: [(ChannelKind::TELEGRAM, 10)].into(),
        pacing_margin: Duration::from_millis(15),
        max_attempts: 5,
        ..Settings::default()
    })
    .await;
    if let Some(kind) = failure {
        for chat in ["101", "102", "106"] {
            h.telegram.fail_always(chat, kind);
        }
    }
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    h.orch.launch(&op(), id).await.unwrap();
    let gate = h.telegram.close_gate();
    let driver = async {
        // All three wait at the gate (after their slots, 101.5 ms apart); then the answers
        // come at slot 1 + 300 ms.
        while h.telegram.started.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        h.clock.advance(Duration::from_millis(300));
        gate.add_permits(3);
    };
    let (report, ()) = tokio::join!(h.orch.tick(Some(id)), driver);
    assert_eq!(report.unwrap().claimed, 3);
    let slots = h
        .store
        .reserve("telegram", Duration::from_millis(1), 1, h.clock.now())
        .await
        .unwrap();
    slots
        .moves
        .owed
        .map_or(slots.moves.moved, |owed| owed.total)
}

#[tokio::test]
async fn late_answers_move_the_shared_slots_back_once_by_the_latest() {
    // The first is 300 ms after its slot, 285 ms more than the margin allows; the others'
    // moves (183.5 and 82 ms) are covered by it, in whatever order they come.
    assert_eq!(
        shared_slots_moved_by_late_answers(None).await,
        Duration::from_millis(285)
    );
    // An answer that is late by design (a 5xx, a timeout) says nothing of when the message
    // was at the server, and moves nothing.
    assert_eq!(
        shared_slots_moved_by_late_answers(Some(FailureKind::Transient)).await,
        Duration::ZERO
    );
    // A refusal is a real answer.
    assert_eq!(
        shared_slots_moved_by_late_answers(Some(FailureKind::Blocked)).await,
        Duration::from_millis(285)
    );
}

#[tokio::test]
async fn delivers_on_both_channels_and_explains_every_user() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    let report = h.orch.launch(&op(), id).await.unwrap();
    assert_eq!(report.materialised.queued[&ChannelKind::TELEGRAM], 3);
    assert_eq!(report.materialised.queued[&ChannelKind::EMAIL], 4);
    assert_eq!(report.materialised.skipped[&SkipReason::NoTelegram], 2);
    assert_eq!(report.materialised.skipped[&SkipReason::TelegramBlocked], 1);
    assert_eq!(report.materialised.skipped[&SkipReason::NoEmail], 1);
    assert_eq!(
        report.materialised.skipped[&SkipReason::EmailUnsubscribed],
        1
    );

    let stats = h.orch.run_until_done(id).await.unwrap();
    assert_eq!(h.status(id).await, BroadcastStatus::Completed);
    assert_eq!(stats.total, 12);
    assert_eq!(stats.count(DeliveryStatus::Sent), 7);
    assert_eq!(stats.count(DeliveryStatus::Skipped), 5);
    assert_eq!(
        stats.channel_count(ChannelKind::EMAIL, DeliveryStatus::Sent),
        4
    );
    let mut tg = h.telegram.sent_to();
    tg.sort();
    assert_eq!(tg, ["101", "102", "106"]);
    // Personalised per recipient, with the broadcast's name.
    let texts: Vec<String> = h
        .telegram
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| match &m.body {
            MessageBody::Chat { message, .. } => message.text.clone(),
            MessageBody::Email { .. } => unreachable!(),
        })
        .collect();
    assert!(
        texts.contains(&"Hi Anna, Spring news".to_owned()),
        "{texts:?}"
    );
    let sent = h
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
        sent.items
            .iter()
            .all(|r| r.attempts == 1 && r.sent_at.is_some() && r.provider_message_id.is_some())
    );
}

#[tokio::test]
async fn launch_is_refused_when_not_draft_or_template_lacks_a_part() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    h.orch.launch(&op(), id).await.unwrap();
    let err = h.orch.launch(&op(), id).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("is running"), "{err}");

    let mut c = content();
    c.email_subject = None;
    let t = h
        .store
        .create_template(NewTemplate {
            name: TemplateName::parse("no-mail").unwrap(),
            description: String::new(),
            content: c,
        })
        .await
        .unwrap();
    let err = h
        .orch
        .create_broadcast(
            &op(),
            NewBroadcast {
                name: "x".into(),
                template_id: t.id,
                channel_policy: ChannelPolicy::BOTH,
                filter: AudienceFilter::default(),
                scheduled_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("e-mail subject"), "{err}");
}

#[tokio::test]
async fn transient_errors_back_off_then_succeed_and_give_up_at_the_limit() {
    let h = Harness::new().await;
    h.telegram
        .fail_next("101", &[FailureKind::Transient, FailureKind::Transient]);
    h.telegram.fail_always("102", FailureKind::Transient);
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    h.orch.launch(&op(), id).await.unwrap();

    let t = h.orch.tick(Some(id)).await.unwrap();
    assert_eq!((t.claimed, t.sent, t.retried), (3, 1, 2));
    // Not due yet: nothing is claimed until the backoff has passed.
    assert_eq!(h.orch.tick(Some(id)).await.unwrap().claimed, 0);
    let row = h
        .store
        .recipients()
        .into_iter()
        .find(|r| r.address == "101")
        .unwrap();
    assert_eq!(
        (row.status, row.attempts, row.error_kind),
        (DeliveryStatus::Pending, 1, Some(ErrorKind::Transient))
    );
    let wait = row.next_attempt_at - h.clock.now();
    assert!(
        wait >= chrono::Duration::seconds(5) && wait <= chrono::Duration::seconds(10),
        "{wait}"
    );

    for _ in 0..10 {
        h.clock.advance(Duration::from_secs(600));
        h.orch.tick(Some(id)).await.unwrap();
    }
    let rows = h.store.recipients();
    let r101 = rows.iter().find(|r| r.address == "101").unwrap();
    assert_eq!((r101.status, r101.attempts), (DeliveryStatus::Sent, 3));
    let r102 = rows.iter().find(|r| r.address == "102").unwrap();
    assert_eq!((r102.status, r102.attempts), (DeliveryStatus::Failed, 5));
    assert!(
        r102.last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 5 attempts")
    );
    assert_eq!(h.status(id).await, BroadcastStatus::Completed);
}

#[tokio::test]
async fn rate_limits_requeue_without_using_an_attempt() {
    let h = Harness::new().await;
    h.telegram.fail_next(
        "101",
        &[FailureKind::RateLimited {
            retry_after: Duration::from_secs(7),
        }],
    );
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    h.orch.launch(&op(), id).await.unwrap();
    h.orch.tick(Some(id)).await.unwrap();
    let row = h
        .store
        .recipients()
        .into_iter()
        .find(|r| r.address == "101")
        .unwrap();
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 0));
    assert_eq!(
        row.next_attempt_at - h.clock.now(),
        chrono::Duration::seconds(7)
    );
    h.clock.advance(Duration::from_secs(7));
    h.orch.tick(Some(id)).await.unwrap();
    let row = h
        .store
        .recipients()
        .into_iter()
        .find(|r| r.address == "101")
        .unwrap();
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Sent, 1));
}

#[tokio::test]
async fn blocked_and_bounced_users_are_flagged_and_skipped_next_time() {
    let h = Harness::new().await;
    h.telegram.fail_always("101", FailureKind::Blocked);
    h.email
        .fail_always("chen@example.org", FailureKind::InvalidAddress);
    h.email
        .fail_always("farid@example.org", FailureKind::Permanent);
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    let stats = h.orch.run_until_done(id).await.unwrap();
    assert_eq!(stats.by_error_kind[&ErrorKind::Blocked], 1);
    assert_eq!(stats.by_error_kind[&ErrorKind::InvalidAddress], 1);
    assert_eq!(stats.by_error_kind[&ErrorKind::Permanent], 1);
    assert!(h.user_by_ext("u1").await.telegram_blocked_at.is_some());
    assert!(h.user_by_ext("u3").await.email_bounced_at.is_some());
    // Permanent errors fail at once: one attempt.
    assert!(
        h.store
            .recipients()
            .iter()
            .filter(|r| r.status == DeliveryStatus::Failed)
            .all(|r| r.attempts == 1)
    );

    let next = h.broadcast(ChannelPolicy::BOTH).await;
    let report = h.orch.launch(&op(), next).await.unwrap();
    assert_eq!(report.materialised.skipped[&SkipReason::TelegramBlocked], 2);
    assert_eq!(report.materialised.skipped[&SkipReason::EmailBounced], 1);
}

#[tokio::test]
async fn pause_resume_and_cancel() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    // One batch (3) per channel lane: 3 Telegram rows and 3 of the 4 e-mail rows.
    assert_eq!(h.orch.tick(Some(id)).await.unwrap().claimed, 6);
    h.orch.pause(&op(), id, None).await.unwrap();
    assert_eq!(
        h.orch.tick(None).await.unwrap().claimed,
        0,
        "paused rows are not claimed"
    );
    let err = h.orch.pause(&op(), id, None).await.unwrap_err();
    assert!(err.to_string().contains("is paused"), "{err}");
    h.orch.resume(&op(), id).await.unwrap();
    let err = h.orch.resume(&op(), id).await.unwrap_err();
    assert!(err.to_string().contains("is running"), "{err}");
    assert_eq!(h.orch.tick(Some(id)).await.unwrap().claimed, 1);
    assert_eq!(h.status(id).await, BroadcastStatus::Completed);
    let err = h.orch.cancel(&op(), id).await.unwrap_err();
    assert!(err.to_string().contains("is completed"), "{err}");

    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    h.orch.tick(Some(id)).await.unwrap();
    let (b, cancelled) = h.orch.cancel(&op(), id).await.unwrap();
    assert_eq!(b.status, BroadcastStatus::Cancelled);
    assert_eq!(cancelled, 1);
    let err = h.orch.cancel(&op(), id).await.unwrap_err();
    assert!(err.to_string().contains("is cancelled"), "{err}");
    assert_eq!(h.orch.tick(None).await.unwrap().claimed, 0);
    let stats = h.orch.stats(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Cancelled), 1);
    assert_eq!(stats.count(DeliveryStatus::Sent), 6);
}

#[tokio::test]
async fn a_worker_round_delivers_batch_after_batch_until_the_queue_is_dry() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    // 7 rows in batches of 3: one round claims the next batch while sending, and checks for
    // completion once a claim comes back short.
    assert!(h.orch.work_once().await.unwrap());
    assert_eq!(h.telegram.sent_to().len() + h.email.sent_to().len(), 7);
    assert_eq!(h.status(id).await, BroadcastStatus::Completed);
    // A single tick takes one batch per channel lane.
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    assert_eq!(h.orch.tick(Some(id)).await.unwrap().claimed, 6);
}

#[tokio::test]
async fn a_stopping_worker_finishes_sends_in_flight_and_hands_back_the_rest() {
    let h = Harness::with_settings(Settings {
        worker_id: "w1".into(),
        batch_size: 3,
        concurrency: Some(1),
        idle_poll: Duration::from_millis(1),
        ..Settings::default()
    })
    .await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    h.orch.launch(&op(), id).await.unwrap();
    let tg_gate = h.telegram.close_gate();
    let mail_gate = h.email.close_gate();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let orch = &h.orch;
    let worker = orch.run_worker(async {
        let _ = stopped.await;
    });
    let driver = async {
        // Wait until a send is in flight, then stop the worker and open the gates.
        while h.telegram.started.load(std::sync::atomic::Ordering::SeqCst)
            + h.email.started.load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tg_gate.add_permits(100);
        mail_gate.add_permits(100);
    };
    let (outcome, ()) = tokio::join!(worker, driver);
    outcome.unwrap();
    let in_flight = h.telegram.started.load(std::sync::atomic::Ordering::SeqCst)
        + h.email.started.load(std::sync::atomic::Ordering::SeqCst);
    let sent = h.telegram.sent_to().len() + h.email.sent_to().len();
    assert_eq!(sent, in_flight, "every send that started finished");
    assert!(
        (1..=2).contains(&sent),
        "at most one send per channel was in flight (concurrency 1): {sent}"
    );
    let stats = h.orch.stats(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Sent), sent as u64);
    assert_eq!(stats.count(DeliveryStatus::Sending), 0, "{stats:?}");
    assert_eq!(stats.count(DeliveryStatus::Pending), 7 - sent as u64);
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
    assert!(
        pending.items.iter().all(|r| r.attempts == 0
            && r.lease_owner.is_none()
            && r.next_attempt_at <= h.clock.now()),
        "rows handed back are due at once and used no attempt: {:#?}",
        pending.items
    );
    // The next worker delivers the rest.
    h.orch.run_until_done(id).await.unwrap();
    assert_eq!(h.telegram.sent_to().len() + h.email.sent_to().len(), 7);
}

#[tokio::test]
async fn expired_leases_are_taken_over_and_only_started_sends_count_as_possible_duplicates() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    h.orch.launch(&op(), id).await.unwrap();
    // A worker that claimed rows and died.
    let dead = h
        .store
        .claim_due(&ClaimRequest {
            worker_id: "dead".into(),
            now: h.clock.now(),
            lease_for: chrono::Duration::seconds(60),
            limit: 2,
            broadcast_id: None,
            channels: vec![],
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    // It had started sending the first row, not the second.
    let marked = h
        .store
        .mark_started("dead", &[dead[0].id], h.clock.now())
        .await
        .unwrap();
    assert_eq!(marked, [dead[0].id]);
    assert!(
        h.store
            .mark_started("someone else", &[dead[1].id], h.clock.now())
            .await
            .unwrap()
            .is_empty(),
        "only the lease holder marks its rows"
    );
    h.orch.tick(Some(id)).await.unwrap();
    assert_eq!(h.telegram.sent_to().len(), 1, "leased rows are left alone");
    h.clock.advance(Duration::from_secs(61));
    h.orch.run_until_done(id).await.unwrap();
    assert_eq!(h.telegram.sent_to().len(), 3);
    // The dead worker's late result is ignored: its lease is gone.
    let late = DeliveryResult {
        recipient_id: dead[0].id,
        worker_id: "dead".into(),
        uncertain: false,
        outcome: Outcome::Failed {
            at: h.clock.now(),
            kind: ErrorKind::Permanent,
            error: "late".into(),
        },
    };
    assert_eq!(h.store.record_results(&[late]).await.unwrap(), 0);
    let stats = h.orch.stats(id).await.unwrap();
    assert_eq!(stats.count(DeliveryStatus::Sent), 3);
    assert_eq!(
        stats.possible_duplicates, 1,
        "the row claimed ahead and never started is no possible duplicate"
    );
}

#[tokio::test]
async fn scheduled_broadcasts_launch_when_due() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    let at = h.clock.now() + chrono::Duration::minutes(5);
    h.store
        .set_schedule(id, Some(at), h.clock.now())
        .await
        .unwrap();
    assert_eq!(h.orch.launch_due().await.unwrap(), 0);
    h.clock.advance(Duration::from_secs(300));
    assert_eq!(h.orch.launch_due().await.unwrap(), 1);
    assert!(h.orch.work_once().await.unwrap());
    assert_eq!(h.status(id).await, BroadcastStatus::Completed);
}

#[tokio::test]
async fn preview_renders_without_sending_and_frozen_template_survives_edits() {
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    let previews = h.orch.preview(id, 2).await.unwrap();
    assert_eq!(previews.len(), 2);
    assert_eq!(
        previews[0]
            .telegram
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .text,
        "Hi Anna, Spring news"
    );
    assert!(h.telegram.sent_to().is_empty() && h.email.sent_to().is_empty());

    h.orch.launch(&op(), id).await.unwrap();
    let b = h.store.get_broadcast(id).await.unwrap();
    let mut edited = content();
    edited.telegram_text = Some("EDITED {{ first_name }}".into());
    h.store
        .update_template(
            b.template_id.unwrap(),
            NewTemplate {
                name: TemplateName::parse("t0").unwrap(),
                description: String::new(),
                content: edited,
            },
        )
        .await
        .unwrap();
    h.orch.run_until_done(id).await.unwrap();
    let sent = h.telegram.sent.lock().unwrap();
    assert!(sent.iter().all(
        |m| matches!(&m.body, MessageBody::Chat { message, .. } if message.text.starts_with("Hi "))
    ));
}

/// A PNG's first bytes, `tail` making each distinct.
fn png(tail: u8) -> Vec<u8> {
    let mut bytes = vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D,
    ];
    bytes.extend(b"IHDR");
    bytes.push(tail);
    bytes
}

#[tokio::test]
async fn a_template_names_a_medium_and_a_launch_freezes_the_bytes_it_has_then() {
    let h = Harness::new().await;
    let first = h
        .orch
        .add_medium(&op(), "poster.png", png(1), false)
        .await
        .unwrap();
    let with = |media: Vec<MediaRef>| NewTemplate {
        name: TemplateName::parse("poster").unwrap(),
        description: String::new(),
        content: TemplateContent {
            telegram_media: media,
            ..content()
        },
    };
    // A name not in the library, two media, or a medium without a text are refused.
    for (media, text, expected) in [
        (
            vec![MediaRef::named("missing.png")],
            true,
            "medium `missing.png` is not in the media library",
        ),
        (
            vec![MediaRef::named("poster.png"), MediaRef::named("poster.png")],
            true,
            "at most 1 medium; this template names 2",
        ),
        (
            vec![MediaRef::named("poster.png")],
            false,
            "give the template a Telegram text",
        ),
    ] {
        let mut new = with(media);
        if !text {
            new.content.telegram_text = None;
        }
        let err = h.orch.create_template(&op(), new).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains(expected)),
            "{err:?}"
        );
    }
    assert!(h.store.list_templates().await.unwrap().is_empty());

    // Saved by name, kept with what the library holds.
    let t = h
        .orch
        .create_template(&op(), with(vec![MediaRef::named("poster.png")]))
        .await
        .unwrap();
    assert_eq!(t.content.telegram_media, vec![MediaRef::of(&first)]);
    // Replaced before the launch: the launch takes the new bytes.
    let second = h
        .orch
        .add_medium(&op(), "poster.png", png(2), true)
        .await
        .unwrap();
    let id = h
        .orch
        .create_broadcast(
            &op(),
            NewBroadcast {
                name: "Poster".into(),
                template_id: t.id,
                channel_policy: ChannelPolicy::TELEGRAM,
                filter: AudienceFilter::default(),
                scheduled_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap()
        .id;
    h.orch.launch(&op(), id).await.unwrap();
    let frozen = h.store.get_broadcast(id).await.unwrap().frozen_template;
    assert_eq!(frozen.unwrap().telegram_media, vec![MediaRef::of(&second)]);
    // Replaced after: the broadcast sends what it launched with, and the bytes stay.
    let third = h
        .orch
        .add_medium(&op(), "poster.png", png(3), true)
        .await
        .unwrap();
    let removal = h.orch.remove_medium(&op(), third.id).await.unwrap_err();
    assert!(matches!(removal, Error::Conflict(_)), "{removal:?}");
    assert_eq!(h.orch.medium_bytes(&second).await.unwrap(), png(2));
    h.orch.run_until_done(id).await.unwrap();
    let sent = h.telegram.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    for m in &sent {
        let MessageBody::Chat { message, .. } = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(message.media, vec![MediaRef::of(&second)]);
    }
}

/// The audit log's entries from `from` on (oldest first): actor, action, target id.
async fn audit_since(h: &Harness, from: usize) -> Vec<(String, String, Option<i64>)> {
    let mut all = h.store.recent(10_000, 0).await.unwrap();
    all.reverse();
    all.into_iter()
        .skip(from)
        .map(|e| (e.actor, e.action, e.target_id))
        .collect()
}

#[tokio::test]
async fn every_change_through_the_embedding_api_writes_one_audit_entry_naming_the_actor() {
    let h = Harness::new().await;
    let alice = Actor::new("alice").unwrap();
    let entry = |action: &str, id: Option<i64>| ("alice".to_owned(), action.to_owned(), id);
    let seen = std::cell::Cell::new(audit_since(&h, 0).await.len());
    let expect_one = async |what: (String, String, Option<i64>)| {
        let new = audit_since(&h, seen.get()).await;
        assert_eq!(new, vec![what]);
        seen.set(seen.get() + 1);
    };

    let t = h
        .orch
        .create_template(
            &alice,
            NewTemplate {
                name: TemplateName::parse("audited").unwrap(),
                description: String::new(),
                content: content(),
            },
        )
        .await
        .unwrap();
    expect_one(entry("template.create", Some(t.id))).await;
    let update = NewTemplate {
        name: TemplateName::parse("audited").unwrap(),
        description: "v2".into(),
        content: content(),
    };
    h.orch.update_template(&alice, t.id, update).await.unwrap();
    expect_one(entry("template.update", Some(t.id))).await;
    let rows = vec![user("u7", "Gus", Some(107), None)];
    h.orch.import_users(&alice, "gus.csv", rows).await.unwrap();
    expect_one(entry("audience.import", None)).await;

    let new = NewBroadcast {
        name: "audited".into(),
        template_id: t.id,
        channel_policy: ChannelPolicy::TELEGRAM,
        filter: AudienceFilter::default(),
        scheduled_at: None,
        created_by: Some("alice".into()),
    };
    let id = h.orch.create_broadcast(&alice, new).await.unwrap().id;
    expect_one(entry("broadcast.create", Some(id))).await;
    let later = h.clock.now() + chrono::Duration::hours(1);
    h.orch.schedule(&alice, id, Some(later)).await.unwrap();
    expect_one(entry("broadcast.schedule", Some(id))).await;
    h.orch.launch(&alice, id).await.unwrap();
    expect_one(entry("broadcast.launch", Some(id))).await;
    let paused = h.orch.pause(&alice, id, None).await.unwrap();
    assert_eq!(paused.status_reason.as_deref(), Some("paused by alice"));
    expect_one(entry("broadcast.pause", Some(id))).await;
    h.orch.resume(&alice, id).await.unwrap();
    expect_one(entry("broadcast.resume", Some(id))).await;
    h.telegram.fail_next("101", &[FailureKind::Permanent]);
    h.orch.run_until_done(id).await.unwrap();
    assert_eq!(
        audit_since(&h, seen.get()).await,
        vec![],
        "delivery itself is not audited"
    );
    h.orch.retry(&alice, id, &[]).await.unwrap();
    expect_one(entry("broadcast.retry", Some(id))).await;
    // The calls that change no status are audited the same way.
    assert!(
        h.orch.recount(&alice, id).await.is_err(),
        "refused while running"
    );
    assert_eq!(audit_since(&h, seen.get()).await, vec![]);
    h.orch.cancel(&alice, id).await.unwrap();
    expect_one(entry("broadcast.cancel", Some(id))).await;
    h.orch.recount(&alice, id).await.unwrap();
    expect_one(entry("broadcast.recount", Some(id))).await;
    h.orch
        .test_send(
            &alice,
            id,
            broadcast_orchestrator::TestTarget::Chat(TelegramChatId::new(555).unwrap()),
        )
        .await
        .unwrap();
    expect_one(entry("broadcast.test_send", Some(id))).await;
    h.orch
        .export(&alice, id, &RecipientQuery::default())
        .await
        .unwrap();
    expect_one(entry("broadcast.export", Some(id))).await;
    assert!(
        h.orch
            .export(&alice, 9_999, &RecipientQuery::default())
            .await
            .is_err()
    );
    let someone = h
        .store
        .list_users(&UserQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(
        h.orch
            .unsubscribe_email(&alice, someone.id, "panel")
            .await
            .unwrap()
    );
    expect_one(entry("audience.unsubscribe", Some(someone.id))).await;
    assert!(
        !h.orch
            .unsubscribe_email(&alice, someone.id, "panel")
            .await
            .unwrap()
    );
    assert_eq!(
        audit_since(&h, seen.get()).await,
        vec![],
        "nothing changed, nothing recorded"
    );

    // A refused action changes nothing and writes nothing.
    assert!(h.orch.launch(&alice, id).await.is_err());
    assert!(h.orch.pause(&alice, id, None).await.is_err());
    assert_eq!(audit_since(&h, seen.get()).await, vec![]);

    let other = NewTemplate {
        name: TemplateName::parse("unused").unwrap(),
        description: String::new(),
        content: content(),
    };
    let unused = h.orch.create_template(&alice, other).await.unwrap();
    expect_one(entry("template.create", Some(unused.id))).await;
    h.orch.delete_template(&alice, unused.id).await.unwrap();
    expect_one(entry("template.delete", Some(unused.id))).await;
}

#[tokio::test]
async fn an_empty_audience_completes_at_launch_and_progress_is_published() {
    let h = Harness::new().await;
    let mut rx = h.orch.subscribe();
    let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
    let b = h.store.get_broadcast(id).await.unwrap();
    let t = h.store.get_template(b.template_id.unwrap()).await.unwrap();
    let empty = h
        .orch
        .create_broadcast(
            &op(),
            NewBroadcast {
                name: "nobody".into(),
                template_id: t.id,
                channel_policy: ChannelPolicy::TELEGRAM,
                filter: AudienceFilter {
                    user_ids: vec![9999],
                    ..Default::default()
                },
                scheduled_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap();
    let report = h.orch.launch(&op(), empty.id).await.unwrap();
    assert_eq!(report.broadcast.status, BroadcastStatus::Completed);
    h.orch.launch(&op(), id).await.unwrap();
    h.orch.run_until_done(id).await.unwrap();
    let mut last = None;
    while let Ok(p) = rx.try_recv() {
        if p.broadcast_id == id {
            last = Some(p);
        }
    }
    let last = last.expect("progress published");
    assert_eq!(
        (last.sent, last.open, last.status),
        (3, 0, BroadcastStatus::Completed)
    );
    assert!((last.fraction() - 1.0).abs() < f64::EPSILON);
}

mod durable {
    //! Fallback, circuit breaker, retry, schedule grace and the shared send budget.

    use super::*;

    /// Sends a channel has attempted, failed ones included.
    fn attempts(channel: &ScriptedChannel) -> usize {
        channel.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn telegram_then_email_falls_back_for_unreachable_and_failed_telegram() {
        let h = Harness::new().await;
        h.telegram.fail_always("106", FailureKind::Blocked);
        h.telegram.fail_always("101", FailureKind::Transient);
        let id = h.broadcast(ChannelPolicy::TELEGRAM_THEN_EMAIL).await;
        let report = h.orch.launch(&op(), id).await.unwrap();
        // Telegram for everyone; e-mail rows only for those Telegram cannot reach at launch.
        assert_eq!(report.materialised.queued[&ChannelKind::TELEGRAM], 3);
        assert_eq!(
            report.materialised.queued[&ChannelKind::EMAIL],
            2,
            "chen + dora (blocked)"
        );
        for _ in 0..10 {
            h.orch.tick(Some(id)).await.unwrap();
            h.clock.advance(Duration::from_secs(600));
        }
        let mut mails = h.email.sent_to();
        mails.sort();
        // Farid's Telegram failed (blocked) -> e-mail; Anna's kept failing transiently -> e-mail
        // after the last attempt; Ben has no e-mail; Emil unsubscribed.
        assert_eq!(
            mails,
            [
                "anna@example.org",
                "chen@example.org",
                "dora@example.org",
                "farid@example.org"
            ]
        );
        assert_eq!(h.status(id).await, BroadcastStatus::Completed);
        let b = h.store.get_broadcast(id).await.unwrap();
        assert_eq!(
            b.total_recipients, 11,
            "6 telegram + 3 at launch + 2 fallbacks"
        );
    }

    #[tokio::test]
    async fn both_sends_each_channel_independently() {
        let h = Harness::new().await;
        h.telegram.fail_always("101", FailureKind::Permanent);
        let id = h.broadcast(ChannelPolicy::BOTH).await;
        h.orch.launch(&op(), id).await.unwrap();
        h.orch.run_until_done(id).await.unwrap();
        assert!(h.email.sent_to().contains(&"anna@example.org".to_owned()));
        assert_eq!(h.email.sent_to().len(), 4, "no extra fallback rows");
    }

    #[tokio::test]
    async fn circuit_breaker_pauses_then_heals_by_itself_after_a_successful_probe() {
        let h = Harness::with_settings(Settings {
            worker_id: "w1".into(),
            batch_size: 2,
            breaker_consecutive: 3,
            breaker_window: 100,
            breaker_cooldown: Duration::from_secs(30),
            breaker_cooldown_max: Duration::from_secs(45),
            retry_base: Duration::from_secs(10),
            idle_poll: Duration::from_millis(1),
            ..Settings::default()
        })
        .await;
        for addr in ["anna@example.org", "chen@example.org", "dora@example.org"] {
            h.email.fail_always(addr, FailureKind::Permanent);
        }
        // Farid's relay is down too for the first probe.
        h.email
            .fail_always("farid@example.org", FailureKind::Transient);
        let id = h.broadcast(ChannelPolicy::EMAIL).await;
        h.orch.launch(&op(), id).await.unwrap();
        for _ in 0..10 {
            if h.status(id).await == BroadcastStatus::Paused {
                break;
            }
            h.orch.work_once().await.unwrap();
        }
        let b = h.store.get_broadcast(id).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Paused);
        let reason = b.status_reason.clone().unwrap();
        assert!(reason.contains("3 consecutive email failures"), "{reason}");
        let paused_at = h.clock.now();
        let probe = b.probe.expect("a breaker pause schedules a probe");
        assert_eq!(
            (probe.channel, probe.cooldown, probe.at),
            (
                ChannelKind::EMAIL,
                Duration::from_secs(30),
                paused_at + chrono::Duration::seconds(30)
            )
        );
        let stats = h.orch.stats(id).await.unwrap();
        assert_eq!(stats.count(DeliveryStatus::Failed), 3);
        assert_eq!(stats.count(DeliveryStatus::Pending), 1, "the rest waits");
        assert_eq!(
            stats.by_error_kind,
            std::collections::BTreeMap::from([(ErrorKind::Permanent, 3)]),
            "a row held back by the breaker is not an error"
        );
        let sent_before = attempts(&h.email);

        // Before the cool-down nothing is sent; after it one probe, which fails: the next
        // cool-down doubles, up to the limit of 45 s.
        h.clock.advance(Duration::from_secs(29));
        assert!(!h.orch.work_once().await.unwrap());
        assert_eq!(attempts(&h.email), sent_before);
        h.clock.advance(Duration::from_secs(1));
        assert!(h.orch.work_once().await.unwrap(), "the probe is work done");
        assert_eq!(attempts(&h.email), sent_before + 1, "one probe");
        let b = h.store.get_broadcast(id).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Paused);
        let probe = b.probe.expect("a failed probe schedules the next");
        assert_eq!(probe.cooldown, Duration::from_secs(45), "doubled, capped");
        assert_eq!(probe.at, h.clock.now() + chrono::Duration::seconds(45));
        let reason = b.status_reason.unwrap();
        assert!(
            reason.contains("3 consecutive email failures")
                && reason.contains("last probe: probe failed"),
            "{reason}"
        );

        // The relay is back: the next probe succeeds and the broadcast resumes, and finishes,
        // by itself; the worker's resume is in the audit log.
        h.email.clear("farid@example.org");
        let audited = audit_since(&h, 0).await.len();
        h.clock.advance(Duration::from_secs(44));
        h.orch.work_once().await.unwrap();
        assert_eq!(
            h.status(id).await,
            BroadcastStatus::Paused,
            "not before 45 s"
        );
        h.clock.advance(Duration::from_secs(1));
        h.orch.work_once().await.unwrap();
        assert_eq!(h.status(id).await, BroadcastStatus::Completed);
        let stats = h.orch.stats(id).await.unwrap();
        assert_eq!(stats.count(DeliveryStatus::Failed), 3);
        assert_eq!(stats.count(DeliveryStatus::Sent), 1);
        let entries = audit_since(&h, audited).await;
        assert_eq!(
            entries,
            vec![(
                "worker:w1".to_owned(),
                "broadcast.resume".to_owned(),
                Some(id)
            )],
            "an automatic resume, by the worker"
        );
        let resume = h.store.recent(1, 0).await.unwrap().remove(0);
        assert_eq!(resume.details["automatic"], true, "{:?}", resume.details);
    }

    #[tokio::test]
    async fn an_operator_resume_or_cancel_ends_the_probing() {
        let h = Harness::with_settings(Settings {
            worker_id: "w1".into(),
            batch_size: 2,
            breaker_consecutive: 2,
            breaker_window: 100,
            breaker_cooldown: Duration::from_secs(5),
            idle_poll: Duration::from_millis(1),
            ..Settings::default()
        })
        .await;
        for addr in ["anna@example.org", "chen@example.org", "dora@example.org"] {
            h.email.fail_always(addr, FailureKind::Transient);
        }
        let id = h.broadcast(ChannelPolicy::EMAIL).await;
        h.orch.launch(&op(), id).await.unwrap();
        for _ in 0..10 {
            if h.status(id).await == BroadcastStatus::Paused {
                break;
            }
            h.orch.work_once().await.unwrap();
        }
        assert!(h.store.get_broadcast(id).await.unwrap().probe.is_some());
        // A manual resume clears the probe; the next trip schedules a new one; a cancel
        // clears it for good and no probe is ever sent.
        let b = h.orch.resume(&op(), id).await.unwrap();
        assert_eq!(b.probe, None);
        h.clock.advance(Duration::from_secs(60));
        for _ in 0..10 {
            if h.status(id).await == BroadcastStatus::Paused {
                break;
            }
            h.orch.work_once().await.unwrap();
        }
        assert!(h.store.get_broadcast(id).await.unwrap().probe.is_some());
        let (b, _) = h.orch.cancel(&op(), id).await.unwrap();
        assert_eq!((b.status, b.probe), (BroadcastStatus::Cancelled, None));
        let sent = attempts(&h.email);
        h.clock.advance(Duration::from_secs(3600));
        h.orch.work_once().await.unwrap();
        assert_eq!(
            attempts(&h.email),
            sent,
            "no probe of a cancelled broadcast"
        );
    }

    #[tokio::test]
    async fn retry_requeues_failed_rows_but_never_blocked_ones() {
        let h = Harness::new().await;
        h.telegram.fail_always("101", FailureKind::Permanent);
        h.telegram.fail_always("102", FailureKind::Blocked);
        let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
        h.orch.launch(&op(), id).await.unwrap();
        h.orch.run_until_done(id).await.unwrap();
        assert_eq!(h.status(id).await, BroadcastStatus::Completed);
        let err = h.orch.retry(&op(), id + 1000, &[]).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");

        assert_eq!(
            h.orch
                .retry(&op(), id, &[ErrorKind::Transient])
                .await
                .unwrap(),
            0
        );
        assert_eq!(h.status(id).await, BroadcastStatus::Completed);
        h.telegram.clear("101");
        let ok = h
            .orch
            .retry(&op(), id, &[ErrorKind::Permanent])
            .await
            .unwrap();
        assert_eq!(ok, 1, "the blocked row stays failed");
        assert_eq!(h.status(id).await, BroadcastStatus::Running);
        let row = h
            .store
            .recipients()
            .into_iter()
            .find(|r| r.address == "101")
            .unwrap();
        assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 0));

        let running = h.orch.retry(&op(), id, &[]).await.unwrap_err();
        assert!(running.to_string().contains("is running"), "{running}");
        h.orch.run_until_done(id).await.unwrap();
        let row = h
            .store
            .recipients()
            .into_iter()
            .find(|r| r.address == "101")
            .unwrap();
        assert_eq!((row.status, row.attempts), (DeliveryStatus::Sent, 1));
    }

    #[tokio::test]
    async fn a_stale_schedule_waits_for_an_operator() {
        let h = Harness::new().await;
        let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
        let at = h.clock.now() + chrono::Duration::minutes(1);
        h.store
            .set_schedule(id, Some(at), h.clock.now())
            .await
            .unwrap();
        // No worker ran for two hours.
        h.clock.advance(Duration::from_secs(2 * 3600));
        assert_eq!(h.orch.launch_due().await.unwrap(), 0);
        let b = h.store.get_broadcast(id).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Scheduled);
        assert!(b.status_reason.unwrap().contains("grace period"));
        assert!(h.telegram.sent_to().is_empty());
        // Within the grace window it would have started late.
        let late = h.broadcast(ChannelPolicy::TELEGRAM).await;
        let at = h.clock.now() - chrono::Duration::minutes(30);
        h.store
            .set_schedule(late, Some(at), h.clock.now())
            .await
            .unwrap();
        assert_eq!(h.orch.launch_due().await.unwrap(), 1);
        // The operator launches the stale one by hand.
        h.orch.launch(&op(), id).await.unwrap();
        assert_eq!(h.status(id).await, BroadcastStatus::Running);
    }

    #[tokio::test]
    async fn lifecycle_transitions_are_refused_with_clear_errors() {
        let h = Harness::new().await;
        let id = h.broadcast(ChannelPolicy::TELEGRAM).await;
        let err = h.orch.resume(&op(), id).await.unwrap_err();
        assert!(err.to_string().contains("is draft"), "{err}");
        let err = h.orch.pause(&op(), id, None).await.unwrap_err();
        assert!(err.to_string().contains("is draft"), "{err}");
        h.orch.launch(&op(), id).await.unwrap();
        h.orch.run_until_done(id).await.unwrap();
        for err in [
            h.orch.cancel(&op(), id).await.map(|_| ()).unwrap_err(),
            h.orch.launch(&op(), id).await.map(|_| ()).unwrap_err(),
            h.orch.pause(&op(), id, None).await.map(|_| ()).unwrap_err(),
            h.store
                .set_schedule(id, Some(h.clock.now()), h.clock.now())
                .await
                .map(|_| ())
                .unwrap_err(),
        ] {
            assert!(matches!(err, Error::Conflict(_)), "{err}");
            assert!(err.to_string().contains("completed"), "{err}");
        }
    }

    #[tokio::test]
    async fn the_shared_budget_spaces_sends_across_workers() {
        let store = MemoryStore::new();
        let start = store
            .reserve(
                "telegram",
                Duration::from_millis(100),
                5,
                chrono::Utc::now(),
            )
            .await
            .unwrap()
            .first;
        let second = store
            .reserve("telegram", Duration::from_millis(100), 5, start)
            .await
            .unwrap()
            .first;
        assert_eq!(second - start, chrono::Duration::milliseconds(500));
        let other = store
            .reserve("email", Duration::from_millis(100), 1, start)
            .await
            .unwrap()
            .first;
        assert_eq!(other, start, "keys are independent");
    }
}

#[tokio::test]
async fn test_send_goes_to_one_target_without_touching_the_ledger() {
    use broadcast_orchestrator::TestTarget;
    let h = Harness::new().await;
    let id = h.broadcast(ChannelPolicy::BOTH).await;
    let anna = h.user_by_ext("u1").await;
    let results = h
        .orch
        .test_send(&op(), id, TestTarget::User(anna.id))
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(h.telegram.sent_to(), ["101"]);
    assert_eq!(h.email.sent_to(), ["anna@example.org"]);

    let chat = TelegramChatId::new(-100_500).unwrap();
    let results = h
        .orch
        .test_send(&op(), id, TestTarget::Chat(chat))
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(h.telegram.sent_to(), ["101", "-100500"]);
    let to = EmailAddress::parse("ops@example.org").unwrap();
    h.email
        .fail_always("ops@example.org", FailureKind::InvalidAddress);
    let results = h
        .orch
        .test_send(&op(), id, TestTarget::Email(to))
        .await
        .unwrap();
    assert!(
        results[0].1.is_err(),
        "the failure is reported, not recorded"
    );

    let b = h.store.get_broadcast(id).await.unwrap();
    assert_eq!(b.status, BroadcastStatus::Draft);
    assert!(
        h.store.recipients().is_empty(),
        "nothing written to the ledger"
    );
    assert!(h.user_by_ext("u1").await.email_bounced_at.is_none());
}
