//! The engine: launch, claim-render-send-record batches, lifecycle transitions, previews.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, watch};

use broadcast_domain::{
    Actor, AddressSource, AdminStore, AdminUser, AudienceCount, AudienceFilter, AudienceSource,
    AudienceStore, AuditLog, Broadcast, BroadcastId, BroadcastStatus, BroadcastStore, Channel,
    ChannelKind, ChannelPolicy, ChannelSpec, ClaimRequest, Clock, CompiledTemplate, Delivered,
    DeliveryError, DeliveryResult, DeliveryStats, DeliveryStore, EmailAddress, EmailMessage, Error,
    ErrorKind, FailureKind, MaterialiseReport, MediaId, MediaStore, Medium, MessageBody,
    MessageFormat, Moves, NewMedium, Outcome, OutgoingMessage, Reaches, Recipient,
    RecipientContext, RecipientId, RegistrationId, RenderEnv, Renderer, Result, SendBudget,
    StatusChange, TelegramChatId, TelegramMessage, TemplateContent, TemplateError,
    TemplateErrorKind, TemplateStore, Transition, UnsubscribeLinks, UserField, UserId,
};

mod audited;
mod compiled;
mod delivery;
mod lifecycle;
mod pipeline;
mod preview;
mod probe;
mod worker;

use crate::backoff::Backoff;
use crate::breaker::{Breaker, Limits};
use crate::progress::Progress;
use crate::settings::Settings;

/// The channels the orchestrator may send on, at most one adapter per [`ChannelKind`], each
/// registered with its [`ChannelSpec`]. Rows of a channel kind that has no channel here are not
/// claimed.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    by_kind: BTreeMap<ChannelKind, (Arc<dyn Channel>, ChannelSpec)>,
}

impl Channels {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an adapter of any kind with what the composition root says about it: where its
    /// addresses come from, the template part it renders, how its provider counts its rate.
    /// Replaces any other channel of the same kind.
    pub fn register(mut self, channel: Arc<dyn Channel>, spec: ChannelSpec) -> Self {
        self.by_kind.insert(channel.kind(), (channel, spec));
        self
    }

    /// Adds an adapter of a built-in kind (Telegram, e-mail) with the built-in
    /// [`ChannelSpec`], replacing any other of the same kind.
    ///
    /// # Panics
    /// When the adapter's kind is not built in: such a channel needs [`Channels::register`].
    pub fn with(self, channel: Arc<dyn Channel>) -> Self {
        let kind = channel.kind();
        let spec = ChannelSpec::built_in(kind).unwrap_or_else(|| {
            panic!("channel `{kind}` is not built in: add it with Channels::register")
        });
        self.register(channel, spec)
    }

    /// The channel of a kind.
    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Channel>> {
        self.by_kind.get(&kind).map(|(c, _)| c)
    }

    /// What the composition root said about a kind.
    pub fn spec(&self, kind: ChannelKind) -> Option<&ChannelSpec> {
        self.by_kind.get(&kind).map(|(_, s)| s)
    }

    /// The kinds configured.
    pub fn kinds(&self) -> Vec<ChannelKind> {
        self.by_kind.keys().copied().collect()
    }

    /// How each configured channel reaches users (the built-in ones always), for the audience
    /// source: `Store::with_reaches`, `MemoryStore::with_reaches`.
    pub fn reaches(&self) -> Reaches {
        self.by_kind
            .iter()
            .fold(Reaches::default(), |all, (kind, (_, spec))| {
                all.with(*kind, spec.reach.clone())
            })
    }
}

