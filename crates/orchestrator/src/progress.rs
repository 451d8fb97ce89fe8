//! Progress events published while a broadcast is delivered.

use chrono::{DateTime, Utc};
use serde::Serialize;

use broadcast_domain::{BroadcastId, BroadcastStatus, DeliveryStats, DeliveryStatus};

/// A snapshot of a broadcast's delivery, published after every processed batch (see
/// [`Orchestrator::subscribe`](crate::Orchestrator::subscribe)) and returned by
/// [`Orchestrator::progress`](crate::Orchestrator::progress).
///
/// Serialises to JSON with the field names below (the admin panel streams it as server-sent
/// events).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Which broadcast.
    pub broadcast_id: BroadcastId,
    /// Its status after the batch.
    pub status: BroadcastStatus,
    /// Rows in total.
    pub total: u64,
    /// Rows in a final state (sent, failed, skipped, cancelled).
    pub done: u64,
    /// Delivered.
    pub sent: u64,
    /// Failed for good.
    pub failed: u64,
    /// Skipped at launch.
    pub skipped: u64,
    /// Still to do.
    pub open: u64,
    /// Deliveries per second since the first one, while the broadcast is running (`None` when
    /// it is paused, scheduled or finished: nothing is being sent).
    pub rate: Option<f64>,
    /// Seconds left at the current rate, while the broadcast is running.
    pub eta_seconds: Option<f64>,
    /// When the snapshot was taken.
    pub at: DateTime<Utc>,
}

impl Progress {
    /// Builds a snapshot from statistics.
    pub fn from_stats(
        broadcast_id: BroadcastId,
        status: BroadcastStatus,
        stats: &DeliveryStats,
        at: DateTime<Utc>,
    ) -> Self {
        let open = stats.open();
        // A paused broadcast sends nothing: no rate, no time left.
        let rate = stats
            .send_rate()
            .filter(|_| status == BroadcastStatus::Running);
        Self {
            broadcast_id,
            status,
            total: stats.total,
            done: stats.total - open,
            sent: stats.count(DeliveryStatus::Sent),
            failed: stats.count(DeliveryStatus::Failed),
            skipped: stats.count(DeliveryStatus::Skipped),
            open,
            rate,
            eta_seconds: rate.filter(|r| *r > 0.0).map(|r| open as f64 / r),
            at,
        }
    }

    /// Share of rows in a final state, 0.0 to 1.0 (1.0 for an empty broadcast).
    ///
    /// ```
    /// use broadcast_domain::{BroadcastStatus, DeliveryStats, DeliveryStatus};
    /// use broadcast_orchestrator::Progress;
    ///
    /// let mut stats = DeliveryStats::default();
    /// stats.total = 4;
    /// stats.by_status.insert(DeliveryStatus::Sent, 3);
    /// stats.by_status.insert(DeliveryStatus::Pending, 1);
    /// let p = Progress::from_stats(7, BroadcastStatus::Running, &stats, chrono::Utc::now());
    /// assert_eq!((p.done, p.open, p.sent), (3, 1, 3));
    /// assert_eq!(p.fraction(), 0.75);
    /// ```
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use broadcast_domain::{DeliveryStats, DeliveryStatus};

    use super::*;

    #[test]
    fn only_a_running_broadcast_has_a_rate_and_time_left() {
        let start = chrono::Utc::now();
        let mut stats = DeliveryStats {
            total: 10,
            first_sent_at: Some(start),
            last_sent_at: Some(start + chrono::Duration::seconds(2)),
            ..DeliveryStats::default()
        };
        stats.by_status.insert(DeliveryStatus::Sent, 5);
        stats.by_status.insert(DeliveryStatus::Pending, 5);
        let running = Progress::from_stats(1, BroadcastStatus::Running, &stats, start);
        assert!(
            running.rate.is_some() && running.eta_seconds.is_some(),
            "{running:?}"
        );
        for status in [BroadcastStatus::Paused, BroadcastStatus::Cancelled] {
            let p = Progress::from_stats(1, status, &stats, start);
            assert_eq!((p.rate, p.eta_seconds), (None, None), "{status}");
            assert_eq!(p.open, 5, "the counts stay");
        }
    }
}
