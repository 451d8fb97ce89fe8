//! A fake Telegram Bot API server (axum on 127.0.0.1, started in-process in milliseconds).
//!
//! It answers `getMe`, `sendMessage`, and `sendPhoto`, `sendVideo`, `sendAnimation` and
//! `sendDocument` (JSON, form, multipart or query parameters) the way Telegram does,
//! with Telegram's exact error descriptions (teloxide matches them by text): 401 for a wrong
//! token, 400 "chat not found", 403 "bot was blocked by the user", 429 with `retry_after`, 400
//! with `migrate_to_chat_id`, 500 for chats set to fail. It records every accepted message and
//! every 429 for the test to inspect.
//!
//! It enforces Telegram's documented limits as strictly as they are written, counted at arrival
//! (the instant the handler takes the request) in *any* sliding window, with no tolerance. By
//! default ([`FakeTelegramConfig`]): at most 30 messages per bot in any 1 s (1000 for requests
//! with `allow_paid_broadcast`, which are counted apart), at most 1 per chat in any 1 s, and at
//! most 20 per group (negative id) in any 60 s. A request over a limit gets 429 `Too Many Requests: retry after N`, N being the
//! whole seconds until the refusing window admits one more; refused requests are not counted.
//!
//! Media are uploaded (a multipart file part, named by the field or by `attach://<part>`) or sent
//! by a `file_id` the fake gave an earlier upload; the fake answers with a `file_id` as Telegram
//! does, refuses unknown, expired ([`FakeTelegram::expire_file_ids`]) or mismatched ids (400
//! "wrong file identifier/HTTP URL specified", "type of file mismatch"), photos that are not
//! JPEG, PNG or WebP (`IMAGE_PROCESS_FAILED`), photos over 10 MB and other files over 50 MB,
//! and captions over 1024 characters; each [`SentMessage::media`] says whether it was an upload.
//! An inline keyboard (`reply_markup`) is checked as Telegram does: buttons with a label and
//! exactly one action, URLs that are `http(s)` with a host or `tg:` (else `BUTTON_URL_INVALID`),
//! at most 8 buttons in a row and 100 in all.
//!
//! To test what a client does when the outcome of a request is unknown, a chat can be set to
//! [`ChatBehavior::AcceptThenDrop`] (or every k-th message dropped with
//! [`FakeTelegramConfig::drop_every`]): the message is accepted and recorded, then the
//! connection is closed without an answer.
//!
//! ```no_run
//! # async fn demo() {
//! use broadcast_testkit::telegram::{ChatBehavior, FakeTelegram};
//! let fake = FakeTelegram::start().await;
//! fake.set_chat(42, ChatBehavior::Blocked);
//! // point the bot at fake.api_url() with fake.token() ...
//! assert!(fake.messages().is_empty());
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

/// Settings of the fake server.
#[derive(Debug, Clone)]
pub struct FakeTelegramConfig {
    /// The only token accepted; others get 401 "Unauthorized".
    pub token: String,
    /// Whether the limits below are enforced at all.
    pub enforce_limits: bool,
    /// Most messages the bot may send in any window of 1 s (0 counts as 1).
    pub per_second: u32,
    /// Most messages with `allow_paid_broadcast` in any window of 1 s (0 counts as 1); they are
    /// counted apart from the others.
    pub paid_per_second: u32,
    /// One message per chat in any window of this length (private chats and groups alike);
    /// zero turns the per-chat limit off.
    pub private_chat_interval: Duration,
    /// Most messages to one group (negative id) in any window of 60 s (0 counts as 1).
    pub group_per_minute: u32,
    /// When `Some(k)` (k > 0), every k-th accepted message (counted server-wide) is recorded
    /// and then its connection closed without an answer, as with
    /// [`ChatBehavior::AcceptThenDrop`].
    pub drop_every: Option<u32>,
    /// The distance to the server: each `sendMessage` is counted this long after it reached
    /// the fake and answered this long after it was counted, each way taking between half and
    /// one and a half times it (a fixed pseudo-random sequence), so that arrivals jitter as
    /// they do over a real network. Zero (the default) answers at once.
    pub one_way_delay: Duration,
}

impl Default for FakeTelegramConfig {
    fn default() -> Self {
        Self {
            token: "123456:TEST-token_abcdefghijklmnopqrstuvwxyz".to_owned(),
            enforce_limits: true,
            per_second: 30,
            paid_per_second: 1000,
            private_chat_interval: Duration::from_secs(1),
            group_per_minute: 20,
            drop_every: None,
            one_way_delay: Duration::ZERO,
        }
    }
}

/// How the fake treats messages to one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatBehavior {
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 403 "Forbidden: user is deactivated".
    Deactivated,
    /// 403 "Forbidden: bot was kicked from the supergroup chat".
    Kicked,
    /// 400 "Bad Request: chat not found".
    NotFound,
    /// 500 "Internal Server Error" this many more times, then accepted.
    FailTimes(u32),
    /// 400 with `migrate_to_chat_id`; messages to the new id are accepted.
    MigrateTo(i64),
    /// 429 with this `retry_after` (seconds) once; until it has passed every request to the bot
    /// gets 429 too, as Telegram does.
    RateLimitOnce(u32),
    /// The next this many messages are accepted (recorded, counted against the limits) but
    /// their connection is closed without an answer, so the client sees a network error after
    /// sending the request and cannot know the outcome; then the chat is ordinary again.
    AcceptThenDrop(u32),
    /// Any answer: HTTP status / `error_code` and description, every time.
    Error {
        /// `error_code` and HTTP status.
        code: u16,
        /// Telegram's description.
        description: String,
    },
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The id the fake gave it (unique per server).
    pub message_id: i64,
    /// Chat it was sent to.
    pub chat_id: i64,
    /// Text exactly as received (the caption of a medium).
    pub text: String,
    /// The medium of `sendPhoto`, `sendVideo`, `sendAnimation` or `sendDocument`.
    pub media: Option<SentMedia>,
    /// The URL buttons of `reply_markup.inline_keyboard`, rows of (label, URL).
    pub buttons: Vec<Vec<(String, String)>>,
    /// `parse_mode` as received (`"HTML"`, `"MarkdownV2"`), if any.
    pub parse_mode: Option<String>,
    /// Whether `link_preview_options.is_disabled` (or the old `disable_web_page_preview`) was set.
    pub link_preview_disabled: bool,
    /// Whether `allow_paid_broadcast` was set.
    pub paid_broadcast: bool,
    /// Whether the fake closed the connection instead of answering (see
    /// [`ChatBehavior::AcceptThenDrop`]).
    pub dropped: bool,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, wall clock.
    pub received_at: SystemTime,
}

