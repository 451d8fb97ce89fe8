//! A fake Telegram Bot API server (axum on 127.0.0.1, started in-process in milliseconds).
//!
//! It answers `getMe` and `sendMessage` (JSON, form or query parameters) the way Telegram does,
//! with Telegram's exact error descriptions (teloxide matches them by text): 401 for a wrong
//! token, 400 "chat not found", 403 "bot was blocked by the user", 429 with `retry_after`, 400
//! with `migrate_to_chat_id`, 500 for chats set to fail. It enforces the real limits (30/s per
//! bot, 1000/s with `allow_paid_broadcast`, 1 s per private chat, 3 s per group) by answering
//! 429, and records every accepted message and every 429 for the test to inspect.
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
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
    /// Messages per second for the bot.
    pub per_second: u32,
    /// Messages per second for requests with `allow_paid_broadcast`.
    pub paid_per_second: u32,
    /// Least time between two messages to one private chat (positive id).
    pub private_chat_interval: Duration,
    /// Least time between two messages to one group (negative id).
    pub group_chat_interval: Duration,
    /// How early a request may come and still be accepted, for network jitter.
    pub tolerance: Duration,
}

impl Default for FakeTelegramConfig {
    fn default() -> Self {
        Self {
            token: "123456:TEST-token_abcdefghijklmnopqrstuvwxyz".to_owned(),
            enforce_limits: true,
            per_second: 30,
            paid_per_second: 1000,
            private_chat_interval: Duration::from_secs(1),
            group_chat_interval: Duration::from_secs(3),
            tolerance: Duration::from_millis(100),
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
    /// Text exactly as received.
    pub text: String,
    /// `parse_mode` as received (`"HTML"`, `"MarkdownV2"`), if any.
    pub parse_mode: Option<String>,
    /// Whether `link_preview_options.is_disabled` (or the old `disable_web_page_preview`) was set.
    pub link_preview_disabled: bool,
    /// Whether `allow_paid_broadcast` was set.
    pub paid_broadcast: bool,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, wall clock.
    pub received_at: SystemTime,
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
            inner: Mutex::new(Inner::new(&config)),
            config,
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

    /// Number of accepted messages.
    pub fn message_count(&self) -> usize {
        self.state.lock().messages.len()
    }

    /// Every 429 answered, in order.
    pub fn throttled(&self) -> Vec<Throttled> {
        self.state.lock().throttled.clone()
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
        *inner = Inner::new(&self.state.config);
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
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Inner {
    behaviors: HashMap<i64, ChatBehavior>,
    messages: Vec<SentMessage>,
    throttled: Vec<Throttled>,
    requests: u64,
    global: Gcra,
    paid: Gcra,
    chats: HashMap<i64, Gcra>,
    hold_until: Option<Instant>,
    next_message_id: i64,
}

impl Inner {
    fn new(config: &FakeTelegramConfig) -> Self {
        let per_sec = |n: u32| Duration::from_secs(1) / n.max(1);
        Self {
            behaviors: HashMap::new(),
            messages: Vec::new(),
            throttled: Vec::new(),
            requests: 0,
            global: Gcra::new(per_sec(config.per_second), config.tolerance),
            paid: Gcra::new(per_sec(config.paid_per_second), config.tolerance),
            chats: HashMap::new(),
            hold_until: None,
            next_message_id: 1,
        }
    }
}

/// Generic cell rate algorithm: one event per `interval`, events may come up to `tolerance`
/// early. A refused event does not count.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
    tat: Option<Instant>,
}

impl Gcra {
    fn new(interval: Duration, tolerance: Duration) -> Self {
        Self {
            interval,
            tolerance,
            tat: None,
        }
    }

    /// `Err(wait)` when an event now would be too early.
    fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.tat {
            Some(tat) if now + self.tolerance < tat => Err(tat - self.tolerance - now),
            _ => Ok(()),
        }
    }

    fn record(&mut self, now: Instant) {
        let base = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(base + self.interval);
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
    let params = match parse_params(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(description) => return error(400, &description),
    };
    match method.to_ascii_lowercase().as_str() {
        "getme" => answer(200, json!({"ok": true, "result": me(&state.config.token)})),
        "sendmessage" => send_message(&state, &params),
        _ => error(404, "Not Found"),
    }
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

fn send_message(state: &Shared, params: &Map<String, Value>) -> Response {
    let Some(chat_id) = int_param(params, "chat_id") else {
        return match params.get("chat_id") {
            None => error(400, "Bad Request: chat_id is empty"),
            Some(_) => error(400, "Bad Request: chat not found"),
        };
    };
    let paid = bool_param(params, "allow_paid_broadcast");
    let now = Instant::now();
    let mut inner = state.lock();

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

    if state.config.enforce_limits {
        let interval = if chat_id < 0 {
            state.config.group_chat_interval
        } else {
            state.config.private_chat_interval
        };
        let tolerance = state.config.tolerance;
        let chat = *inner
            .chats
            .entry(chat_id)
            .or_insert_with(|| Gcra::new(interval, tolerance));
        let global = if paid { inner.paid } else { inner.global };
        let refused = [chat.check(now), global.check(now)]
            .into_iter()
            .filter_map(Result::err)
            .max();
        if let Some(wait) = refused {
            let retry_after = ceil_secs(wait);
            inner.throttled.push(Throttled {
                chat_id: Some(chat_id),
                retry_after,
                enforced: true,
                at: now,
            });
            return too_many_requests(retry_after);
        }
        if let Some(chat) = inner.chats.get_mut(&chat_id) {
            chat.record(now);
        }
        if paid {
            inner.paid.record(now);
        } else {
            inner.global.record(now);
        }
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
        Some(ChatBehavior::FailTimes(_) | ChatBehavior::RateLimitOnce(_)) | None => {}
    }

    let text = match params.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return error(400, "Bad Request: message text is empty"),
    };
    if text.chars().count() > 4096 {
        return error(400, "Bad Request: message is too long");
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

    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    let received_at = SystemTime::now();
    inner.messages.push(SentMessage {
        message_id,
        chat_id,
        text: text.clone(),
        parse_mode,
        link_preview_disabled: link_preview_disabled(params),
        paid_broadcast: paid,
        at: now,
        received_at,
    });
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
    answer(
        200,
        json!({
            "ok": true,
            "result": {
                "message_id": message_id,
                "from": from,
                "chat": chat,
                "date": date,
                "text": text,
            },
        }),
    )
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

    #[test]
    fn gcra_spaces_events_with_tolerance() {
        let t0 = Instant::now();
        let mut g = Gcra::new(Duration::from_millis(100), Duration::from_millis(10));
        assert!(g.check(t0).is_ok());
        g.record(t0);
        assert!(g.check(t0 + Duration::from_millis(95)).is_ok());
        let wait = g.check(t0 + Duration::from_millis(50)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(40));
        assert_eq!(ceil_secs(wait), 1);
    }

    #[test]
    fn window_maximum() {
        let t0 = Instant::now();
        let times = [0, 100, 900, 1000, 1050, 2500].map(|ms| t0 + Duration::from_millis(ms));
        assert_eq!(max_in_window(times.into_iter(), Duration::from_secs(1)), 4);
        assert_eq!(max_in_window(std::iter::empty(), Duration::from_secs(1)), 0);
    }
}
