//! A pool of SMTP connections whose sockets have Nagle's algorithm off (`TCP_NODELAY`).
//!
//! lettre's own pooled transport (0.11.23) leaves Nagle on and writes the end of a message body
//! (`\r\n.\r\n`) as a second small write. That write then waits for the server's delayed ACK of
//! the body, 40 ms on Linux, so one connection sends at most about 23 messages a second however
//! fast the server is (fixed upstream in lettre PR #1159, not released yet). The pool also sends
//! a `NOOP` before every reuse of a connection, one more round trip per message, and lettre
//! sends `MAIL`, `RCPT` and `DATA` one at a time even when the server offers `PIPELINING`.
//!
//! This pool opens the TCP connection itself, sets `TCP_NODELAY`, and hands the socket to
//! lettre's [`AsyncSmtpConnection`] for the SMTP conversation (greeting, EHLO, STARTTLS, AUTH),
//! so the protocol and its error types stay lettre's. A connection idle for less than [`FRESH`]
//! is reused without a `NOOP`; an older one is checked with `NOOP` first, and one idle longer
//! than [`MAX_IDLE`] is closed. A connection on which anything failed is closed, never reused.
//!
//! **Pipelining (RFC 2920).** lettre's `ServerInfo` forgets EHLO keywords it does not use, so
//! after the greeting (and STARTTLS) the pool sends one `EHLO` of its own, before AUTH, and reads
//! `PIPELINING` from that reply. When it is offered, a message takes two round trips instead of
//! four: `MAIL FROM`, `RCPT TO` and `DATA` go out in one write and their replies are read in
//! order, then the dot-stuffed body and its final `.` go out in one write. Replies are read with
//! lettre's own reader, so a refusal is the same lettre error (and the same failure kind) as
//! without pipelining. After the first negative reply the remaining replies of the group are
//! not read, so the connection is dropped, never reused. Without `PIPELINING` (or when a
//! message needs `SMTPUTF8` or `8BITMIME` and the server lacks it) lettre's one-at-a-time
//! `send` is used, with its errors.
//!
//! Used for `SMTP_TLS=none` and `starttls`; implicit TLS (`tls`) keeps lettre's transport (see
//! `email.rs`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;

/// Reused without a `NOOP` when idle for less than this.
pub(crate) const FRESH: Duration = Duration::from_secs(5);
/// Closed instead of reused when idle for longer than this (servers drop idle clients after
/// a few minutes; RFC 5321 asks them to wait at least 5).
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(60);

/// Why a send through the pool failed.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// The TCP connection could not be opened (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// The SMTP conversation failed: lettre's error, with the server's reply when there was one.
    Smtp {
        /// The error.
        error: lettre::transport::smtp::Error,
        /// The message's body may have been written before it (see [`Conn::body_written`]).
        after_body: bool,
    },
    /// No reply within the configured time.
    Timeout {
        /// The time waited.
        after: Duration,
        /// The message's body may have been written before it.
        after_body: bool,
    },
}

impl PoolError {
    /// An error before any message was under way (connecting, greeting, TLS, AUTH).
    fn setup(error: lettre::transport::smtp::Error) -> Self {
        Self::Smtp {
            error,
            after_body: false,
        }
    }

    /// The relay may have accepted the message although no reply says so: the body was (or
    /// may have been) written, and then the connection failed or timed out before a reply.
    pub(crate) fn outcome_unknown(&self) -> bool {
        match self {
            Self::Connect(_) => false,
            Self::Smtp { error, after_body } => {
                *after_body && !error.is_transient() && !error.is_permanent() && !error.is_client()
            }
            Self::Timeout { after_body, .. } => *after_body,
        }
    }
}