/// The medium of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMedia {
    /// `photo`, `video`, `animation` or `document`.
    pub kind: &'static str,
    /// The `file_id` it was sent with, or the one the fake gave the upload.
    pub file_id: String,
    /// True when the bytes came with the request; false for a `file_id`.
    pub uploaded: bool,
    /// The file name of the upload, if it had one.
    pub file_name: Option<String>,
    /// Size of the uploaded bytes (of the first upload, for a `file_id`).
    pub size: usize,
}

/// A 429 the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Chat of the refused request, when it named one.
    pub chat_id: Option<i64>,
    /// `retry_after` sent, seconds.
    pub retry_after: u32,
    /// True when the fake's limits refused it; false for a configured [`ChatBehavior`] or the
    /// hold that follows one.
    pub enforced: bool,
    /// When.
    pub at: Instant,
}

/// A running fake Bot API server; stops when dropped.
#[derive(Debug)]
pub struct FakeTelegram {
    addr: SocketAddr,
    state: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeTelegram {
    /// Starts a server with the default settings on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_with(FakeTelegramConfig::default()).await
    }

    /// Starts a server with these settings on a free port of 127.0.0.1.
    pub async fn start_with(config: FakeTelegramConfig) -> Self {
        Self::start_on(config, 0)
            .await
            .expect("binding 127.0.0.1:0 works")
    }

    /// Starts a server on the given port of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(config: FakeTelegramConfig, port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared {
            started: Instant::now(),
            inner: Mutex::new(Inner::new()),
            config,
            trips: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/_fake/stats", get(stats))
            .route("/{bot}/{method}", any(api))
            .with_state(Arc::clone(&state));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                eprintln!("fake Telegram server stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give the bot (`TELEGRAM_API_URL`), e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// Sets how messages to `chat_id` are answered.
    pub fn set_chat(&self, chat_id: i64, behavior: ChatBehavior) {
        self.state.lock().behaviors.insert(chat_id, behavior);
    }

    /// Makes `chat_id` an ordinary chat again.
    pub fn clear_chat(&self, chat_id: i64) {
        self.state.lock().behaviors.remove(&chat_id);
    }

    /// Every accepted message, in arrival order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.state.lock().messages.clone()
    }

