//! How a delivery run ended, for its exit code: `broadcast run` and `worker --once` exit 0 only
//! when every broadcast they drove delivered something; a broadcast that ended paused, failed or
//! cancelled, or completed without a single message sent, is exit code 3 with the reason on
//! stderr, and `--json` names the same outcome.

use broadcast_domain::{Broadcast, BroadcastStatus, DeliveryStats, DeliveryStatus};

/// The outcome of one broadcast after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `delivered`, `running` (rows are due later), `paused`, `failed`, `cancelled` or
    /// `nothing_delivered`.
    pub(crate) name: &'static str,
    /// Why it is not a success, for the `error:` line; `None` for `delivered` and `running`.
    pub(crate) problem: Option<String>,
}

impl Outcome {
    /// The outcome of `b` with these statistics.
    pub(crate) fn of(b: &Broadcast, stats: &DeliveryStats) -> Self {
        let id = b.id;
        let reason = b
            .status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let (name, problem) = match b.status {
            BroadcastStatus::Paused => (
                "paused",
                Some(format!(
                    "broadcast {id} is paused{reason}; nothing more is sent until \
                     `broadcast-cli broadcast resume {id}`"
                )),
            ),
            BroadcastStatus::Failed => ("failed", Some(format!("broadcast {id} failed{reason}"))),
            BroadcastStatus::Cancelled => (
                "cancelled",
                Some(format!("broadcast {id} was cancelled{reason}")),
            ),
            BroadcastStatus::Completed if stats.count(DeliveryStatus::Sent) == 0 => (
                "nothing_delivered",
                Some(format!(
                    "broadcast {id} completed without delivering any message ({} failed, {} \
                     skipped); `broadcast-cli broadcast recipients {id} --status failed` shows why",
                    stats.count(DeliveryStatus::Failed),
                    stats.count(DeliveryStatus::Skipped)
                )),
            ),
            BroadcastStatus::Completed => ("delivered", None),
            BroadcastStatus::Draft | BroadcastStatus::Scheduled | BroadcastStatus::Running => {
                ("running", None)
            }
        };
        Self { name, problem }
    }
}

#[cfg(test)]
mod tests {
    use broadcast_domain::{AudienceFilter, ChannelKind, ChannelPolicy, StatusCount};
    use chrono::Utc;

    use super::*;

    fn broadcast(status: BroadcastStatus, reason: Option<&str>) -> Broadcast {
        Broadcast {
            id: 7,
            name: "b".into(),
            template_id: None,
            frozen_template: None,
            channel_policy: ChannelPolicy::BOTH,
            filter: AudienceFilter::default(),
            status,
            status_reason: reason.map(str::to_owned),
            scheduled_at: None,
            started_at: None,
            finished_at: None,
            created_by: None,
            total_recipients: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            probe: None,
        }
    }

    fn stats(sent: u64, failed: u64) -> DeliveryStats {
        let row = |status, count| StatusCount {
            channel: ChannelKind::EMAIL,
            status,
            error_kind: None,
            skip_reason: None,
            count,
        };
        DeliveryStats::from_counts(&[
            row(DeliveryStatus::Sent, sent),
            row(DeliveryStatus::Failed, failed),
        ])
    }

    #[test]
    fn only_a_completed_broadcast_that_sent_something_is_a_success() {
        let of = |status, reason, sent, failed| {
            Outcome::of(&broadcast(status, reason), &stats(sent, failed))
        };
        assert_eq!(of(BroadcastStatus::Completed, None, 3, 1).problem, None);
        let none = of(BroadcastStatus::Completed, None, 0, 4);
        assert_eq!(none.name, "nothing_delivered");
        assert!(none.problem.unwrap().contains("4 failed"));
        let paused = of(
            BroadcastStatus::Paused,
            Some("the email channel failed"),
            2,
            0,
        );
        assert_eq!(paused.name, "paused");
        assert!(
            paused
                .problem
                .unwrap()
                .contains("(the email channel failed); nothing more is sent until")
        );
        assert_eq!(of(BroadcastStatus::Failed, None, 0, 0).name, "failed");
        assert_eq!(of(BroadcastStatus::Running, None, 0, 0).problem, None);
    }
}
