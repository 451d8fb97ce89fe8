//! Pacing of Telegram sends: a rate per bot, a rate per chat (private chats and groups
//! differ), and a channel-wide pause after Telegram answers 429 with `retry_after`.
//!
//! Telegram counts its limits at its servers, in any sliding window: at most 30 messages per
//! bot in any second (1000 with paid broadcasts), one per chat in any second, 20 per group in
//! any minute. What the server counts is when a message *arrives*, which this side never
//! sees: messages leave evenly spaced and reach the server after network and scheduling
//! delays that differ from message to message (jitter), so spacing alone, with whatever
//! margin, lets the server see `rate + 1` in some second whenever one message is delayed
//! more than the margin (a busy CPU delays a task by tens of milliseconds).
//!
//! So the pacer closes the loop on what it does know: a message arrives at the server after
//! its request starts and before its answer comes back. A message therefore **occupies** the
//! bot's window from the moment it is sent until one window after its answer (or its
//! failure, or its timeout), and a new message is sent only while fewer than `rate` messages
//! occupy it. Then for any two messages `rate` apart, the later one starts at least a window
//! after the earlier one's answer, so it arrives at least a window after the earlier one
//! arrived: the server never counts more than `rate` in any window, whatever the jitter. A
//! chat is occupied the same way (one message at a time, the next one interval after the
//! answer). The cost is the round trip: the bot sends `rate` messages per `1 s + round trip`
//! (99.9 % of the limit at 1 ms to a local server, about 95 % at 50 ms to Telegram).
//!
//! Besides that loop, messages are spaced `1 s / rate` apart, so that a broadcast does not
//! send its first `rate` messages at once. Each send **reserves** its time under a lock and
//! then sleeps until it: the next time is computed from the reserved times, never from when
//! a sleeping task happened to wake up, so a late timer does not push every later message
//! back.
//!
//! When several workers share the bot's rate through the database (the orchestrator's
//! `SendBudget`), this loop covers each worker's own messages, and the budget spaces the
//! bot's messages of all workers with a margin ([`DEFAULT_MARGIN`]) and learns from the
//! workers when a message took longer than the margin, so that later slots move back by as
//! much.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use broadcast_domain::TelegramChatId;
use tokio::sync::Notify;
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

/// The margin a send budget shared by several workers adds to the bot's window by default:
/// the jitter between workers it absorbs before a late message moves later slots back.
pub(crate) const DEFAULT_MARGIN: Duration = Duration::from_millis(10);

/// The bot's window: Telegram counts its per-bot limit per second.
const WINDOW: Duration = Duration::from_secs(1);

/// `window / n`, rounded up to the nanosecond: `n` spacings never add up to less than the
/// window.
pub(crate) fn spacing(window: Duration, n: u32) -> Duration {
    let nanos = window.as_nanos().div_ceil(u128::from(n.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many sends between two clean-ups of the per-chat state.
const RETAIN_EVERY: u64 = 4096;

/// A chat's state: a message to it is on its way, or the next one may go at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chat {
    Busy,
    FreeAt(Instant),
}

#[derive(Debug)]
struct State {
    /// The earliest time the bot's next message may go (the even spacing).
    next: Option<Instant>,
    /// Per chat, whether a message to it is on its way or when the next one may go.
    chats: HashMap<i64, Chat>,
    /// Messages sent and not answered yet: they occupy the window.
    in_flight: u32,
    /// When the answered messages that still occupy the window leave it, oldest first.
    leaving: VecDeque<Instant>,
    paused_until: Option<Instant>,
    sends: u64,
}

impl State {
    /// Forgets the answered messages that have left the window by `now`.
    fn expire(&mut self, now: Instant) {
        while self.leaving.front().is_some_and(|at| *at <= now) {
            self.leaving.pop_front();
        }
    }
}

/// The limiters of one Telegram channel.
#[derive(Debug)]
pub(crate) struct Pacer {
    limits: TelegramLimits,
    /// Between two messages of the bot.
    spacing: Duration,
    state: Mutex<State>,
    /// Woken when a message is answered while every place in the window was in flight.
    answered: Notify,
}

/// A message's place in the bot's window and in its chat, from its send until its answer:
/// dropping it (answer, error, timeout or cancelled future) starts the window and the chat's
/// interval from that moment.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    pacer: &'a Pacer,
    chat: TelegramChatId,
    /// The time reserved for the message.
    at: Instant,
    /// It holds a place in the bot's window (it got past [`Pacer::enter`]).
    entered: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.pacer.end(self);
    }
}

