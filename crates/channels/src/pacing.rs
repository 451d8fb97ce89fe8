//! Pacing of Telegram sends: a rate per bot, a rate per chat (private chats and groups
//! differ), and a channel-wide pause after Telegram answers 429 with `retry_after`.
//!
//! Telegram counts its limits at its servers, in any sliding window: at most 30 messages per
//! bot in any second (1000 with paid broadcasts), one per chat in any second, 20 per group in
//! any minute. Messages leave here evenly spaced and reach the server after network and
//! scheduling delays that differ from message to message (jitter), so spacing them exactly
//! `1 s / rate` apart lets the server see `rate + 1` in some second now and then. Every window
//! is therefore stretched by a **margin** (`TelegramLimits::margin`, 15 ms by default): the
//! bot's messages are spaced `(1 s + margin) / rate` apart, so the server never counts more
//! than `rate` in one second as long as the jitter between two messages a second apart stays
//! below the margin, and the achieved rate is `1 / (1 + margin)` of the limit (98.5 % with the
//! default).
//!
//! Each send **reserves** its time under a lock and then sleeps until it: the next time is
//! computed from the reserved times, never from when a sleeping task happened to wake up, so a
//! late timer does not push every later message back (which would lower the rate, and lower it
//! more the longer a broadcast runs).
//!
//! When several workers share the bot's rate through the database (the orchestrator's
//! `SendBudget`), that budget spaces the bot's messages and carries the margin; this pacer
//! then keeps the bot-wide limit at the bare rate (`shared == true`), as a safety net that a
//! message coming late from its shared slot does not delay the ones after it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use broadcast_domain::TelegramChatId;
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
    /// Added to every window against jitter (see the module documentation).
    pub(crate) margin: Duration,
    /// The bot-wide rate is also paced, with the margin, by a budget shared by every worker:
    /// here it is kept at the bare rate.
    pub(crate) shared: bool,
}

impl Default for TelegramLimits {
    fn default() -> Self {
        Self {
            per_second: 30,
            private_chat_interval: Duration::from_secs(1),
            group_chat_interval: Duration::from_secs(3),
            margin: DEFAULT_MARGIN,
            shared: false,
        }
    }
}

/// The margin added to every window by default.
pub(crate) const DEFAULT_MARGIN: Duration = Duration::from_millis(15);

