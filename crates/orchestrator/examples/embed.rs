//! Embedding the orchestrator in another Rust program, with nothing but `broadcast-orchestrator`
//! and `broadcast-domain` (plus tokio and serde_json, which the program has anyway).
//!
//! The program brings its own pieces:
//! - the audience: an in-memory [`MemoryStore`] filled with a few users (a real program would
//!   implement `AudienceStore` and `AudienceSource` over its own database);
//! - a channel: [`WebhookChannel`] POSTs every message as JSON to a webhook, here a tiny HTTP
//!   server on 127.0.0.1 started by the example itself, which counts what it receives;
//! - a renderer: [`Braces`] replaces `{{ first_name }}` and `{{ broadcast_name }}`.
//!
//! It launches a broadcast, follows its progress, runs it to the end and prints the statistics;
//! it exits with 1 when they do not match what the webhook received.
//!
//! ```sh
//! cargo run -p broadcast-orchestrator --example embed
//! ```

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use broadcast_domain::{
    Actor, AudienceFilter, ChannelKind, ChannelPolicy, CompiledTemplate, Delivered, DeliveryError,
    DeliveryStats, DeliveryStatus, EmailMessage, FailureKind, MessageBody, NewBroadcast,
    NewTemplate, NewUser, OutgoingMessage, ParseMode, RecipientContext, RenderEnv, Renderer,
    SkipReason, SystemClock, TelegramChatId, TelegramMessage, TemplateContent, TemplateError,
    TemplateErrorKind, TemplateName, TemplatePart, VariableInfo,
};
use broadcast_orchestrator::memory::MemoryStore;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The chat whose webhook answers `410 Gone`: the user left, like a blocked bot.
const GONE_CHAT: i64 = 4004;

