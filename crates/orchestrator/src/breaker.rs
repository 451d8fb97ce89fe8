//! The circuit breaker: pauses a broadcast when a channel keeps failing (a wrong SMTP password,
//! a revoked bot token) instead of burning through the whole audience.

use std::collections::{HashMap, VecDeque};

use broadcast_domain::{BroadcastId, ChannelKind};

/// Failure statistics per (broadcast, channel) of this process.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    lanes: HashMap<(BroadcastId, ChannelKind), Lane>,
}

#[derive(Debug, Default)]
struct Lane {
    consecutive: u32,
    window: VecDeque<bool>,
    failures_in_window: u32,
    tripped: Option<String>,
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) consecutive: u32,
    pub(crate) window: u32,
    pub(crate) ratio: f64,
}

impl Breaker {
    /// Records one attempt; returns the reason when this attempt trips the breaker.
    pub(crate) fn record(
        &mut self,
        key: (BroadcastId, ChannelKind),
        failed: bool,
        limits: Limits,
        last_error: &str,
    ) -> Option<String> {
        let lane = self.lanes.entry(key).or_default();
        if lane.tripped.is_some() {
            return None;
        }
        lane.consecutive = if failed { lane.consecutive + 1 } else { 0 };
        lane.window.push_back(failed);
        lane.failures_in_window += u32::from(failed);
        if lane.window.len() > limits.window as usize && lane.window.pop_front() == Some(true) {
            lane.failures_in_window -= 1;
        }
        let full = lane.window.len() >= limits.window as usize;
        let reason = if lane.consecutive >= limits.consecutive {
            Some(format!(
                "{} consecutive {} failures",
                lane.consecutive, key.1
            ))
        } else if full
            && f64::from(lane.failures_in_window) > limits.ratio * f64::from(limits.window)
        {
            Some(format!(
                "{} of the last {} {} attempts failed",
                lane.failures_in_window, limits.window, key.1
            ))
        } else {
            None
        }?;
        let reason = format!("paused automatically: {reason}; last error: {last_error}");
        lane.tripped = Some(reason.clone());
        Some(reason)
    }

    /// True when sends of this lane should stop.
    pub(crate) fn is_tripped(&self, key: (BroadcastId, ChannelKind)) -> bool {
        self.lanes.get(&key).is_some_and(|l| l.tripped.is_some())
    }

    /// Forgets a broadcast (it was paused, resumed, completed or cancelled).
    pub(crate) fn reset(&mut self, broadcast: BroadcastId) {
        self.lanes.retain(|(b, _), _| *b != broadcast);
    }

    /// Lanes that tripped and are not yet acted upon, with the reason.
    pub(crate) fn tripped(&self) -> Vec<((BroadcastId, ChannelKind), String)> {
        self.lanes
            .iter()
            .filter_map(|(lane, l)| l.tripped.clone().map(|r| (*lane, r)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        consecutive: 5,
        window: 10,
        ratio: 0.5,
    };

    #[test]
    fn trips_on_consecutive_failures() {
        let mut b = Breaker::default();
        let key = (1, ChannelKind::EMAIL);
        for _ in 0..4 {
            assert!(b.record(key, true, LIMITS, "535").is_none());
        }
        assert!(
            b.record(key, false, LIMITS, "").is_none(),
            "a success resets the run"
        );
        for _ in 0..4 {
            assert!(b.record(key, true, LIMITS, "535").is_none());
        }
        let reason = b.record(key, true, LIMITS, "535 auth failed").unwrap();
        assert!(
            reason.contains("5 consecutive email failures") && reason.contains("535 auth failed")
        );
        assert!(b.is_tripped(key));
        assert!(!b.is_tripped((1, ChannelKind::TELEGRAM)));
        b.reset(1);
        assert!(!b.is_tripped(key));
    }

    #[test]
    fn trips_on_failure_ratio_over_a_full_window() {
        let mut b = Breaker::default();
        let key = (2, ChannelKind::TELEGRAM);
        // fail, fail, ok, ... : 2 of 3 fail, never 5 in a row.
        let mut tripped = None;
        for i in 0..30 {
            if let Some(r) = b.record(key, i % 3 != 2, LIMITS, "500") {
                tripped = Some((i, r));
                break;
            }
        }
        let (i, reason) = tripped.expect("ratio trips");
        assert!(i >= 9, "not before the window is full: {i}");
        assert!(
            reason.contains("of the last 10 telegram attempts failed"),
            "{reason}"
        );
    }
}