/// Everything the orchestrator talks to, as trait objects: the composition root (a binary, or
/// the program that embeds the orchestrator) builds it once. One
/// [`MemoryStore`](crate::memory::MemoryStore) can fill every store field; see the crate
/// documentation for a complete example.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Templates.
    pub templates: Arc<dyn TemplateStore>,
    /// Broadcasts.
    pub broadcasts: Arc<dyn BroadcastStore>,
    /// The delivery ledger.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Users and their flags.
    pub audience: Arc<dyn AudienceStore>,
    /// Filters to recipients.
    pub source: Arc<dyn AudienceSource>,
    /// Templates to messages.
    pub renderer: Arc<dyn Renderer>,
    /// Where messages go.
    pub channels: Channels,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Unsubscribe links for e-mails, when a public URL is configured.
    pub links: Option<Arc<dyn UnsubscribeLinks>>,
    /// Send rates shared by all workers (see [`Settings::shared_rates`]); `None`: in-process
    /// pacing only.
    pub budget: Option<Arc<dyn SendBudget>>,
    /// Where the engine records what it decides by itself (a broadcast paused after a channel
    /// fault); `None`: not recorded.
    pub audit: Option<Arc<dyn AuditLog>>,
    /// The panel's administrators, for the audited calls that create them and change their
    /// passwords; `None` when the program has no panel.
    pub admins: Option<Arc<dyn AdminStore>>,
    /// The media library, for programs that send files (`None`: adding or using a medium is
    /// refused with a message saying so).
    pub media: Option<Arc<dyn MediaStore>>,
}

/// What [`Orchestrator::launch`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchReport {
    /// The broadcast after launch.
    pub broadcast: Broadcast,
    /// The recipient rows written.
    pub materialised: MaterialiseReport,
}

/// What one [`Orchestrator::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Rows claimed.
    pub claimed: u64,
    /// Delivered.
    pub sent: u64,
    /// Failed for good.
    pub failed: u64,
    /// Put back for a retry.
    pub retried: u64,
    /// Handed back untried (the worker stopped, a breaker opened, a channel fault).
    pub held_back: u64,
    /// Broadcasts that completed during this tick.
    pub completed: Vec<BroadcastId>,
}

/// A template rendered for one recipient, without sending.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The recipient.
    pub user_id: UserId,
    /// Their name.
    pub full_name: String,
    /// The Telegram message, when the template has one.
    pub telegram: Option<std::result::Result<TelegramMessage, String>>,
    /// The e-mail, when the template has one.
    pub email: Option<std::result::Result<EmailMessage, String>>,
}

/// Where a test message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestTarget {
    /// A user of the audience, on every channel of the broadcast's policy that reaches them.
    User(UserId),
    /// A Telegram chat, with a sample user's data.
    Chat(TelegramChatId),
    /// An e-mail address, with a sample user's data.
    Email(EmailAddress),
    /// An address on one channel of the broadcast's policy, with a sample user's data.
    Address(ChannelKind, String),
}

#[derive(Debug)]
struct Compiled {
    template: Box<dyn CompiledTemplate>,
    broadcast_name: String,
    policy: ChannelPolicy,
}

/// Claimed rows with their recipients' contexts, in the same order.
type ClaimedBatch = (Vec<Recipient>, Vec<RecipientContext>);

/// A claimed row, rendered, waiting for one of its channel's in-flight places.
struct Ready {
    row: Recipient,
    message: OutgoingMessage,
    compiled: Arc<Compiled>,
}

/// Why a message could not be built for a recipient.
#[derive(Debug)]
enum BodyError {
    /// The template failed to render.
    Render(TemplateError),
    /// The address is not one of the format (an e-mail address that does not parse).
    Address(broadcast_domain::ParseError),
}

/// A store update a delivery calls for, applied by the batch loop (not by the delivery itself,
/// so that no in-flight send holds a database connection while results are written).
#[derive(Debug)]
enum Effect {
    MarkBlocked(UserId),
    MarkBounced(UserId),
    UpdateChat(UserId, TelegramChatId),
    /// Rows on the channels after a failed one in a `first_reachable` chain.
    Fallback(
        BroadcastId,
        UserId,
        Option<RegistrationId>,
        Vec<ChannelKind>,
    ),
}