/// What a run did.
#[derive(Debug)]
pub(crate) struct Report {
    /// The broadcast's statistics.
    pub(crate) stats: DeliveryStats,
    /// The JSON bodies the webhook accepted.
    pub(crate) received: Vec<serde_json::Value>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(report) => {
            println!(
                "sent {}, failed {}, skipped {}; the webhook accepted {} messages",
                report.stats.count(DeliveryStatus::Sent),
                report.stats.count(DeliveryStatus::Failed),
                report.stats.count(DeliveryStatus::Skipped),
                report.received.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the orchestrator, sends one broadcast through the webhook and checks the outcome.
pub(crate) async fn run() -> Result<Report, Box<dyn std::error::Error>> {
    // 1. The webhook receiver, on a free port of 127.0.0.1.
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, received.clone()));

    // 2. The ports: one MemoryStore plays every store and the audience source.
    let store = Arc::new(MemoryStore::new());
    let ports = Ports {
        templates: store.clone(),
        broadcasts: store.clone(),
        deliveries: store.clone(),
        audience: store.clone(),
        source: store.clone(),
        renderer: Arc::new(Braces),
        channels: Channels::new().with(Arc::new(WebhookChannel {
            url: format!("http://{addr}/hook"),
            addr: addr.to_string(),
        })),
        clock: Arc::new(SystemClock),
        links: None,
        budget: None,
        audit: Some(store.clone()),
        admins: None,
        media: None,
    };
    let settings = Settings {
        app_name: "Embed example".to_owned(),
        idle_poll: Duration::from_millis(10),
        ..Settings::default()
    };
    let orchestrator = Orchestrator::new(ports, settings);

    // 3. The audience: four users with a chat, one without (skipped: no_telegram).
    let users = [
        ("ada", "Ada", Some(1001)),
        ("bo", "Bo", Some(1002)),
        ("cy", "Cy", Some(1003)),
        ("dee", "Dee", Some(GONE_CHAT)),
        ("eve", "Eve", None),
    ];
    let rows = users
        .iter()
        .map(
            |(id, name, chat)| -> Result<NewUser, Box<dyn std::error::Error>> {
                Ok(NewUser {
                    line: 0,
                    external_id: (*id).to_owned(),
                    telegram_chat_id: chat.map(TelegramChatId::new).transpose()?,
                    email: None,
                    first_name: (*name).to_owned(),
                    last_name: String::new(),
                    username: None,
                    language: None,
                    country: None,
                    city: None,
                    attributes: Default::default(),
                    telegram_blocked: false,
                    email_unsubscribed: false,
                })
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    // Every change names who makes it; the audit log (the store here) records it.
    let me = Actor::new("embed-example")?;
    orchestrator.import_users(&me, "inline rows", rows).await?;

    // 4. A template and a broadcast to everyone, on the Telegram-kind channel (the webhook).
    let template = orchestrator
        .create_template(
            &me,
            NewTemplate {
                name: TemplateName::parse("welcome")?,
                description: "greets everyone".to_owned(),
                content: TemplateContent {
                    telegram_text: Some(
                        "Hi {{ first_name }}, welcome to {{ broadcast_name }}!".into(),
                    ),
                    parse_mode: ParseMode::Plain,
                    link_preview: false,
                    telegram_media: Vec::new(),
                    telegram_buttons: Vec::new(),
                    email_subject: None,
                    email_html: None,
                    email_text: None,
                },
            },
        )
        .await?;
    let broadcast = orchestrator
        .create_broadcast(
            &me,
            NewBroadcast {
                name: "the club".to_owned(),
                template_id: template.id,
                channel_policy: ChannelPolicy::TELEGRAM,
                filter: AudienceFilter::default(),
                scheduled_at: None,
                created_by: Some("embed example".to_owned()),
            },
        )
        .await?;

    // 5. Follow progress, launch, deliver to the end.
    let mut progress = orchestrator.subscribe();
    let watcher = tokio::spawn(async move {
        while let Ok(p) = progress.recv().await {
            println!(
                "progress: {}/{} done, {} sent, {} failed ({})",
                p.done, p.total, p.sent, p.failed, p.status
            );
            if p.status.is_final() {
                break;
            }
        }
    });
    let launched = orchestrator.launch(&me, broadcast.id).await?;
    println!("queued {:?}", launched.materialised.queued);
    let stats = orchestrator.run_until_done(broadcast.id).await?;
    // The last snapshot says `completed`; do not wait for ever if it was missed.
    let _ = tokio::time::timeout(Duration::from_secs(2), watcher).await;

    // 6. The statistics must agree with what the webhook saw.
    let received = received
        .lock()
        .map_err(|_| "webhook state poisoned")?
        .clone();
    let expected = (3, 1, 1);
    let got = (
        stats.count(DeliveryStatus::Sent),
        stats.count(DeliveryStatus::Failed),
        stats
            .by_skip_reason
            .get(&SkipReason::NoTelegram)
            .copied()
            .unwrap_or(0),
    );
    if got != expected || received.len() as u64 != got.0 {
        return Err(format!(
            "expected (sent, failed, skipped) = {expected:?}, got {got:?}; \
             the webhook accepted {}",
            received.len()
        )
        .into());
    }
    for body in &received {
        let text = body["text"].as_str().unwrap_or_default();
        if !text.starts_with("Hi ") || !text.ends_with("welcome to the club!") {
            return Err(format!("the webhook got an unexpected text: {text}").into());
        }
    }
    Ok(Report { stats, received })
}

/// A channel that POSTs `{"chat_id", "text", "broadcast_id", "recipient_id"}` to a webhook.
#[derive(Debug)]
struct WebhookChannel {
    /// Where to POST.
    url: String,
    /// `host:port` of the webhook.
    addr: String,
}

#[async_trait]
impl broadcast_domain::Channel for WebhookChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::TELEGRAM
    }

    fn describe(&self) -> String {
        format!("webhook ({})", self.url)
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Chat { to, message: m } = &message.body else {
            return Err(DeliveryError::permanent(
                "the webhook takes chat messages only",
            ));
        };
        let body = serde_json::json!({
            "chat_id": to,
            "text": m.text,
            "broadcast_id": message.broadcast_id,
            "recipient_id": message.recipient_id,
        })
        .to_string();
        // A network error is worth retrying; the answer's status says the rest.
        let (status, reply) = post(&self.addr, "/hook", &body)
            .await
            .map_err(|e| DeliveryError::transient(format!("webhook unreachable: {e}")))?;
        match status {
            200..=299 => Ok(Delivered {
                provider_message_id: Some(reply),
                migrated_to: None,
            }),
            410 => Err(DeliveryError::new(FailureKind::Blocked, "the chat is gone")),
            429 => Err(DeliveryError::new(
                FailureKind::RateLimited {
                    retry_after: Duration::from_secs(1),
                },
                "webhook says: too many requests",
            )),
            500..=599 => Err(DeliveryError::transient(format!(
                "webhook answered {status}"
            ))),
            _ => Err(DeliveryError::permanent(format!(
                "webhook answered {status}"
            ))),
        }
    }
}

/// A minimal HTTP/1.1 POST: one request per connection; returns the status and the body.
async fn post(addr: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let reply = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, reply))
}

