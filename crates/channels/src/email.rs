//! The e-mail channel: SMTP through lettre with a connection pool (`smtp_pool.rs`: sockets with
//! `TCP_NODELAY`, `MAIL`/`RCPT`/`DATA` pipelined when the server offers it), an optional rate
//! limit, and every failure classified into a [`FailureKind`] with the password scrubbed.
//!
//! Classification of SMTP replies (lettre does not say which command a reply answered, so the
//! decision rests on the codes; RFC 3463 enhanced status codes win when the server sends one):
//!
//! | reply                                                        | kind             |
//! |--------------------------------------------------------------|------------------|
//! | 4xx (any command)                                            | `Transient`      |
//! | 5xx with enhanced code 5.1.x (bad mailbox, bad domain, moved) | `InvalidAddress` |
//! |   except 5.1.7 / 5.1.8 (the *sender's* address is bad)        | `Permanent`      |
//! | 5xx with enhanced code 5.2.1 (mailbox disabled)              | `InvalidAddress` |
//! | 5xx with any other enhanced code (5.7.1 policy, 5.2.2 full)  | `Permanent`      |
//! | 550, 551, 553 without an enhanced code (mailbox replies)      | `InvalidAddress` |
//! | 530, 534, 535, 538 (authentication, encryption required)     | `ChannelFault`   |
//! | a failed TLS handshake (STARTTLS or implicit TLS)             | `ChannelFault`   |
//! | other 5xx without an enhanced code (552, 554, ...)            | `Permanent`      |
//! | connection refused, network, timeout, unreadable reply        | `Transient`      |
//! | lettre client errors (no usable AUTH mechanism, no SMTPUTF8)  | `Permanent`      |
//!
//! A channel fault is the relay refusing *us*: the broadcasts on the channel are paused and no
//! recipient is failed. A transient error without a reply after the message body was written
//! (the connection dropped, the final reply timed out) is marked
//! [`outcome_unknown`](DeliveryError::outcome_unknown): the relay may have accepted it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use broadcast_domain::{
    Channel, ChannelKind, Delivered, DeliveryError, EmailAddress, FailureKind, MessageBody,
    OutgoingMessage,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::mime::{Composer, EmailSender};
use crate::redact::Redactor;
use crate::smtp_pool::{PoolError, SmtpPool};

/// How the SMTP connection is secured (`SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain text; only for a relay on the same machine or a test sink. Default port 25.
    None,
    /// Plain text upgraded with STARTTLS, which is required. Default port 587.
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS). Default port 465.
    Tls,
}

impl SmtpTls {
    /// The spelling used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }

    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SmtpTls {
    type Err = Error;
    fn from_str(raw: &str) -> Result<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Tls),
            _ => Err(Error::config(format!(
                "unknown SMTP TLS mode `{raw}`; expected one of: none, starttls, tls"
            ))),
        }
    }
}

