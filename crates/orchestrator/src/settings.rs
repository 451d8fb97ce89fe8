//! Tunables of the orchestrator, with defaults suitable for one worker on one machine.

use std::collections::BTreeMap;
use std::time::Duration;

use broadcast_domain::ChannelKind;

/// How the orchestrator claims, sends and retries. The library never reads the environment:
/// the embedding program fills this in (the binaries read `BATCH_SIZE`, `MAX_ATTEMPTS`, ... from
/// theirs).
///
/// ```
/// use std::time::Duration;
/// use broadcast_orchestrator::Settings;
///
/// let settings = Settings {
///     worker_id: "bot-worker-1".into(),
///     max_attempts: 3,
///     retry_base: Duration::from_secs(10),
///     ..Settings::default()
/// };
/// assert_eq!(settings.batch_size, 200);
/// ```
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name available to templates as `app_name`.
    pub app_name: String,
    /// Identifies this worker in leases; must be unique among running workers.
    pub worker_id: String,
    /// Rows claimed per batch.
    pub batch_size: u64,
    /// Messages in flight at once per channel (also bounded by the channel itself); `None`
    /// (the default) for [`DEFAULT_CONCURRENCY`], or a tenth of a rate-shared channel's rate
    /// if that is more (see [`Settings::places`]).
    pub concurrency: Option<usize>,
    /// How long a claimed row stays leased before another worker may take it over.
    pub lease: Duration,
    /// Attempts before a transient failure becomes final.
    pub max_attempts: i32,
    /// Delay before the first retry; doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// Pause between polls when there is nothing to do: also how soon an idle worker notices a
    /// launched broadcast (each poll is two or three small indexed queries).
    pub idle_poll: Duration,
    /// A scheduled broadcast whose time passed longer ago than this (no worker was running)
    /// is not launched automatically: it waits for an operator instead of firing a stale
    /// announcement.
    pub schedule_grace: Duration,
    /// The circuit breaker pauses a broadcast after this many consecutive channel failures
    /// (transient or permanent errors; blocked users and bad addresses do not count).
    pub breaker_consecutive: u32,
    /// ... or when more than `breaker_ratio` of the last `breaker_window` attempts on a channel
    /// failed.
    pub breaker_window: u32,
    /// See `breaker_window`.
    pub breaker_ratio: f64,
    /// How long a broadcast paused by its circuit breaker waits before one probe message is
    /// sent (the breaker half-opens); a probe that succeeds resumes the broadcast.
    pub breaker_cooldown: Duration,
    /// A failed probe doubles the cool-down, up to this.
    pub breaker_cooldown_max: Duration,
    /// Messages per second per channel shared by every worker through the `SendBudget` port
    /// (e.g. Telegram's 30/s per bot). Channels not listed are paced only in-process.
    pub shared_rates: BTreeMap<ChannelKind, u32>,
    /// Added to the one-second window of every shared rate against network and scheduling
    /// jitter: shared slots are `(1 s + margin) / rate` apart, so a provider that counts in any
    /// sliding second at its end never sees more than the rate.
    pub pacing_margin: Duration,
}

/// Messages in flight per channel when `WORKER_CONCURRENCY` is not set (and the channel's rate
/// asks for no more).
pub const DEFAULT_CONCURRENCY: usize = 16;

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_name: "Broadcast".to_owned(),
            worker_id: format!("worker-{}", std::process::id()),
            batch_size: 200,
            concurrency: None,
            lease: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            idle_poll: Duration::from_millis(50),
            schedule_grace: Duration::from_secs(3600),
            breaker_consecutive: 50,
            breaker_window: 200,
            breaker_ratio: 0.5,
            breaker_cooldown: Duration::from_secs(30),
            breaker_cooldown_max: Duration::from_secs(600),
            shared_rates: BTreeMap::new(),
            pacing_margin: Duration::from_millis(10),
        }
    }
}

impl Settings {
    /// Messages of a channel in flight at once, from their start until their results are
    /// written: `concurrency` when it is set; else [`DEFAULT_CONCURRENCY`], and on a channel
    /// with a shared rate at least a tenth of the rate, which it needs when each message takes
    /// 100 ms to be answered and recorded (a bot on Telegram's paid 1000/s keeps 100 in
    /// flight). This is also how many of a channel's messages a worker that dies may leave
    /// started and unrecorded.
    pub fn places(&self, kind: ChannelKind) -> usize {
        if let Some(n) = self.concurrency {
            return n.max(1);
        }
        let paced = self
            .shared_rates
            .get(&kind)
            .map_or(0, |rate| (*rate as usize).div_ceil(10));
        DEFAULT_CONCURRENCY.max(paced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_follow_the_setting_or_a_tenth_of_a_shared_rate() {
        let paced = Settings {
            shared_rates: [(ChannelKind::TELEGRAM, 1000)].into(),
            ..Settings::default()
        };
        assert_eq!(paced.places(ChannelKind::TELEGRAM), 100);
        assert_eq!(paced.places(ChannelKind::EMAIL), DEFAULT_CONCURRENCY);
        let free = Settings {
            shared_rates: [(ChannelKind::TELEGRAM, 30)].into(),
            ..Settings::default()
        };
        assert_eq!(free.places(ChannelKind::TELEGRAM), DEFAULT_CONCURRENCY);
        // Set, it is what the operator asked for, also below the rate's tenth.
        let set = Settings {
            concurrency: Some(8),
            ..paced
        };
        assert_eq!(set.places(ChannelKind::TELEGRAM), 8);
        assert_eq!(set.places(ChannelKind::EMAIL), 8);
    }
}
