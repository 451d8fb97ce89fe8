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
    AudienceCount, AudienceFilter, AudienceSource, AudienceStore, AuditEntry, AuditLog, Broadcast,
    BroadcastId, BroadcastStatus, BroadcastStore, Channel, ChannelKind, ChannelPolicy,
    ClaimRequest, Clock, CompiledTemplate, Delivered, DeliveryError, DeliveryResult, DeliveryStats,
    DeliveryStore, EmailAddress, EmailMessage, Error, ErrorKind, FailureKind, MaterialiseReport,
    MessageBody, NewBroadcast, Outcome, OutgoingMessage, Recipient, RecipientContext, RecipientId,
    RegistrationId, RenderEnv, Renderer, Result, SendBudget, StatusChange, TelegramChatId,
    TelegramMessage, TemplateContent, TemplateError, TemplateErrorKind, TemplatePart,
    TemplateStore, UnsubscribeLinks, UserId,
};

use crate::backoff::Backoff;
use crate::breaker::{Breaker, Limits};
use crate::progress::Progress;
use crate::settings::Settings;

/// The channels the orchestrator may send on, at most one per [`ChannelKind`]. Rows of a
/// channel kind that has no channel here are not claimed.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    by_kind: BTreeMap<ChannelKind, Arc<dyn Channel>>,
}

impl Channels {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a channel, replacing any other of the same kind.
    pub fn with(mut self, channel: Arc<dyn Channel>) -> Self {
        self.by_kind.insert(channel.kind(), channel);
        self
    }

    /// The channel of a kind.
    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Channel>> {
        self.by_kind.get(&kind)
    }