/// Settings of the e-mail channel. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Relay host name (`SMTP_HOST`); also the name checked in its TLS certificate.
    pub host: String,
    /// Port (`SMTP_PORT`); `None` is the usual port of the TLS mode (25, 587 or 465).
    pub port: Option<u16>,
    /// Login (`SMTP_USERNAME`); AUTH is used when it is set.
    pub username: Option<String>,
    /// Password (`SMTP_PASSWORD`), required with a username.
    pub password: Option<SecretString>,
    /// Connection security (`SMTP_TLS`), STARTTLS by default.
    pub tls: SmtpTls,
    /// `From` address (`SMTP_FROM_EMAIL`).
    pub from_email: EmailAddress,
    /// `From` display name (`SMTP_FROM_NAME`).
    pub from_name: Option<String>,
    /// Pooled connections, which is also the most e-mails in flight (`SMTP_POOL_SIZE`).
    pub pool_size: u32,
    /// Messages per second (`EMAIL_RATE_LIMIT`); `None` is unlimited.
    pub rate_per_sec: Option<u32>,
    /// Longest wait for one SMTP reply.
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Defaults for a relay: STARTTLS on its usual port, no AUTH, a pool of 4 connections, no
    /// rate limit, 30 s timeout.
    pub fn new(host: impl Into<String>, from_email: EmailAddress) -> Self {
        Self {
            host: host.into(),
            port: None,
            username: None,
            password: None,
            tls: SmtpTls::default(),
            from_email,
            from_name: None,
            pool_size: 4,
            rate_per_sec: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// The port used: the configured one or the TLS mode's usual one.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// How messages reach the relay.
enum Transport {
    /// Plain text or STARTTLS: our pool, with `TCP_NODELAY` (see `smtp_pool.rs`).
    Pool(SmtpPool),
    /// Implicit TLS: lettre's pooled transport (Nagle on until lettre sets `TCP_NODELAY`).
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends e-mails through an SMTP relay.
pub struct EmailChannel {
    transport: Transport,
    composer: Composer,
    permits: Semaphore,
    limiter: Option<DefaultDirectRateLimiter>,
    redactor: Redactor,
    description: String,
    pool_size: usize,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChannel")
            .field("description", &self.description)
            .field("pool_size", &self.pool_size)
            .field("rate_limited", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// Builds the channel (no connection is made yet). Must run inside a Tokio runtime: the
    /// pool starts its clean-up task. Bad settings are an error naming the setting.
    pub fn new(config: SmtpConfig) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "the e-mail channel must be built inside a Tokio runtime",
            ));
        }
        let host = config.host.trim();
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(Error::config(format!(
                "the SMTP host must be a host name or IP address, not `{}`",
                config.host
            )));
        }
        if config.pool_size == 0 || config.pool_size > 1000 {
            return Err(Error::config(format!(
                "the SMTP pool size must be between 1 and 1000, not {}",
                config.pool_size
            )));
        }
        let limiter = match config.rate_per_sec {
            None => None,
            Some(rate) => {
                let rate = std::num::NonZeroU32::new(rate).ok_or_else(|| {
                    Error::config("the e-mail rate limit must be at least 1 message/s (or unset)")
                })?;
                Some(RateLimiter::direct(Quota::per_second(rate)))
            }
        };
        let port = config.effective_port();
        let tls_parameters = || {
            TlsParameters::new(host.to_owned())
                .map_err(|e| Error::config(format!("cannot set up TLS for `{host}`: {e}")))
        };
        let mut secrets = Vec::new();
        let mut credentials = None;
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let password = password.expose_secret();
                if password.is_empty() {
                    return Err(Error::config("the SMTP password is empty"));
                }
                let b64 = &base64::engine::general_purpose::STANDARD;
                secrets.push(password.to_owned());
                secrets.push(b64.encode(password));
                secrets.push(b64.encode(format!("\0{user}\0{password}")));
                credentials = Some(Credentials::new(user.clone(), password.to_owned()));
            }
            (Some(_), None) => {
                return Err(Error::config("an SMTP username is set but no password"));
            }
            (None, Some(_)) => {
                return Err(Error::config("an SMTP password is set but no username"));
            }
            (None, None) => {}
        }
        let pool = |starttls| {
            SmtpPool::new(
                host.to_owned(),
                port,
                starttls,
                credentials.clone(),
                config.timeout,
                config.pool_size as usize,
            )
        };
        let transport = match config.tls {
            SmtpTls::None => Transport::Pool(pool(None)),
            SmtpTls::StartTls => Transport::Pool(pool(Some(tls_parameters()?))),
            SmtpTls::Tls => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .timeout(Some(config.timeout))
                    .pool_config(PoolConfig::new().max_size(config.pool_size))
                    .tls(Tls::Wrapper(tls_parameters()?));
                if let Some(credentials) = credentials.clone() {
                    builder = builder.credentials(credentials);
                }
                Transport::Lettre(builder.build())
            }
        };
        let composer = Composer::new(&EmailSender::new(
            config.from_email.clone(),
            config.from_name.clone(),
        ))?;
        Ok(Self {
            transport,
            composer,
            permits: Semaphore::new(config.pool_size as usize),
            limiter,
            redactor: Redactor::new(secrets),
            description: format!("smtp ({host}:{port}, {})", config.tls),
            pool_size: config.pool_size as usize,
        })
    }

    /// Opens a connection (with TLS and AUTH as configured) and closes it: fails fast on a
    /// wrong host, certificate or password. The error is classified like a send's.
    pub async fn verify(&self) -> Result<(), DeliveryError> {
        match &self.transport {
            Transport::Pool(pool) => pool.verify().await.map_err(|e| self.pool_error(e)),
            Transport::Lettre(transport) => match transport.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(DeliveryError::transient(
                    "the SMTP server did not answer NOOP",
                )),
                Err(e) => Err(self.to_delivery_error(&e)),
            },
        }
    }

    fn pool_error(&self, error: PoolError) -> DeliveryError {
        let unknown = error.outcome_unknown();
        let delivery = match error {
            PoolError::Smtp { error, .. } => self.to_delivery_error(&error),
            PoolError::Connect(e) => DeliveryError::transient(
                self.redactor
                    .scrub(&format!("cannot connect to the SMTP server: {e}")),
            ),
            PoolError::Timeout { after, .. } => DeliveryError::transient(format!(
                "the SMTP server did not answer within {} s",
                after.as_secs_f64()
            )),
        };
        match unknown {
            true => delivery.outcome_unknown(),
            false => delivery,
        }
    }

    async fn transmit(&self, message: lettre::Message) -> Result<Response, DeliveryError> {
        match &self.transport {
            Transport::Pool(pool) => {
                let raw = message.formatted();
                pool.send(message.envelope(), &raw)
                    .await
                    .map_err(|e| self.pool_error(e))
            }
            // lettre's transport does not say how far a failed send got: without a reply, the
            // relay may have accepted the message.
            Transport::Lettre(transport) => transport.send(message).await.map_err(|e| {
                let error = self.to_delivery_error(&e);
                let replied = e.is_transient() || e.is_permanent() || e.is_client();
                match replied || e.is_tls() || error.kind == FailureKind::ChannelFault {
                    true => error,
                    false => error.outcome_unknown(),
                }
            }),
        }
    }

    fn to_delivery_error(&self, error: &lettre::transport::smtp::Error) -> DeliveryError {
        let reply = std::error::Error::source(error).map(ToString::to_string);
        let kind = classify(error, reply.as_deref());
        DeliveryError::new(kind, self.redactor.error_chain(error))
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::EMAIL
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    #[tracing::instrument(name = "email.send", skip_all, fields(recipient = ?message.recipient_id))]
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let MessageBody::Email {
            to,
            to_name,
            message: email,
            unsubscribe_url,
        } = &message.body
        else {
            return Err(DeliveryError::permanent(format!(
                "the e-mail channel cannot send {} messages",
                message.body.format()
            )));
        };
        let composed =
            self.composer
                .compose(to, to_name.as_deref(), email, unsubscribe_url.as_deref())?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DeliveryError::transient("the e-mail channel is shutting down"))?;
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        match self.transmit(composed.message).await {
            Ok(response) => {
                tracing::debug!(
                    code = %response.code(),
                    reply = response.message().next().unwrap_or_default(),
                    "e-mail accepted"
                );
                Ok(Delivered {
                    provider_message_id: Some(composed.message_id),
                    migrated_to: None,
                })
            }
            Err(error) => {
                tracing::debug!(kind = %error.kind.error_kind(), error = %error.message, "e-mail send failed");
                Err(error)
            }
        }
    }

    fn max_concurrency(&self) -> usize {
        self.pool_size
    }
}