/// `window / n`, rounded up to the nanosecond: `n` spacings never add up to less than the
/// window.
pub(crate) fn spacing(window: Duration, n: u32) -> Duration {
    let nanos = window.as_nanos().div_ceil(u128::from(n.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many sends between two clean-ups of the per-chat reservations.
const RETAIN_EVERY: u64 = 4096;

#[derive(Debug)]
struct State {
    /// The earliest time the bot's next message may go.
    next: Option<Instant>,
    /// Per chat, the earliest time its next message may go.
    chats: HashMap<i64, Instant>,
    paused_until: Option<Instant>,
    sends: u64,
}

/// The limiters of one Telegram channel.
#[derive(Debug)]
pub(crate) struct Pacer {
    limits: TelegramLimits,
    /// Between two messages of the bot.
    spacing: Duration,
    private: Duration,
    group: Duration,
    state: Mutex<State>,
}

impl Pacer {
    pub(crate) fn new(limits: TelegramLimits) -> Result<Self> {
        if limits.per_second == 0 {
            return Err(Error::config(
                "the Telegram rate limit must be at least 1 message/s",
            ));
        }
        if limits.margin > Duration::from_millis(500) {
            return Err(Error::config(format!(
                "the Telegram pacing margin must be at most 500 ms, not {} ms",
                limits.margin.as_millis()
            )));
        }
        for (interval, what) in [
            (limits.private_chat_interval, "private chat"),
            (limits.group_chat_interval, "group chat"),
        ] {
            if interval.is_zero() {
                return Err(Error::config(format!(
                    "the {what} interval must be longer than zero"
                )));
            }
        }
        let window = match limits.shared {
            true => Duration::from_secs(1),
            false => Duration::from_secs(1) + limits.margin,
        };
        Ok(Self {
            spacing: spacing(window, limits.per_second),
            private: limits.private_chat_interval + limits.margin,
            group: limits.group_chat_interval + limits.margin,
            limits,
            state: Mutex::new(State {
                next: None,
                chats: HashMap::new(),
                paused_until: None,
                sends: 0,
            }),
        })
    }

    pub(crate) fn limits(&self) -> TelegramLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a message to `chat` may go out, within the chat's rate and within the bot's
    /// rate; or answers how long the bot is still held back after a 429 (`Err`), when it is at
    /// the start or becomes so while the message waits for its turn. Such a message is not sent:
    /// sending every message that waited through a pause the moment it ends is the burst that
    /// earns the next 429 (and, when workers share the rate, it would go out beside the other
    /// workers' sends); its row is due again when the pause ends, with a fresh turn.
    pub(crate) async fn ready(&self, chat: TelegramChatId) -> Result<(), Duration> {
        if let Some(remaining) = self.remaining_pause() {
            return Err(remaining);
        }
        let at = loop {
            match self.reserve(chat, Instant::now()) {
                Ok(at) => break at,
                // The chat is not free before the bot's next slot: wait for the chat without
                // holding a slot that others could use.
                Err(chat_free) => tokio::time::sleep_until(chat_free).await,
            }
        };
        tokio::time::sleep_until(at).await;
        // A 429 may have paused the channel while this send waited for its turn.
        match self.remaining_pause() {
            Some(remaining) => Err(remaining),
            None => Ok(()),
        }
    }

    /// Reserves the bot's next free time at `now` or later for a message to `chat`, or, when
    /// the chat itself is not free by then, answers when it will be (`Err`) and reserves
    /// nothing.
    fn reserve(&self, chat: TelegramChatId, now: Instant) -> Result<Instant, Instant> {
        let interval = match chat.is_group() {
            true => self.group,
            false => self.private,
        };
        let mut state = self.lock();
        let key = chat.get();
        let at = state.next.map_or(now, |next| next.max(now));
        if let Some(chat_free) = state.chats.get(&key).copied().filter(|free| *free > at) {
            return Err(chat_free);
        }
        state.next = Some(at + self.spacing);
        state.chats.insert(key, at + interval);
        state.sends += 1;
        if state.sends.is_multiple_of(RETAIN_EVERY) {
            state.chats.retain(|_, free| *free > now);
        }
        Ok(at)
    }

    /// Holds every send back for `duration` from now (never shortens a longer pause).
    pub(crate) fn pause_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut state = self.lock();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
        // Messages reserved during the pause would all go at once when it ends.
        if state.next.is_none_or(|next| next < until) {
            state.next = Some(until);
        }
    }

    /// How long sends are still held back, if at all.
    pub(crate) fn remaining_pause(&self) -> Option<Duration> {
        let paused = self.lock().paused_until;
        paused
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32) -> TelegramLimits {
        TelegramLimits {
            per_second,
            ..TelegramLimits::default()
        }
    }

    #[tokio::test]
    async fn a_pause_refuses_sends_and_is_never_shortened() {
        let pacer = Pacer::new(TelegramLimits::default()).unwrap();
        pacer.pause_for(Duration::from_millis(300));
        pacer.pause_for(Duration::from_millis(10));
        let chat = TelegramChatId::new(1).unwrap();
        let held = pacer.ready(chat).await.unwrap_err();
        assert!(held > Duration::from_millis(250), "{held:?}");
        tokio::time::sleep(held).await;
        assert!(pacer.remaining_pause().is_none());
        assert_eq!(pacer.ready(chat).await, Ok(()));
    }

    #[tokio::test]
    async fn sends_waiting_for_their_turn_when_a_pause_begins_are_not_sent_after_it() {
        // 10/s: the fifth message's turn is 400 ms (plus margins) away.
        let pacer = std::sync::Arc::new(Pacer::new(limits(10)).unwrap());
        for chat in 1..=4 {
            pacer
                .ready(TelegramChatId::new(chat).unwrap())
                .await
                .unwrap();
        }
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready(TelegramChatId::new(5).unwrap()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        pacer.pause_for(Duration::from_secs(1));
        let held = waiting.await.unwrap().unwrap_err();
        assert!(held > Duration::from_millis(500), "{held:?}");
    }

    fn reserve(pacer: &Pacer, chat: i64, now: Instant) -> Instant {
        pacer
            .reserve(TelegramChatId::new(chat).unwrap(), now)
            .expect("the chat is free")
    }

    #[test]
    fn the_bot_never_gets_more_than_its_rate_in_any_window_stretched_by_the_margin() {
        let pacer = Pacer::new(limits(30)).unwrap();
        let t0 = Instant::now();
        // 300 messages to 300 chats, all asked for at once.
        let times: Vec<Instant> = (1..=300).map(|chat| reserve(&pacer, chat, t0)).collect();
        let window = Duration::from_secs(1) + DEFAULT_MARGIN;
        for (i, at) in times.iter().enumerate().skip(30) {
            assert!(
                *at - times[i - 30] >= window,
                "messages {} and {i} are {:?} apart",
                i - 30,
                *at - times[i - 30]
            );
        }
        // ... and no slower than that: the 300th goes at 299 spacings.
        assert_eq!(times[299] - t0, spacing(window, 30) * 299);
        assert!(spacing(window, 30) * 299 < window * 10);
    }

    #[test]
    fn late_wake_ups_do_not_push_later_messages_back() {
        let pacer = Pacer::new(limits(30)).unwrap();
        let t0 = Instant::now();
        let spacing = spacing(Duration::from_secs(1) + DEFAULT_MARGIN, 30);
        let first = reserve(&pacer, 1, t0);
        // The second asks before the first's slot has passed: it goes one spacing after.
        let second = reserve(&pacer, 2, first);
        assert_eq!(second, first + spacing);
        // A third that asks 10 ms late (its task woke late) goes at once, and the fourth one
        // spacing after the third's reserved time, not after when it asked.
        let late = second + spacing + Duration::from_millis(10);
        let third = reserve(&pacer, 3, late);
        assert_eq!(third, late);
        assert_eq!(reserve(&pacer, 4, second), third + spacing);
    }

    #[test]
    fn chats_get_one_message_per_interval_plus_margin() {
        let pacer = Pacer::new(limits(1000)).unwrap();
        let t0 = Instant::now();
        let private = TelegramChatId::new(7).unwrap();
        let group = TelegramChatId::new(-7).unwrap();
        let p1 = pacer.reserve(private, t0).unwrap();
        let g1 = pacer.reserve(group, t0).unwrap();
        // Not free yet: nothing is reserved, and the answer says when the chat is.
        let p2 = pacer.reserve(private, t0).unwrap_err();
        let g2 = pacer.reserve(group, t0).unwrap_err();
        assert_eq!(p2 - p1, Duration::from_secs(1) + DEFAULT_MARGIN);
        assert_eq!(g2 - g1, Duration::from_secs(3) + DEFAULT_MARGIN);
        // Others are not held back by a waiting chat beyond the bot's own spacing.
        let other = reserve(&pacer, 8, t0);
        assert_eq!(
            other - g1,
            spacing(Duration::from_secs(1) + DEFAULT_MARGIN, 1000)
        );
        assert_eq!(pacer.reserve(private, p2), Ok(p2));
    }

    #[tokio::test]
    async fn a_chat_waits_for_its_interval_in_ready() {
        let pacer = Pacer::new(TelegramLimits {
            private_chat_interval: Duration::from_millis(200),
            margin: Duration::from_millis(10),
            ..limits(1000)
        })
        .unwrap();
        let chat = TelegramChatId::new(5).unwrap();
        let start = std::time::Instant::now();
        pacer.ready(chat).await.unwrap();
        pacer.ready(chat).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(210),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_shared_budget_leaves_the_bare_rate_here() {
        let pacer = Pacer::new(TelegramLimits {
            shared: true,
            ..limits(30)
        })
        .unwrap();
        let t0 = Instant::now();
        let a = reserve(&pacer, 1, t0);
        let b = reserve(&pacer, 2, t0);
        assert_eq!(b - a, spacing(Duration::from_secs(1), 30));
    }

    #[test]
    fn bad_limits_are_refused() {
        let err = Pacer::new(limits(0)).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = Pacer::new(TelegramLimits {
            margin: Duration::from_secs(1),
            ..limits(30)
        })
        .unwrap_err();
        assert!(err.to_string().contains("margin"), "{err}");
    }
}
