//! The shared state of every request: settings, the store, the orchestrator, the page templates,
//! the cookie key, the login throttle and the metrics. Built once by [`crate::run`].

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use broadcast_channels::SignedUnsubscribeLinks;
use broadcast_domain::{
    AuditEntry, AuditLog, BroadcastStatus, ChannelKind, DeliveryStatus, Result, UserQuery,
};
use broadcast_orchestrator::Orchestrator;
use broadcast_store::Store;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::metrics::{Backlog, Metrics};
use crate::settings::Settings;
use crate::throttle::LoginThrottle;
use crate::views::Views;

/// Distinct countries and cities of the audience, for the filter builder's pick lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    pub(crate) countries: Vec<String>,
    pub(crate) cities: Vec<String>,
}

/// How long the pick lists of countries and cities are cached.
const LOCATIONS_TTL: Duration = Duration::from_secs(60);
/// Most users scanned to build the pick lists (free text covers the rest).
const LOCATIONS_SCAN_LIMIT: u64 = 100_000;

/// Everything handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Inner>);

/// Live previews kept for their frames.
const LIVE_PREVIEWS: usize = 64;
/// How long a live preview's frame can be loaded.
const LIVE_PREVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) store: Store,
    pub(crate) orchestrator: Arc<Orchestrator>,
    pub(crate) views: Views,
    pub(crate) cookie_key: Key,
    pub(crate) links: SignedUnsubscribeLinks,
    pub(crate) throttle: LoginThrottle,
    pub(crate) metrics: Arc<Metrics>,
    /// SHA-256 of each API token: compared in constant time, never kept in clear.
    api_token_digests: Vec<[u8; 32]>,
    /// A hash checked when the user name is unknown, so that both cases take as long.
    pub(crate) dummy_hash: String,
    /// The channel implementations, as shown to operators.
    pub(crate) channel_descriptions: Vec<(ChannelKind, String)>,
    /// Becomes true when the server shuts down; long-lived streams end then.
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) worker_running: bool,
    locations: Mutex<Option<(Instant, Locations)>>,
    /// The e-mail HTML of the template editor's live previews, by random token, newest last.
    live_previews: Mutex<std::collections::VecDeque<(String, Instant, String)>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.cookie_key.clone()
    }
}

/// Parts of [`AppState`] built by [`crate::run`].
#[derive(Debug)]
pub(crate) struct StateParts {
    pub(crate) settings: Settings,
    pub(crate) store: Store,
    pub(crate) orchestrator: Arc<Orchestrator>,
    pub(crate) links: SignedUnsubscribeLinks,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dummy_hash: String,
    pub(crate) channel_descriptions: Vec<(ChannelKind, String)>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) worker_running: bool,
}

/// A sub-key of the secret for one purpose: HMAC-SHA256(secret, label).
fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The cookie key (64 bytes: signing and encryption halves), derived from the secret so that
/// the cookie keys differ from the unsubscribe-link key made from the same secret.
fn cookie_key(secret: &[u8]) -> Key {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&derive(secret, "broadcast-admin-cookie-v1/signing"));
    bytes[32..].copy_from_slice(&derive(secret, "broadcast-admin-cookie-v1/encryption"));
    Key::from(&bytes)
}

