//! An SMTP sink: a small tokio SMTP server on 127.0.0.1 that stores every message it accepts.
//!
//! It speaks enough ESMTP for real clients (lettre): EHLO/HELO, AUTH PLAIN and LOGIN (optionally
//! required), MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, VRFY, QUIT, and
//! advertises PIPELINING (RFC 2920: a batch of commands is answered with one write; can be
//! left out of the EHLO reply), 8BITMIME, SMTPUTF8, SIZE and ENHANCEDSTATUSCODES. It counts
//! the commands a client sent without waiting for the previous reply. Chosen recipients can be
//! refused at RCPT with any reply (550, 451, ...), and every message can be refused at the end
//! of DATA (for circuit-breaker tests). A message can also be accepted at the end of DATA and
//! its connection closed without the final `250` ([`SmtpSink::drop_after_accept`],
//! [`SmtpSinkConfig::drop_every`]), so the client cannot know it was delivered.
//!
//! ```no_run
//! # async fn demo() {
//! use broadcast_testkit::smtp::{Reply, SmtpSink};
//! let sink = SmtpSink::start().await;
//! sink.reject_recipient("gone@example.org", Reply::new(550, "5.1.1 No such user"));
//! // send to 127.0.0.1:sink.port() without TLS ...
//! assert!(sink.messages().is_empty());
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest message accepted, bytes (also advertised as SIZE).
const MAX_MESSAGE: usize = 50 * 1024 * 1024;
/// Longest command line accepted, bytes.
const MAX_LINE: usize = 4096;

/// An SMTP reply: a code and its text (which may start with an enhanced status code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Text after the code, e.g. `5.1.1 No such user`.
    pub text: String,
}

impl Reply {
    /// A reply with this code and text.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn line(&self) -> String {
        format!("{} {}\r\n", self.code, self.text)
    }
}

/// Settings of the sink.
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkConfig {
    /// When set, MAIL FROM requires AUTH with exactly these credentials.
    pub credentials: Option<(String, String)>,
    /// Keep every accepted message (default). Off, only counts are kept: for benchmarks that
    /// send hundreds of thousands of messages.
    pub discard_messages: bool,
    /// Leave PIPELINING out of the EHLO reply: a server on which clients must wait for each
    /// reply (pipelined commands are still answered, and counted).
    pub no_pipelining: bool,
    /// When `Some(k)` (k > 0), every k-th accepted message (counted sink-wide) is stored and
    /// then its connection closed without the final `250` reply.
    pub drop_every: Option<u32>,
}

/// A message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope sender (MAIL FROM), without angle brackets.
    pub mail_from: String,
    /// Envelope recipients (RCPT TO) that were accepted.
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, with CRLF line ends, without the final dot.
    pub data: Vec<u8>,
    /// The user that authenticated on the connection, if any.
    pub authenticated_as: Option<String>,
    /// When DATA ended.
    pub at: Instant,
}

impl ReceivedMail {
    /// The raw message as text (lossy for non-UTF-8 bytes).
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// Top-level headers, unfolded, in order: `(name, value)`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let raw = self.raw();
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        headers
    }

    /// The first top-level header of this name (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Everything after the header block.
    pub fn body(&self) -> String {
        let raw = self.raw();
        raw.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }
}

/// Counters of what happened on the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// TCP connections accepted.
    pub connections: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// RCPT TO commands refused by a configured reply.
    pub rcpt_refused: u64,
    /// Messages refused at the end of DATA.
    pub data_refused: u64,
    /// Accepted messages (counted in `accepted` too) whose connection was closed instead of
    /// sending the final `250`.
    pub dropped_after_accept: u64,
    /// Successful AUTH exchanges.
    pub auth_ok: u64,
    /// Failed AUTH exchanges.
    pub auth_failed: u64,
    /// Commands read while the client had already sent more after them, i.e. without waiting
    /// for their reply (PIPELINING).
    pub pipelined: u64,
}

/// A running SMTP sink; stops accepting connections when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    shutdown: watch::Sender<bool>,
}