    /// Accepted messages to one chat, in arrival order.
    pub fn messages_to(&self, chat_id: i64) -> Vec<SentMessage> {
        let inner = self.state.lock();
        inner
            .messages
            .iter()
            .filter(|m| m.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// Accepted messages that uploaded their medium.
    pub fn upload_count(&self) -> usize {
        let inner = self.state.lock();
        inner
            .messages
            .iter()
            .filter(|m| m.media.as_ref().is_some_and(|f| f.uploaded))
            .count()
    }

    /// Accepted messages that sent their medium by `file_id`.
    pub fn file_id_send_count(&self) -> usize {
        let inner = self.state.lock();
        inner
            .messages
            .iter()
            .filter(|m| m.media.as_ref().is_some_and(|f| !f.uploaded))
            .count()
    }

    /// Makes every `file_id` given so far unusable, as Telegram may: later requests naming one
    /// get 400 "wrong file identifier/HTTP URL specified".
    pub fn expire_file_ids(&self) {
        self.state.lock().files.clear();
    }

    /// Number of accepted messages.
    pub fn message_count(&self) -> usize {
        self.state.lock().messages.len()
    }

    /// Every 429 answered, in order.
    pub fn throttled(&self) -> Vec<Throttled> {
        self.state.lock().throttled.clone()
    }

    /// Number of 429s answered because the fake's limits refused the request
    /// ([`Throttled::enforced`]).
    pub fn enforced_throttles(&self) -> usize {
        self.state
            .lock()
            .throttled
            .iter()
            .filter(|t| t.enforced)
            .count()
    }

    /// Number of accepted messages whose connection was closed without an answer.
    pub fn dropped(&self) -> usize {
        self.state.lock().dropped
    }

    /// Every request received (any method, any outcome).
    pub fn request_count(&self) -> u64 {
        self.state.lock().requests
    }

    /// The most messages accepted within any window of this length (e.g. 1 s to compare with
    /// the rate limit).
    pub fn max_in_window(&self, window: Duration) -> usize {
        let inner = self.state.lock();
        max_in_window(inner.messages.iter().map(|m| m.at), window)
    }

    /// The most messages any one chat received within any window of this length (e.g. 1 s to
    /// compare with the per-chat limit, 60 s with the per-group one).
    pub fn max_per_chat_in_window(&self, window: Duration) -> usize {
        let inner = self.state.lock();
        let mut per_chat: HashMap<i64, Vec<Instant>> = HashMap::new();
        for m in &inner.messages {
            per_chat.entry(m.chat_id).or_default().push(m.at);
        }
        per_chat
            .into_values()
            .map(|times| max_in_window(times.into_iter(), window))
            .max()
            .unwrap_or(0)
    }

    /// Waits until at least `n` messages were accepted; false when `timeout` passes first.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.message_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Forgets recorded messages, 429s and rate state (chat behaviours stay).
    pub fn reset_records(&self) {
        let mut inner = self.state.lock();
        let behaviors = std::mem::take(&mut inner.behaviors);
        *inner = Inner::new();
        inner.behaviors = behaviors;
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The most instants within any window of `window` length; `times` in arrival order.
fn max_in_window(times: impl Iterator<Item = Instant>, window: Duration) -> usize {
    let times: Vec<Instant> = times.collect();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[derive(Debug)]
struct Shared {
    config: FakeTelegramConfig,
    started: Instant,
    inner: Mutex<Inner>,
    /// Trips made so far, for [`Shared::travel`].
    trips: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One way of a message's trip ([`FakeTelegramConfig::one_way_delay`]).
    async fn travel(&self) {
        let delay = self.config.one_way_delay;
        if delay.is_zero() {
            return;
        }
        let trip = self.trips.fetch_add(1, Ordering::Relaxed);
        // A multiplicative hash of the trip's number: spread over [0, 1).
        let share = (trip.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        tokio::time::sleep(delay.mul_f64(0.5 + share)).await;
    }
}

#[derive(Debug)]
struct Inner {
    behaviors: HashMap<i64, ChatBehavior>,
    messages: Vec<SentMessage>,
    throttled: Vec<Throttled>,
    requests: u64,
    limits: Limits,
    hold_until: Option<Instant>,
    next_message_id: i64,
    dropped: usize,
    /// Every `file_id` given (and not expired): its kind and size.
    files: HashMap<String, (&'static str, usize)>,
}

impl Inner {
    fn new() -> Self {
        Self {
            behaviors: HashMap::new(),
            messages: Vec::new(),
            throttled: Vec::new(),
            requests: 0,
            limits: Limits::default(),
            hold_until: None,
            next_message_id: 1,
            dropped: 0,
            files: HashMap::new(),
        }
    }
}

/// The window of the per-bot limits.
const SECOND: Duration = Duration::from_secs(1);
/// The window of the per-group limit.
const MINUTE: Duration = Duration::from_secs(60);
/// Empty per-chat logs are dropped after this many admitted messages.
const SWEEP_EVERY: u64 = 1024;

/// Sliding-window logs of the arrivals the limits admitted.
#[derive(Debug, Default)]
struct Limits {
    /// Messages without `allow_paid_broadcast`, last second.
    ordinary: ArrivalLog,
    /// Messages with `allow_paid_broadcast`, last second.
    paid: ArrivalLog,
    /// Per chat, as long as its longest window.
    chats: HashMap<i64, ArrivalLog>,
    admitted: u64,
}

impl Limits {
    /// Counts a message to `chat_id` arriving at `now` (not earlier than any before it) when
    /// every limit admits it; `Err(wait)` when one does not, `wait` being how long until all
    /// the refusing windows admit one more. A refused message is not counted.
    fn admit(
        &mut self,
        config: &FakeTelegramConfig,
        chat_id: i64,
        paid: bool,
        now: Instant,
    ) -> Result<(), Duration> {
        let (bot, bot_limit) = if paid {
            (&mut self.paid, config.paid_per_second)
        } else {
            (&mut self.ordinary, config.per_second)
        };
        bot.prune(now, SECOND);
        let chat = self.chats.entry(chat_id).or_default();
        chat.prune(now, chat_keep(config, chat_id));
        let mut wait =
            bot.wait(now, SECOND, bot_limit)
                .max(chat.wait(now, config.private_chat_interval, 1));
        if chat_id < 0 {
            wait = wait.max(chat.wait(now, MINUTE, config.group_per_minute));
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        bot.record(now);
        chat.record(now);
        self.admitted += 1;
        if self.admitted.is_multiple_of(SWEEP_EVERY) {
            self.chats.retain(|id, log| {
                log.prune(now, chat_keep(config, *id));
                !log.is_empty()
            });
        }
        Ok(())
    }
}

/// How long a chat's arrivals matter: its longest window.
fn chat_keep(config: &FakeTelegramConfig, chat_id: i64) -> Duration {
    if chat_id < 0 {
        config.private_chat_interval.max(MINUTE)
    } else {
        config.private_chat_interval
    }
}

/// Admitted arrival instants, oldest first.
#[derive(Debug, Default)]
struct ArrivalLog(VecDeque<Instant>);

impl ArrivalLog {
    /// Forgets arrivals that no window of length `keep` ending at `now` or later contains.
    fn prune(&mut self, now: Instant, keep: Duration) {
        while let Some(&oldest) = self.0.front()
            && now.duration_since(oldest) >= keep
        {
            self.0.pop_front();
        }
    }

    /// How long until an arrival fits `limit` (0 counts as 1) per `window`, or `None` when one
    /// fits at `now`: the window `(now - window, now]` holds fewer than `limit` arrivals.
    fn wait(&self, now: Instant, window: Duration, limit: u32) -> Option<Duration> {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        // The limit-th newest arrival: one more fits once it has left the window.
        let index = self.0.len().checked_sub(limit)?;
        let Some(frees_at) = self.0[index].checked_add(window) else {
            return Some(Duration::MAX);
        };
        (frees_at > now).then(|| frees_at - now)
    }

    fn record(&mut self, now: Instant) {
        self.0.push_back(now);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Bot API answer.
fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(code: u16, description: &str) -> Response {
    answer(
        code,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

/// A 200 whose body fails before its first byte: hyper then closes the connection without
/// sending anything, so the client sees the connection end after its request was written.
fn dropped_connection() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the fake Telegram server drops this connection",
        ))
    }));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn too_many_requests(retry_after: u32) -> Response {
    answer(
        429,
        json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after},
        }),
    )
}

fn ceil_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

async fn stats(State(state): State<Arc<Shared>>) -> Response {
    let inner = state.lock();
    let body = json!({
        "uptime_ms": state.started.elapsed().as_millis() as u64,
        "requests": inner.requests,
        "accepted": inner.messages.len(),
        "throttled": inner.throttled.len(),
        "throttled_enforced": inner.throttled.iter().filter(|t| t.enforced).count(),
        "dropped": inner.dropped,
        "max_per_second": max_in_window(inner.messages.iter().map(|m| m.at), Duration::from_secs(1)),
        "first_ms": inner.messages.first().map(|m| m.at.duration_since(state.started).as_millis() as u64),
        "last_ms": inner.messages.last().map(|m| m.at.duration_since(state.started).as_millis() as u64),
    });
    answer(200, body)
}

async fn api(
    State(state): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.lock().requests += 1;
    if bot.strip_prefix("bot") != Some(state.config.token.as_str()) {
        return error(401, "Unauthorized");
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let parsed = match multipart {
        true => parse_multipart(query.as_deref(), &headers, body).await,
        false => parse_params(query.as_deref(), &headers, &body).map(|p| (p, Uploads::new())),
    };
    let (params, uploads) = match parsed {
        Ok(p) => p,
        Err(description) => return error(400, &description),
    };
    let kind = match method.to_ascii_lowercase().as_str() {
        "getme" => return answer(200, json!({"ok": true, "result": me(&state.config.token)})),
        "sendmessage" => None,
        "sendphoto" => Some("photo"),
        "sendvideo" => Some("video"),
        "sendanimation" => Some("animation"),
        "senddocument" => Some("document"),
        _ => return error(404, "Not Found"),
    };
    state.travel().await;
    let response = send_message(&state, &params, kind.map(|k| (k, &uploads)));
    state.travel().await;
    response
}

/// Files of a multipart request by part name: file name and bytes.
type Uploads = HashMap<String, (Option<String>, Vec<u8>)>;

/// The query string's parameters and a multipart body's fields; parts with a file name are
/// uploads.
async fn parse_multipart(
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Map<String, Value>, Uploads), String> {
    let mut params = parse_params(query, &HeaderMap::new(), &[])?;
    let mut request = Request::new(Body::from(body));
    *request.headers_mut() = headers.clone();
    let bad = |e: &dyn std::fmt::Display| format!("Bad Request: can't parse multipart body: {e}");
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(&e))?;
    let mut uploads = Uploads::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(&e))? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| bad(&e))?;
        match file_name {
            Some(file_name) => {
                uploads.insert(name, (Some(file_name), bytes.to_vec()));
            }
            None => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|e| bad(&e))?;
                params.insert(name, Value::String(text));
            }
        }
    }
    Ok((params, uploads))
}

