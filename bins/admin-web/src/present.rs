//! View models shared by pages, the JSON endpoints and the progress streams: what a broadcast,
//! its progress and its statistics look like to the panel.

use std::collections::BTreeMap;

use broadcast_domain::{
    AudienceCount, AudienceFilter, Broadcast, BroadcastStatus, ChannelKind, ChannelPolicy,
    DeliveryStats, DeliveryStatus, PolicyMode,
};
use broadcast_orchestrator::Progress;
use serde::Serialize;

use crate::settings::Settings;
use crate::views::{fmt_duration, fmt_opt, fmt_time};

/// A progress snapshot with the percentage the pages show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ProgressView {
    pub(crate) broadcast_id: i64,
    pub(crate) status: BroadcastStatus,
    pub(crate) total: u64,
    pub(crate) done: u64,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
    pub(crate) open: u64,
    pub(crate) rate: Option<f64>,
    pub(crate) eta_seconds: Option<f64>,
    /// 0 to 100, rounded down (100 only when nothing is left to do).
    pub(crate) percent: u32,
}

impl From<&Progress> for ProgressView {
    fn from(p: &Progress) -> Self {
        let percent = (p.done.min(p.total) * 100)
            .checked_div(p.total)
            .map_or(if p.status.is_final() { 100 } else { 0 }, |pct| pct as u32);
        Self {
            broadcast_id: p.broadcast_id,
            status: p.status,
            total: p.total,
            done: p.done,
            sent: p.sent,
            failed: p.failed,
            skipped: p.skipped,
            open: p.open,
            rate: p.rate,
            eta_seconds: p.eta_seconds,
            percent,
        }
    }
}

impl ProgressView {
    /// The same snapshot except for the rate estimates (to tell real changes from noise).
    pub(crate) fn same_counts(&self, other: &ProgressView) -> bool {
        (
            self.status,
            self.total,
            self.done,
            self.sent,
            self.failed,
            self.skipped,
        ) == (
            other.status,
            other.total,
            other.done,
            other.sent,
            other.failed,
            other.skipped,
        )
    }
}

/// True for broadcasts whose progress can still change.
pub(crate) fn is_active(status: BroadcastStatus) -> bool {
    matches!(
        status,
        BroadcastStatus::Running | BroadcastStatus::Paused | BroadcastStatus::Scheduled
    )
}

/// A template a broadcast refers to.
#[derive(Debug, Serialize)]
pub(crate) struct TemplateRef {
    pub(crate) id: i64,
    pub(crate) name: String,
}

/// A broadcast as pages show it.
#[derive(Debug, Serialize)]
pub(crate) struct BroadcastRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) status: BroadcastStatus,
    pub(crate) status_reason: Option<String>,
    /// While the circuit breaker holds the broadcast paused: what its next probe is.
    pub(crate) probe: Option<String>,
    pub(crate) policy: String,
    pub(crate) filter: String,
    pub(crate) template: Option<TemplateRef>,
    pub(crate) frozen: bool,
    pub(crate) created_by: String,
    pub(crate) created: String,
    pub(crate) scheduled: String,
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) total: i64,
    pub(crate) active: bool,
    pub(crate) percent: u32,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
}

/// How a channel policy reads.
pub(crate) fn policy_label(policy: ChannelPolicy) -> String {
    let names: Vec<&str> = policy.channels().iter().map(|k| k.as_str()).collect();
    match (policy, policy.mode()) {
        (ChannelPolicy::TELEGRAM, _) => "Telegram only".into(),
        (ChannelPolicy::EMAIL, _) => "E-mail only".into(),
        (ChannelPolicy::BOTH, _) => "Telegram and e-mail".into(),
        (ChannelPolicy::TELEGRAM_THEN_EMAIL, _) => "Telegram, e-mail as fallback".into(),
        (_, _) if names.len() == 1 => format!("{} only", names[0]),
        (_, PolicyMode::All) => format!("All of {}", names.join(", ")),
        (_, PolicyMode::FirstReachable) => {
            format!("First that reaches: {}", names.join(", then "))
        }
    }
}