/// Replies that say the relay refuses us, not the recipient: 530 authentication required, 534
/// mechanism too weak, 535 credentials invalid, 538 encryption required (RFC 4954).
const CHANNEL_FAULT_CODES: [u16; 4] = [530, 534, 535, 538];

/// The failure kind of a lettre error; `reply` is the server's reply text, if any.
fn classify(error: &lettre::transport::smtp::Error, reply: Option<&str>) -> FailureKind {
    let code = error
        .status()
        .and_then(|c| c.to_string().parse::<u16>().ok());
    if code.is_some_and(|c| CHANNEL_FAULT_CODES.contains(&c)) || error.is_tls() {
        return FailureKind::ChannelFault;
    }
    if error.is_transient() {
        return FailureKind::Transient;
    }
    if error.is_permanent() {
        let code = error
            .status()
            .and_then(|c| c.to_string().parse::<u16>().ok())
            .unwrap_or(554);
        return classify_permanent(code, reply.and_then(enhanced_code));
    }
    if error.is_client() {
        return FailureKind::Permanent;
    }
    // Connection refused, network, TLS, timeout, unreadable reply, pool shut down.
    FailureKind::Transient
}

/// A 5xx reply: is it about the recipient's address?
fn classify_permanent(code: u16, enhanced: Option<(u8, u16, u16)>) -> FailureKind {
    match enhanced {
        // Sender address errors are our configuration's fault, not the recipient's.
        Some((5, 1, 7 | 8)) => FailureKind::Permanent,
        Some((5, 1, _) | (5, 2, 1)) => FailureKind::InvalidAddress,
        Some(_) => FailureKind::Permanent,
        None if matches!(code, 550 | 551 | 553) => FailureKind::InvalidAddress,
        None => FailureKind::Permanent,
    }
}