/// A finished delivery: its result, the in-flight place it holds until the result is
/// written (rows marked as started hold one of their channel's), and the updates it calls for.
struct Done {
    result: DeliveryResult,
    in_flight: Option<ChannelKind>,
    effects: Vec<Effect>,
}

impl Done {
    /// A row that was never marked as started (not rendered, or handed back before its send).
    fn early(result: DeliveryResult) -> Self {
        Self {
            result,
            in_flight: None,
            effects: Vec::new(),
        }
    }
}

/// A group write of the batch loop: results to record, then rows to mark as started. It
/// answers with the results it recorded and the rows it marked (those still leased).
type Write<'a> = futures::future::BoxFuture<'a, Result<(Vec<Done>, Vec<Ready>)>>;

/// Counts a finished group write: its results in the report, and the in-flight places its
/// results freed and its marked rows took.
fn settle(
    report: &mut TickReport,
    in_flight: &mut BTreeMap<ChannelKind, usize>,
    recorded: &[Done],
    started: &[Ready],
) {
    for done in recorded {
        match &done.result.outcome {
            Outcome::Sent { .. } => report.sent += 1,
            Outcome::Failed { .. } => report.failed += 1,
            Outcome::Retry { .. } => report.retried += 1,
            Outcome::Released { .. } => report.held_back += 1,
        }
        if let Some(kind) = done.in_flight {
            *in_flight.entry(kind).or_default() -= 1;
        }
    }
    for ready in started {
        *in_flight.entry(ready.row.channel).or_default() += 1;
    }
}

/// Launches and delivers broadcasts. Share one per process: wrap it in an `Arc`.
///
/// The life of a broadcast, method by method:
/// - before: [`check_template`](Self::check_template), [`count_audience`](Self::count_audience),
///   [`preview`](Self::preview) / [`preview_content`](Self::preview_content),
///   [`test_send`](Self::test_send), then [`create_broadcast`](Self::create_broadcast) (a draft,
///   or scheduled when it has a time);
/// - [`launch`](Self::launch) freezes the template and writes one ledger row per user and
///   channel;
/// - delivery: [`run_until_done`](Self::run_until_done) for one broadcast,
///   [`run_worker`](Self::run_worker) for all of them (and the scheduled ones), or
///   [`tick`](Self::tick) / [`work_once`](Self::work_once) to drive it step by step;
/// - on the way: [`pause`](Self::pause), [`resume`](Self::resume), [`cancel`](Self::cancel),
///   [`retry`](Self::retry) of failed rows;
/// - watching: [`subscribe`](Self::subscribe), [`progress`](Self::progress),
///   [`stats`](Self::stats).
///
/// Refused transitions (resuming a running broadcast, launching a completed one) are
/// [`Error::Conflict`] naming the current status.
#[derive(Debug)]
pub struct Orchestrator {
    ports: Ports,
    settings: Settings,
    backoff: Backoff,
    compiled: Mutex<HashMap<BroadcastId, Arc<Compiled>>>,
    /// Sends in flight per channel: its places ([`Settings::places`]), or fewer when the
    /// channel allows fewer (an SMTP pool's connections).
    permits: BTreeMap<ChannelKind, Arc<Semaphore>>,
    events: broadcast::Sender<Progress>,
    breaker: Mutex<Breaker>,
    /// Channels that answered with a channel fault in this round, with the first message:
    /// their sends are held back, and the round pauses the broadcasts on them.
    faults: Mutex<BTreeMap<ChannelKind, String>>,
    /// Per rate-shared channel, the slots reserved from the [`SendBudget`] and not used yet.
    slots: BTreeMap<ChannelKind, pipeline::SharedSlots>,
    /// Per channel, the end of the latest wait its service asked for (a 429's `retry_after`),
    /// answered to this worker or, on a rate-shared channel, to any worker.
    holds: Mutex<BTreeMap<ChannelKind, DateTime<Utc>>>,
    /// When this worker last freed expired rows of paused and cancelled broadcasts.
    swept: Mutex<Option<DateTime<Utc>>>,
    published: Mutex<HashMap<BroadcastId, std::time::Instant>>,
}

