//! The worker loop: rounds of about [`ROUND`] over every running broadcast, scheduled
//! launches, the idle poll, and a graceful stop; and delivering one broadcast to the end.

use super::*;

impl Orchestrator {
    /// Delivers one broadcast to the end: ticks until no row is open, waiting for retries that
    /// are not yet due. While its circuit breaker holds it paused, it waits for the probes
    /// (see the `probe` module) and goes on when one succeeds, for up to
    /// `breaker_cooldown_max` after the pause: a probe due later than that leaves the
    /// broadcast paused, with its probe, for the workers. Returns when the broadcast is
    /// completed, paused (by an operator, a channel fault, or a breaker that did not heal in
    /// time) or cancelled.
    pub async fn run_until_done(&self, id: BroadcastId) -> Result<DeliveryStats> {
        let mut paused_since = None;
        loop {
            let b = self.ports.broadcasts.get_broadcast(id).await?;
            if b.status == BroadcastStatus::Paused
                && let Some(probe) = b.probe
                && self.ports.channels.get(probe.channel).is_some()
            {
                let now = self.ports.clock.now();
                let since = *paused_since.get_or_insert(now);
                let patience = chrono::Duration::from_std(self.settings.breaker_cooldown_max)
                    .unwrap_or_default();
                if probe.at > since + patience {
                    break;
                }
                if self.probe_due(Some(id)).await? == 0 {
                    // Until the probe is due (or another worker's lease on it ends), looking
                    // every second for an operator's resume or cancel.
                    let wait = (probe.at - now)
                        .to_std()
                        .unwrap_or_default()
                        .clamp(self.settings.idle_poll, Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            paused_since = None;
            if b.status != BroadcastStatus::Running {
                break;
            }
            let tick = self.round(Some(id), None).await?;
            if tick.claimed == 0 {
                if self.complete_if_done(id).await? {
                    self.publish(id, true).await?;
                    break;
                }
                tokio::time::sleep(self.settings.idle_poll).await;
            }
        }
        self.stats(id).await
    }

    /// The worker loop: launches scheduled broadcasts whose time has come and delivers every
    /// running broadcast, until `shutdown` completes. A batch in progress is finished and
    /// recorded before returning.
    pub async fn run_worker(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        // Poll once before working: signal handlers are installed on the first poll, so a
        // signal during the first batch stops the worker gracefully instead of killing it.
        if futures::poll!(&mut shutdown).is_ready() {
            return Ok(());
        }
        let (stop, stopping) = watch::channel(false);
        loop {
            // The round runs while `shutdown` is watched: on shutdown it stops claiming, hands
            // back rows not yet sent, and finishes (and records) the sends in flight.
            let round = self.work_round(Some(stopping.clone()));
            tokio::pin!(round);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut round => break outcome,
                    () = &mut shutdown, if !*stop.borrow() => {
                        let _ = stop.send(true);
                    }
                }
            };
            let idle = match outcome {
                Ok(did_work) => !did_work,
                Err(e) if matches!(e, Error::Unavailable(_)) => {
                    tracing::warn!(error = %e, "store unavailable; retrying");
                    true
                }
                Err(e) => return Err(e),
            };
            if *stop.borrow() {
                return Ok(());
            }
            if idle {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(self.settings.idle_poll) => {}
                }
            } else if futures::poll!(&mut shutdown).is_ready() {
                return Ok(());
            }
        }
    }

    /// One round of the worker loop: launches the scheduled broadcasts that are due, then
    /// delivers batches back to back for a couple of seconds (fewer when the queue runs dry).
    /// True when something was done.
    pub async fn work_once(&self) -> Result<bool> {
        self.work_round(None).await
    }

    pub(super) async fn work_round(&self, stop: Option<watch::Receiver<bool>>) -> Result<bool> {
        let launched = self.launch_due().await?;
        let probed = self.probe_due(None).await?;
        let freed = self.release_expired().await?;
        let tick = self.round(None, stop).await?;
        if tick.claimed == 0 {
            for b in self
                .ports
                .broadcasts
                .list_broadcasts(&[BroadcastStatus::Running], 1000)
                .await?
            {
                self.complete_if_done(b.id).await?;
            }
        }
        Ok(launched > 0 || probed > 0 || freed > 0 || tick.claimed > 0)
    }

    /// Frees rows of paused and cancelled broadcasts left `sending` by a worker that died
    /// ([`DeliveryStore::release_expired`]), at most once per [`SWEEP_EVERY`].
    async fn release_expired(&self) -> Result<u64> {
        let now = self.ports.clock.now();
        {
            let mut swept = self.swept.lock().expect("swept poisoned");
            let every = chrono::Duration::from_std(SWEEP_EVERY).unwrap_or_default();
            if swept.is_some_and(|at| now < at + every) {
                return Ok(0);
            }
            *swept = Some(now);
        }
        self.ports.deliveries.release_expired(now).await
    }
}

/// How often a worker looks for rows of stopped broadcasts whose lease expired (a few cheap
/// statements over the partial lease index).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
