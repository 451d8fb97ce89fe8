//! A pool of SMTP connections whose sockets have Nagle's algorithm off (`TCP_NODELAY`).
//!
//! lettre's own pooled transport (0.11.23) leaves Nagle on and writes the end of a message body
//! (`\r\n.\r\n`) as a second small write. That write then waits for the server's delayed ACK of
//! the body, 40 ms on Linux, so one connection sends at most about 23 messages a second however
//! fast the server is (fixed upstream in lettre PR #1159, not released yet). The pool also sends
//! a `NOOP` before every reuse of a connection, one more round trip per message.
//!
//! This pool opens the TCP connection itself, sets `TCP_NODELAY`, and hands the socket to
//! lettre's [`AsyncSmtpConnection`] for the SMTP conversation (greeting, EHLO, STARTTLS, AUTH,
//! MAIL/RCPT/DATA), so the protocol and its error types stay lettre's. A connection idle for
//! less than [`FRESH`] is reused without a `NOOP`; an older one is checked with `NOOP` first,
//! and one idle longer than [`MAX_IDLE`] is closed. A connection on which anything failed is
//! closed (lettre aborts it), never reused.
//!
//! Used for `SMTP_TLS=none` and `starttls`; implicit TLS (`tls`) keeps lettre's transport (see
//! `email.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
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
    Smtp(lettre::transport::smtp::Error),
    /// No reply within the configured time.
    Timeout(Duration),
}

/// A connection waiting in the pool (not `Debug`: lettre's connection is not).
#[allow(missing_debug_implementations)]
struct Idle {
    conn: AsyncSmtpConnection,
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
        match tokio::time::timeout(self.timeout, conn.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                self.checkin(conn);
                Ok(response)
            }
            // lettre has aborted the connection; it is dropped here.
            Ok(Err(e)) => Err(PoolError::Smtp(e)),
            Err(_) => Err(PoolError::Timeout(self.timeout)),
        }
    }

    /// Opens a connection (with STARTTLS and AUTH as configured) and closes it.
    pub(crate) async fn verify(&self) -> Result<(), PoolError> {
        let mut conn = self.connect().await?;
        let quit = tokio::time::timeout(self.timeout, conn.quit()).await;
        match quit {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PoolError::Smtp(e)),
            Err(_) => Err(PoolError::Timeout(self.timeout)),
        }
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, PoolError> {
        loop {
            let idle = self.lock().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return self.connect().await;
            };
            let idle_for = since.elapsed();
            if idle_for > MAX_IDLE {
                conn.abort().await;
                continue;
            }
            if idle_for < FRESH
                || tokio::time::timeout(self.timeout, conn.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
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

    async fn connect(&self) -> Result<AsyncSmtpConnection, PoolError> {
        let open = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(PoolError::Connect)?;
            tcp.set_nodelay(true).map_err(PoolError::Connect)?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(PoolError::Smtp)?;
            if let Some(tls) = &self.starttls {
                conn.starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(PoolError::Smtp)?;
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials)
                    .await
                    .map_err(PoolError::Smtp)?;
            }
            Ok(conn)
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .unwrap_or(Err(PoolError::Timeout(self.timeout)))
    }
}