/// A broadcast row, with its progress when known.
pub(crate) fn broadcast_row(
    b: &Broadcast,
    template: Option<TemplateRef>,
    progress: Option<&ProgressView>,
    competitions: &BTreeMap<i64, String>,
) -> BroadcastRow {
    BroadcastRow {
        id: b.id,
        name: b.name.clone(),
        status: b.status,
        status_reason: b.status_reason.clone(),
        probe: b.probe.map(|p| {
            format!(
                "The circuit breaker sends one {} message at {} to see whether the channel works \
                 again; if it goes through, the broadcast resumes by itself.",
                p.channel,
                p.at.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }),
        policy: policy_label(b.channel_policy).to_owned(),
        filter: b.filter.describe_with(competitions),
        template,
        frozen: b.frozen_template.is_some(),
        created_by: b.created_by.clone().unwrap_or_default(),
        created: fmt_time(b.created_at),
        scheduled: fmt_opt(b.scheduled_at),
        started: fmt_opt(b.started_at),
        finished: fmt_opt(b.finished_at),
        total: b.total_recipients,
        active: is_active(b.status),
        percent: progress.map_or(if b.status.is_final() { 100 } else { 0 }, |p| p.percent),
        sent: progress.map_or(0, |p| p.sent),
        failed: progress.map_or(0, |p| p.failed),
        skipped: progress.map_or(0, |p| p.skipped),
    }
}

/// An audience count as the filter builder and the launch page show it.
#[derive(Debug, Serialize)]
pub(crate) struct CountView {
    pub(crate) users: u64,
    pub(crate) channel_policy: String,
    /// Per channel of the policy, in its order.
    pub(crate) channels: Vec<ChannelCountView>,
    pub(crate) unreachable: u64,
    pub(crate) describe: String,
}

/// One channel of a [`CountView`].
#[derive(Debug, Serialize)]
pub(crate) struct ChannelCountView {
    pub(crate) channel: &'static str,
    /// What its messages are called in a sentence (`e-mails`) and as a heading (`E-mails`).
    pub(crate) label: String,
    pub(crate) title: String,
    pub(crate) reachable: u64,
    pub(crate) messages: u64,
}

impl CountView {
    pub(crate) fn new(
        count: &AudienceCount,
        policy: ChannelPolicy,
        filter: &AudienceFilter,
        competitions: &BTreeMap<i64, String>,
    ) -> Self {
        let channels = policy
            .channels()
            .iter()
            .map(|kind| {
                let (label, title) = match *kind {
                    ChannelKind::TELEGRAM => {
                        ("Telegram messages".into(), "Telegram messages".into())
                    }
                    ChannelKind::EMAIL => ("e-mails".into(), "E-mails".into()),
                    other => (format!("{other} messages"), format!("{other} messages")),
                };
                ChannelCountView {
                    channel: kind.as_str(),
                    label,
                    title,
                    reachable: count.reachable_on(*kind),
                    messages: count.messages_on(*kind),
                }
            })
            .collect();
        Self {
            users: count.users,
            channel_policy: policy.to_string(),
            channels,
            unreachable: count.unreachable,
            describe: filter.describe_with(competitions),
        }
    }
}

/// How long sending takes at the configured rates, e.g. `about 4 min 10 s (Telegram at
/// 30 messages/s)`: the slowest channel decides, as channels send side by side.
pub(crate) fn estimate(settings: &Settings, count: &AudienceCount) -> String {
    let channels = &settings.channels;
    let mut parts = Vec::new();
    let mut longest: f64 = 0.0;
    for (kind, n) in count.messages.iter().filter(|(_, n)| **n > 0) {
        let n = *n as f64;
        match *kind {
            ChannelKind::TELEGRAM => match &channels.telegram {
                Some(cfg) => {
                    let rate = f64::from(cfg.rate_per_sec.max(1));
                    longest = longest.max(n / rate);
                    parts.push(format!("Telegram at {} messages/s", cfg.rate_per_sec));
                }
                None => parts.push("Telegram to the outbox file, no rate limit".to_owned()),
            },
            ChannelKind::EMAIL => match channels.smtp.as_ref().and_then(|c| c.rate_per_sec) {
                Some(rate) => {
                    longest = longest.max(n / f64::from(rate.max(1)));
                    parts.push(format!("e-mail at {rate} messages/s"));
                }
                None if channels.smtp.is_some() => {
                    parts.push("e-mail without a rate limit".to_owned());
                }
                None => parts.push("e-mail to the outbox directory, no rate limit".to_owned()),
            },
            // The panel configures Telegram and e-mail; other channels pace themselves.
            other => parts.push(format!("{other} at its own pace")),
        }
    }
    if parts.is_empty() {
        return "nothing to send".to_owned();
    }
    format!("about {} ({})", fmt_duration(longest), parts.join("; "))
}

/// One bar of the status chart.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBar {
    pub(crate) status: DeliveryStatus,
    pub(crate) count: u64,
    /// Share of all rows, 0 to 100, for the bar's width.
    pub(crate) pct: f64,
}

