//! In-process metrics in the Prometheus text format: messages sent and failed per channel and
//! send latency (measured by [`MeteredChannel`] around the channels of this process's worker),
//! HTTP responses, logins; queue depth and open circuit breakers are read from the store when
//! `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use broadcast_domain::{
    Channel, ChannelKind, Delivered, DeliveryError, DeliveryStatus, ErrorKind, OutgoingMessage,
};

/// Upper bounds of the send-latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
struct ChannelCounters {
    sent: u64,
    failed: BTreeMap<ErrorKind, u64>,
    latency: Histogram,
}

/// What the database says when `/metrics` is scraped.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Recipient rows still to do over running and paused broadcasts, per status.
    pub(crate) queue: BTreeMap<DeliveryStatus, u64>,
    /// Broadcasts paused by an open circuit breaker (waiting for a probe), per channel.
    pub(crate) open_breakers: BTreeMap<ChannelKind, u64>,
}

/// Counters of this process.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    channels: Mutex<BTreeMap<ChannelKind, ChannelCounters>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    logins_locked: AtomicU64,
    csrf_rejected: AtomicU64,
    unsubscribes: AtomicU64,
    started: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a login attempt ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    /// Logged in.
    Success,
    /// Wrong name or password.
    Failure,
    /// Refused because the name or address is locked.
    Locked,
}

impl Metrics {
    /// Fresh counters.
    pub(crate) fn new() -> Self {
        Self {
            started: Some(Instant::now()),
            ..Self::default()
        }
    }

    /// Records one send attempt of a channel.
    pub(crate) fn record_send(
        &self,
        channel: ChannelKind,
        seconds: f64,
        result: Result<(), ErrorKind>,
    ) {
        let mut channels = lock(&self.channels);
        let c = channels.entry(channel).or_default();
        c.latency.observe(seconds);
        match result {
            Ok(()) => c.sent += 1,
            Err(kind) => *c.failed.entry(kind).or_default() += 1,
        }
    }

    /// Records an HTTP response status.
    pub(crate) fn record_response(&self, status: u16) {
        *lock(&self.responses).entry(status).or_default() += 1;
    }