fn me(token: &str) -> Value {
    let id: i64 = token
        .split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(1);
    json!({
        "id": id,
        "is_bot": true,
        "first_name": "Fake Bot",
        "username": "fake_broadcast_bot",
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
}

/// Parameters from the query string and a JSON or form body.
fn parse_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    if let Some(query) = query {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if body.is_empty() {
        return Ok(params);
    }
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| "Bad Request: can't parse JSON object".to_owned())?;
        let Value::Object(object) = value else {
            return Err("Bad Request: can't parse JSON object".to_owned());
        };
        params.extend(object);
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(body) {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    } else {
        return Err(format!(
            "Bad Request: the fake server does not read `{content_type}` bodies"
        ));
    }
    Ok(params)
}

/// A parameter as an integer, from a number or a string.
fn int_param(params: &Map<String, Value>, name: &str) -> Option<i64> {
    match params.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_param(params: &Map<String, Value>, name: &str) -> bool {
    match params.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

/// `link_preview_options` is an object in JSON and a JSON string in forms.
fn link_preview_disabled(params: &Map<String, Value>) -> bool {
    let options = match params.get("link_preview_options") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    options.get("is_disabled").and_then(Value::as_bool) == Some(true)
        || bool_param(params, "disable_web_page_preview")
}

/// `sendMessage`, or with `media` (the kind and the request's uploads) `sendPhoto`,
/// `sendVideo`, `sendAnimation` or `sendDocument`.
fn send_message(
    state: &Shared,
    params: &Map<String, Value>,
    media: Option<(&'static str, &Uploads)>,
) -> Response {
    let Some(chat_id) = int_param(params, "chat_id") else {
        return match params.get("chat_id") {
            None => error(400, "Bad Request: chat_id is empty"),
            Some(_) => error(400, "Bad Request: chat not found"),
        };
    };
    let paid = bool_param(params, "allow_paid_broadcast");
    let mut inner = state.lock();
    // Taken under the lock, so arrivals are counted in the order of their instants and the
    // recorded `at`s obey the limits exactly.
    let now = Instant::now();

    // A configured 429 holds the whole bot back for its retry_after.
    if let Some(until) = inner.hold_until.filter(|until| now < *until) {
        let retry_after = ceil_secs(until - now);
        inner.throttled.push(Throttled {
            chat_id: Some(chat_id),
            retry_after,
            enforced: false,
            at: now,
        });
        return too_many_requests(retry_after);
    }
    if let Some(ChatBehavior::RateLimitOnce(retry_after)) = inner.behaviors.get(&chat_id).cloned() {
        inner.behaviors.remove(&chat_id);
        inner.hold_until = Some(now + Duration::from_secs(u64::from(retry_after)));
        inner.throttled.push(Throttled {
            chat_id: Some(chat_id),
            retry_after,
            enforced: false,
            at: now,
        });
        return too_many_requests(retry_after);
    }

    if state.config.enforce_limits
        && let Err(wait) = inner.limits.admit(&state.config, chat_id, paid, now)
    {
        let retry_after = ceil_secs(wait);
        inner.throttled.push(Throttled {
            chat_id: Some(chat_id),
            retry_after,
            enforced: true,
            at: now,
        });
        return too_many_requests(retry_after);
    }

    match inner.behaviors.get_mut(&chat_id) {
        Some(ChatBehavior::Blocked) => return error(403, "Forbidden: bot was blocked by the user"),
        Some(ChatBehavior::Deactivated) => return error(403, "Forbidden: user is deactivated"),
        Some(ChatBehavior::Kicked) => {
            return error(403, "Forbidden: bot was kicked from the supergroup chat");
        }
        Some(ChatBehavior::NotFound) => return error(400, "Bad Request: chat not found"),
        Some(ChatBehavior::Error { code, description }) => return error(*code, description),
        Some(ChatBehavior::MigrateTo(new_id)) => {
            return answer(
                400,
                json!({
                    "ok": false,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": *new_id},
                }),
            );
        }
        Some(ChatBehavior::FailTimes(left)) if *left > 0 => {
            *left -= 1;
            return error(500, "Internal Server Error");
        }
        Some(
            ChatBehavior::FailTimes(_)
            | ChatBehavior::RateLimitOnce(_)
            | ChatBehavior::AcceptThenDrop(_),
        )
        | None => {}
    }

    let field = if media.is_some() { "caption" } else { "text" };
    let text = match (params.get(field), media) {
        (Some(Value::String(s)), _) if !s.trim().is_empty() => s.clone(),
        (_, Some(_)) => String::new(),
        (_, None) => return error(400, "Bad Request: message text is empty"),
    };
    // Counted with the markup, so never more lenient than Telegram.
    if media.is_none() && text.chars().count() > 4096 {
        return error(400, "Bad Request: message is too long");
    }
    if media.is_some() && text.encode_utf16().count() > 1024 {
        return error(400, "Bad Request: message caption is too long");
    }
    let parse_mode = params
        .get("parse_mode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let check = match parse_mode.as_deref() {
        None | Some("") => Ok(()),
        Some(mode) if mode.eq_ignore_ascii_case("html") => check_html(&text),
        Some(mode) if mode.eq_ignore_ascii_case("markdownv2") => check_markdown_v2(&text),
        Some(mode) if mode.eq_ignore_ascii_case("markdown") => Ok(()),
        Some(mode) => Err(format!("unsupported parse_mode \"{mode}\"")),
    };
    if let Err(problem) = check {
        return error(
            400,
            &format!("Bad Request: can't parse entities: {problem}"),
        );
    }

    let buttons = match inline_keyboard(params) {
        Ok(buttons) => buttons,
        Err(description) => return error(400, &description),
    };
    let medium = match media {
        Some((kind, uploads)) => match take_medium(&mut inner, kind, params, uploads) {
            Ok(medium) => Some(medium),
            Err(description) => return error(400, &description),
        },
        None => None,
    };

    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    let received_at = SystemTime::now();
    let chat_drops = match inner.behaviors.get_mut(&chat_id) {
        Some(ChatBehavior::AcceptThenDrop(left)) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    };
    let accepted = inner.messages.len() + 1;
    let drops = chat_drops
        || state
            .config
            .drop_every
            .and_then(|k| usize::try_from(k).ok())
            .is_some_and(|k| k > 0 && accepted.is_multiple_of(k));
    inner.messages.push(SentMessage {
        message_id,
        chat_id,
        text: text.clone(),
        media: medium.clone(),
        buttons: buttons.clone(),
        parse_mode,
        link_preview_disabled: link_preview_disabled(params),
        paid_broadcast: paid,
        dropped: drops,
        at: now,
        received_at,
    });
    if drops {
        inner.dropped += 1;
        return dropped_connection();
    }
    drop(inner);
    let date = received_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let chat = if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "User"})
    } else if chat_id < -1_000_000_000_000 {
        json!({"id": chat_id, "type": "supergroup", "title": "Supergroup"})
    } else {
        json!({"id": chat_id, "type": "group", "title": "Group"})
    };
    let mut from = me(&state.config.token);
    if let Value::Object(from) = &mut from {
        from.retain(|k, _| matches!(k.as_str(), "id" | "is_bot" | "first_name" | "username"));
    }
    let mut result = json!({
        "message_id": message_id,
        "from": from,
        "chat": chat,
        "date": date,
    });
    if !buttons.is_empty() {
        let rows: Vec<Vec<Value>> = buttons
            .iter()
            .map(|row| {
                row.iter()
                    .map(|(text, url)| json!({"text": text, "url": url}))
                    .collect()
            })
            .collect();
        result["reply_markup"] = json!({ "inline_keyboard": rows });
    }
    match &medium {
        None => result["text"] = json!(text),
        Some(medium) => {
            if !text.is_empty() {
                result["caption"] = json!(text);
            }
            for (key, value) in medium_json(medium) {
                result[key] = value;
            }
        }
    }
    answer(200, json!({"ok": true, "result": result}))
}

/// The URL buttons of `reply_markup` (a JSON object, or a JSON string in forms), checked as
/// Telegram checks them; other keyboards are refused, as this fake does not keep them.
fn inline_keyboard(params: &Map<String, Value>) -> Result<Vec<Vec<(String, String)>>, String> {
    let markup = match params.get("reply_markup") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|_| "Bad Request: can't parse reply keyboard markup JSON object".to_owned())?,
        Some(v) => v.clone(),
    };
    let Some(rows) = markup.get("inline_keyboard").and_then(Value::as_array) else {
        return Err("Bad Request: can't parse inline keyboard markup".to_owned());
    };
    let mut keyboard = Vec::with_capacity(rows.len());
    let mut all = 0;
    for row in rows {
        let Some(row) = row.as_array().filter(|r| !r.is_empty()) else {
            return Err("Bad Request: REPLY_MARKUP_INVALID".to_owned());
        };
        if row.len() > 8 {
            return Err("Bad Request: BUTTONS_TOO_WIDE".to_owned());
        }
        all += row.len();
        let mut buttons = Vec::with_capacity(row.len());
        for button in row {
            let text = button
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if text.trim().is_empty() {
                return Err("Bad Request: BUTTON_TEXT_INVALID".to_owned());
            }
            let actions = button
                .as_object()
                .map_or(0, |b| b.keys().filter(|k| *k != "text").count());
            let Some(url) = button.get("url").and_then(Value::as_str) else {
                return Err("Bad Request: this fake server accepts URL buttons only".to_owned());
            };
            if actions != 1 {
                return Err("Bad Request: BUTTON_TYPE_INVALID".to_owned());
            }
            let valid = url::Url::parse(url).is_ok_and(|u| match u.scheme() {
                "http" | "https" => u.host_str().is_some_and(|h| !h.is_empty()),
                "tg" => true,
                _ => false,
            });
            if !valid {
                return Err("Bad Request: BUTTON_URL_INVALID".to_owned());
            }
            buttons.push((text.to_owned(), url.to_owned()));
        }
        keyboard.push(buttons);
    }
    if all > 100 {
        return Err("Bad Request: reply markup is too long".to_owned());
    }
    Ok(keyboard)
}