/// An open SMTP connection and what the pool knows about it beyond lettre (not `Debug`:
/// lettre's connection is not).
#[allow(missing_debug_implementations)]
struct Conn {
    smtp: AsyncSmtpConnection,
    /// The server listed `PIPELINING` in its reply to the pool's own `EHLO`.
    pipelining: bool,
    /// Reused for each message's command group and dot-stuffed body.
    buf: String,
    /// Set just before the current message's body is written (and for lettre's own `send`,
    /// which does not say how far it got, when it starts): from then on the relay may accept
    /// the message even if no reply arrives.
    body_written: bool,
}

/// A connection waiting in the pool.
#[allow(missing_debug_implementations)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Idle connections to one relay, at most `max_idle` of them.
pub(crate) struct SmtpPool {
    host: String,
    port: u16,
    starttls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpPool")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls.is_some())
            .field("auth", &self.credentials.is_some())
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    /// A pool for `host:port`; `starttls` requires STARTTLS with these parameters. Connects
    /// lazily.
    pub(crate) fn new(
        host: String,
        port: u16,
        starttls: Option<TlsParameters>,
        credentials: Option<Credentials>,
        timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            host,
            port,
            starttls,
            credentials,
            hello: ClientId::default(),
            timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one message on a pooled (or new) connection, within the timeout.
    pub(crate) async fn send(
        &self,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<Response, PoolError> {
        let mut conn = self.checkout().await?;
        conn.body_written = false;
        match tokio::time::timeout(self.timeout, conn.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                self.checkin(conn);
                Ok(response)
            }
            // lettre has aborted the connection, or pipelined replies were left unread: it is
            // dropped here (closing the socket), never reused.
            Ok(Err(error)) => Err(PoolError::Smtp {
                error,
                after_body: conn.body_written,
            }),
            Err(_) => Err(PoolError::Timeout {
                after: self.timeout,
                after_body: conn.body_written,
            }),
        }
    }

    /// Opens a connection (with STARTTLS and AUTH as configured) and closes it.
    pub(crate) async fn verify(&self) -> Result<(), PoolError> {
        let mut conn = self.connect().await?;
        let quit = tokio::time::timeout(self.timeout, conn.smtp.quit()).await;
        match quit {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PoolError::setup(e)),
            Err(_) => Err(PoolError::Timeout {
                after: self.timeout,
                after_body: false,
            }),
        }
    }

    async fn checkout(&self) -> Result<Conn, PoolError> {
        loop {
            let idle = self.lock().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return self.connect().await;
            };
            let idle_for = since.elapsed();
            if idle_for > MAX_IDLE {
                conn.smtp.abort().await;
                continue;
            }
            if idle_for < FRESH
                || tokio::time::timeout(self.timeout, conn.smtp.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(conn);
            }
            conn.smtp.abort().await;
        }
    }

    fn checkin(&self, conn: Conn) {
        if conn.smtp.has_broken() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let open = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(PoolError::Connect)?;
            tcp.set_nodelay(true).map_err(PoolError::Connect)?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(PoolError::setup)?;
            if let Some(tls) = &self.starttls {
                conn.starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(PoolError::setup)?;
            }
            // lettre keeps only the EHLO keywords it uses: ask again to learn PIPELINING.
            // Before AUTH, as RFC 5321 lets an EHLO reset the session like RSET.
            let ehlo = conn
                .command(Ehlo::new(self.hello.clone()))
                .await
                .map_err(PoolError::setup)?;
            let pipelining = offers_pipelining(&ehlo);
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials)
                    .await
                    .map_err(PoolError::setup)?;
            }
            Ok(Conn {
                smtp: conn,
                pipelining,
                buf: String::new(),
                body_written: false,
            })
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .unwrap_or(Err(PoolError::Timeout {
                after: self.timeout,
                after_body: false,
            }))
    }
}