    /// Records a login attempt.
    pub(crate) fn record_login(&self, outcome: LoginOutcome) {
        let counter = match outcome {
            LoginOutcome::Success => &self.logins_ok,
            LoginOutcome::Failure => &self.logins_failed,
            LoginOutcome::Locked => &self.logins_locked,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a form refused for a missing or wrong CSRF token.
    pub(crate) fn record_csrf_rejection(&self) {
        self.csrf_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a one-click or confirmed unsubscribe.
    pub(crate) fn record_unsubscribe(&self) {
        self.unsubscribes.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with what was read from the store.
    pub(crate) fn render(&self, backlog: &Backlog, worker_running: bool) -> String {
        let mut out = String::new();
        let channels = lock(&self.channels);
        let _ = writeln!(
            out,
            "# HELP broadcast_messages_sent_total Messages accepted by a channel, sent by this process."
        );
        let _ = writeln!(out, "# TYPE broadcast_messages_sent_total counter");
        for kind in &ChannelKind::all() {
            let sent = channels.get(kind).map_or(0, |c| c.sent);
            let _ = writeln!(
                out,
                "broadcast_messages_sent_total{{channel=\"{kind}\"}} {sent}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP broadcast_messages_failed_total Send attempts that failed, by channel and error kind."
        );
        let _ = writeln!(out, "# TYPE broadcast_messages_failed_total counter");
        for kind in &ChannelKind::all() {
            for error in ErrorKind::ALL {
                let n = channels
                    .get(kind)
                    .and_then(|c| c.failed.get(error))
                    .copied()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "broadcast_messages_failed_total{{channel=\"{kind}\",kind=\"{error}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP broadcast_send_duration_seconds Time one send attempt took, by channel."
        );
        let _ = writeln!(out, "# TYPE broadcast_send_duration_seconds histogram");
        let empty = Histogram::default();
        for kind in &ChannelKind::all() {
            let h = channels.get(kind).map_or(&empty, |c| &c.latency);
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "broadcast_send_duration_seconds_bucket{{channel=\"{kind}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "broadcast_send_duration_seconds_bucket{{channel=\"{kind}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "broadcast_send_duration_seconds_sum{{channel=\"{kind}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "broadcast_send_duration_seconds_count{{channel=\"{kind}\"}} {}",
                h.count
            );
        }
        drop(channels);
        let _ = writeln!(
            out,
            "# HELP broadcast_queue_depth Recipient rows of running and paused broadcasts still to do, from the database."
        );
        let _ = writeln!(out, "# TYPE broadcast_queue_depth gauge");
        for status in [DeliveryStatus::Pending, DeliveryStatus::Sending] {
            let n = backlog.queue.get(&status).copied().unwrap_or(0);
            let _ = writeln!(out, "broadcast_queue_depth{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP broadcast_breakers_open Broadcasts paused by their circuit breaker and waiting for a probe, by channel, from the database."
        );
        let _ = writeln!(out, "# TYPE broadcast_breakers_open gauge");
        for kind in &ChannelKind::all() {
            let n = backlog.open_breakers.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "broadcast_breakers_open{{channel=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP broadcast_worker_running 1 when this process runs a delivery worker."
        );
        let _ = writeln!(out, "# TYPE broadcast_worker_running gauge");
        let _ = writeln!(out, "broadcast_worker_running {}", u8::from(worker_running));
        let _ = writeln!(
            out,
            "# HELP admin_logins_total Login attempts to the admin panel, by outcome."
        );
        let _ = writeln!(out, "# TYPE admin_logins_total counter");
        for (outcome, counter) in [
            ("success", &self.logins_ok),
            ("failure", &self.logins_failed),
            ("locked", &self.logins_locked),
        ] {
            let _ = writeln!(
                out,
                "admin_logins_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP admin_csrf_rejections_total Forms refused for a missing or wrong CSRF token."
        );
        let _ = writeln!(out, "# TYPE admin_csrf_rejections_total counter");
        let _ = writeln!(
            out,
            "admin_csrf_rejections_total {}",
            self.csrf_rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP admin_unsubscribes_total E-mail unsubscribes through the public links."
        );
        let _ = writeln!(out, "# TYPE admin_unsubscribes_total counter");
        let _ = writeln!(
            out,
            "admin_unsubscribes_total {}",
            self.unsubscribes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP admin_http_responses_total HTTP responses of the admin panel, by status code."
        );
        let _ = writeln!(out, "# TYPE admin_http_responses_total counter");
        for (status, n) in lock(&self.responses).iter() {
            let _ = writeln!(out, "admin_http_responses_total{{code=\"{status}\"}} {n}");
        }
        if let Some(started) = self.started {
            let _ = writeln!(
                out,
                "# HELP admin_uptime_seconds Seconds since the admin panel started."
            );
            let _ = writeln!(out, "# TYPE admin_uptime_seconds gauge");
            let _ = writeln!(
                out,
                "admin_uptime_seconds {:.3}",
                started.elapsed().as_secs_f64()
            );
        }
        out
    }
}

/// A channel that counts what the channel it wraps does.
#[derive(Debug)]
pub(crate) struct MeteredChannel {
    inner: Arc<dyn Channel>,
    metrics: Arc<Metrics>,
}

impl MeteredChannel {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn Channel>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Channel for MeteredChannel {
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let started = Instant::now();
        let result = self.inner.send(message).await;
        self.metrics.record_send(
            self.inner.kind(),
            started.elapsed().as_secs_f64(),
            result.as_ref().map(|_| ()).map_err(|e| e.kind.error_kind()),
        );
        result
    }

    fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.record_send(ChannelKind::TELEGRAM, 0.003, Ok(()));
        m.record_send(ChannelKind::TELEGRAM, 0.2, Err(ErrorKind::Blocked));
        m.record_response(200);
        m.record_login(LoginOutcome::Failure);
        let backlog = Backlog {
            queue: BTreeMap::from([(DeliveryStatus::Pending, 7)]),
            open_breakers: BTreeMap::from([(ChannelKind::EMAIL, 2)]),
        };
        let text = m.render(&backlog, true);
        for line in [
            "broadcast_messages_sent_total{channel=\"telegram\"} 1",
            "broadcast_messages_sent_total{channel=\"email\"} 0",
            "broadcast_messages_failed_total{channel=\"telegram\",kind=\"blocked\"} 1",
            "broadcast_send_duration_seconds_bucket{channel=\"telegram\",le=\"0.005\"} 1",
            "broadcast_send_duration_seconds_bucket{channel=\"telegram\",le=\"+Inf\"} 2",
            "broadcast_send_duration_seconds_count{channel=\"telegram\"} 2",
            "broadcast_queue_depth{status=\"pending\"} 7",
            "broadcast_queue_depth{status=\"sending\"} 0",
            "broadcast_breakers_open{channel=\"email\"} 2",
            "broadcast_breakers_open{channel=\"telegram\"} 0",
            "broadcast_worker_running 1",
            "admin_logins_total{outcome=\"failure\"} 1",
            "admin_http_responses_total{code=\"200\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }
}