/// The largest photo Telegram takes through the Bot API, and any other file.
const PHOTO_LIMIT: usize = 10 * 1024 * 1024;
const FILE_LIMIT: usize = 50 * 1024 * 1024;

/// The medium of a `send<Kind>` request: its upload (a part named by the field, or by an
/// `attach://<part>` value), given a new `file_id`; or the `file_id` it names, which must be one
/// the fake gave a file of the same kind and has not expired.
fn take_medium(
    inner: &mut Inner,
    kind: &'static str,
    params: &Map<String, Value>,
    uploads: &Uploads,
) -> Result<SentMedia, String> {
    let named = params.get(kind).and_then(Value::as_str);
    let upload = match named {
        Some(value) => match value.strip_prefix("attach://") {
            Some(part) => Some(uploads.get(part).ok_or_else(|| {
                format!("Bad Request: there is no file `{part}` in the request to attach")
            })?),
            None => None,
        },
        None => Some(
            uploads
                .get(kind)
                .ok_or_else(|| format!("Bad Request: there is no {kind} in the request"))?,
        ),
    };
    let Some((file_name, bytes)) = upload else {
        let file_id = named.unwrap_or_default();
        let Some(&(given_kind, size)) = inner.files.get(file_id) else {
            return Err("Bad Request: wrong file identifier/HTTP URL specified".to_owned());
        };
        if given_kind != kind {
            return Err("Bad Request: type of file mismatch".to_owned());
        }
        return Ok(SentMedia {
            kind,
            file_id: file_id.to_owned(),
            uploaded: false,
            file_name: None,
            size,
        });
    };
    if bytes.is_empty() {
        return Err("Bad Request: file must be non-empty".to_owned());
    }
    let limit = if kind == "photo" {
        PHOTO_LIMIT
    } else {
        FILE_LIMIT
    };
    if bytes.len() > limit {
        return Err("Bad Request: file is too big".to_owned());
    }
    let image = bytes.starts_with(&[0x89, b'P', b'N', b'G'])
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || (bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP".as_slice()));
    if kind == "photo" && !image {
        return Err("Bad Request: IMAGE_PROCESS_FAILED".to_owned());
    }
    // Named after the message that uploaded it: never given twice, even after an expiry.
    let file_id = format!("fake-{kind}-{}", inner.next_message_id);
    inner.files.insert(file_id.clone(), (kind, bytes.len()));
    if kind == "photo" {
        // Telegram answers with several sizes; a smaller one has its own id.
        inner
            .files
            .insert(format!("{file_id}-small"), (kind, bytes.len()));
    }
    Ok(SentMedia {
        kind,
        file_id,
        uploaded: true,
        file_name: file_name.clone(),
        size: bytes.len(),
    })
}

/// The fields Telegram's `Message` has for a medium.
fn medium_json(medium: &SentMedia) -> Vec<(&'static str, Value)> {
    let file = |id: &str, extra: Value| {
        let mut file = json!({
            "file_id": id,
            "file_unique_id": format!("unique-{id}"),
            "file_size": medium.size,
        });
        if let (Value::Object(file), Value::Object(extra)) = (&mut file, extra) {
            file.extend(extra);
        }
        file
    };
    let id = medium.file_id.as_str();
    match medium.kind {
        "photo" => vec![(
            "photo",
            json!([
                file(&format!("{id}-small"), json!({"width": 90, "height": 45})),
                file(id, json!({"width": 640, "height": 320})),
            ]),
        )],
        "video" => vec![(
            "video",
            file(id, json!({"width": 640, "height": 360, "duration": 1})),
        )],
        "animation" => vec![
            (
                "animation",
                file(id, json!({"width": 320, "height": 240, "duration": 1})),
            ),
            ("document", file(id, json!({}))),
        ],
        _ => vec![("document", file(id, json!({})))],
    }
}

/// Tags Telegram's HTML parse mode accepts.
const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Roughly what Telegram checks in HTML mode: only its tags, properly nested, and no bare `<`.
fn check_html(text: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(pos) = rest.find('<') {
        let at = offset + pos;
        let after = &rest[pos + 1..];
        let Some(end) = after.find('>') else {
            return Err(format!("Unclosed start tag at byte offset {at}"));
        };
        let inside = &after[..end];
        let closing = inside.starts_with('/');
        let name: String = inside
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!(
                "Unexpected character after \"<\" at byte offset {at}"
            ));
        }
        if !HTML_TAGS.contains(&name.as_str()) {
            let what = if closing { "end" } else { "start" };
            return Err(format!(
                "Unsupported {what} tag \"{name}\" at byte offset {at}"
            ));
        }
        if closing {
            if open.pop().as_deref() != Some(name.as_str()) {
                return Err(format!(
                    "Can't find end tag corresponding to start tag at byte offset {at}"
                ));
            }
        } else {
            open.push(name);
        }
        let consumed = pos + 1 + end + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    match open.last() {
        Some(tag) => Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        )),
        None => Ok(()),
    }
}

