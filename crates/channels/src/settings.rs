//! Channel settings from named variables, and the choice of channel implementation: the real
//! Telegram and e-mail channels when they are configured, the outbox otherwise.
//!
//! The library never reads the environment itself: the binaries pass a lookup function
//! (`|name| std::env::var(name).ok()`), tests pass a map.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broadcast_domain::{Channel, ChannelKind, EmailAddress, MediaStore};
use secrecy::SecretString;
use url::Url;

use crate::error::{Error, Result};
use crate::{
    EmailChannel, EmailOutbox, EmailSender, SignedUnsubscribeLinks, SmtpConfig, SmtpTls,
    TelegramChannel, TelegramConfig, TelegramOutbox,
};

/// Default `From` address of the outbox and of SMTP when `SMTP_FROM_EMAIL` is not set.
pub const DEFAULT_FROM_EMAIL: &str = "broadcast@example.org";

/// Everything needed to build the two channels and the unsubscribe links.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Where the outbox channels write (`OUTBOX_DIR`, default `data/outbox`).
    pub outbox_dir: PathBuf,
    /// The real Telegram channel, when `TELEGRAM_BOT_TOKEN` is set.
    pub telegram: Option<TelegramConfig>,
    /// The real e-mail channel, when `SMTP_HOST` is set.
    pub smtp: Option<SmtpConfig>,
    /// The `From` of every e-mail (`SMTP_FROM_EMAIL`, `SMTP_FROM_NAME`).
    pub sender: EmailSender,
    /// Public URL of the admin panel, for unsubscribe links (`PUBLIC_BASE_URL`).
    pub public_base_url: Option<Url>,
    /// Key of the unsubscribe-link signatures (`ADMIN_SECRET_KEY`).
    pub secret: Option<SecretString>,
}

fn parse<T: std::str::FromStr>(name: &str, value: Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e| Error::Config(format!("{name}=`{v}` is not valid: {e}"))),
    }
}

fn parse_bool(name: &str, value: Option<String>) -> Result<bool> {
    match value
        .as_deref()
        .map(str::trim)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(Error::Config(format!(
            "{name}=`{other}` is not valid: use true or false"
        ))),
    }
}

