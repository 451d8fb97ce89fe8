//! Pacing of Telegram sends: a global rate per bot, a rate per chat (private chats and groups
//! differ), and a channel-wide pause after Telegram answers 429 with `retry_after`.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broadcast_domain::TelegramChatId;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Telegram's limits as the channel applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TelegramLimits {
    /// Messages per second for the whole bot (Telegram: 30; paid broadcasts: up to 1000).
    pub(crate) per_second: u32,
    /// Least time between two messages to one private chat (Telegram: 1 s).
    pub(crate) private_chat_interval: Duration,
    /// Least time between two messages to one group (Telegram: 20 per minute, so 3 s).
    pub(crate) group_chat_interval: Duration,
}

impl Default for TelegramLimits {
    fn default() -> Self {
        Self {
            per_second: 30,
            private_chat_interval: Duration::from_secs(1),
            group_chat_interval: Duration::from_secs(3),
        }
    }
}

/// How many sends between two clean-ups of the per-chat limiters' memory.
const RETAIN_EVERY: u64 = 4096;

/// The limiters of one Telegram channel.
pub(crate) struct Pacer {
    global: DefaultDirectRateLimiter,
    private: DefaultKeyedRateLimiter<i64>,
    groups: DefaultKeyedRateLimiter<i64>,
    paused_until: Mutex<Option<Instant>>,
    sends: AtomicU64,
    limits: TelegramLimits,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("limits", &self.limits)
            .field("paused_until", &self.paused_until)
            .finish_non_exhaustive()
    }
}

impl Pacer {
    pub(crate) fn new(limits: TelegramLimits) -> Result<Self> {
        let per_second = NonZeroU32::new(limits.per_second)
            .ok_or_else(|| Error::config("the Telegram rate limit must be at least 1 message/s"))?;
        // Evenly spaced sends, with a burst of about 50 ms worth of messages (at least 2) so
        // that timer lateness does not lower the achieved rate.
        let burst = NonZeroU32::new(per_second.get().div_ceil(20).max(2)).unwrap_or(per_second);
        let global = Quota::with_period(Duration::from_secs(1) / per_second.get())
            .ok_or_else(|| Error::config("the Telegram rate limit is too high"))?
            .allow_burst(burst);
        let per_chat = |interval: Duration, what: &str| {
            Quota::with_period(interval).ok_or_else(|| {
                Error::config(format!("the {what} interval must be longer than zero"))
            })
        };
        Ok(Self {
            global: RateLimiter::direct(global),
            private: RateLimiter::keyed(per_chat(limits.private_chat_interval, "private chat")?),
            groups: RateLimiter::keyed(per_chat(limits.group_chat_interval, "group chat")?),
            paused_until: Mutex::new(None),
            sends: AtomicU64::new(0),
            limits,
        })
    }

    pub(crate) fn limits(&self) -> TelegramLimits {
        self.limits
    }

    /// Waits until a message to `chat` may go out: after any pause, within the chat's rate and
    /// within the bot's rate.
    pub(crate) async fn ready(&self, chat: TelegramChatId) {
        self.wait_pause().await;
        let key = chat.get();
        if chat.is_group() {
            self.groups.until_key_ready(&key).await;
        } else {
            self.private.until_key_ready(&key).await;
        }
        self.global.until_ready().await;
        // A 429 may have paused the channel while this send waited for its turn.
        self.wait_pause().await;
        if self.sends.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.private.retain_recent();
            self.groups.retain_recent();
        }
    }

    /// Holds every send back for `duration` from now (never shortens a longer pause).
    pub(crate) fn pause_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// How long sends are still held back, if at all.
    pub(crate) fn remaining_pause(&self) -> Option<Duration> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        paused
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    async fn wait_pause(&self) {
        while let Some(remaining) = self.remaining_pause() {
            tokio::time::sleep(remaining).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_holds_sends_back_and_is_never_shortened() {
        let pacer = Pacer::new(TelegramLimits::default()).unwrap();
        pacer.pause_for(Duration::from_millis(300));
        pacer.pause_for(Duration::from_millis(10));
        let start = std::time::Instant::now();
        pacer.ready(TelegramChatId::new(1).unwrap()).await;
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
        assert!(pacer.remaining_pause().is_none());
    }

    #[tokio::test]
    async fn the_same_chat_waits_for_its_interval() {
        let pacer = Pacer::new(TelegramLimits {
            per_second: 1000,
            private_chat_interval: Duration::from_millis(200),
            group_chat_interval: Duration::from_millis(400),
        })
        .unwrap();
        let start = std::time::Instant::now();
        let private = TelegramChatId::new(7).unwrap();
        let group = TelegramChatId::new(-7).unwrap();
        pacer.ready(private).await;
        pacer.ready(group).await;
        assert!(start.elapsed() < Duration::from_millis(150));
        pacer.ready(private).await;
        assert!(start.elapsed() >= Duration::from_millis(190));
        pacer.ready(group).await;
        assert!(start.elapsed() >= Duration::from_millis(390));
    }

    #[test]
    fn zero_rates_are_refused() {
        let err = Pacer::new(TelegramLimits {
            per_second: 0,
            ..TelegramLimits::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