impl Pacer {
    pub(crate) fn new(limits: TelegramLimits) -> Result<Self> {
        if limits.per_second == 0 {
            return Err(Error::config(
                "the Telegram rate limit must be at least 1 message/s",
            ));
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
        Ok(Self {
            spacing: spacing(WINDOW, limits.per_second),
            limits,
            state: Mutex::new(State {
                next: None,
                chats: HashMap::new(),
                in_flight: 0,
                leaving: VecDeque::new(),
                paused_until: None,
                sends: 0,
            }),
            answered: Notify::new(),
        })
    }

    pub(crate) fn limits(&self) -> TelegramLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn interval(&self, chat: TelegramChatId) -> Duration {
        match chat.is_group() {
            true => self.limits.group_chat_interval,
            false => self.limits.private_chat_interval,
        }
    }

    /// Waits until a message to `chat` may go out, within the chat's rate and within the bot's
    /// rate, and answers its [`Turn`], to be dropped when the answer comes back; or answers how
    /// long the bot is still held back after a 429 (`Err`), when it is at the start or becomes
    /// so while the message waits for its turn. Such a message is not sent: sending every
    /// message that waited through a pause the moment it ends is the burst that earns the next
    /// 429 (and, when workers share the rate, it would go out beside the other workers'
    /// sends); its row is due again when the pause ends, with a fresh turn.
    pub(crate) async fn ready(&self, chat: TelegramChatId) -> Result<Turn<'_>, Duration> {
        if let Some(remaining) = self.remaining_pause() {
            return Err(remaining);
        }
        let mut turn = loop {
            match self.reserve(chat, Instant::now()) {
                Ok(at) => {
                    break Turn {
                        pacer: self,
                        chat,
                        at,
                        entered: false,
                    };
                }
                // The chat is not free before the bot's next slot: wait for the chat without
                // holding a slot that others could use.
                Err(chat_free) => tokio::time::sleep_until(chat_free).await,
            }
        };
        tokio::time::sleep_until(turn.at).await;
        self.enter(&mut turn).await;
        // A 429 may have paused the channel while this send waited for its turn.
        match self.remaining_pause() {
            Some(remaining) => Err(remaining),
            None => Ok(turn),
        }
    }

    /// Reserves the bot's next free time at `now` or later for a message to `chat`, and marks
    /// the chat busy; or, when the chat is busy or not free by then, answers when to ask again
    /// (`Err`) and reserves nothing.
    fn reserve(&self, chat: TelegramChatId, now: Instant) -> Result<Instant, Instant> {
        let mut state = self.lock();
        let key = chat.get();
        let at = state.next.map_or(now, |next| next.max(now));
        match state.chats.get(&key) {
            // Its message is on its way: the interval starts at the answer.
            Some(Chat::Busy) => return Err(now + self.interval(chat)),
            Some(Chat::FreeAt(free)) if *free > at => return Err(*free),
            _ => {}
        }
        state.next = Some(at + self.spacing);
        state.chats.insert(key, Chat::Busy);
        state.sends += 1;
        if state.sends.is_multiple_of(RETAIN_EVERY) {
            state
                .chats
                .retain(|_, chat| !matches!(chat, Chat::FreeAt(free) if *free <= now));
        }
        Ok(at)
    }

    /// Takes a place in the bot's window: waits while `rate` messages occupy it.
    async fn enter(&self, turn: &mut Turn<'_>) {
        let limit = self.limits.per_second as usize;
        loop {
            // Registered before looking, so that an answer in between is not missed.
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let leaves = {
                let mut state = self.lock();
                state.expire(Instant::now());
                if state.in_flight as usize + state.leaving.len() < limit {
                    state.in_flight += 1;
                    turn.entered = true;
                    return;
                }
                state.leaving.front().copied()
            };
            match leaves {
                Some(at) => tokio::time::sleep_until(at).await,
                // Every place is a message still on its way: wait for an answer.
                None => answered.await,
            }
        }
    }