/// Per channel, a count per delivery status (in [`DeliveryStatus::ALL`] order).
#[derive(Debug, Serialize)]
pub(crate) struct ChannelCounts {
    pub(crate) channel: ChannelKind,
    pub(crate) counts: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KindCount {
    pub(crate) kind: String,
    pub(crate) count: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReasonCount {
    pub(crate) reason: String,
    pub(crate) count: u64,
}

/// The statistics block of the broadcast page.
#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    pub(crate) total: u64,
    pub(crate) by_status: Vec<StatusBar>,
    pub(crate) by_channel: Vec<ChannelCounts>,
    pub(crate) by_error_kind: Vec<KindCount>,
    pub(crate) by_skip_reason: Vec<ReasonCount>,
    pub(crate) possible_duplicates: u64,
    pub(crate) rate: Option<String>,
    pub(crate) duration: Option<String>,
}

impl From<&DeliveryStats> for StatsView {
    fn from(s: &DeliveryStats) -> Self {
        let total = s.total;
        let pct = |n: u64| {
            if total == 0 {
                0.0
            } else {
                ((n as f64 * 1000.0 / total as f64).round()) / 10.0
            }
        };
        Self {
            total,
            by_status: DeliveryStatus::ALL
                .iter()
                .map(|st| StatusBar {
                    status: *st,
                    count: s.count(*st),
                    pct: pct(s.count(*st)),
                })
                .collect(),
            by_channel: s
                .by_channel
                .keys()
                .map(|ch| ChannelCounts {
                    channel: *ch,
                    counts: DeliveryStatus::ALL
                        .iter()
                        .map(|st| s.channel_count(*ch, *st))
                        .collect(),
                })
                .collect(),
            by_error_kind: s
                .by_error_kind
                .iter()
                .map(|(k, n)| KindCount {
                    kind: k.to_string(),
                    count: *n,
                })
                .collect(),
            by_skip_reason: s
                .by_skip_reason
                .iter()
                .map(|(k, n)| ReasonCount {
                    reason: k.to_string(),
                    count: *n,
                })
                .collect(),
            possible_duplicates: s.possible_duplicates,
            rate: s.send_rate().map(|r| format!("{r:.1} messages/s")),
            duration: match (s.first_sent_at, s.last_sent_at) {
                (Some(a), Some(b)) => {
                    Some(fmt_duration((b - a).num_milliseconds() as f64 / 1000.0))
                }
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_rounded_down_and_full_only_when_done() {
        let p = Progress {
            broadcast_id: 1,
            status: BroadcastStatus::Running,
            total: 3,
            done: 2,
            sent: 2,
            failed: 0,
            skipped: 0,
            open: 1,
            rate: None,
            eta_seconds: None,
            at: chrono::Utc::now(),
        };
        assert_eq!(ProgressView::from(&p).percent, 66);
        let empty = Progress {
            total: 0,
            done: 0,
            status: BroadcastStatus::Draft,
            ..p.clone()
        };
        assert_eq!(ProgressView::from(&empty).percent, 0);
        let done = Progress {
            status: BroadcastStatus::Completed,
            ..empty
        };
        assert_eq!(ProgressView::from(&done).percent, 100);
    }
}