/// Roughly what Telegram checks in MarkdownV2: characters that never format must be escaped
/// with `\` outside code.
fn check_markdown_v2(text: &str) -> Result<(), String> {
    let mut chars = text.char_indices();
    let mut in_code = false;
    let mut in_pre = false;
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '`' if text[at..].starts_with("```") => {
                in_pre = !in_pre;
                chars.next();
                chars.next();
            }
            '`' if !in_pre => in_code = !in_code,
            _ if in_code || in_pre => {}
            '.' | '!' | '#' | '+' | '-' | '=' | '{' | '}' => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ));
            }
            _ => {}
        }
    }
    if in_code || in_pre {
        return Err("Can't find end of Pre entity".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_check_accepts_telegram_tags_only() {
        assert!(check_html("<b>Hi</b> &lt;script&gt; <a href=\"https://x\">x</a>").is_ok());
        let err = check_html("Hi <script>alert(1)</script>").unwrap_err();
        assert!(err.contains("Unsupported start tag \"script\""), "{err}");
        assert!(check_html("<b>open").is_err());
        assert!(check_html("<b><i>x</b></i>").is_err());
        assert!(check_html("1 < 2").is_err());
    }

    #[test]
    fn markdown_check_wants_reserved_characters_escaped() {
        assert!(check_markdown_v2("*Hi* Ann\\-Marie\\! `a.b` ```x.y```").is_ok());
        let err = check_markdown_v2("Hi Ann-Marie").unwrap_err();
        assert!(err.contains("'-' is reserved"), "{err}");
        assert!(check_markdown_v2("`open").is_err());
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_bot_gets_thirty_in_any_second_and_the_31st_waits_for_the_first_to_leave() {
        let config = FakeTelegramConfig::default();
        let mut limits = Limits::default();
        let t0 = Instant::now();
        assert_eq!(limits.admit(&config, 1, false, t0), Ok(()));
        for chat in 2..=30 {
            assert_eq!(limits.admit(&config, chat, false, ms(t0, 100)), Ok(()));
        }
        // 30 in (t0 - 1 s, t0 + 500 ms]: the 31st waits until t0 leaves the window.
        let wait = limits.admit(&config, 31, false, ms(t0, 500)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(ceil_secs(wait), 1);
        assert!(limits.admit(&config, 31, false, ms(t0, 999)).is_err());
        // Paid messages are counted apart.
        assert_eq!(limits.admit(&config, 32, true, ms(t0, 999)), Ok(()));
        // At t0 + 1 s the first has left (t0 is not in (t0, t0 + 1 s]).
        assert_eq!(limits.admit(&config, 31, false, ms(t0, 1000)), Ok(()));
        let wait = limits.admit(&config, 33, false, ms(t0, 1001)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(99));
        assert_eq!(ceil_secs(wait), 1);
        assert_eq!(limits.admit(&config, 33, false, ms(t0, 1100)), Ok(()));
    }

    #[test]
    fn the_paid_limit_is_a_sliding_window_too() {
        let config = FakeTelegramConfig {
            paid_per_second: 3,
            ..FakeTelegramConfig::default()
        };
        let mut limits = Limits::default();
        let t0 = Instant::now();
        for (chat, at) in [(1, 0), (2, 400), (3, 800)] {
            assert_eq!(limits.admit(&config, chat, true, ms(t0, at)), Ok(()));
        }
        assert_eq!(
            limits.admit(&config, 4, true, ms(t0, 900)),
            Err(Duration::from_millis(100))
        );
        // Ordinary messages are not held back by paid ones.
        assert_eq!(limits.admit(&config, 4, false, ms(t0, 900)), Ok(()));
        assert_eq!(limits.admit(&config, 5, true, ms(t0, 1000)), Ok(()));
        assert_eq!(
            limits.admit(&config, 6, true, ms(t0, 1000)),
            Err(Duration::from_millis(400))
        );
    }

    #[test]
    fn a_private_chat_gets_one_message_in_any_second() {
        let config = FakeTelegramConfig::default();
        let mut limits = Limits::default();
        let t0 = Instant::now();
        assert_eq!(limits.admit(&config, 7, false, t0), Ok(()));
        let wait = limits.admit(&config, 7, false, ms(t0, 999)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1));
        assert_eq!(ceil_secs(wait), 1);
        // Paid or not, it is the same chat.
        assert!(limits.admit(&config, 7, true, ms(t0, 999)).is_err());
        assert_eq!(limits.admit(&config, 8, false, ms(t0, 999)), Ok(()));
        assert_eq!(limits.admit(&config, 7, false, ms(t0, 1000)), Ok(()));
        assert!(limits.admit(&config, 7, false, ms(t0, 1999)).is_err());
    }

    #[test]
    fn a_group_gets_one_message_per_second_and_twenty_in_any_minute() {
        let config = FakeTelegramConfig::default();
        let mut limits = Limits::default();
        let t0 = Instant::now();
        assert_eq!(limits.admit(&config, -5, false, t0), Ok(()));
        assert_eq!(
            limits.admit(&config, -5, false, ms(t0, 500)),
            Err(Duration::from_millis(500))
        );
        for second in 1..20 {
            assert_eq!(
                limits.admit(&config, -5, false, ms(t0, second * 1000)),
                Ok(())
            );
        }
        // 20 in (t0 - 40 s, t0 + 20 s]: the 21st waits until t0 leaves the minute.
        let wait = limits
            .admit(&config, -5, false, ms(t0, 20_000))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert_eq!(ceil_secs(wait), 40);
        assert_eq!(
            limits.admit(&config, -5, false, ms(t0, 59_999)),
            Err(Duration::from_millis(1))
        );
        assert_eq!(limits.admit(&config, -5, false, ms(t0, 60_000)), Ok(()));
        // At t0 + 61 s, t0 + 1 s has left the minute too; 500 ms later both windows are full.
        assert_eq!(limits.admit(&config, -5, false, ms(t0, 61_000)), Ok(()));
        assert_eq!(
            limits.admit(&config, -5, false, ms(t0, 61_500)),
            Err(Duration::from_millis(500))
        );
        // Another group is not held back.
        assert_eq!(limits.admit(&config, -6, false, ms(t0, 61_500)), Ok(()));
    }

    #[test]
    fn logs_are_pruned_and_empty_chats_forgotten() {
        let config = FakeTelegramConfig {
            per_second: 100_000,
            ..FakeTelegramConfig::default()
        };
        let mut limits = Limits::default();
        let t0 = Instant::now();
        let chats = 1..=i64::try_from(SWEEP_EVERY).unwrap();
        for chat in chats.clone() {
            assert_eq!(limits.admit(&config, chat, false, ms(t0, 2)), Ok(()));
        }
        for chat in chats {
            assert_eq!(limits.admit(&config, -chat, false, ms(t0, 5_000)), Ok(()));
        }
        // The last admit swept at t0 + 5 s: the private chats were forgotten, the groups kept.
        assert_eq!(limits.chats.len(), usize::try_from(SWEEP_EVERY).unwrap());
        assert!(limits.chats.keys().all(|id| *id < 0));
        assert!(limits.ordinary.0.len() <= usize::try_from(SWEEP_EVERY).unwrap());
    }

    /// POSTs `body` as JSON to `sendMessage` on a new connection and reads until the server
    /// closes it: the raw answer, or the error the connection ended with.
    async fn send_raw(fake: &FakeTelegram, body: &Value) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = body.to_string();
        let mut stream = tokio::net::TcpStream::connect(fake.addr()).await?;
        let request = format!(
            "POST /bot{}/sendMessage HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            fake.token(),
            fake.addr(),
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
            .await
            .expect("the fake answers or closes within 5 s")?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The status and JSON body of a whole answer; `None` when it is not one.
    fn whole_answer(raw: &str) -> Option<(u16, Value)> {
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).ok()?))
    }

    #[tokio::test]
    async fn refusals_are_answered_with_telegram_429s() {
        let fake = FakeTelegram::start().await;
        let message = json!({"chat_id": 7, "text": "hi"});
        let started = Instant::now();
        let first = whole_answer(&send_raw(&fake, &message).await.unwrap()).unwrap();
        let second = whole_answer(&send_raw(&fake, &message).await.unwrap()).unwrap();
        assert_eq!(first.0, 200, "{first:?}");
        if started.elapsed() < Duration::from_secs(1) {
            assert_eq!(
                second,
                (
                    429,
                    json!({
                        "ok": false,
                        "error_code": 429,
                        "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1},
                    })
                )
            );
            assert_eq!(fake.enforced_throttles(), 1);
            assert_eq!(fake.message_count(), 1);
        }
        assert_eq!(fake.max_per_chat_in_window(Duration::from_secs(1)), 1);
    }

    #[tokio::test]
    async fn accept_then_drop_records_the_message_and_closes_unanswered() {
        let fake = FakeTelegram::start_with(FakeTelegramConfig {
            enforce_limits: false,
            ..FakeTelegramConfig::default()
        })
        .await;
        fake.set_chat(9, ChatBehavior::AcceptThenDrop(2));
        let message = json!({"chat_id": 9, "text": "hi"});
        for _ in 0..2 {
            match send_raw(&fake, &message).await {
                // Today hyper closes before writing a byte; a head without its body would do.
                Ok(raw) => assert_eq!(whole_answer(&raw), None, "answered: {raw:?}"),
                Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
            }
        }
        let raw = send_raw(&fake, &message).await.unwrap();
        let (status, body) = whole_answer(&raw).unwrap();
        assert_eq!((status, &body["ok"]), (200, &json!(true)), "{raw}");
        let messages = fake.messages_to(9);
        assert_eq!(
            messages.iter().map(|m| m.dropped).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(fake.dropped(), 2);
        assert_eq!(fake.max_per_chat_in_window(Duration::from_secs(60)), 3);
        // Other chats are answered as usual.
        let other = send_raw(&fake, &json!({"chat_id": 10, "text": "hi"}))
            .await
            .unwrap();
        assert_eq!(whole_answer(&other).map(|(status, _)| status), Some(200));
    }

    #[tokio::test]
    async fn a_distant_server_counts_a_message_after_it_arrives_and_answers_later() {
        let delay = Duration::from_millis(40);
        let fake = FakeTelegram::start_with(FakeTelegramConfig {
            one_way_delay: delay,
            ..FakeTelegramConfig::default()
        })
        .await;
        let mut trips = Vec::new();
        for chat_id in 1..=4 {
            let sent = Instant::now();
            let raw = send_raw(&fake, &json!({"chat_id": chat_id, "text": "hi"}))
                .await
                .unwrap();
            let answered = sent.elapsed();
            assert_eq!(whole_answer(&raw).map(|(status, _)| status), Some(200));
            let counted = fake.messages_to(chat_id)[0].at.duration_since(sent);
            // Each way takes half to one and a half times the delay.
            assert!(counted >= delay / 2, "counted after {counted:?}");
            assert!(
                answered >= counted + delay / 2,
                "answered after {answered:?}"
            );
            trips.push(counted);
        }
        // The delays differ from message to message.
        trips.sort();
        assert!(trips[3] - trips[0] > Duration::from_millis(2), "{trips:?}");
    }

    #[tokio::test]
    async fn drop_every_drops_every_kth_accepted_message() {
        let fake = FakeTelegram::start_with(FakeTelegramConfig {
            drop_every: Some(2),
            ..FakeTelegramConfig::default()
        })
        .await;
        let mut answered = Vec::new();
        for chat_id in 1..=5 {
            let raw = send_raw(&fake, &json!({"chat_id": chat_id, "text": "hi"})).await;
            answered.push(raw.ok().and_then(|raw| whole_answer(&raw)).is_some());
        }
        // A refused request is not an accepted message and does not move the count.
        let refused = send_raw(&fake, &json!({"chat_id": 6, "text": " "}))
            .await
            .unwrap();
        assert_eq!(whole_answer(&refused).map(|(status, _)| status), Some(400));
        let sixth = send_raw(&fake, &json!({"chat_id": 7, "text": "hi"})).await;
        answered.push(sixth.ok().and_then(|raw| whole_answer(&raw)).is_some());
        assert_eq!(answered, [true, false, true, false, true, false]);
        assert_eq!(fake.message_count(), 6);
        assert_eq!(fake.dropped(), 3);
    }

    #[test]
    fn window_maximum() {
        let t0 = Instant::now();
        let times = [0, 100, 900, 1000, 1050, 2500].map(|ms| t0 + Duration::from_millis(ms));
        assert_eq!(max_in_window(times.into_iter(), Duration::from_secs(1)), 4);
        assert_eq!(max_in_window(std::iter::empty(), Duration::from_secs(1)), 0);
    }
}
