//! Broadcast orchestration: launch a broadcast, deliver it with workers, retry what is
//! transient, and report progress and statistics.
//!
//! The orchestrator sees the world only through the port traits of [`broadcast_domain`]: stores,
//! the audience source, the renderer, channels and a clock. It has no database, template engine
//! or network code of its own, so a program that already has its users somewhere (a bot with its
//! own database, say) embeds it with **only `broadcast-orchestrator` and `broadcast-domain`** as
//! dependencies and plugs in its own pieces. The binaries of this workspace plug in the sea-orm
//! store (`broadcast-store`), the SQL audience source (`broadcast-filter`), the tera renderer
//! (`broadcast-render`) and the Telegram, e-mail and outbox channels (`broadcast-channels`).
//!
//! # What to implement
//!
//! Everything is handed over as `Arc<dyn Trait>` in a [`Ports`] value:
//!
//! | Port (in `broadcast_domain`) | What it does | Ready-made |
//! |---|---|---|
//! | `TemplateStore` | stored message templates | [`memory::MemoryStore`], `broadcast_store::Store` |
//! | `BroadcastStore` | broadcasts and their status changes (compare-and-set) | the same |
//! | `DeliveryStore` | the delivery ledger, which is also the queue: claims with leases, results in batches, counts | the same |
//! | `AudienceStore` | users, their flags (blocked, unsubscribed, bounced), template contexts | the same |
//! | `AudienceSource` | an `AudienceFilter` to recipient rows; counts without loading | [`memory::MemoryStore`], `broadcast_store::Store` (running the SQL that `broadcast-filter` compiles) |
//! | `Renderer` | compiles a template once per broadcast, renders it per recipient | `broadcast_render::TeraRenderer` |
//! | `Channel` | sends one message and classifies failures (transient, permanent, blocked, invalid address, rate limited) | `broadcast_channels` |
//! | `Clock` | the time (tests move it by hand) | `broadcast_domain::SystemClock` |
//! | `UnsubscribeLinks` (optional) | the per-user unsubscribe URL of e-mails | `broadcast_channels::SignedUnsubscribeLinks` |
//! | `SendBudget` (optional) | a send rate shared by several worker processes | [`memory::MemoryStore`], `broadcast_store::Store` |
//!
//! A custom channel is usually the first thing to write. The orchestrator decides retries from
//! the [`FailureKind`](broadcast_domain::FailureKind) of the error, never from its text:
//! `Transient` is retried with exponential backoff up to [`Settings::max_attempts`],
//! `RateLimited` waits `retry_after` without using an attempt, `Blocked` and `InvalidAddress`
//! fail at once and flag the user, `Permanent` fails at once.
//!
//! # Building the ports and sending a broadcast
//!
//! This example runs as a doctest: [`memory::MemoryStore`] plays every store and the audience,
//! a channel prints what it would send, and a tiny renderer fills in `{{ first_name }}`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use broadcast_domain::*;
//! use broadcast_orchestrator::memory::MemoryStore;
//! use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
//!
//! /// Prints each message instead of sending it.
//! #[derive(Debug)]
//! struct Printer;
//!
//! #[async_trait]
//! impl Channel for Printer {
//!     fn kind(&self) -> ChannelKind {
//!         ChannelKind::TELEGRAM
//!     }
//!     fn describe(&self) -> String {
//!         "stdout".into()
//!     }
//!     async fn send(&self, m: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
//!         match &m.body {
//!             MessageBody::Chat { to, message } => {
//!                 println!("to {to}: {}", message.text);
//!                 Ok(Delivered::default())
//!             }
//!             MessageBody::Email { .. } => Err(DeliveryError::permanent("no e-mail here")),
//!         }
//!     }
//! }
//!
//! /// Replaces `{{ first_name }}`; knows no other variable.
//! #[derive(Debug)]
//! struct FirstName;
//! #[derive(Debug)]
//! struct Compiled(TemplateContent);
//!
//! impl Renderer for FirstName {
//!     fn compile(&self, c: &TemplateContent) -> Result<Box<dyn CompiledTemplate>, TemplateError> {
//!         Ok(Box::new(Compiled(c.clone())))
//!     }
//!     fn validate(&self, _: &TemplateContent) -> Vec<TemplateError> {
//!         Vec::new()
//!     }
//!     fn variables(&self) -> Vec<VariableInfo> {
//!         Vec::new()
//!     }
//! }
//!
//! impl CompiledTemplate for Compiled {
//!     fn render_telegram(
//!         &self,
//!         r: &RecipientContext,
//!         _: &RenderEnv,
//!         _: Option<&str>,
//!     ) -> Result<TelegramMessage, TemplateError> {
//!         let text = self.0.telegram_text.clone().unwrap_or_default();
//!         Ok(TelegramMessage {
//!             text: text.replace("{{ first_name }}", &r.user.first_name),
//!             parse_mode: ParseMode::Plain,
//!             link_preview: false,
//!             media: Vec::new(),
//!             buttons: Vec::new(),
//!         })
//!     }
//!     fn render_email(
//!         &self,
//!         _: &RecipientContext,
//!         _: &RenderEnv,
//!         _: Option<&str>,
//!     ) -> Result<EmailMessage, TemplateError> {
//!         unreachable!("the broadcast below sends on Telegram only")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new());
//! let ports = Ports {
//!     templates: store.clone(),
//!     broadcasts: store.clone(),
//!     deliveries: store.clone(),
//!     audience: store.clone(),
//!     source: store.clone(),
//!     renderer: Arc::new(FirstName),
//!     channels: Channels::new().with(Arc::new(Printer)),
//!     clock: Arc::new(SystemClock),
//!     links: None,
//!     budget: None,
//!     audit: None,
//!     admins: None,
//!     media: None,
//! };
//! let orchestrator = Orchestrator::new(ports, Settings::default());
//!
//! // The audience: two users, one of them without a Telegram chat.
//! let user = |id: &str, name: &str, chat: Option<i64>| NewUser {
//!     line: 0,
//!     external_id: id.into(),
//!     telegram_chat_id: chat.map(|c| TelegramChatId::new(c).unwrap()),
//!     email: None,
//!     first_name: name.into(),
//!     last_name: String::new(),
//!     username: None,
//!     language: None,
//!     country: None,
//!     city: None,
//!     attributes: Attributes::new(),
//!     telegram_blocked: false,
//!     email_unsubscribed: false,
//! };
//! let users = vec![user("a", "Ada", Some(42)), user("b", "Bo", None)];
//! // Every change names who makes it, for the audit log (when the ports have one).
//! let me = Actor::new("docs")?;
//! orchestrator.import_users(&me, "inline", users).await?;
//!
//! let template = orchestrator
//!     .create_template(&me, NewTemplate {
//!         name: TemplateName::parse("hello")?,
//!         description: String::new(),
//!         content: TemplateContent {
//!             telegram_text: Some("Hi {{ first_name }}!".into()),
//!             parse_mode: ParseMode::Plain,
//!             ..TemplateContent::default()
//!         },
//!     })
//!     .await?;
//! let broadcast = orchestrator
//!     .create_broadcast(&me, NewBroadcast {
//!         name: "Hello".into(),
//!         template_id: template.id,
//!         channel_policy: ChannelPolicy::TELEGRAM,
//!         filter: AudienceFilter::default(),
//!         scheduled_at: None,
//!         created_by: None,
//!     })
//!     .await?;
//!
//! orchestrator.launch(&me, broadcast.id).await?; // freezes the template, writes the ledger rows
//! let stats = orchestrator.run_until_done(broadcast.id).await?; // prints "to 42: Hi Ada!"
//! assert_eq!(stats.count(DeliveryStatus::Sent), 1);
//! assert_eq!(stats.by_skip_reason[&SkipReason::NoTelegram], 1); // Bo has no chat
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` goes further: its channel POSTs JSON to a webhook served on 127.0.0.1 and
//! it checks the statistics against what the webhook received (`cargo run -p
//! broadcast-orchestrator --example embed`).
//!
//! # Running a worker
//!
//! [`Orchestrator::run_until_done`] delivers one broadcast in the calling task.
//! [`Orchestrator::run_worker`] is the long-running loop: it launches scheduled broadcasts when
//! their time comes and delivers every running broadcast, until the future you pass completes;
//! the batch in flight is finished and recorded before it returns. Any number of workers may
//! share one store when the store's claims are exclusive (leases); give each a unique
//! [`Settings::worker_id`].
//!
//! ```no_run
//! # async fn worker(orchestrator: broadcast_orchestrator::Orchestrator) -> broadcast_domain::Result<()> {
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! orchestrator.run_worker(shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! # Following progress
//!
//! [`Orchestrator::subscribe`] gives a `tokio::sync::broadcast` receiver of [`Progress`]
//! snapshots, published after every processed batch and every status change made through the
//! orchestrator. A slow receiver misses snapshots (it gets `Lagged`) rather than slowing
//! delivery down; [`Orchestrator::progress`] reads the current state at any time.
//!
//! ```no_run
//! # async fn follow(orchestrator: &broadcast_orchestrator::Orchestrator, id: i64) {
//! use tokio::sync::broadcast::error::RecvError;
//!
//! let mut events = orchestrator.subscribe();
//! loop {
//!     match events.recv().await {
//!         Ok(p) if p.broadcast_id == id => {
//!             println!("{}/{} done, {} sent, {} failed", p.done, p.total, p.sent, p.failed);
//!             if p.status.is_final() {
//!                 break;
//!             }
//!         }
//!         Ok(_) | Err(RecvError::Lagged(_)) => {}
//!         Err(RecvError::Closed) => break,
//!     }
//! }
//! # }
//! ```
//!
//! # Errors
//!
//! Every method returns [`broadcast_domain::Result`]. [`broadcast_domain::Error`] groups
//! failures by what the caller should do: `NotFound`, `Invalid`, `Conflict` (a refused status
//! change, e.g. resuming a running broadcast) and `Template` are the caller's to fix
//! (`is_invalid_input()`); `Unavailable` is worth retrying later; `Internal` is a bug.

#![warn(missing_docs)]

mod backoff;
mod breaker;
mod engine;
pub mod memory;
mod progress;
mod settings;

pub use backoff::Backoff;
pub use engine::{Channels, LaunchReport, Orchestrator, Ports, Preview, TestTarget, TickReport};
pub use progress::Progress;
pub use settings::{DEFAULT_CONCURRENCY, Settings};
