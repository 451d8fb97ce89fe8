//! Channel kinds are data: a third kind, defined here and nowhere else, with its own adapter and
//! addresses from a user attribute, in a three-channel `first_reachable` chain, on the memory
//! store and on the SQL store (SQLite and PostgreSQL).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use broadcast_domain::*;
use broadcast_orchestrator::memory::MemoryStore;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;
use broadcast_testkit::TestDb;

use crate::doubles::{ManualClock, ScriptedChannel};
use crate::{op, user};

/// Carrier pigeons: a chat-like channel whose addresses are lofts, taken from the user
/// attribute `loft`.
#[derive(Debug)]
struct PigeonPost {
    kind: ChannelKind,
    /// (loft, text) of every message flown.
    flown: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Channel for PigeonPost {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn describe(&self) -> String {
        "pigeon post".into()
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Chat { to, message: m } = &message.body else {
            return Err(DeliveryError::permanent("pigeons carry short notes only"));
        };
        let mut flown = self.flown.lock().unwrap();
        flown.push((to.clone(), m.text.clone()));
        Ok(Delivered {
            provider_message_id: Some(format!("pigeon-{}", flown.len())),
            migrated_to: None,
        })
    }
}

fn pigeon_spec() -> ChannelSpec {
    ChannelSpec {
        reach: Reach::attribute("loft").unwrap(),
        format: MessageFormat::Chat,
        strict_window: false,
    }
}

struct Setup {
    what: String,
    _db: Option<TestDb>,
    audience: Arc<dyn AudienceStore>,
    deliveries: Arc<dyn DeliveryStore>,
    telegram: Arc<ScriptedChannel>,
    email: Arc<ScriptedChannel>,
    pigeons: Arc<PigeonPost>,
    orch: Orchestrator,
}

/// An orchestrator whose composition root registers the pigeon post beside Telegram and
/// e-mail, over `store` (which plays every store port).
fn setup<S>(what: String, db: Option<TestDb>, store: Arc<S>) -> Setup
where
    S: TemplateStore + BroadcastStore + DeliveryStore + AudienceStore + AudienceSource + 'static,
{
    let pigeon = ChannelKind::register("pigeon").unwrap();
    let telegram = ScriptedChannel::new(ChannelKind::TELEGRAM);
    let email = ScriptedChannel::new(ChannelKind::EMAIL);
    let pigeons = Arc::new(PigeonPost {
        kind: pigeon,
        flown: Mutex::default(),
    });
    let channels = Channels::new()
        .with(telegram.clone())
        .with(email.clone())
        .register(pigeons.clone(), pigeon_spec());
    let ports = Ports {
        templates: store.clone(),
        broadcasts: store.clone(),
        deliveries: store.clone(),
        audience: store.clone(),
        source: store.clone(),
        renderer: Arc::new(TeraRenderer::new()),
        channels,
        clock: Arc::new(ManualClock::new()),
        links: None,
        budget: None,
        audit: None,
        admins: None,
        media: None,
    };
    let settings = Settings {
        worker_id: "open-set".into(),
        idle_poll: std::time::Duration::from_millis(1),
        ..Settings::default()
    };
    Setup {
        what,
        _db: db,
        audience: store.clone(),
        deliveries: store,
        telegram,
        email,
        pigeons,
        orch: Orchestrator::new(ports, settings),
    }
}

async fn setups() -> Vec<Setup> {
    // The stores learn how the pigeon post reaches users from the same registration.
    let reaches = Reaches::default().with(
        ChannelKind::register("pigeon").unwrap(),
        pigeon_spec().reach,
    );
    let mut out = vec![setup(
        "memory".into(),
        None,
        Arc::new(MemoryStore::new().with_reaches(reaches.clone())),
    )];
    for db in TestDb::all().await {
        let store = Store::from_conn(db.conn().clone()).with_reaches(reaches.clone());
        out.push(setup(
            format!("{}", db.backend()),
            Some(db),
            Arc::new(store),
        ));
    }
    out
}

fn with_loft(mut u: NewUser, loft: serde_json::Value) -> NewUser {
    u.attributes.insert("loft".into(), loft);
    u
}

#[tokio::test]
async fn a_third_kind_defined_in_a_test_takes_its_place_in_a_first_reachable_chain() {
    for s in setups().await {
        let what = &s.what;
        let now = ManualClock::new().now();
        s.audience
            .import_users(
                vec![
                    // Telegram reaches Ann: nothing else is tried.
                    with_loft(
                        user("ann", "Ann", Some(101), Some("ann@example.org")),
                        "north".into(),
                    ),
                    // No chat: the pigeon post is next, and reaches Bo.
                    with_loft(
                        user("bo", "Bo", None, Some("bo@example.org")),
                        "west".into(),
                    ),
                    // Neither chat nor loft: e-mail.
                    user("cy", "Cy", None, Some("cy@example.org")),
                    // Blocked the bot while we send: the pigeon post takes over (a number
                    // is an address too).
                    with_loft(user("dee", "Dee", Some(104), None), 7.into()),
                    // Telegram refuses for good, no loft: e-mail takes over.
                    user("eve", "Eve", Some(105), Some("eve@example.org")),
                    // Unreachable: a blank loft is no address.
                    with_loft(user("fay", "Fay", None, None), "  ".into()),
                ],
                now,
            )
            .await
            .unwrap();
        s.telegram.fail_always("104", FailureKind::Blocked);
        s.telegram.fail_always("105", FailureKind::Permanent);

        let policy: ChannelPolicy = "first_reachable:telegram,pigeon,email".parse().unwrap();
        let t = s
            .orch
            .create_template(
                &op(),
                NewTemplate {
                    name: TemplateName::parse("notice").unwrap(),
                    description: String::new(),
                    content: TemplateContent {
                        telegram_text: Some("Hi {{ first_name }}".into()),
                        parse_mode: ParseMode::Plain,
                        link_preview: false,
                        telegram_media: Vec::new(),
                        telegram_buttons: Vec::new(),
                        email_subject: Some("Notice".into()),
                        email_html: None,
                        email_text: Some("Hi {{ first_name }}".into()),
                    },
                },
            )
            .await
            .unwrap();
        let b = s
            .orch
            .create_broadcast(
                &op(),
                NewBroadcast {
                    name: "Notice".into(),
                    template_id: t.id,
                    channel_policy: policy,
                    filter: AudienceFilter::default(),
                    scheduled_at: None,
                    created_by: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(b.channel_policy, policy, "{what}: stored and read back");

        let pigeon = ChannelKind::known("pigeon").unwrap();
        // What the operator is shown before launch.
        let count = s
            .orch
            .count_audience(&AudienceFilter::default(), policy)
            .await
            .unwrap();
        assert_eq!(
            (count.users, count.unreachable),
            (6, 1),
            "{what}: only Fay is out of reach"
        );
        assert_eq!(count.reachable_on(pigeon), 3, "{what}: Ann, Bo, Dee");
        assert_eq!(
            [ChannelKind::TELEGRAM, pigeon, ChannelKind::EMAIL].map(|k| count.messages_on(k)),
            [3, 1, 1],
            "{what}: first reachable: Ann, Dee, Eve; Bo; Cy"
        );

        let report = s.orch.launch(&op(), b.id).await.unwrap();
        let queued = |k: ChannelKind| report.materialised.queued.get(&k).copied();
        // Rows at launch: Telegram for everyone, the pigeon post for those Telegram cannot
        // reach (Bo, Cy, Fay), e-mail for those neither reaches (Cy, Fay).
        assert_eq!(queued(ChannelKind::TELEGRAM), Some(3), "{what}");
        assert_eq!(queued(pigeon), Some(1), "{what}");
        assert_eq!(queued(ChannelKind::EMAIL), Some(1), "{what}");

        let stats = s.orch.run_until_done(b.id).await.unwrap();
        let mut telegram = s.telegram.sent_to();
        telegram.sort();
        assert_eq!(telegram, ["101"], "{what}");
        let mut flown = s.pigeons.flown.lock().unwrap().clone();
        flown.sort();
        assert_eq!(
            flown,
            [
                ("7".to_owned(), "Hi Dee".to_owned()),
                ("west".to_owned(), "Hi Bo".to_owned())
            ],
            "{what}: Bo at launch, Dee after Telegram failed for good"
        );
        let mut mailed = s.email.sent_to();
        mailed.sort();
        assert_eq!(mailed, ["cy@example.org", "eve@example.org"], "{what}");

        let sent = |k| stats.channel_count(k, DeliveryStatus::Sent);
        assert_eq!(sent(pigeon), 2, "{what}");
        assert_eq!(
            stats.channel_count(ChannelKind::TELEGRAM, DeliveryStatus::Failed),
            2
        );
        assert_eq!(
            stats.by_skip_reason.get(&SkipReason::NoAddress),
            Some(&2),
            "{what}: Cy, Fay"
        );
        assert_eq!(stats.open(), 0, "{what}");

        // Dee blocked the bot: the refusal is recorded, as for any Telegram broadcast.
        let dee = s
            .deliveries
            .list_recipients(b.id, &RecipientQuery::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|r| r.channel == pigeon && r.address == "7")
            .unwrap();
        let dee = s.audience.get_user(dee.user_id).await.unwrap();
        assert!(dee.telegram_blocked_at.is_some(), "{what}");
    }
}