/// Compares two byte strings in constant time (for equal lengths).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    pub(crate) fn new(parts: StateParts) -> anyhow::Result<Self> {
        let secret = parts.settings.secret_key.expose_secret().as_bytes();
        let api_token_digests = parts
            .settings
            .api_tokens
            .iter()
            .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into())
            .collect();
        Ok(Self(Arc::new(Inner {
            cookie_key: cookie_key(secret),
            views: Views::new()?,
            throttle: LoginThrottle::new(parts.settings.throttle.clone()),
            api_token_digests,
            settings: parts.settings,
            store: parts.store,
            orchestrator: parts.orchestrator,
            links: parts.links,
            metrics: parts.metrics,
            dummy_hash: parts.dummy_hash,
            channel_descriptions: parts.channel_descriptions,
            shutdown: parts.shutdown,
            worker_running: parts.worker_running,
            locations: Mutex::new(None),
            live_previews: Mutex::new(std::collections::VecDeque::new()),
        })))
    }

    /// The caller's name for the audit log when `token` is a configured API token:
    /// `api:<first 8 hex digits of its SHA-256>`. Every token is compared, in constant time.
    pub(crate) fn api_actor(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = false;
        for known in &self.api_token_digests {
            found |= constant_time_eq(known, &digest);
        }
        found.then(|| {
            let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            format!("api:{hex}")
        })
    }

    /// Appends to the audit log; a failure to do so is logged, never shown to the user as the
    /// failure of the action itself (which already happened).
    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        target_type: &str,
        target_id: Option<i64>,
        details: serde_json::Value,
    ) {
        let entry = AuditEntry {
            id: 0,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id,
            details,
            at: chrono::Utc::now(),
        };
        if let Err(e) = self.store.record(entry).await {
            tracing::error!(error = %e, action, actor, "cannot write the audit log");
        }
    }

    /// Recipient rows still to do, per status, over running and paused broadcasts, and the
    /// broadcasts paused by an open circuit breaker, per channel.
    pub(crate) async fn backlog(&self) -> Result<Backlog> {
        let ports = self.orchestrator.ports();
        let active = ports
            .broadcasts
            .list_broadcasts(&[BroadcastStatus::Running, BroadcastStatus::Paused], 10_000)
            .await?;
        let mut backlog = Backlog::default();
        for b in active {
            let stats = ports.deliveries.stats(b.id).await?;
            for status in [DeliveryStatus::Pending, DeliveryStatus::Sending] {
                *backlog.queue.entry(status).or_default() += stats.count(status);
            }
            if let Some(probe) = b.probe {
                *backlog.open_breakers.entry(probe.channel).or_default() += 1;
            }
        }
        Ok(backlog)
    }

    /// Countries and cities of the audience, cached for a minute.
    pub(crate) async fn locations(&self) -> Result<Locations> {
        if let Some((at, cached)) = self
            .locations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && at.elapsed() < LOCATIONS_TTL
        {
            return Ok(cached.clone());
        }
        let audience = &self.orchestrator.ports().audience;
        let mut countries = std::collections::BTreeMap::new();
        let mut cities = std::collections::BTreeMap::new();
        let page_size = 5_000;
        let mut offset = 0;
        while offset < LOCATIONS_SCAN_LIMIT {
            let page = audience
                .list_users(&UserQuery {
                    search: None,
                    offset,
                    limit: page_size,
                })
                .await?;
            for user in &page.items {
                for (map, value) in [(&mut countries, &user.country), (&mut cities, &user.city)] {
                    if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                        // Filters match case-insensitively: list each spelling once.
                        map.entry(v.to_lowercase()).or_insert_with(|| v.to_owned());
                    }
                }
            }
            offset += page_size;
            if page.items.len() < page_size as usize {
                break;
            }
        }
        let locations = Locations {
            countries: countries.into_values().collect(),
            cities: cities.into_values().collect(),
        };
        *self
            .locations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), locations.clone()));
        Ok(locations)
    }

    /// Every competition's name by id, for filter summaries (one small query).
    pub(crate) async fn competition_names(
        &self,
    ) -> Result<std::collections::BTreeMap<i64, String>> {
        broadcast_app::names::competition_names(&*self.orchestrator.ports().audience).await
    }

    /// Keeps the e-mail HTML of a live preview for its frame, for a few minutes; returns the
    /// token that fetches it. At most [`LIVE_PREVIEWS`] are kept.
    pub(crate) fn keep_live_preview(&self, html: String) -> String {
        let token = crate::auth::random_token();
        let now = Instant::now();
        let mut kept = self
            .live_previews
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|(_, at, _)| now.duration_since(*at) < LIVE_PREVIEW_TTL);
        while kept.len() >= LIVE_PREVIEWS {
            kept.pop_front();
        }
        kept.push_back((token.clone(), now, html));
        token
    }

    /// The e-mail HTML of a live preview, while it is kept.
    pub(crate) fn live_preview(&self, token: &str) -> Option<String> {
        let kept = self
            .live_previews
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter()
            .find(|(t, at, _)| {
                constant_time_eq(t.as_bytes(), token.as_bytes()) && at.elapsed() < LIVE_PREVIEW_TTL
            })
            .map(|(_, _, html)| html.clone())
    }

    /// Forgets the cached pick lists (after an import).
    pub(crate) fn forget_locations(&self) {
        *self
            .locations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// True once the server is shutting down.
    pub(crate) fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_per_purpose_and_secret() {
        let a = derive(b"secret-one", "x");
        assert_ne!(a, derive(b"secret-one", "y"));
        assert_ne!(a, derive(b"secret-two", "x"));
        assert_eq!(a, derive(b"secret-one", "x"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