/// How long a worker round keeps claiming batches back to back before the worker loop looks
/// for scheduled broadcasts and shutdown again.
const ROUND: Duration = Duration::from_secs(2);

/// Progress events of a broadcast during delivery come at most this often.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The note of a row held back because its channel's service asked to wait.
fn hold_note(kind: ChannelKind, until: DateTime<Utc>) -> String {
    format!("held back: the {kind} service asked to wait until {until}")
}

/// A shared slot further ahead than this is checked against the budget's hold before the send
/// waits for it.
const FAR_SLOT: Duration = Duration::from_millis(500);

/// The note of a row held back because its channel has a fault.
fn fault_note(kind: ChannelKind, fault: &str) -> String {
    format!("held back: the {kind} channel has a fault: {fault}")
}

impl Orchestrator {
    /// Builds an orchestrator over the given ports.
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let permits = ports
            .channels
            .by_kind
            .iter()
            .map(|(kind, (channel, _))| {
                let n = settings.places(*kind).min(channel.max_concurrency()).max(1);
                (*kind, Arc::new(Semaphore::new(n)))
            })
            .collect();
        let (events, _) = broadcast::channel(256);
        let slots = settings
            .shared_rates
            .iter()
            .filter(|(_, rate)| **rate > 0)
            .map(|(kind, _)| (*kind, pipeline::SharedSlots::default()))
            .collect();
        Self {
            backoff: Backoff {
                base: settings.retry_base,
                max: settings.retry_max,
            },
            ports,
            settings,
            compiled: Mutex::new(HashMap::new()),
            permits,
            events,
            breaker: Mutex::new(Breaker::default()),
            faults: Mutex::new(BTreeMap::new()),
            slots,
            holds: Mutex::new(BTreeMap::new()),
            swept: Mutex::new(None),
            published: Mutex::new(HashMap::new()),
        }
    }

    /// The ports this orchestrator uses.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The settings this orchestrator uses.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Progress snapshots, one per processed batch and broadcast. Slow receivers miss
    /// snapshots rather than slowing delivery down.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.events.subscribe()
    }

    /// Checks a template for use with a channel policy: every part compiles, only known
    /// variables are used, and the parts the policy needs are present.
    pub fn check_template(&self, content: &TemplateContent, policy: ChannelPolicy) -> Result<()> {
        if let Some(first) = self.ports.renderer.validate(content).into_iter().next() {
            return Err(first.into());
        }
        for channel in policy.channels() {
            let format = self.format(*channel)?;
            if !content.supports(format) {
                let (part, need) = TemplateContent::needs(format);
                return Err(TemplateError {
                    part,
                    kind: TemplateErrorKind::Missing(format!(
                        "channel policy `{policy}` sends on {channel}, which needs {need}"
                    )),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The message format of a configured channel.
    pub(crate) fn format(&self, kind: ChannelKind) -> Result<MessageFormat> {
        self.ports
            .channels
            .spec(kind)
            .map(|spec| spec.format)
            .ok_or_else(|| Error::Invalid(format!("no {kind} channel is configured")))
    }

    /// Counts a filter's audience, and per channel of `policy` the users it reaches and the
    /// messages a launch would queue.
    pub async fn count_audience(
        &self,
        filter: &AudienceFilter,
        policy: ChannelPolicy,
    ) -> Result<AudienceCount> {
        self.ports.source.count(filter, policy).await
    }

    /// Statistics of a broadcast.
    pub async fn stats(&self, id: BroadcastId) -> Result<DeliveryStats> {
        self.ports.deliveries.stats(id).await
    }

    /// The current progress of a broadcast.
    pub async fn progress(&self, id: BroadcastId) -> Result<Progress> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let stats = self.ports.deliveries.stats(id).await?;
        Ok(Progress::from_stats(
            id,
            b.status,
            &stats,
            self.ports.clock.now(),
        ))
    }
}
