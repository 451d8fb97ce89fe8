//! Settings of the admin panel, read from the environment (and `.env`) into typed values.
//! Secrets (`ADMIN_SECRET_KEY`, `ADMIN_API_TOKENS`, the channel credentials) are wrapped in
//! [`SecretString`], so `Debug` never shows them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use broadcast_channels::ChannelSettings;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::throttle::ThrottleSettings;

/// Shortest `ADMIN_SECRET_KEY` accepted, in bytes.
pub const MIN_SECRET_KEY_BYTES: usize = 32;
/// Shortest API token accepted, in bytes.
pub const MIN_API_TOKEN_BYTES: usize = 16;

/// Everything the admin panel needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`ADMIN_BIND`, default `127.0.0.1:8080`); `main` binds it.
    pub bind: SocketAddr,
    /// Key of the session cookies and of the unsubscribe links (`ADMIN_SECRET_KEY`, required,
    /// at least 32 bytes).
    pub secret_key: SecretString,
    /// Where the panel is reachable from outside (`PUBLIC_BASE_URL`): unsubscribe links point
    /// there, and an `https` URL makes the session cookie `Secure`.
    pub public_base_url: Option<Url>,
    /// Database (`DATABASE_URL`, default `sqlite://data/broadcast.db`).
    pub database_url: String,
    /// Bearer tokens accepted by `/api/v1` (`ADMIN_API_TOKENS`, comma-separated); none: the API
    /// refuses every request.
    pub api_tokens: Vec<SecretString>,
    /// Channels: outbox by default, Telegram and SMTP when configured (same variables as the CLI).
    pub channels: ChannelSettings,
    /// Worker tunables, read from the same variables as `broadcast-cli` (`APP_NAME`,
    /// `WORKER_ID`, `BATCH_SIZE`, `WORKER_CONCURRENCY`, `MAX_ATTEMPTS`, `RETRY_BASE_SECONDS`,
    /// `RETRY_MAX_SECONDS`, `LEASE_SECONDS`, `SCHEDULE_GRACE_SECONDS`, `BREAKER_*`).
    pub worker: broadcast_orchestrator::Settings,
    /// Run a delivery worker inside the web process (`ADMIN_RUN_WORKER`, default true).
    pub run_worker: bool,
    /// Login throttling.
    pub throttle: ThrottleSettings,
    /// How long a session lasts after login (`ADMIN_SESSION_HOURS`, default 12).
    pub session_ttl: Duration,
    /// Take the client address for login throttling from the last `X-Forwarded-For` entry
    /// (`ADMIN_TRUST_PROXY`, default false: the TCP peer address). Only behind a reverse proxy.
    pub trust_proxy: bool,
    /// How often live progress streams re-read the store, to show work of other worker
    /// processes (`ADMIN_PROGRESS_POLL_MS`, default 1000).
    pub progress_poll: Duration,
}

fn parse<T: std::str::FromStr>(name: &str, value: Option<String>, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}=`{v}` is not valid: {e}")),
    }
}