    /// A [`Turn`] ended: its message was answered (or failed, or timed out) now, and occupies
    /// the window and its chat for one window and one interval more; or it never got a place
    /// (its future was dropped while it waited), and frees its chat from its reserved time.
    fn end(&self, turn: &Turn<'_>) {
        let mut state = self.lock();
        let key = turn.chat.get();
        if !turn.entered {
            state.chats.insert(key, Chat::FreeAt(turn.at));
            return;
        }
        let now = Instant::now();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.leaving.push_back(now + WINDOW);
        state
            .chats
            .insert(key, Chat::FreeAt(now + self.interval(turn.chat)));
        drop(state);
        self.answered.notify_waiters();
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
    use std::sync::Arc;

    use super::*;

    fn limits(per_second: u32) -> TelegramLimits {
        TelegramLimits {
            per_second,
            ..TelegramLimits::default()
        }
    }

    fn chat(id: i64) -> TelegramChatId {
        TelegramChatId::new(id).unwrap()
    }

    #[tokio::test]
    async fn a_pause_refuses_sends_and_is_never_shortened() {
        let pacer = Pacer::new(TelegramLimits::default()).unwrap();
        pacer.pause_for(Duration::from_millis(300));
        pacer.pause_for(Duration::from_millis(10));
        let held = pacer.ready(chat(1)).await.unwrap_err();
        assert!(held > Duration::from_millis(250), "{held:?}");
        tokio::time::sleep(held).await;
        assert!(pacer.remaining_pause().is_none());
        assert!(pacer.ready(chat(1)).await.is_ok());
    }

    #[tokio::test]
    async fn sends_waiting_for_their_turn_when_a_pause_begins_are_not_sent_after_it() {
        // 10/s: the fifth message's turn is 400 ms away.
        let pacer = Arc::new(Pacer::new(limits(10)).unwrap());
        for id in 1..=4 {
            drop(pacer.ready(chat(id)).await.unwrap());
        }
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready(chat(5)).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        pacer.pause_for(Duration::from_secs(1));
        let held = waiting.await.unwrap().unwrap_err();
        assert!(held > Duration::from_millis(500), "{held:?}");
    }

    fn reserve(pacer: &Pacer, id: i64, now: Instant) -> Instant {
        pacer.reserve(chat(id), now).expect("the chat is free")
    }

    #[test]
    fn messages_are_spaced_evenly_at_the_rate() {
        let pacer = Pacer::new(limits(30)).unwrap();
        let t0 = Instant::now();
        // 300 messages to 300 chats, all asked for at once.
        let times: Vec<Instant> = (1..=300).map(|id| reserve(&pacer, id, t0)).collect();
        for (i, at) in times.iter().enumerate().skip(30) {
            assert!(
                *at - times[i - 30] >= WINDOW,
                "messages {} and {i} are {:?} apart",
                i - 30,
                *at - times[i - 30]
            );
        }
        // ... and no slower than that: the 300th goes at 299 spacings.
        assert_eq!(times[299] - t0, spacing(WINDOW, 30) * 299);
    }

    #[test]
    fn late_wake_ups_do_not_push_later_messages_back() {
        let pacer = Pacer::new(limits(30)).unwrap();
        let t0 = Instant::now();
        let spacing = spacing(WINDOW, 30);
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

    #[tokio::test]
    async fn a_chat_is_free_one_interval_after_its_answer() {
        let pacer = Pacer::new(TelegramLimits {
            private_chat_interval: Duration::from_millis(200),
            group_chat_interval: Duration::from_millis(600),
            ..limits(1000)
        })
        .unwrap();
        for (id, interval) in [(7, 200), (-7, 600)] {
            let turn = pacer.ready(chat(id)).await.unwrap();
            // While its message is on its way the chat is busy, however long that takes.
            let asked = Instant::now();
            let again = pacer.reserve(chat(id), asked).unwrap_err();
            assert_eq!(again, asked + Duration::from_millis(interval));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let answered = Instant::now();
            drop(turn);
            let free = pacer.reserve(chat(id), answered).unwrap_err();
            assert!(
                free >= answered + Duration::from_millis(interval),
                "chat {id}: free {:?} after the answer",
                free - answered
            );
            // Others are not held back by a waiting chat.
            assert!(pacer.reserve(chat(id * 100), answered).is_ok());
            assert_eq!(pacer.reserve(chat(id), free).map(|_| ()), Ok(()));
        }
    }

    #[tokio::test]
    async fn a_dropped_wait_frees_its_chat_and_takes_no_place() {
        let pacer = Arc::new(Pacer::new(limits(1)).unwrap());
        let first = pacer.ready(chat(1)).await.unwrap();
        // The only place is taken: the second waits, and is given up.
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready(chat(2)).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        let state = pacer.lock();
        assert_eq!(state.in_flight, 1);
        assert!(matches!(state.chats.get(&2), Some(Chat::FreeAt(_))));
        drop(state);
        drop(first);
        assert_eq!(pacer.lock().in_flight, 0);
    }

    /// Arrivals at a server that sees each message some time after it was sent and answers it
    /// some time later, with delays that differ from message to message (early messages slow,
    /// later ones quick: the jitter that spacing with a margin cannot absorb).
    async fn arrivals(pacer: Arc<Pacer>, n: i64, delay: impl Fn(i64) -> Duration) -> Vec<Instant> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let pacer = pacer.clone();
                let (to_server, to_answer) = (delay(i), delay(i + n));
                tokio::spawn(async move {
                    let turn = pacer.ready(chat(i + 1)).await.unwrap();
                    tokio::time::sleep(to_server).await;
                    let arrived = Instant::now();
                    tokio::time::sleep(to_answer).await;
                    drop(turn);
                    arrived
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        times
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_never_counts_more_than_the_rate_in_any_second_whatever_the_jitter() {
        let rate = 40;
        let pacer = Arc::new(Pacer::new(limits(rate)).unwrap());
        // Up to 60 ms each way, from a small pseudo-random sequence.
        let delay = |i: i64| Duration::from_millis(((i * 7919 + 13) % 61).unsigned_abs());
        let times = arrivals(pacer, 3 * i64::from(rate), delay).await;
        let mut most = 0;
        let mut from = 0;
        for to in 0..times.len() {
            while times[to] - times[from] >= WINDOW {
                from += 1;
            }
            most = most.max(to - from + 1);
        }
        assert!(most <= rate as usize, "{most} arrivals within one second");
    }

    #[test]
    fn bad_limits_are_refused() {
        let err = Pacer::new(limits(0)).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = Pacer::new(TelegramLimits {
            private_chat_interval: Duration::ZERO,
            ..limits(30)
        })
        .unwrap_err();
        assert!(err.to_string().contains("private chat"), "{err}");
    }
}