impl Conn {
    /// Sends one message: pipelined when the server offers it, else through lettre's `send`.
    /// On an error the connection must not be reused.
    async fn send(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<Response, lettre::transport::smtp::Error> {
        let info = self.smtp.server_info();
        let mut parameters = Vec::new();
        let ascii_addresses = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .all(|a| AsRef::<str>::as_ref(a).is_ascii());
        if !ascii_addresses {
            parameters.push(MailParameter::SmtpUtfEight);
        }
        let ascii_body = raw.is_ascii();
        if !ascii_body {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if !self.pipelining
            || (!ascii_addresses && !info.supports_feature(Extension::SmtpUtfEight))
            || (!ascii_body && !info.supports_feature(Extension::EightBitMime))
        {
            // One command at a time; lettre also refuses (with its own client error) what the
            // server cannot take. It does not say how far it got: assume the body went.
            self.body_written = true;
            return self.smtp.send(envelope, raw).await;
        }

        // MAIL, RCPT and DATA in one write; their replies in order. `command` writes its text
        // and reads one reply (MAIL's); a negative reply is lettre's error for it.
        self.buf.clear();
        let _ = write!(
            self.buf,
            "{}",
            Mail::new(envelope.from().cloned(), parameters)
        );
        for to in envelope.to() {
            let _ = write!(self.buf, "{}", Rcpt::new(to.clone(), Vec::new()));
        }
        let _ = write!(self.buf, "{Data}");
        self.smtp.command(self.buf.as_str()).await?;
        for _ in envelope.to() {
            self.smtp.read_response().await?;
        }
        self.smtp.read_response().await?;

        // The body and its final dot in one write.
        self.body_written = true;
        match std::str::from_utf8(raw) {
            Ok(text) => {
                dot_stuff(text, &mut self.buf);
                self.smtp.command(self.buf.as_str()).await
            }
            Err(_) => self.smtp.message(raw).await,
        }
    }
}

/// Whether an EHLO reply lists the `PIPELINING` keyword (RFC 2920); keywords are
/// case-insensitive and start on the reply's second line.
fn offers_pipelining(ehlo: &Response) -> bool {
    ehlo.message().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
    })
}

/// Writes `text` into `out` as DATA content: a `.` doubled at the start of every line (after
/// CRLF, or at the very start), then `\r\n.\r\n`. The same bytes as lettre's `message`.
fn dot_stuff(text: &str, out: &mut String) {
    out.clear();
    out.reserve(text.len() + 16);
    if text.starts_with('.') {
        out.push('.');
    }
    let mut from = 0;
    for (at, _) in text.match_indices("\r\n.") {
        out.push_str(&text[from..at + 2]);
        out.push('.');
        from = at + 2;
    }
    out.push_str(&text[from..]);
    out.push_str("\r\n.\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_matches_lettre() {
        // lettre's own codec test, its frames joined.
        let mut out = String::new();
        dot_stuff(
            ".\r\ntest\r\ntest\r\n\r\n.\r\n\r\ntestte\r\n.\r\nsttesttest.test\n.test\n\
             testtesttest\r\n.test\r\ntest.\r\n",
            &mut out,
        );
        assert_eq!(
            out,
            "..\r\ntest\r\ntest\r\n\r\n..\r\n\r\ntestte\r\n..\r\nsttesttest.test\n.test\n\
             testtesttest\r\n..test\r\ntest.\r\n\r\n.\r\n"
        );
        dot_stuff("a\r\n.\r\n.", &mut out);
        assert_eq!(out, "a\r\n..\r\n..\r\n.\r\n");
        dot_stuff("", &mut out);
        assert_eq!(out, "\r\n.\r\n");
    }

    #[test]
    fn pipelining_is_read_from_the_ehlo_keywords() {
        let reply = |text: &str| text.parse::<Response>().unwrap();
        assert!(offers_pipelining(&reply(
            "250-mx.example.org greets you\r\n250-SIZE 1000\r\n250-pipelining\r\n250 8BITMIME\r\n"
        )));
        assert!(!offers_pipelining(&reply(
            "250-PIPELINING.example.org\r\n250-SIZE 1000\r\n250 XPIPELINING\r\n"
        )));
        assert!(!offers_pipelining(&reply("250 mx.example.org\r\n")));
    }
}
