//! The circuit breaker's half-open state. A broadcast whose breaker tripped is paused with a
//! probe due one cool-down later ([`BreakerProbe`]). When it is due, one worker takes it
//! (atomically, through the store, so one probe goes out whatever the number of workers) and
//! sends one pending row of the tripped channel. If the channel answers for the recipient
//! (sent, or a recipient's own failure: blocked, bad address, rate limited), the broadcast
//! resumes by itself, audited as an automatic `broadcast.resume`; otherwise the next probe
//! comes twice the cool-down later, up to `breaker_cooldown_max`. Any other status change
//! (an operator's resume or cancel) clears the probe.

use broadcast_domain::BreakerProbe;
use serde_json::json;

use super::*;

impl Orchestrator {
    /// Pauses the broadcasts whose circuit breaker tripped during the last batch, each with a
    /// probe one cool-down from now.
    pub(super) async fn pause_tripped(&self) -> Result<()> {
        let tripped = self.breaker.lock().expect("breaker poisoned").tripped();
        for ((id, channel), reason) in tripped {
            tracing::warn!(broadcast = id, %channel, %reason, "circuit breaker tripped");
            let cooldown = self.settings.breaker_cooldown;
            let probe = self.probe_after(channel, cooldown);
            let mut change =
                Transition::Pause.change(self.ports.clock.now(), Some(reason.clone()), None);
            change.probe = Some(probe);
            match self.ports.broadcasts.change_status(id, change).await {
                Ok(_) => {
                    self.audit_broadcast(
                        &Actor::worker(&self.settings.worker_id),
                        "broadcast.pause",
                        id,
                        json!({
                            "reason": reason,
                            "cause": "circuit_breaker",
                            "channel": channel.as_str(),
                            "probe_at": probe.at,
                        }),
                    )
                    .await;
                }
                // Paused, cancelled or completed meanwhile (another worker's breaker).
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            self.breaker.lock().expect("breaker poisoned").reset(id);
        }
        Ok(())
    }

    /// A probe of `channel` one `cooldown` from now.
    fn probe_after(&self, channel: ChannelKind, cooldown: Duration) -> BreakerProbe {
        BreakerProbe {
            channel,
            cooldown,
            at: self.ports.clock.now() + chrono::Duration::from_std(cooldown).unwrap_or_default(),
        }
    }

    /// Sends the breaker probes that are due: of one broadcast, or of every paused one.
    /// Returns how many probes this worker sent.
    pub(super) async fn probe_due(&self, scope: Option<BroadcastId>) -> Result<u64> {
        let now = self.ports.clock.now();
        let candidates = match scope {
            Some(id) => vec![self.ports.broadcasts.get_broadcast(id).await?],
            None => {
                self.ports
                    .broadcasts
                    .list_broadcasts(&[BroadcastStatus::Paused], 10_000)
                    .await?
            }
        };
        let lease = self.lease()?;
        let mut probed = 0;
        for b in candidates {
            let due = b.status == BroadcastStatus::Paused
                && b.probe.is_some_and(|p| p.at <= now)
                && b.probe
                    .is_some_and(|p| self.ports.channels.get(p.channel).is_some());
            if !due {
                continue;
            }
            let Some(probe) = self
                .ports
                .broadcasts
                .take_probe(b.id, now, now + lease)
                .await?
            else {
                continue; // another worker took it
            };
            self.probe(&b, probe).await?;
            probed += 1;
        }
        Ok(probed)
    }

    /// Sends one probe of a broadcast paused by its breaker (the probe taken by this worker)
    /// and resumes the broadcast or schedules the next probe.
    async fn probe(&self, b: &Broadcast, probe: BreakerProbe) -> Result<()> {
        let lease = self.lease()?;
        let row = self
            .ports
            .deliveries
            .claim_probe(
                b.id,
                probe.channel,
                &self.settings.worker_id,
                self.ports.clock.now(),
                lease,
            )
            .await?;
        let Some(row) = row else {
            // Nothing pending on that channel (an operator retried or cancelled rows): nothing
            // to hold back any more.
            let note = format!("no pending {} row was left to probe", probe.channel);
            return self.resume_automatically(b.id, probe, note).await;
        };
        let recipient = row.id;
        let contexts = self
            .ports
            .audience
            .contexts(std::slice::from_ref(&row))
            .await?;
        let Some(context) = contexts.first() else {
            return Err(Error::Internal(format!(
                "no recipient context for probe row {recipient}"
            )));
        };
        let compiled = self.compiled_for(b.id).await.ok();
        let (done, tried) = match self.prepare(row, context, compiled) {
            Ok(ready) => (self.send(ready, None).await, true),
            Err(done) => (done, false),
        };
        let verdict = probe_verdict(&done.result.outcome, tried);
        for effect in done.effects {
            self.apply(effect).await;
        }
        self.ports
            .deliveries
            .record_results(std::slice::from_ref(&done.result))
            .await?;
        // The probe's own statistics must not trip the breaker of a broadcast still paused.
        self.breaker.lock().expect("breaker poisoned").reset(b.id);
        match verdict {
            Verdict::Healthy => {
                let note = format!(
                    "the probe (row {recipient}) reached the {} channel",
                    probe.channel
                );
                self.resume_automatically(b.id, probe, note).await
            }
            Verdict::Untried => {
                // The row could not be sent (its template does not render for it): the next
                // probe at once, with the same cool-down.
                self.reschedule(
                    b,
                    probe,
                    Duration::ZERO,
                    probe.cooldown,
                    "the probe row could not be rendered".into(),
                )
                .await
            }
            Verdict::Failing(error) => {
                let next = (probe.cooldown * 2).min(self.settings.breaker_cooldown_max);
                tracing::warn!(broadcast = b.id, channel = %probe.channel, %error, next_in = ?next, "breaker probe failed");
                self.reschedule(b, probe, next, next, format!("probe failed: {error}"))
                    .await
            }
        }
    }

    /// Resumes a broadcast after its probe, as the worker, unless it changed meanwhile (an
    /// operator resumed, paused again or cancelled it).
    async fn resume_automatically(
        &self,
        id: BroadcastId,
        probe: BreakerProbe,
        note: String,
    ) -> Result<()> {
        if !self.still_probing(id).await? {
            return Ok(());
        }
        let change = Transition::Resume.change(self.ports.clock.now(), None, None);
        match self.ports.broadcasts.change_status(id, change).await {
            Ok(_) => {}
            Err(Error::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        tracing::info!(broadcast = id, channel = %probe.channel, %note, "resumed automatically");
        self.audit_broadcast(
            &Actor::worker(&self.settings.worker_id),
            "broadcast.resume",
            id,
            json!({
                "automatic": true,
                "cause": "circuit_breaker_probe",
                "channel": probe.channel.as_str(),
                "note": note,
            }),
        )
        .await;
        self.complete_if_done(id).await?;
        self.publish(id, true).await
    }

    /// Keeps a broadcast paused with its next probe `wait` from now (cool-down `cooldown`),
    /// unless it changed meanwhile; its reason gains what the last probe saw.
    async fn reschedule(
        &self,
        b: &Broadcast,
        probe: BreakerProbe,
        wait: Duration,
        cooldown: Duration,
        what: String,
    ) -> Result<()> {
        if !self.still_probing(b.id).await? {
            return Ok(());
        }
        let mut next = self.probe_after(probe.channel, wait);
        next.cooldown = cooldown;
        // The trip's reason, then the latest probe's.
        let tripped = b
            .status_reason
            .as_deref()
            .and_then(|r| r.split("; last probe: ").next())
            .unwrap_or("paused automatically by the circuit breaker");
        let reason = format!("{tripped}; last probe: {what}; next probe at {}", next.at);
        let change = StatusChange {
            from: vec![BroadcastStatus::Paused],
            to: BroadcastStatus::Paused,
            at: self.ports.clock.now(),
            reason: Some(reason),
            freeze: None,
            probe: Some(next),
        };
        match self.ports.broadcasts.change_status(b.id, change).await {
            Ok(_) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// True while the broadcast is still paused with a probe (taken by this worker): an
    /// operator's resume or cancel cleared it.
    async fn still_probing(&self, id: BroadcastId) -> Result<bool> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        Ok(b.status == BroadcastStatus::Paused && b.probe.is_some())
    }
}

/// What a probe showed.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The channel answered for the recipient.
    Healthy,
    /// The probe was not sent (its row does not render).
    Untried,
    /// The channel still fails, with this error.
    Failing(String),
}

/// Whether a probe's outcome shows a working channel: it was sent, or failed for reasons of
/// the recipient's own that the breaker does not count either.
fn probe_verdict(outcome: &Outcome, tried: bool) -> Verdict {
    if !tried {
        return Verdict::Untried;
    }
    match outcome {
        Outcome::Sent { .. } => Verdict::Healthy,
        Outcome::Failed { kind, error, .. } | Outcome::Retry { kind, error, .. } => match kind {
            ErrorKind::Blocked | ErrorKind::InvalidAddress | ErrorKind::RateLimited => {
                Verdict::Healthy
            }
            _ => Verdict::Failing(error.clone()),
        },
        Outcome::Released { note, .. } => Verdict::Failing(note.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_for_the_recipient_heals_the_breaker() {
        let now = Utc::now();
        let sent = Outcome::Sent {
            at: now,
            provider_message_id: None,
        };
        assert_eq!(probe_verdict(&sent, true), Verdict::Healthy);
        assert_eq!(probe_verdict(&sent, false), Verdict::Untried);
        let failed = |kind| Outcome::Failed {
            at: now,
            kind,
            error: "e".into(),
        };
        for kind in [
            ErrorKind::Blocked,
            ErrorKind::InvalidAddress,
            ErrorKind::RateLimited,
        ] {
            assert_eq!(
                probe_verdict(&failed(kind), true),
                Verdict::Healthy,
                "{kind}"
            );
        }
        for kind in [
            ErrorKind::Transient,
            ErrorKind::Permanent,
            ErrorKind::ChannelFault,
        ] {
            assert_eq!(
                probe_verdict(&failed(kind), true),
                Verdict::Failing("e".into()),
                "{kind}"
            );
        }
        let retry = Outcome::Retry {
            next_attempt_at: now,
            kind: ErrorKind::Transient,
            error: "connection refused".into(),
            count_attempt: true,
        };
        assert_eq!(
            probe_verdict(&retry, true),
            Verdict::Failing("connection refused".into())
        );
        let released = Outcome::Released {
            next_attempt_at: now,
            note: "held back: fault".into(),
        };
        assert!(matches!(
            probe_verdict(&released, true),
            Verdict::Failing(_)
        ));
    }
}