impl ChannelSettings {
    /// Reads the settings through `get` (a variable name to its value). Secret values are
    /// never part of an error message.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let nonempty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let from_email = match nonempty("SMTP_FROM_EMAIL") {
            Some(v) => EmailAddress::parse(&v)
                .map_err(|e| Error::Config(format!("SMTP_FROM_EMAIL: {}", e.0)))?,
            None => EmailAddress::parse(DEFAULT_FROM_EMAIL).expect("default address is valid"),
        };
        let from_name = nonempty("SMTP_FROM_NAME");
        let telegram = match nonempty("TELEGRAM_BOT_TOKEN") {
            None => None,
            Some(token) => {
                let mut cfg = TelegramConfig::new(SecretString::from(token));
                cfg.api_url = parse::<Url>("TELEGRAM_API_URL", get("TELEGRAM_API_URL"))?;
                cfg.paid_broadcast =
                    parse_bool("TELEGRAM_PAID_BROADCAST", get("TELEGRAM_PAID_BROADCAST"))?;
                if let Some(rate) = parse::<u32>("TELEGRAM_RATE_LIMIT", get("TELEGRAM_RATE_LIMIT"))?
                {
                    cfg.rate_per_sec = rate;
                } else if cfg.paid_broadcast {
                    cfg.rate_per_sec = 1000;
                }
                if let Some(ms) = parse::<u64>(
                    "TELEGRAM_PACING_MARGIN_MS",
                    get("TELEGRAM_PACING_MARGIN_MS"),
                )? {
                    if ms > 500 {
                        return Err(Error::Config(format!(
                            "TELEGRAM_PACING_MARGIN_MS must be at most 500, not {ms}"
                        )));
                    }
                    cfg.pacing_margin = Duration::from_millis(ms);
                }
                Some(cfg)
            }
        };
        let smtp = match nonempty("SMTP_HOST") {
            None => None,
            Some(host) => {
                let mut cfg = SmtpConfig::new(host, from_email.clone());
                cfg.port = parse("SMTP_PORT", get("SMTP_PORT"))?;
                cfg.username = nonempty("SMTP_USERNAME");
                cfg.password = nonempty("SMTP_PASSWORD").map(SecretString::from);
                if cfg.username.is_some() != cfg.password.is_some() {
                    return Err(Error::Config(
                        "SMTP_USERNAME and SMTP_PASSWORD must be set together".into(),
                    ));
                }
                cfg.tls = parse::<SmtpTls>("SMTP_TLS", get("SMTP_TLS"))?.unwrap_or_default();
                cfg.from_name = from_name.clone();
                if let Some(n) = parse::<u32>("SMTP_POOL_SIZE", get("SMTP_POOL_SIZE"))? {
                    if n == 0 {
                        return Err(Error::Config("SMTP_POOL_SIZE must be at least 1".into()));
                    }
                    cfg.pool_size = n;
                }
                cfg.rate_per_sec = parse("EMAIL_RATE_LIMIT", get("EMAIL_RATE_LIMIT"))?;
                Some(cfg)
            }
        };
        Ok(Self {
            outbox_dir: nonempty("OUTBOX_DIR")
                .map_or_else(|| PathBuf::from("data/outbox"), PathBuf::from),
            telegram,
            smtp,
            sender: EmailSender::new(from_email, from_name),
            public_base_url: parse("PUBLIC_BASE_URL", get("PUBLIC_BASE_URL"))?,
            secret: nonempty("ADMIN_SECRET_KEY").map(SecretString::from),
        })
    }

    /// Hands the bot-wide and e-mail rates of the real channels to a send budget shared by
    /// every worker (the orchestrator's `Settings::shared_rates`, kept in the database): returns
    /// those rates and the pacing margin the budget must add (`TelegramConfig::pacing_margin`).
    /// Each channel keeps pacing its own messages as well.
    pub fn share_rates(&self) -> (BTreeMap<ChannelKind, u32>, Duration) {
        let mut rates = BTreeMap::new();
        let mut margin = crate::pacing::DEFAULT_MARGIN;
        if let Some(t) = &self.telegram {
            margin = t.pacing_margin;
            rates.insert(ChannelKind::TELEGRAM, t.rate_per_sec);
        }
        if let Some(rate) = self.smtp.as_ref().and_then(|s| s.rate_per_sec) {
            rates.insert(ChannelKind::EMAIL, rate);
        }
        (rates, margin)
    }

    /// Builds the Telegram and the e-mail channel; the Telegram channel reads media from
    /// `media` (and keeps their `file_id`s there). Must run inside a Tokio runtime (the SMTP
    /// pool needs one).
    pub fn build(&self, media: Option<Arc<dyn MediaStore>>) -> Result<Vec<Arc<dyn Channel>>> {
        let telegram: Arc<dyn Channel> = match &self.telegram {
            Some(cfg) => {
                let channel = TelegramChannel::new(cfg.clone())?;
                Arc::new(match media {
                    Some(media) => channel.with_media(media),
                    None => channel,
                })
            }
            None => Arc::new(TelegramOutbox::new(&self.outbox_dir)?),
        };
        let email: Arc<dyn Channel> = match &self.smtp {
            Some(cfg) => Arc::new(EmailChannel::new(cfg.clone())?),
            None => Arc::new(EmailOutbox::new(&self.outbox_dir, &self.sender)?),
        };
        Ok(vec![telegram, email])
    }

    /// Signed unsubscribe links, when both `PUBLIC_BASE_URL` and `ADMIN_SECRET_KEY` are set.
    /// With only `PUBLIC_BASE_URL`, a warning says that e-mails go out without a link.
    pub fn unsubscribe_links(&self) -> Result<Option<SignedUnsubscribeLinks>> {
        match (&self.public_base_url, &self.secret) {
            (Some(url), Some(secret)) => Ok(Some(SignedUnsubscribeLinks::new(
                Some(url.clone()),
                secret.clone(),
            )?)),
            (Some(_), None) => {
                tracing::warn!(
                    "PUBLIC_BASE_URL is set but ADMIN_SECRET_KEY is not: e-mails go out without \
                     an unsubscribe link; set ADMIN_SECRET_KEY (the panel's) to sign them"
                );
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_configured_means_outboxes() {
        let s = ChannelSettings::from_lookup(lookup(&[])).unwrap();
        assert!(s.telegram.is_none() && s.smtp.is_none());
        assert_eq!(s.outbox_dir, PathBuf::from("data/outbox"));
        assert!(s.unsubscribe_links().unwrap().is_none());
    }

    #[test]
    fn reads_every_setting_and_names_bad_ones_without_secrets() {
        let s = ChannelSettings::from_lookup(lookup(&[
            ("TELEGRAM_BOT_TOKEN", "123:SECRET"),
            ("TELEGRAM_API_URL", "http://127.0.0.1:9/"),
            ("TELEGRAM_PAID_BROADCAST", "true"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", "2525"),
            ("SMTP_USERNAME", "u"),
            ("SMTP_PASSWORD", "hunter2"),
            ("SMTP_TLS", "none"),
            ("SMTP_POOL_SIZE", "8"),
            ("EMAIL_RATE_LIMIT", "50"),
            ("SMTP_FROM_EMAIL", "news@example.org"),
        ]))
        .unwrap();
        let t = s.telegram.as_ref().unwrap();
        assert_eq!((t.rate_per_sec, t.paid_broadcast), (1000, true));
        let m = s.smtp.as_ref().unwrap();
        assert_eq!(
            (m.port, m.pool_size, m.rate_per_sec, m.tls),
            (Some(2525), 8, Some(50), SmtpTls::None)
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("SECRET") && !debug.contains("hunter2"),
            "{debug}"
        );

        let err = ChannelSettings::from_lookup(lookup(&[("SMTP_HOST", "h"), ("SMTP_PORT", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SMTP_PORT"), "{err}");
        let err = ChannelSettings::from_lookup(lookup(&[
            ("SMTP_HOST", "h"),
            ("SMTP_PASSWORD", "hunter2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SMTP_USERNAME") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