    /// The kinds configured.
    pub fn kinds(&self) -> Vec<ChannelKind> {
        self.by_kind.keys().copied().collect()
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

/// A store update a delivery calls for, applied by the batch loop (not by the delivery itself,
/// so that no in-flight send holds a database connection while results are written).
#[derive(Debug)]
enum Effect {
    MarkBlocked(UserId),
    MarkBounced(UserId),
    UpdateChat(UserId, TelegramChatId),
    Fallback(BroadcastId, UserId, Option<RegistrationId>),
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
    /// Sends in flight per channel: `concurrency`, or less when the channel allows less (an
    /// SMTP pool's connections).
    permits: BTreeMap<ChannelKind, Arc<Semaphore>>,
    events: broadcast::Sender<Progress>,
    breaker: Mutex<Breaker>,
    /// Channels that answered with a channel fault in this round, with the first message:
    /// their sends are held back, and the round pauses the broadcasts on them.
    faults: Mutex<BTreeMap<ChannelKind, String>>,
    slots: BTreeMap<ChannelKind, tokio::sync::Mutex<VecDeque<DateTime<Utc>>>>,
    published: Mutex<HashMap<BroadcastId, std::time::Instant>>,
}

/// How long a worker round keeps claiming batches back to back before the worker loop looks
/// for scheduled broadcasts and shutdown again.
const ROUND: Duration = Duration::from_secs(2);

/// Progress events of a broadcast during delivery come at most this often.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

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
            .map(|(kind, ch)| {
                let n = settings.concurrency.min(ch.max_concurrency()).max(1);
                (*kind, Arc::new(Semaphore::new(n)))
            })
            .collect();
        let (events, _) = broadcast::channel(256);
        let slots = settings
            .shared_rates
            .iter()
            .filter(|(_, rate)| **rate > 0)
            .map(|(kind, _)| (*kind, tokio::sync::Mutex::new(VecDeque::new())))
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
            if !content.supports(*channel) {
                let (part, need) = match channel {
                    ChannelKind::Telegram => (TemplatePart::TelegramText, "a Telegram text"),
                    ChannelKind::Email => (
                        TemplatePart::EmailSubject,
                        "an e-mail subject and an HTML or plain-text body",
                    ),
                };
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

    /// Creates a draft (or scheduled) broadcast after checking its template and filter.
    pub async fn create_broadcast(&self, new: NewBroadcast) -> Result<Broadcast> {
        if new.name.trim().is_empty() {
            return Err(Error::Invalid("a broadcast needs a name".into()));
        }
        new.filter.validate()?;
        let template = self.ports.templates.get_template(new.template_id).await?;
        self.check_template(&template.content, new.channel_policy)?;
        self.ports
            .broadcasts
            .create_broadcast(new, self.ports.clock.now())
            .await
    }

    /// Counts a filter's audience per channel.
    pub async fn count_audience(&self, filter: &AudienceFilter) -> Result<AudienceCount> {
        self.ports.source.count(filter).await
    }

    /// Launches a draft or scheduled broadcast: checks and freezes its template, writes one
    /// recipient row per user and channel, and sets it running. Safe to call again after a
    /// crash half-way: rows already written are kept, and the status change happens once.
    #[tracing::instrument(skip(self))]
    pub async fn launch(&self, id: BroadcastId) -> Result<LaunchReport> {
        let broadcast = self.ports.broadcasts.get_broadcast(id).await?;
        if !matches!(
            broadcast.status,
            BroadcastStatus::Draft | BroadcastStatus::Scheduled
        ) {
            return Err(Error::Conflict(format!(
                "broadcast {id} is {}; only a draft or scheduled broadcast can be launched",
                broadcast.status
            )));
        }
        let content = self.content_of(&broadcast).await?;
        self.check_template(&content, broadcast.channel_policy)?;
        let now = self.ports.clock.now();
        let materialised = self
            .ports
            .source
            .materialise(id, &broadcast.filter, broadcast.channel_policy, now)
            .await?;
        let broadcast = self
            .ports
            .broadcasts
            .change_status(
                id,
                StatusChange {
                    from: vec![BroadcastStatus::Draft, BroadcastStatus::Scheduled],
                    to: BroadcastStatus::Running,
                    at: now,
                    reason: None,
                    freeze: Some(content),
                },
            )
            .await?;
        tracing::info!(broadcast = id, rows = ?materialised.queued, skipped = ?materialised.skipped, "launched");
        let broadcast = match self.complete_if_done(id).await? {
            true => self.ports.broadcasts.get_broadcast(id).await?,
            false => broadcast,
        };
        self.publish(id, true).await?;
        Ok(LaunchReport {
            broadcast,
            materialised,
        })
    }

    /// Stops workers from claiming the broadcast's rows; in-flight sends finish.
    pub async fn pause(&self, id: BroadcastId, reason: Option<String>) -> Result<Broadcast> {
        self.transition(
            id,
            &[BroadcastStatus::Running],
            BroadcastStatus::Paused,
            Some(reason.unwrap_or_else(|| "paused by an operator".into())),
        )
        .await
    }

    /// Lets workers claim a paused broadcast's rows again.
    pub async fn resume(&self, id: BroadcastId) -> Result<Broadcast> {
        let b = self
            .transition(
                id,
                &[BroadcastStatus::Paused],
                BroadcastStatus::Running,
                None,
            )
            .await?;
        self.breaker.lock().expect("breaker poisoned").reset(id);
        self.complete_if_done(id).await?;
        self.ports.broadcasts.get_broadcast(id).await.or(Ok(b))
    }

    /// Cancels a broadcast: pending rows become cancelled and nothing more is sent.
    pub async fn cancel(&self, id: BroadcastId) -> Result<(Broadcast, u64)> {
        let b = self
            .transition(
                id,
                &[
                    BroadcastStatus::Draft,
                    BroadcastStatus::Scheduled,
                    BroadcastStatus::Running,
                    BroadcastStatus::Paused,
                ],
                BroadcastStatus::Cancelled,
                Some("cancelled by an operator".into()),
            )
            .await?;
        let cancelled = self
            .ports
            .deliveries
            .cancel_pending(id, self.ports.clock.now())
            .await?;
        self.forget(id);
        self.publish(id, true).await?;
        Ok((b, cancelled))
    }

    /// Puts failed rows of a completed, failed or paused broadcast back in the queue (only the
    /// given error kinds; all when empty) and sets it running again. Rows of users who blocked
    /// the bot, unsubscribed or bounced are never retried. Returns how many rows were queued.
    pub async fn retry(&self, id: BroadcastId, kinds: &[ErrorKind]) -> Result<u64> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        if !matches!(
            b.status,
            BroadcastStatus::Completed | BroadcastStatus::Failed | BroadcastStatus::Paused
        ) {
            return Err(Error::Conflict(format!(
                "broadcast {id} is {}; only a completed, failed or paused broadcast can be retried",
                b.status
            )));
        }
        let now = self.ports.clock.now();
        let queued = self.ports.deliveries.requeue_failed(id, kinds, now).await?;
        if queued > 0 && b.status != BroadcastStatus::Paused {
            self.transition(
                id,
                &[BroadcastStatus::Completed, BroadcastStatus::Failed],
                BroadcastStatus::Running,
                None,
            )
            .await?;
        }
        self.publish(id, true).await?;
        Ok(queued)
    }

    async fn transition(
        &self,
        id: BroadcastId,
        from: &[BroadcastStatus],
        to: BroadcastStatus,
        reason: Option<String>,
    ) -> Result<Broadcast> {
        self.ports
            .broadcasts
            .change_status(
                id,
                StatusChange {
                    from: from.to_vec(),
                    to,
                    at: self.ports.clock.now(),
                    reason,
                    freeze: None,
                },
            )
            .await
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

    /// Renders a broadcast's template for up to `limit` recipients of its audience.
    pub async fn preview(&self, id: BroadcastId, limit: u64) -> Result<Vec<Preview>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        self.preview_content(&content, &b.name, &b.filter, limit)
            .await
    }

    /// Renders a template for up to `limit` users of an audience, without sending anything.
    pub async fn preview_content(
        &self,
        content: &TemplateContent,
        broadcast_name: &str,
        filter: &AudienceFilter,
        limit: u64,
    ) -> Result<Vec<Preview>> {
        let compiled = self.ports.renderer.compile(content)?;
        let env = self.env(broadcast_name);
        let samples = self.ports.source.sample(filter, limit).await?;
        Ok(samples
            .iter()
            .map(|ctx| {
                let url = self.unsubscribe_url(ctx.user.id);
                Preview {
                    user_id: ctx.user.id,
                    full_name: ctx.user.full_name(),
                    telegram: content.supports(ChannelKind::Telegram).then(|| {
                        compiled
                            .render_telegram(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                    email: content.supports(ChannelKind::Email).then(|| {
                        compiled
                            .render_email(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect())
    }

    /// Sends the broadcast's message once, now, to a test target, without touching the
    /// broadcast's ledger or statistics. Returns one result per channel tried.
    pub async fn test_send(
        &self,
        id: BroadcastId,
        target: TestTarget,
    ) -> Result<Vec<(ChannelKind, std::result::Result<Delivered, DeliveryError>)>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = self.ports.renderer.compile(&content)?;
        let env = self.env(&b.name);
        let context = match &target {
            TestTarget::User(user) => {
                let user = self.ports.audience.get_user(*user).await?;
                // The registration the broadcast's filter would match, else the first one.
                let f = &b.filter;
                let mut regs = self.ports.audience.registrations_of(user.id).await?;
                let pick = regs
                    .iter()
                    .position(|(r, _)| {
                        (f.competition_ids.is_empty()
                            || f.competition_ids.contains(&r.competition_id))
                            && (f.roles.is_empty() || f.roles.contains(&r.role))
                            && (f.registration_statuses.is_empty()
                                || f.registration_statuses.contains(&r.status))
                    })
                    .unwrap_or(0);
                let (registration, competition) = if regs.is_empty() {
                    (None, None)
                } else {
                    let (r, c) = regs.swap_remove(pick);
                    (Some(r), Some(c))
                };
                RecipientContext {
                    user,
                    competition,
                    registration,
                }
            }
            TestTarget::Chat(_) | TestTarget::Email(_) => {
                let mut sample = self.ports.source.sample(&b.filter, 1).await?;
                sample.pop().ok_or_else(|| {
                    Error::Invalid(format!(
                        "broadcast {id} has an empty audience; test with --user to pick the data"
                    ))
                })?
            }
        };
        let mut bodies = Vec::new();
        let url = self.unsubscribe_url(context.user.id);
        let wants =
            |k: ChannelKind| b.channel_policy.channels().contains(&k) && content.supports(k);
        let chat = match &target {
            TestTarget::Chat(c) => Some(*c),
            TestTarget::User(_) => context.user.telegram_chat_id,
            TestTarget::Email(_) => None,
        };
        let email = match &target {
            TestTarget::Email(e) => Some(e.clone()),
            TestTarget::User(_) => context.user.email.clone(),
            TestTarget::Chat(_) => None,
        };
        if let (Some(chat_id), true) = (chat, wants(ChannelKind::Telegram)) {
            let message = compiled.render_telegram(&context, &env, url.as_deref())?;
            bodies.push(MessageBody::Telegram { chat_id, message });
        }
        if let (Some(to), true) = (email, wants(ChannelKind::Email)) {
            let message = compiled.render_email(&context, &env, url.as_deref())?;
            bodies.push(MessageBody::Email {
                to,
                to_name: Some(context.user.full_name()).filter(|n| !n.is_empty()),
                message,
                unsubscribe_url: url.clone(),
            });
        }
        if bodies.is_empty() {
            return Err(Error::Invalid(format!(
                "nothing to send: the target has no address on the channels of policy `{}`",
                b.channel_policy
            )));
        }
        let mut results = Vec::new();
        for body in bodies {
            let kind = body.channel();
            let channel = self.channel(kind)?;
            let message = OutgoingMessage {
                broadcast_id: None,
                recipient_id: None,
                user_id: Some(context.user.id),
                body,
            };
            results.push((kind, channel.send(&message).await));
        }
        Ok(results)
    }

    /// Claims one batch of due rows (of one broadcast, or of every running broadcast), sends
    /// them and records the results. Returns what it did; `claimed == 0` means nothing was due.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn tick(&self, scope: Option<BroadcastId>) -> Result<TickReport> {
        self.deliver_batches(scope, None, None).await
    }

    /// Like [`tick`](Self::tick), but keeps going while claims come back full, for about
    /// [`ROUND`]: the next batch is claimed while the current one is still being sent, so a
    /// rate-limited channel never waits for the store between batches.
    /// With `stop`, claiming ends as soon as it turns true, and rows claimed but not yet sent
    /// are handed back (due at once, no attempt counted).
    async fn round(
        &self,
        scope: Option<BroadcastId>,
        stop: Option<watch::Receiver<bool>>,
    ) -> Result<TickReport> {
        let deadline = tokio::time::Instant::now() + ROUND;
        self.deliver_batches(scope, Some(deadline), stop).await
    }

    /// The delivery pipeline. Three kinds of work overlap, polled together by this one task:
    /// - sends (`send`), at most `concurrency` per channel;
    /// - group writes: whatever finished while the previous write was in flight is recorded
    ///   as one group (group commit), with the store effects the sends called for, and then
    ///   the rows about to be sent are marked as started (`mark_started`). A row is sent only
    ///   once its mark is written, and counts against its channel's `concurrency` in-flight
    ///   places from its mark until its result is written; a group's results free their
    ///   places for the rows it marks. So a crash leaves at most `concurrency` started but
    ///   unrecorded rows per channel, and only those count as possible duplicates when their
    ///   leases are taken over; rows claimed ahead and never started do not;
    /// - with a `deadline`, the next claim (and its contexts), on its own task, started when
    ///   half of the current batch is left to send and the last claim came back full.
    ///
    /// Only one store call of this task is ever pending besides the spawned claim: a SQLite
    /// store has a single connection, and a store future that is not polled while another
    /// waits for the connection would never finish.
    async fn deliver_batches(
        &self,
        scope: Option<BroadcastId>,
        deadline: Option<tokio::time::Instant>,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> Result<TickReport> {
        let mut report = TickReport::default();
        let mut touched = BTreeSet::new();
        // The sends' copy; `stop` itself is polled for changes.
        let stop_sends = stop.clone();
        let mut sending = FuturesUnordered::new();
        let mut finished: Vec<Done> = Vec::new();
        // Rendered rows not yet marked, per channel, in claim order.
        let mut waiting: BTreeMap<ChannelKind, VecDeque<Ready>> = BTreeMap::new();
        // Rows marked as started whose results are not written yet, per channel.
        let mut in_flight: BTreeMap<ChannelKind, usize> = BTreeMap::new();
        let mut write: Option<Write<'_>> = None;
        let mut claim = Some(self.spawn_claim(scope)?);
        let mut claims = 1u32;
        let mut exhausted = false;
        let mut error = None;
        let half = (self.settings.batch_size / 2) as usize;
        let places = self.settings.concurrency.max(1);
        loop {
            let stopping = stop.as_ref().is_some_and(|s| *s.borrow());
            if write.is_none() {
                let mut start = Vec::new();
                for (kind, queue) in &mut waiting {
                    let freed = finished
                        .iter()
                        .filter(|d| d.in_flight == Some(*kind))
                        .count();
                    let busy = in_flight.get(kind).copied().unwrap_or(0) - freed;
                    let take = match stopping {
                        true => queue.len(),
                        false => places.saturating_sub(busy).min(queue.len()),
                    };
                    for ready in queue.drain(..take) {
                        // Rows that will not be sent now go back untried and unmarked.
                        match self.held_back(&ready.row, stopping) {
                            Some(why) => finished.push(Done::early(self.released(&ready.row, why))),
                            None => start.push(ready),
                        }
                    }
                }
                if !finished.is_empty() || !start.is_empty() {
                    write = Some(
                        self.write_group(std::mem::take(&mut finished), start)
                            .boxed(),
                    );
                }
            }
            let may_claim = error.is_none()
                && !exhausted
                && !stopping
                && !self.has_fault()
                && deadline.is_some_and(|d| tokio::time::Instant::now() < d);
            let queued = sending.len() + waiting.values().map(VecDeque::len).sum::<usize>();
            if claim.is_none() && may_claim && queued <= half {
                claim = Some(self.spawn_claim(scope)?);
                claims += 1;
            }
            if sending.is_empty() && write.is_none() && claim.is_none() {
                if waiting.values().all(VecDeque::is_empty) {
                    break;
                }
                // Places are all taken by results still unwritten: impossible, as every
                // finished result is written above. Guard against a silent hang anyway.
                return Err(Error::Internal(
                    "delivery pipeline stalled with rows waiting".into(),
                ));
            }
            tokio::select! {
                // Wakes the loop when the worker is told to stop; waiting rows then go back.
                changed = async { stop.as_mut().expect("guarded").changed().await }, if stop.is_some() && !stopping => {
                    if changed.is_err() {
                        // The worker loop is gone: nobody can ask to stop any more.
                        stop = None;
                    }
                }
                Some(first) = sending.next(), if !sending.is_empty() => {
                    let mut ready: Vec<Done> = vec![first];
                    while let Some(Some(more)) = sending.next().now_or_never() {
                        ready.push(more);
                    }
                    finished.extend(ready);
                }
                written = async { write.as_mut().expect("guarded").await }, if write.is_some() => {
                    write = None;
                    // On an error, stop claiming and sending: rows not recorded are taken
                    // again when their lease expires.
                    let (recorded, started) = written?;
                    settle(&mut report, &mut in_flight, &recorded, &started);
                    sending.extend(started.into_iter().map(|r| self.send(r, stop_sends.as_ref())));
                }
                claimed = async { claim.as_mut().expect("guarded").await }, if claim.is_some() => {
                    claim = None;
                    let claimed = claimed
                        .map_err(|e| Error::Internal(format!("claim task failed: {e}")))
                        .and_then(|r| r);
                    let (rows, contexts) = match claimed {
                        Ok(batch) => batch,
                        Err(e) => {
                            // Finish what is in flight, then report the error.
                            error = Some(e);
                            continue;
                        }
                    };
                    report.claimed += rows.len() as u64;
                    exhausted = (rows.len() as u64) < self.settings.batch_size;
                    for (row, context) in rows.into_iter().zip(contexts) {
                        if touched.insert(row.broadcast_id) && !self.is_compiled(row.broadcast_id) {
                            // Loading a template reads the store: no write may be pending.
                            if let Some(w) = write.take() {
                                let (recorded, started) = w.await?;
                                settle(&mut report, &mut in_flight, &recorded, &started);
                                sending.extend(started.into_iter().map(|r| self.send(r, stop_sends.as_ref())));
                            }
                        }
                        let compiled = self.compiled_for(row.broadcast_id).await.ok();
                        match self.prepare(row, &context, compiled) {
                            Ok(ready) => waiting.entry(ready.row.channel).or_default().push_back(ready),
                            Err(done) => finished.push(done),
                        }
                    }
                }
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        self.pause_tripped().await?;
        self.pause_faulted().await?;
        for id in touched {
            // A short claim means the queue may be empty: only then is counting worth it.
            if exhausted && self.complete_if_done(id).await? {
                report.completed.push(id);
                self.publish(id, true).await?;
            } else {
                self.publish(id, false).await?;
            }
        }
        tracing::debug!(claims, ?report, "delivered");
        Ok(report)
    }

    /// Claims the next batch and loads its recipients' contexts, on a task of its own so that
    /// it runs while the batch loop sends and writes results.
    fn spawn_claim(
        &self,
        scope: Option<BroadcastId>,
    ) -> Result<tokio::task::JoinHandle<Result<ClaimedBatch>>> {
        let lease = chrono::Duration::from_std(self.settings.lease)
            .map_err(|e| Error::Invalid(format!("lease duration: {e}")))?;
        let request = ClaimRequest {
            worker_id: self.settings.worker_id.clone(),
            now: self.ports.clock.now(),
            lease_for: lease,
            limit: self.settings.batch_size,
            broadcast_id: scope,
            channels: self.ports.channels.kinds(),
        };
        let deliveries = self.ports.deliveries.clone();
        let audience = self.ports.audience.clone();
        Ok(tokio::spawn(async move {
            let rows = deliveries.claim_due(&request).await?;
            if rows.is_empty() {
                return Ok((rows, Vec::new()));
            }
            let contexts = audience.contexts(&rows).await?;
            Ok((rows, contexts))
        }))
    }

    /// Writes a group: the finished deliveries' store effects, then their results in one call,
    /// then marks `start` as started. Answers with the results and with the rows of `start`
    /// that are still leased to this worker (only those may be sent).
    async fn write_group(
        &self,
        mut group: Vec<Done>,
        start: Vec<Ready>,
    ) -> Result<(Vec<Done>, Vec<Ready>)> {
        let mut results = Vec::with_capacity(group.len());
        for done in &mut group {
            for effect in std::mem::take(&mut done.effects) {
                self.apply(effect).await;
            }
            results.push(done.result.clone());
        }
        if !results.is_empty() {
            self.ports.deliveries.record_results(&results).await?;
        }
        if start.is_empty() {
            return Ok((group, start));
        }
        let ids: Vec<RecipientId> = start.iter().map(|r| r.row.id).collect();
        let marked: BTreeSet<RecipientId> = self
            .ports
            .deliveries
            .mark_started(&self.settings.worker_id, &ids, self.ports.clock.now())
            .await?
            .into_iter()
            .collect();
        if marked.len() < start.len() {
            tracing::warn!(
                lost = start.len() - marked.len(),
                "not sending rows whose lease another worker took over"
            );
        }
        let start = start
            .into_iter()
            .filter(|r| marked.contains(&r.row.id))
            .collect();
        Ok((group, start))
    }

    /// The next shared send slot of a rate-shared channel, or `None` when the channel is
    /// paced in-process only. Slots are reserved from the [`SendBudget`] a few at a time, just
    /// before they are used; slots that went stale while this worker was busy are dropped
    /// rather than used late, so workers never bunch up and exceed the shared rate.
    async fn take_slot(&self, kind: ChannelKind) -> Result<Option<DateTime<Utc>>> {
        let (Some(budget), Some(pool)) = (&self.ports.budget, self.slots.get(&kind)) else {
            return Ok(None);
        };
        let rate = self.settings.shared_rates[&kind];
        // Rounded up: `rate` intervals never add up to less than the window.
        let window = Duration::from_secs(1) + self.settings.pacing_margin;
        let nanos = window.as_nanos().div_ceil(u128::from(rate));
        let interval = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let step = chrono::Duration::from_std(interval).unwrap_or_default();
        let mut slots = pool.lock().await;
        let now = self.ports.clock.now();
        while slots.front().is_some_and(|s| *s + step < now) {
            slots.pop_front();
        }
        if slots.is_empty() {
            let chunk = (rate / 10).clamp(1, 50);
            // On its own task: this runs while the batch loop may be writing results, and a
            // store with a single connection must not wait for a future nobody polls.
            let budget = budget.clone();
            let first =
                tokio::spawn(
                    async move { budget.reserve(kind.as_str(), interval, chunk, now).await },
                )
                .await
                .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))??;
            slots.extend((0..chunk).map(|i| first + step * i as i32));
        }
        Ok(slots.pop_front())
    }

    /// Pauses the broadcasts whose circuit breaker tripped during the last batch.
    async fn pause_tripped(&self) -> Result<()> {
        let tripped = self.breaker.lock().expect("breaker poisoned").tripped();
        for (id, reason) in tripped {
            tracing::warn!(broadcast = id, %reason, "circuit breaker tripped");
            match self.pause(id, Some(reason)).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            self.breaker.lock().expect("breaker poisoned").reset(id);
        }
        Ok(())
    }

    /// Pauses every running broadcast that sends on a channel which answered with a channel
    /// fault in the last batch (wrong credentials, refused TLS, invalid token), with the reason,
    /// and writes the pause to the audit log. Their rows stay pending, untried.
    async fn pause_faulted(&self) -> Result<()> {
        let faults = std::mem::take(&mut *self.faults.lock().expect("faults poisoned"));
        if faults.is_empty() {
            return Ok(());
        }
        let running = self
            .ports
            .broadcasts
            .list_broadcasts(&[BroadcastStatus::Running], 10_000)
            .await?;
        for (kind, message) in faults {
            let reason = format!(
                "paused: the {kind} channel failed for every recipient ({message}); fix its \
                 settings, then resume"
            );
            tracing::error!(channel = %kind, %reason, "channel fault");
            for b in running
                .iter()
                .filter(|b| b.channel_policy.channels().contains(&kind))
            {
                match self.pause(b.id, Some(reason.clone())).await {
                    Ok(_) => {}
                    Err(Error::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
                self.breaker.lock().expect("breaker poisoned").reset(b.id);
                self.audit(
                    "broadcast.pause",
                    b.id,
                    serde_json::json!({
                        "reason": reason,
                        "channel": kind.as_str(),
                        "cause": "channel_fault",
                    }),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Writes an entry of this worker to the audit log, when there is one; a failure is
    /// logged, not fatal (the change it records has happened).
    async fn audit(&self, action: &str, broadcast: BroadcastId, details: serde_json::Value) {
        let Some(log) = &self.ports.audit else {
            return;
        };
        let entry = AuditEntry {
            id: 0,
            actor: format!("worker:{}", self.settings.worker_id),
            action: action.to_owned(),
            target_type: "broadcast".to_owned(),
            target_id: Some(broadcast),
            details,
            at: self.ports.clock.now(),
        };
        if let Err(e) = log.record(entry).await {
            tracing::warn!(broadcast, action, error = %e, "could not write the audit log");
        }
    }

    fn has_fault(&self) -> bool {
        !self.faults.lock().expect("faults poisoned").is_empty()
    }

    /// Delivers one broadcast to the end: ticks until no row is open, waiting for retries that
    /// are not yet due. Returns when the broadcast is completed, paused or cancelled.
    pub async fn run_until_done(&self, id: BroadcastId) -> Result<DeliveryStats> {
        loop {
            let b = self.ports.broadcasts.get_broadcast(id).await?;
            if b.status != BroadcastStatus::Running {
                break;
            }
            let tick = self.round(Some(id), None).await?;
            if tick.claimed == 0 {
                if self.complete_if_done(id).await? {
                    self.publish(id, true).await?;
                    break;
                }
                tokio::time::sleep(self.settings.idle_poll).await;
            }
        }
        self.stats(id).await
    }

    /// The worker loop: launches scheduled broadcasts whose time has come and delivers every
    /// running broadcast, until `shutdown` completes. A batch in progress is finished and
    /// recorded before returning.
    pub async fn run_worker(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        // Poll once before working: signal handlers are installed on the first poll, so a
        // signal during the first batch stops the worker gracefully instead of killing it.
        if futures::poll!(&mut shutdown).is_ready() {
            return Ok(());
        }
        let (stop, stopping) = watch::channel(false);
        loop {
            // The round runs while `shutdown` is watched: on shutdown it stops claiming, hands
            // back rows not yet sent, and finishes (and records) the sends in flight.
            let round = self.work_round(Some(stopping.clone()));
            tokio::pin!(round);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut round => break outcome,
                    () = &mut shutdown, if !*stop.borrow() => {
                        let _ = stop.send(true);
                    }
                }
            };
            let idle = match outcome {
                Ok(did_work) => !did_work,
                Err(e) if matches!(e, Error::Unavailable(_)) => {
                    tracing::warn!(error = %e, "store unavailable; retrying");
                    true
                }
                Err(e) => return Err(e),
            };
            if *stop.borrow() {
                return Ok(());
            }
            if idle {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(self.settings.idle_poll) => {}
                }
            } else if futures::poll!(&mut shutdown).is_ready() {
                return Ok(());
            }
        }
    }

    /// One round of the worker loop: launches the scheduled broadcasts that are due, then
    /// delivers batches back to back for a couple of seconds (fewer when the queue runs dry).
    /// True when something was done.
    pub async fn work_once(&self) -> Result<bool> {
        self.work_round(None).await
    }

    async fn work_round(&self, stop: Option<watch::Receiver<bool>>) -> Result<bool> {
        let launched = self.launch_due().await?;
        let tick = self.round(None, stop).await?;
        if tick.claimed == 0 {
            for b in self
                .ports
                .broadcasts
                .list_broadcasts(&[BroadcastStatus::Running], 1000)
                .await?
            {
                self.complete_if_done(b.id).await?;
            }
        }
        Ok(launched > 0 || tick.claimed > 0)
    }

    /// Launches scheduled broadcasts whose time has come; returns how many.
    pub async fn launch_due(&self) -> Result<u64> {
        let now = self.ports.clock.now();
        let mut launched = 0;
        for b in self
            .ports
            .broadcasts
            .list_broadcasts(&[BroadcastStatus::Scheduled], 1000)
            .await?
        {
            let Some(at) = b.scheduled_at.filter(|at| *at <= now) else {
                continue;
            };
            let grace =
                chrono::Duration::from_std(self.settings.schedule_grace).unwrap_or_default();
            if now - at > grace {
                if b.status_reason.is_none() {
                    let reason = format!(
                        "missed its start time {at} by more than the grace period ({} s); \
                         launch or reschedule it",
                        self.settings.schedule_grace.as_secs()
                    );
                    tracing::warn!(broadcast = b.id, %reason, "not launching a stale broadcast");
                    let keep = [BroadcastStatus::Scheduled];
                    match self
                        .transition(b.id, &keep, BroadcastStatus::Scheduled, Some(reason))
                        .await
                    {
                        Ok(_) | Err(Error::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            {
                match self.launch(b.id).await {
                    Ok(_) => launched += 1,
                    // Another worker launched it first.
                    Err(Error::Conflict(_)) => {}
                    Err(e) => {
                        tracing::error!(broadcast = b.id, error = %e, "scheduled launch failed");
                        self.transition(
                            b.id,
                            &[BroadcastStatus::Scheduled],
                            BroadcastStatus::Failed,
                            Some(format!("scheduled launch failed: {e}")),
                        )
                        .await?;
                    }
                }
            }
        }
        Ok(launched)
    }

    /// Marks a running broadcast completed when no row is open; true when it did.
    pub async fn complete_if_done(&self, id: BroadcastId) -> Result<bool> {
        if self.ports.deliveries.open_count(id).await? > 0 {
            return Ok(false);
        }
        let change = StatusChange {
            from: vec![BroadcastStatus::Running],
            to: BroadcastStatus::Completed,
            at: self.ports.clock.now(),
            reason: None,
            freeze: None,
        };
        match self.ports.broadcasts.change_status(id, change).await {
            Ok(_) => {
                tracing::info!(broadcast = id, "completed");
                self.forget(id);
                Ok(true)
            }
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renders a claimed row into the message to send, or its final result when it cannot be
    /// sent (the template does not compile or render, the address is malformed).
    fn prepare(
        &self,
        row: Recipient,
        context: &RecipientContext,
        compiled: Option<Arc<Compiled>>,
    ) -> std::result::Result<Ready, Done> {
        let fail = |row: &Recipient, kind: ErrorKind, error: String| {
            let outcome = Outcome::Failed {
                at: self.ports.clock.now(),
                kind,
                error,
            };
            Done::early(self.result(row, outcome, false))
        };
        let Some(compiled) = compiled else {
            let error = format!(
                "the template of broadcast {} does not compile",
                row.broadcast_id
            );
            return Err(fail(&row, ErrorKind::Render, error));
        };
        let body = match self.body_for(&row, context, &compiled) {
            Ok(body) => body,
            Err((kind, error)) => return Err(fail(&row, kind, error)),
        };
        if let Err(e) = self.channel(row.channel) {
            return Err(fail(&row, ErrorKind::Permanent, e.to_string()));
        }
        let message = OutgoingMessage {
            broadcast_id: Some(row.broadcast_id),
            recipient_id: Some(row.id),
            user_id: Some(row.user_id),
            body,
        };
        Ok(Ready {
            row,
            message,
            compiled,
        })
    }

    fn result(&self, row: &Recipient, outcome: Outcome, uncertain: bool) -> DeliveryResult {
        DeliveryResult {
            recipient_id: row.id,
            worker_id: self.settings.worker_id.clone(),
            outcome,
            uncertain,
        }
    }

    /// The row handed back untried: pending, due now, no attempt and no error kind.
    fn released(&self, row: &Recipient, why: String) -> DeliveryResult {
        let outcome = Outcome::Released {
            next_attempt_at: self.ports.clock.now(),
            note: why,
        };
        self.result(row, outcome, false)
    }

    /// Why a row must not be sent now, if it must not: the worker is stopping, the lane's
    /// circuit breaker is open, or its channel has a fault.
    fn held_back(&self, row: &Recipient, stopping: bool) -> Option<String> {
        if stopping {
            return Some("held back: the worker is stopping".into());
        }
        let lane = (row.broadcast_id, row.channel);
        if self
            .breaker
            .lock()
            .expect("breaker poisoned")
            .is_tripped(lane)
        {
            return Some("held back: the channel's circuit breaker tripped".into());
        }
        self.faults
            .lock()
            .expect("faults poisoned")
            .get(&row.channel)
            .map(|fault| fault_note(row.channel, fault))
    }

    /// Sends one marked row and classifies the answer. The row holds its channel's in-flight
    /// place until the loop writes the result; the channel's send permit is released as soon
    /// as the send returns.
    async fn send(&self, ready: Ready, stop: Option<&watch::Receiver<bool>>) -> Done {
        let Ready {
            row,
            message,
            compiled,
        } = ready;
        let now = || self.ports.clock.now();
        let lane = (row.broadcast_id, row.channel);
        let mut effects = Vec::new();
        let done = |result: DeliveryResult, effects: Vec<Effect>| Done {
            result,
            in_flight: Some(row.channel),
            effects,
        };
        let sending = match self.permits.get(&row.channel) {
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        // Checked with the send permit held: sends queued behind a failing one see the trip,
        // and a stopping worker hands its rows back at once.
        let stopping = stop.is_some_and(|s| *s.borrow());
        if let Some(why) = self.held_back(&row, stopping) {
            return done(self.released(&row, why), effects);
        }
        match self.take_slot(row.channel).await {
            Ok(Some(slot)) => {
                let wait = (slot - self.ports.clock.now()).to_std().unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let why = format!("held back: no send slot: {e}");
                return done(self.released(&row, why), effects);
            }
        }
        let Ok(channel) = self.channel(row.channel) else {
            unreachable!("prepare checked the channel");
        };
        let sent = channel.send(&message).await;
        // The channel is free for the next message; the in-flight place stays taken until the
        // result is written.
        drop(sending);
        let result = match sent {
            Ok(delivered) => {
                self.breaker.lock().expect("breaker poisoned").record(
                    lane,
                    false,
                    self.limits(),
                    "",
                );
                if let Some(new_chat) = delivered.migrated_to {
                    effects.push(Effect::UpdateChat(row.user_id, new_chat));
                }
                let outcome = Outcome::Sent {
                    at: now(),
                    provider_message_id: delivered.provider_message_id,
                };
                self.result(&row, outcome, false)
            }
            Err(e) if e.kind == FailureKind::ChannelFault => {
                tracing::warn!(channel = %row.channel, error = %e.message, "channel fault");
                self.faults
                    .lock()
                    .expect("faults poisoned")
                    .entry(row.channel)
                    .or_insert_with(|| e.message.clone());
                let mut result = self.released(&row, fault_note(row.channel, &e.message));
                result.uncertain = e.outcome_unknown;
                result
            }
            Err(e) => {
                let counts = matches!(e.kind, FailureKind::Transient | FailureKind::Permanent);
                let message = e.message.clone();
                let uncertain = e.outcome_unknown;
                match (row.channel, e.kind) {
                    (ChannelKind::Telegram, FailureKind::Blocked) => {
                        effects.push(Effect::MarkBlocked(row.user_id));
                    }
                    (ChannelKind::Email, FailureKind::InvalidAddress) => {
                        effects.push(Effect::MarkBounced(row.user_id));
                    }
                    _ => {}
                }
                let outcome = self.outcome_of_failure(&row, e);
                if counts {
                    self.breaker.lock().expect("breaker poisoned").record(
                        lane,
                        true,
                        self.limits(),
                        &message,
                    );
                }
                if matches!(outcome, Outcome::Failed { .. })
                    && row.channel == ChannelKind::Telegram
                    && compiled.policy == ChannelPolicy::TelegramThenEmail
                {
                    effects.push(Effect::Fallback(
                        row.broadcast_id,
                        row.user_id,
                        row.registration_id,
                    ));
                }
                self.result(&row, outcome, uncertain)
            }
        };
        done(result, effects)
    }

    /// Applies a delivery's store update; a failure is logged, not fatal: the delivery result
    /// itself is what must be recorded.
    async fn apply(&self, effect: Effect) {
        let now = self.ports.clock.now();
        let (user, what, res) = match effect {
            Effect::MarkBlocked(u) => (
                u,
                "mark the user as blocked",
                self.ports.audience.mark_telegram_blocked(u, now).await,
            ),
            Effect::MarkBounced(u) => (
                u,
                "mark the address as bounced",
                self.ports.audience.mark_email_bounced(u, now).await,
            ),
            Effect::UpdateChat(u, chat) => (
                u,
                "store the migrated chat id",
                self.ports.audience.update_chat_id(u, chat).await,
            ),
            Effect::Fallback(b, u, r) => (
                u,
                "add the e-mail fallback",
                self.ports
                    .deliveries
                    .add_email_fallback(b, u, r, now)
                    .await
                    .map(|_| ()),
            ),
        };
        if let Err(e) = res {
            tracing::warn!(user, error = %e, "could not {what}");
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            consecutive: self.settings.breaker_consecutive,
            window: self.settings.breaker_window,
            ratio: self.settings.breaker_ratio,
        }
    }

    fn outcome_of_failure(&self, row: &Recipient, e: DeliveryError) -> Outcome {
        let now = self.ports.clock.now();
        let kind = e.kind.error_kind();
        let error = e.message;
        match e.kind {
            FailureKind::RateLimited { retry_after } => Outcome::Retry {
                next_attempt_at: now + chrono::Duration::from_std(retry_after).unwrap_or_default(),
                kind,
                error,
                count_attempt: false,
            },
            FailureKind::Transient => {
                let attempt = row.attempts + 1;
                if attempt >= self.settings.max_attempts {
                    Outcome::Failed {
                        at: now,
                        kind,
                        error: format!("{error} (gave up after {attempt} attempts)"),
                    }
                } else {
                    let delay = self.backoff.delay(attempt, row.id);
                    Outcome::Retry {
                        next_attempt_at: now
                            + chrono::Duration::from_std(delay).unwrap_or_default(),
                        kind,
                        error,
                        count_attempt: true,
                    }
                }
            }
            // `send` holds the row back itself; here for completeness.
            FailureKind::ChannelFault => Outcome::Released {
                next_attempt_at: now,
                note: format!("held back: channel fault: {error}"),
            },
            FailureKind::Blocked | FailureKind::InvalidAddress | FailureKind::Permanent => {
                Outcome::Failed {
                    at: now,
                    kind,
                    error,
                }
            }
        }
    }

    fn body_for(
        &self,
        row: &Recipient,
        context: &RecipientContext,
        compiled: &Compiled,
    ) -> std::result::Result<MessageBody, (ErrorKind, String)> {
        let env = self.env(&compiled.broadcast_name);
        let url = self.unsubscribe_url(row.user_id);
        let render_err = |e: TemplateError| (ErrorKind::Render, e.to_string());
        let bad_address = |e: broadcast_domain::ParseError| (ErrorKind::InvalidAddress, e.0);
        Ok(match row.channel {
            ChannelKind::Telegram => MessageBody::Telegram {
                chat_id: TelegramChatId::parse(&row.address).map_err(bad_address)?,
                message: compiled
                    .template
                    .render_telegram(context, &env, url.as_deref())
                    .map_err(render_err)?,
            },
            ChannelKind::Email => MessageBody::Email {
                to: EmailAddress::parse(&row.address).map_err(bad_address)?,
                to_name: Some(context.user.full_name()).filter(|n| !n.is_empty()),
                message: compiled
                    .template
                    .render_email(context, &env, url.as_deref())
                    .map_err(render_err)?,
                unsubscribe_url: url,
            },
        })
    }

    fn channel(&self, kind: ChannelKind) -> Result<&Arc<dyn Channel>> {
        self.ports
            .channels
            .get(kind)
            .ok_or_else(|| Error::Invalid(format!("no {kind} channel is configured")))
    }

    fn env(&self, broadcast_name: &str) -> RenderEnv {
        RenderEnv {
            broadcast_name: broadcast_name.to_owned(),
            app_name: self.settings.app_name.clone(),
            current_date: self.ports.clock.now().date_naive(),
        }
    }

    fn unsubscribe_url(&self, user: UserId) -> Option<String> {
        self.ports.links.as_ref().and_then(|l| l.url_for(user))
    }

    async fn content_of(&self, b: &Broadcast) -> Result<TemplateContent> {
        if let Some(frozen) = &b.frozen_template {
            return Ok(frozen.clone());
        }
        match b.template_id {
            Some(t) => Ok(self.ports.templates.get_template(t).await?.content),
            None => Err(Error::Invalid(format!(
                "broadcast {} has no template (it was deleted before launch)",
                b.id
            ))),
        }
    }

    async fn compiled_for(&self, id: BroadcastId) -> Result<Arc<Compiled>> {
        if let Some(c) = self
            .compiled
            .lock()
            .expect("compiled cache poisoned")
            .get(&id)
        {
            return Ok(c.clone());
        }
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = Arc::new(Compiled {
            template: self.ports.renderer.compile(&content)?,
            broadcast_name: b.name,
            policy: b.channel_policy,
        });
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .insert(id, compiled.clone());
        Ok(compiled)
    }

    fn is_compiled(&self, id: BroadcastId) -> bool {
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .contains_key(&id)
    }

    fn forget(&self, id: BroadcastId) {
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .remove(&id);
        self.published
            .lock()
            .expect("publish times poisoned")
            .remove(&id);
    }

    /// Sends a progress event to the subscribers, if any: always when `force`, otherwise at
    /// most once per [`PUBLISH_EVERY`] per broadcast (each event reads the statistics).
    async fn publish(&self, id: BroadcastId, force: bool) -> Result<()> {
        if self.events.receiver_count() == 0 {
            return Ok(());
        }
        {
            let now = std::time::Instant::now();
            let mut last = self.published.lock().expect("publish times poisoned");
            if !force && last.get(&id).is_some_and(|t| now < *t + PUBLISH_EVERY) {
                return Ok(());
            }
            last.insert(id, now);
        }
        let progress = self.progress(id).await?;
        // No receiver left is not an error: nobody is watching.
        let _ = self.events.send(progress);
        Ok(())
    }
}