fn parse_bool(name: &str, value: Option<String>, default: bool) -> anyhow::Result<bool> {
    match value
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .as_deref()
    {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => bail!("{name}=`{other}` is not valid: use true or false"),
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get` (a variable name to its value). Error messages name the
    /// variable and never contain a secret.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let nonempty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let Some(secret) = nonempty("ADMIN_SECRET_KEY") else {
            bail!(
                "ADMIN_SECRET_KEY is not set: the admin panel needs a random key of at least \
                 {MIN_SECRET_KEY_BYTES} bytes (e.g. `openssl rand -base64 48`)"
            );
        };
        if secret.len() < MIN_SECRET_KEY_BYTES {
            bail!(
                "ADMIN_SECRET_KEY is {} bytes long; use at least {MIN_SECRET_KEY_BYTES} random bytes",
                secret.len()
            );
        }
        let mut api_tokens = Vec::new();
        for (i, token) in nonempty("ADMIN_API_TOKENS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            if token.len() < MIN_API_TOKEN_BYTES {
                bail!(
                    "ADMIN_API_TOKENS: token {} is shorter than {MIN_API_TOKEN_BYTES} bytes",
                    i + 1
                );
            }
            api_tokens.push(SecretString::from(token.to_owned()));
        }
        let public_base_url: Option<Url> = match nonempty("PUBLIC_BASE_URL") {
            None => None,
            Some(v) => Some(
                Url::parse(v.trim())
                    .with_context(|| format!("PUBLIC_BASE_URL=`{v}` is not a URL"))?,
            ),
        };
        let channels = ChannelSettings::from_lookup(&get).context("channel settings")?;

        let worker = broadcast_app::worker_settings(
            &get,
            broadcast_app::worker_id(Some("admin-web"), &get),
        )?;
        let session_hours: u64 = parse("ADMIN_SESSION_HOURS", get("ADMIN_SESSION_HOURS"), 12)?;
        if session_hours == 0 {
            bail!("ADMIN_SESSION_HOURS must be at least 1");
        }
        let poll_ms: u64 = parse(
            "ADMIN_PROGRESS_POLL_MS",
            get("ADMIN_PROGRESS_POLL_MS"),
            1000,
        )?;
        if poll_ms < 50 {
            bail!("ADMIN_PROGRESS_POLL_MS must be at least 50");
        }
        Ok(Self {
            bind: parse(
                "ADMIN_BIND",
                get("ADMIN_BIND"),
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            secret_key: SecretString::from(secret),
            public_base_url,
            database_url: nonempty("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://data/broadcast.db".to_owned()),
            api_tokens,
            channels,
            worker,
            run_worker: parse_bool("ADMIN_RUN_WORKER", get("ADMIN_RUN_WORKER"), true)?,
            throttle: ThrottleSettings::default(),
            session_ttl: Duration::from_secs(session_hours * 3600),
            trust_proxy: parse_bool("ADMIN_TRUST_PROXY", get("ADMIN_TRUST_PROXY"), false)?,
            progress_poll: Duration::from_millis(poll_ms),
        })
    }

    /// True when the panel is served over https (the session cookie is then `Secure`).
    pub fn https(&self) -> bool {
        self.public_base_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// Checks what `from_lookup` cannot see when settings are built by hand (tests, embedding).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.secret_key.expose_secret().len() < MIN_SECRET_KEY_BYTES {
            bail!("the secret key must be at least {MIN_SECRET_KEY_BYTES} bytes long");
        }
        Ok(())
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

    const KEY: &str = "0123456789abcdef0123456789abcdef-key";

    #[test]
    fn defaults_with_only_the_secret() {
        let s = Settings::from_lookup(lookup(&[("ADMIN_SECRET_KEY", KEY)])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://data/broadcast.db");
        assert!(s.run_worker && !s.https() && s.api_tokens.is_empty());
        assert_eq!(s.session_ttl, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn the_secret_is_required_long_and_never_shown() {
        let err = Settings::from_lookup(lookup(&[])).unwrap_err().to_string();
        assert!(err.contains("ADMIN_SECRET_KEY is not set"), "{err}");
        let err = Settings::from_lookup(lookup(&[("ADMIN_SECRET_KEY", "short-secret")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 32") && !err.contains("short-secret"),
            "{err}"
        );

        let s = Settings::from_lookup(lookup(&[
            ("ADMIN_SECRET_KEY", KEY),
            (
                "ADMIN_API_TOKENS",
                "token-one-0123456789, token-two-0123456789",
            ),
            ("PUBLIC_BASE_URL", "https://panel.example.org"),
            ("ADMIN_RUN_WORKER", "false"),
        ]))
        .unwrap();
        assert_eq!(s.api_tokens.len(), 2);
        assert!(s.https() && !s.run_worker);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains(KEY) && !debug.contains("token-one"),
            "{debug}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value, expected) in [
            ("ADMIN_BIND", "nowhere", "ADMIN_BIND"),
            ("ADMIN_RUN_WORKER", "maybe", "ADMIN_RUN_WORKER"),
            ("ADMIN_API_TOKENS", "short", "token 1 is shorter"),
            ("PUBLIC_BASE_URL", "not a url", "PUBLIC_BASE_URL"),
            ("BATCH_SIZE", "0", "BATCH_SIZE"),
            (
                "RETRY_BASE_SECONDS",
                "-1",
                "RETRY_BASE_SECONDS=`-1` is not valid",
            ),
            ("LEASE_SECONDS", "NaN", "LEASE_SECONDS=`NaN` is not valid"),
            ("BREAKER_RATIO", "2", "BREAKER_RATIO=`2` is not valid"),
        ] {
            let err = Settings::from_lookup(lookup(&[("ADMIN_SECRET_KEY", KEY), (name, value)]))
                .unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(expected), "{name}: {text}");
        }
    }
}