impl SmtpSink {
    /// Starts a sink without AUTH on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_with(SmtpSinkConfig::default()).await
    }

    /// Starts a sink with these settings on a free port of 127.0.0.1.
    pub async fn start_with(config: SmtpSinkConfig) -> Self {
        Self::start_on(config, 0)
            .await
            .expect("binding 127.0.0.1:0 works")
    }

    /// Starts a sink on the given port of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(config: SmtpSinkConfig, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState {
            config,
            rules: Mutex::new(Rules::default()),
            messages: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rcpt_refused: AtomicU64::new(0),
            data_refused: AtomicU64::new(0),
            dropped_after_accept: AtomicU64::new(0),
            auth_ok: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            pipelined: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        });
        let (shutdown, mut stop) = watch::channel(false);
        let accept_state = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        accept_state.connections.fetch_add(1, Ordering::Relaxed);
                        let state = Arc::clone(&accept_state);
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let _ = Session::new(state, stop).run(stream).await;
                        });
                    }
                }
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers RCPT TO for `address` (case-insensitive) with `reply`, every time.
    pub fn reject_recipient(&self, address: &str, reply: Reply) {
        self.state
            .rules()
            .recipients
            .insert(address.to_ascii_lowercase(), (reply, None));
    }

    /// Answers RCPT TO for `address` with `reply` the next `times` times, then accepts it.
    pub fn reject_recipient_times(&self, address: &str, reply: Reply, times: u32) {
        self.state
            .rules()
            .recipients
            .insert(address.to_ascii_lowercase(), (reply, Some(times)));
    }

    /// Accepts `address` again.
    pub fn accept_recipient(&self, address: &str) {
        self.state
            .rules()
            .recipients
            .remove(&address.to_ascii_lowercase());
    }

    /// Refuses every message at the end of DATA with `reply` (e.g. 554 5.7.1), or stops doing
    /// so with `None`.
    pub fn reject_all_at_data(&self, reply: Option<Reply>) {
        self.state.rules().data = reply;
    }

    /// Accepts the next `times` messages with `address` (case-insensitive) among their
    /// recipients at the end of DATA, stores and counts them, and then closes the connection
    /// without the final `250` reply; `times` 0 cancels an earlier call.
    pub fn drop_after_accept(&self, address: &str, times: u32) {
        let mut rules = self.state.rules();
        let key = address.to_ascii_lowercase();
        if times == 0 {
            rules.drops.remove(&key);
        } else {
            rules.drops.insert(key, times);
        }
    }

    /// Every accepted message, in order (empty when messages are discarded).
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.state.messages().clone()
    }

    /// Accepted messages with `address` among their envelope recipients.
    pub fn messages_to(&self, address: &str) -> Vec<ReceivedMail> {
        self.state
            .messages()
            .iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address)))
            .cloned()
            .collect()
    }

    /// Counters.
    pub fn counts(&self) -> SinkCounts {
        let s = &self.state;
        SinkCounts {
            connections: s.connections.load(Ordering::Relaxed),
            accepted: s.accepted.load(Ordering::Relaxed),
            rcpt_refused: s.rcpt_refused.load(Ordering::Relaxed),
            data_refused: s.data_refused.load(Ordering::Relaxed),
            dropped_after_accept: s.dropped_after_accept.load(Ordering::Relaxed),
            auth_ok: s.auth_ok.load(Ordering::Relaxed),
            auth_failed: s.auth_failed.load(Ordering::Relaxed),
            pipelined: s.pipelined.load(Ordering::Relaxed),
        }
    }

    /// Number of accepted messages.
    pub fn message_count(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` messages were accepted; false when `timeout` passes first.
    pub async fn wait_for_messages(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.message_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[derive(Debug, Default)]
struct Rules {
    /// Per recipient: the reply and how many more times to give it (`None`: always).
    recipients: HashMap<String, (Reply, Option<u32>)>,
    data: Option<Reply>,
    /// Per recipient: how many more accepted messages to leave unanswered.
    drops: HashMap<String, u32>,
}

#[derive(Debug)]
struct SinkState {
    config: SmtpSinkConfig,
    rules: Mutex<Rules>,
    messages: Mutex<Vec<ReceivedMail>>,
    connections: AtomicU64,
    accepted: AtomicU64,
    rcpt_refused: AtomicU64,
    data_refused: AtomicU64,
    dropped_after_accept: AtomicU64,
    auth_ok: AtomicU64,
    auth_failed: AtomicU64,
    pipelined: AtomicU64,
    next_id: AtomicU64,
}

impl SinkState {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn messages(&self) -> MutexGuard<'_, Vec<ReceivedMail>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an accepted message to these recipients is to be left unanswered, using up one
    /// drop of each recipient that has some.
    fn take_drops(&self, recipients: &[String]) -> bool {
        let mut rules = self.rules();
        if rules.drops.is_empty() {
            return false;
        }
        let mut keys: Vec<String> = recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut drops = false;
        for key in keys {
            if let Some(left) = rules.drops.get_mut(&key) {
                drops = true;
                *left = left.saturating_sub(1);
                if *left == 0 {
                    rules.drops.remove(&key);
                }
            }
        }
        drops
    }

    /// The configured reply for a recipient, using up one of its counted refusals.
    fn recipient_reply(&self, address: &str) -> Option<Reply> {
        let mut rules = self.rules();
        let key = address.to_ascii_lowercase();
        let (reply, times) = rules.recipients.get_mut(&key)?;
        let reply = reply.clone();
        match times {
            None => Some(reply),
            Some(0) => {
                rules.recipients.remove(&key);
                None
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    rules.recipients.remove(&key);
                }
                Some(reply)
            }
        }
    }
}

/// Where the conversation stands.
#[derive(Debug, Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

struct Session {
    state: Arc<SinkState>,
    stop: watch::Receiver<bool>,
    greeted: bool,
    user: Option<String>,
    tx: Transaction,
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;
type Writer = BufWriter<tokio::net::tcp::OwnedWriteHalf>;

impl Session {
    fn new(state: Arc<SinkState>, stop: watch::Receiver<bool>) -> Self {
        Self {
            state,
            stop,
            greeted: false,
            user: None,
            tx: Transaction::default(),
        }
    }

    async fn run(mut self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut writer = BufWriter::new(write);
        writer
            .write_all(b"220 127.0.0.1 ESMTP broadcast-testkit sink\r\n")
            .await?;
        writer.flush().await?;
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let n = tokio::select! {
                _ = self.stop.changed() => {
                    writer.write_all(b"421 4.3.2 Shutting down\r\n").await?;
                    writer.flush().await?;
                    return Ok(());
                }
                n = read_line(&mut reader, &mut line) => n?,
            };
            if n == 0 {
                return Ok(());
            }
            if !reader.buffer().is_empty() {
                self.state.pipelined.fetch_add(1, Ordering::Relaxed);
            }
            let command = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            let quit = self.command(&command, &mut reader, &mut writer).await?;
            // PIPELINING: answer a batch of commands with one write.
            if quit || reader.buffer().is_empty() {
                writer.flush().await?;
            }
            if quit {
                return Ok(());
            }
        }
    }

    /// Handles one command; true when the connection should close.
    async fn command(
        &mut self,
        command: &str,
        reader: &mut Reader,
        writer: &mut Writer,
    ) -> std::io::Result<bool> {
        if command.len() > MAX_LINE {
            writer.write_all(b"500 5.5.2 Line too long\r\n").await?;
            return Ok(false);
        }
        let (verb, arg) = match command.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (command.trim().to_ascii_uppercase(), ""),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                self.greeted = true;
                self.tx = Transaction::default();
                let pipelining = if self.state.config.no_pipelining {
                    ""
                } else {
                    "250-PIPELINING\r\n"
                };
                format!(
                    "250-127.0.0.1 greets {arg}\r\n{pipelining}250-8BITMIME\r\n\
                     250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE {MAX_MESSAGE}\r\n\
                     250 AUTH PLAIN LOGIN\r\n"
                )
            }
            "HELO" => {
                self.greeted = true;
                self.tx = Transaction::default();
                "250 127.0.0.1\r\n".to_owned()
            }
            "AUTH" => self.auth(arg, reader, writer).await?,
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => match self.data(reader, writer).await? {
                Some(reply) => reply,
                // Accepted, but the connection closes without the final reply.
                None => return Ok(true),
            },
            "RSET" => {
                self.tx = Transaction::default();
                "250 2.0.0 Ok\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".to_owned(),
            "VRFY" => "252 2.0.0 Cannot VRFY user\r\n".to_owned(),
            "STARTTLS" => "454 4.7.0 TLS not available on the test sink\r\n".to_owned(),
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(true);
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".to_owned(),
        };
        writer.write_all(reply.as_bytes()).await?;
        Ok(false)
    }

    async fn auth(
        &mut self,
        arg: &str,
        reader: &mut Reader,
        writer: &mut Writer,
    ) -> std::io::Result<String> {
        if !self.greeted {
            return Ok("503 5.5.1 Error: send HELO/EHLO first\r\n".to_owned());
        }
        if self.user.is_some() {
            return Ok("503 5.5.1 Error: already authenticated\r\n".to_owned());
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let credentials = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => match challenge(reader, writer, "").await? {
                        Some(r) => r,
                        None => return Ok("501 5.7.0 Authentication cancelled\r\n".to_owned()),
                    },
                };
                decode(&response).and_then(|plain| {
                    let mut parts = plain.split('\0');
                    let _authzid = parts.next()?;
                    let user = parts.next()?.to_owned();
                    let pass = parts.next()?.to_owned();
                    Some((user, pass))
                })
            }
            "LOGIN" => {
                let user = match initial {
                    Some(u) => Some(u),
                    None => challenge(reader, writer, "VXNlcm5hbWU6").await?,
                };
                let Some(user) = user else {
                    return Ok("501 5.7.0 Authentication cancelled\r\n".to_owned());
                };
                let Some(pass) = challenge(reader, writer, "UGFzc3dvcmQ6").await? else {
                    return Ok("501 5.7.0 Authentication cancelled\r\n".to_owned());
                };
                decode(&user).zip(decode(&pass))
            }
            _ => return Ok("504 5.5.4 Unrecognized authentication type\r\n".to_owned()),
        };
        let Some((user, pass)) = credentials else {
            return Ok("501 5.5.2 Cannot decode response\r\n".to_owned());
        };
        let ok = match &self.state.config.credentials {
            Some((u, p)) => *u == user && *p == pass,
            None => true,
        };
        if ok {
            self.state.auth_ok.fetch_add(1, Ordering::Relaxed);
            self.user = Some(user);
            Ok("235 2.7.0 Authentication successful\r\n".to_owned())
        } else {
            self.state.auth_failed.fetch_add(1, Ordering::Relaxed);
            Ok("535 5.7.8 Authentication credentials invalid\r\n".to_owned())
        }
    }

    fn mail(&mut self, arg: &str) -> String {
        if !self.greeted {
            return "503 5.5.1 Error: send HELO/EHLO first\r\n".to_owned();
        }
        if self.state.config.credentials.is_some() && self.user.is_none() {
            return "530 5.7.0 Authentication required\r\n".to_owned();
        }
        if self.tx.mail_from.is_some() {
            return "503 5.5.1 Error: nested MAIL command\r\n".to_owned();
        }
        let Some(address) = path_argument(arg, "FROM:") else {
            return "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_owned();
        };
        self.tx.mail_from = Some(address);
        "250 2.1.0 Ok\r\n".to_owned()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        if self.tx.mail_from.is_none() {
            return "503 5.5.1 Error: need MAIL command\r\n".to_owned();
        }
        let Some(address) = path_argument(arg, "TO:").filter(|a| !a.is_empty()) else {
            return "501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_owned();
        };
        if let Some(reply) = self.state.recipient_reply(&address)
            && !(200..300).contains(&reply.code)
        {
            self.state.rcpt_refused.fetch_add(1, Ordering::Relaxed);
            return reply.line();
        }
        self.tx.rcpt_to.push(address);
        "250 2.1.5 Ok\r\n".to_owned()
    }

    /// Reads a message; the reply to give, or `None` when it was accepted and the connection
    /// is to close without a reply.
    async fn data(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
    ) -> std::io::Result<Option<String>> {
        if self.tx.rcpt_to.is_empty() {
            return Ok(Some("554 5.5.1 Error: no valid recipients\r\n".to_owned()));
        }
        writer
            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .await?;
        writer.flush().await?;
        // Discarding, only the size is kept.
        let keep = !self.state.config.discard_messages;
        let mut data = Vec::with_capacity(if keep { 4096 } else { 0 });
        let mut size = 0;
        let mut line = Vec::with_capacity(256);
        let mut too_big = false;
        loop {
            line.clear();
            if read_line(reader, &mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let content = trim_eol(&line);
            if content == b"." {
                break;
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            if size + content.len() + 2 > MAX_MESSAGE {
                too_big = true;
                continue;
            }
            size += content.len() + 2;
            if keep {
                data.extend_from_slice(content);
                data.extend_from_slice(b"\r\n");
            }
        }
        let tx = std::mem::take(&mut self.tx);
        if too_big {
            return Ok(Some(
                "552 5.3.4 Message size exceeds fixed limit\r\n".to_owned(),
            ));
        }
        let refusal = self.state.rules().data.clone();
        if let Some(reply) = refusal {
            self.state.data_refused.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(reply.line()));
        }
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let drops = self.state.take_drops(&tx.rcpt_to)
            || self
                .state
                .config
                .drop_every
                .is_some_and(|k| k > 0 && id.is_multiple_of(u64::from(k)));
        if keep {
            self.state.messages().push(ReceivedMail {
                mail_from: tx.mail_from.unwrap_or_default(),
                rcpt_to: tx.rcpt_to,
                data,
                authenticated_as: self.user.clone(),
                at: Instant::now(),
            });
        }
        self.state.accepted.fetch_add(1, Ordering::Relaxed);
        if drops {
            self.state
                .dropped_after_accept
                .fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(format!("250 2.0.0 Ok: queued as SINK{id:08}\r\n")))
    }
}

/// Sends a 334 challenge and reads the answer; `None` when the client cancels with `*`.
async fn challenge(
    reader: &mut Reader,
    writer: &mut Writer,
    prompt: &str,
) -> std::io::Result<Option<String>> {
    writer
        .write_all(format!("334 {prompt}\r\n").as_bytes())
        .await?;
    writer.flush().await?;
    let mut line = Vec::new();
    if read_line(reader, &mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let answer = String::from_utf8_lossy(trim_eol(&line)).trim().to_owned();
    Ok((answer != "*").then_some(answer))
}

fn decode(b64: &str) -> Option<String> {
    BASE64
        .decode(b64.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `<address>` after `FROM:` / `TO:` (case-insensitive), ignoring parameters.
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// Reads one line (up to and including `\n`), refusing to buffer endlessly long lines.
async fn read_line(reader: &mut Reader, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let n = reader.read_until(b'\n', line).await?;
    if line.len() > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(n)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn talk(port: u16, script: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(script.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    /// Writes `command` (may be empty) and reads one whole reply.
    async fn exchange(stream: &mut BufReader<TcpStream>, command: &str) -> String {
        stream.write_all(command.as_bytes()).await.unwrap();
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            reply.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return reply;
            }
        }
    }

    #[tokio::test]
    async fn a_pipelined_conversation_is_stored_dot_unstuffed() {
        let sink = SmtpSink::start().await;
        sink.reject_recipient("gone@example.org", Reply::new(550, "5.1.1 No such user"));
        let out = talk(
            sink.port(),
            "EHLO test\r\nMAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<gone@example.org>\r\n\
             RCPT TO:<Ann@Example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..dot line\r\nbody\r\n.\r\n\
             NOOP\r\nRSET\r\nQUIT\r\n",
        )
        .await;
        assert!(out.starts_with("220 "), "{out}");
        assert!(out.contains("250-PIPELINING"), "{out}");
        assert!(out.contains("550 5.1.1 No such user"), "{out}");
        assert!(out.contains("354 "), "{out}");
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
        assert!(out.ends_with("221 2.0.0 Bye\r\n"), "{out}");
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(m.mail_from, "a@example.org");
        assert_eq!(m.rcpt_to, vec!["Ann@Example.org".to_owned()]);
        assert_eq!(m.raw(), "Subject: hi\r\n\r\n.dot line\r\nbody\r\n");
        assert_eq!(m.header("subject").as_deref(), Some("hi"));
        assert_eq!(sink.messages_to("ann@example.org").len(), 1);
        assert_eq!(sink.counts().rcpt_refused, 1);
        assert!(sink.counts().pipelined > 0);
    }

    #[tokio::test]
    async fn pipelining_can_be_left_out_and_messages_only_counted() {
        let sink = SmtpSink::start_with(SmtpSinkConfig {
            no_pipelining: true,
            discard_messages: true,
            ..SmtpSinkConfig::default()
        })
        .await;
        // One command, then its reply, as a client of such a server must.
        let mut stream = BufReader::new(
            TcpStream::connect(("127.0.0.1", sink.port()))
                .await
                .unwrap(),
        );
        let greeting = exchange(&mut stream, "").await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        let ehlo = exchange(&mut stream, "EHLO t\r\n").await;
        assert!(
            ehlo.contains("250-8BITMIME") && !ehlo.contains("PIPELINING"),
            "{ehlo}"
        );
        for (command, reply) in [
            ("MAIL FROM:<a@x.org>\r\n", "250 "),
            ("RCPT TO:<b@x.org>\r\n", "250 "),
            ("DATA\r\n", "354 "),
            ("Subject: x\r\n\r\nbody\r\n.\r\n", "250 2.0.0 Ok: queued as"),
            ("QUIT\r\n", "221 "),
        ] {
            let got = exchange(&mut stream, command).await;
            assert!(got.starts_with(reply), "{command}: {got}");
        }
        assert_eq!(sink.message_count(), 1);
        assert!(sink.messages().is_empty(), "discarded, only counted");
        assert_eq!(sink.counts().pipelined, 0);

        // Commands sent in one write are still answered in order, and counted.
        let out = talk(
            sink.port(),
            "EHLO t\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nQUIT\r\n",
        )
        .await;
        assert!(out.ends_with("250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n"), "{out}");
        assert_eq!(sink.counts().pipelined, 3);
    }

    #[tokio::test]
    async fn auth_is_required_when_configured() {
        let sink = SmtpSink::start_with(SmtpSinkConfig {
            credentials: Some(("user".into(), "pass".into())),
            ..SmtpSinkConfig::default()
        })
        .await;
        let plain_ok = BASE64.encode("\0user\0pass");
        let out = talk(
            sink.port(),
            &format!(
                "EHLO t\r\nMAIL FROM:<a@x.org>\r\nAUTH PLAIN {}\r\nAUTH PLAIN {plain_ok}\r\nQUIT\r\n",
                BASE64.encode("\0user\0wrong")
            ),
        )
        .await;
        assert!(out.contains("530 5.7.0"), "{out}");
        assert!(out.contains("535 5.7.8"), "{out}");
        assert!(out.contains("235 2.7.0"), "{out}");
        let out = talk(
            sink.port(),
            &format!(
                "EHLO t\r\nAUTH LOGIN\r\n{}\r\n{}\r\nMAIL FROM:<a@x.org>\r\nQUIT\r\n",
                BASE64.encode("user"),
                BASE64.encode("pass")
            ),
        )
        .await;
        assert!(
            out.contains("334 VXNlcm5hbWU6") && out.contains("334 UGFzc3dvcmQ6"),
            "{out}"
        );
        assert!(
            out.contains("235 2.7.0") && out.contains("250 2.1.0"),
            "{out}"
        );
        assert_eq!(sink.counts().auth_ok, 2);
        assert_eq!(sink.counts().auth_failed, 1);
    }

    /// Sends one message on `stream` (after EHLO), returning the reply to its end of DATA.
    async fn send_one(stream: &mut BufReader<TcpStream>, rcpt: &str, subject: &str) -> String {
        for (command, reply) in [
            ("MAIL FROM:<s@x.org>\r\n".to_owned(), "250 "),
            (format!("RCPT TO:<{rcpt}>\r\n"), "250 "),
            ("DATA\r\n".to_owned(), "354 "),
        ] {
            let got = exchange(stream, &command).await;
            assert!(got.starts_with(reply), "{command}: {got}");
        }
        exchange(stream, &format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n")).await
    }

    async fn connect(sink: &SmtpSink) -> BufReader<TcpStream> {
        let mut stream = BufReader::new(
            TcpStream::connect(("127.0.0.1", sink.port()))
                .await
                .unwrap(),
        );
        assert!(exchange(&mut stream, "").await.starts_with("220 "));
        assert!(
            exchange(&mut stream, "EHLO t\r\n")
                .await
                .starts_with("250-")
        );
        stream
    }

    /// True when the server closed the connection: nothing more to read.
    async fn closed(stream: &mut BufReader<TcpStream>) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("closed within 5 s");
        read.is_err() || rest.is_empty()
    }

    #[tokio::test]
    async fn drop_after_accept_stores_the_message_and_closes_without_250() {
        let sink = SmtpSink::start().await;
        sink.drop_after_accept("Lost@x.org", 1);
        let mut stream = connect(&sink).await;
        let reply = send_one(&mut stream, "lost@X.org", "first").await;
        assert_eq!(reply, "", "no reply at all, got {reply:?}");
        assert!(closed(&mut stream).await);
        let stored = sink.messages_to("lost@x.org");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].header("Subject").as_deref(), Some("first"));
        // Used up: the next message to the address is answered.
        let mut stream = connect(&sink).await;
        let reply = send_one(&mut stream, "lost@x.org", "second").await;
        assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
        let counts = sink.counts();
        assert_eq!((counts.accepted, counts.dropped_after_accept), (2, 1));
        assert_eq!(counts.connections, 2);
    }

    #[tokio::test]
    async fn drop_every_leaves_every_kth_accepted_message_unanswered() {
        let sink = SmtpSink::start_with(SmtpSinkConfig {
            drop_every: Some(2),
            ..SmtpSinkConfig::default()
        })
        .await;
        sink.reject_all_at_data(Some(Reply::new(451, "4.3.0 Not now")));
        let mut stream = connect(&sink).await;
        // A refused message is not an accepted one and does not move the count.
        assert!(
            send_one(&mut stream, "a@x.org", "refused")
                .await
                .starts_with("451 ")
        );
        sink.reject_all_at_data(None);
        let reply = send_one(&mut stream, "a@x.org", "1").await;
        assert!(reply.starts_with("250 "), "{reply}");
        assert_eq!(send_one(&mut stream, "b@x.org", "2").await, "");
        assert!(closed(&mut stream).await);
        let mut stream = connect(&sink).await;
        let reply = send_one(&mut stream, "c@x.org", "3").await;
        assert!(reply.starts_with("250 "), "{reply}");
        assert_eq!(send_one(&mut stream, "d@x.org", "4").await, "");
        let subjects: Vec<_> = sink
            .messages()
            .iter()
            .filter_map(|m| m.header("Subject"))
            .collect();
        assert_eq!(subjects, ["1", "2", "3", "4"]);
        let counts = sink.counts();
        assert_eq!(
            (
                counts.accepted,
                counts.dropped_after_accept,
                counts.data_refused
            ),
            (4, 2, 1)
        );
    }

    #[tokio::test]
    async fn counted_refusals_and_data_rejection() {
        let sink = SmtpSink::start().await;
        sink.reject_recipient_times("a@x.org", Reply::new(451, "4.2.0 Try later"), 1);
        sink.reject_all_at_data(Some(Reply::new(554, "5.7.1 Rejected")));
        let script = "HELO t\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<a@x.org>\r\nRCPT TO:<a@x.org>\r\n\
                      DATA\r\nx\r\n.\r\nQUIT\r\n";
        let out = talk(sink.port(), script).await;
        assert!(
            out.contains("451 4.2.0 Try later") && out.contains("554 5.7.1 Rejected"),
            "{out}"
        );
        assert_eq!(sink.message_count(), 0);
        sink.reject_all_at_data(None);
        let out = talk(sink.port(), script).await;
        assert!(!out.contains("451") && out.contains("queued as"), "{out}");
        assert!(sink.wait_for_messages(1, Duration::from_secs(1)).await);
    }
}