/// The RFC 3463 enhanced status code at the start of a reply, e.g. `5.1.1 user unknown`.
fn enhanced_code(reply: &str) -> Option<(u8, u16, u16)> {
    let first = reply.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some((class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_replies_are_split_by_code() {
        use FailureKind::*;
        let cases = [
            (
                550,
                "5.1.1 <x@y.org>: Recipient address rejected",
                InvalidAddress,
            ),
            (550, "5.7.1 Message rejected as spam", Permanent),
            (554, "5.7.1 Rejected", Permanent),
            (553, "5.1.8 Sender address rejected", Permanent),
            (550, "5.2.1 Mailbox disabled", InvalidAddress),
            (552, "5.2.2 Mailbox full", Permanent),
            (550, "No such user here", InvalidAddress),
            (551, "User not local", InvalidAddress),
            (554, "Transaction failed", Permanent),
        ];
        for (code, reply, expected) in cases {
            assert_eq!(
                classify_permanent(code, enhanced_code(reply)),
                expected,
                "{code} {reply}"
            );
        }
        assert_eq!(enhanced_code("4.2.0 try later"), Some((4, 2, 0)));
        assert_eq!(enhanced_code("1.2.3 x"), None);
        assert_eq!(enhanced_code("hello"), None);
    }

    #[test]
    fn tls_modes_parse_and_name_the_choices() {
        assert_eq!("STARTTLS".parse::<SmtpTls>().unwrap(), SmtpTls::StartTls);
        assert_eq!(" none ".parse::<SmtpTls>().unwrap(), SmtpTls::None);
        let err = "ssl".parse::<SmtpTls>().unwrap_err().to_string();
        assert!(err.contains("none, starttls, tls"), "{err}");
    }

    #[tokio::test]
    async fn bad_settings_are_refused_and_debug_hides_the_password() {
        let from = EmailAddress::parse("news@example.org").unwrap();
        let mut config = SmtpConfig::new("smtp.example.org", from);
        config.username = Some("news".into());
        let err = EmailChannel::new(config.clone()).unwrap_err().to_string();
        assert!(err.contains("no password"), "{err}");
        config.password = Some(SecretString::from("hunter2-pass".to_owned()));
        let channel = EmailChannel::new(config.clone()).unwrap();
        assert_eq!(channel.describe(), "smtp (smtp.example.org:587, starttls)");
        assert_eq!(channel.max_concurrency(), 4);
        assert!(!format!("{config:?}{channel:?}").contains("hunter2"));
        let scrubbed = channel
            .redactor
            .scrub("AUTH PLAIN AG5ld3MAaHVudGVyMi1wYXNz hunter2-pass");
        assert_eq!(scrubbed, "AUTH PLAIN <redacted> <redacted>");
        config.pool_size = 0;
        assert!(
            EmailChannel::new(config.clone())
                .unwrap_err()
                .to_string()
                .contains("pool size")
        );
        config.pool_size = 2;
        config.rate_per_sec = Some(0);
        assert!(EmailChannel::new(config.clone()).is_err());
        config.rate_per_sec = None;
        config.host = "smtp example".into();
        assert!(
            EmailChannel::new(config)
                .unwrap_err()
                .to_string()
                .contains("SMTP host")
        );
    }
}