/// The webhook: accepts POSTs of JSON, keeps them, answers with a message id (or `410 Gone` for
/// [`GONE_CHAT`]).
async fn serve(listener: TcpListener, received: Arc<Mutex<Vec<serde_json::Value>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = received.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &received).await {
                eprintln!("webhook: {e}");
            }
        });
    }
}

async fn answer(
    stream: TcpStream,
    received: &Mutex<Vec<serde_json::Value>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let is_post = line.starts_with("POST ");
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let (status, reply) = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) if is_post && json["chat_id"].as_str() == Some(&GONE_CHAT.to_string()) => {
            ("410 Gone", String::new())
        }
        Ok(json) if is_post => {
            let mut all = received
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            all.push(json);
            ("200 OK", format!("msg-{}", all.len()))
        }
        _ => ("400 Bad Request", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    reader.get_mut().write_all(response.as_bytes()).await
}

/// A renderer that knows two variables: `{{ first_name }}` and `{{ broadcast_name }}`.
#[derive(Debug)]
struct Braces;

/// A template checked by [`Braces`].
#[derive(Debug)]
struct BracesTemplate(TemplateContent);

const KNOWN: [&str; 2] = ["first_name", "broadcast_name"];

fn fill(source: &str, recipient: &RecipientContext, env: &RenderEnv) -> String {
    source
        .replace("{{ first_name }}", &recipient.user.first_name)
        .replace("{{ broadcast_name }}", &env.broadcast_name)
}

impl Renderer for Braces {
    fn compile(
        &self,
        content: &TemplateContent,
    ) -> Result<Box<dyn CompiledTemplate>, TemplateError> {
        match self.validate(content).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(Box::new(BracesTemplate(content.clone()))),
        }
    }

    fn validate(&self, content: &TemplateContent) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        for part in TemplatePart::ALL {
            let Some(source) = content.part(*part) else {
                continue;
            };
            for chunk in source.split("{{").skip(1) {
                let name = chunk.split("}}").next().unwrap_or_default().trim();
                if !KNOWN.contains(&name) {
                    errors.push(TemplateError {
                        part: *part,
                        kind: TemplateErrorKind::UnknownVariable {
                            name: name.to_owned(),
                            line: None,
                            column: None,
                            known: KNOWN.iter().map(|k| (*k).to_owned()).collect(),
                        },
                    });
                }
            }
        }
        errors
    }

    fn variables(&self) -> Vec<VariableInfo> {
        KNOWN
            .iter()
            .map(|name| VariableInfo {
                name: (*name).to_owned(),
                description: format!("the {}", name.replace('_', " ")),
            })
            .collect()
    }
}

impl CompiledTemplate for BracesTemplate {
    fn render_telegram(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        _unsubscribe_url: Option<&str>,
    ) -> Result<TelegramMessage, TemplateError> {
        Ok(TelegramMessage {
            text: fill(
                self.0.telegram_text.as_deref().unwrap_or_default(),
                recipient,
                env,
            ),
            parse_mode: self.0.parse_mode,
            link_preview: self.0.link_preview,
            media: Vec::new(),
            buttons: Vec::new(),
        })
    }

    fn render_email(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        _unsubscribe_url: Option<&str>,
    ) -> Result<EmailMessage, TemplateError> {
        let part = |p: &Option<String>| p.as_deref().map(|s| fill(s, recipient, env));
        Ok(EmailMessage {
            subject: part(&self.0.email_subject).unwrap_or_default(),
            html: part(&self.0.email_html),
            text: part(&self.0.email_text),
        })
    }
}
