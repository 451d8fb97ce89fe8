//! The delivery pipeline of one round: claim due rows (the next batch on its own task while
//! the current one is sent), reserve send slots, send, and write results by group commit; then
//! pause the broadcasts whose breaker tripped or whose channel has a fault.

use super::*;

impl Orchestrator {
    /// Claims one batch of due rows (of one broadcast, or of every running broadcast), sends
    /// them and records the results. Returns what it did; `claimed == 0` means nothing was due.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn tick(&self, scope: Option<BroadcastId>) -> Result<TickReport> {
        self.deliver_batches(scope, None, None).await
    }

    /// Like [`tick`](Self::tick), but keeps going while claims come back full, for about
    /// [`ROUND`]: the next batch is claimed while the current one is still being sent, so a
    /// rate-limited channel never waits for the store between batches.
    /// With `stop`, claiming ends as soon as it turns true, and rows claimed but not yet sent
    /// are handed back (due at once, no attempt counted).
    pub(super) async fn round(
        &self,
        scope: Option<BroadcastId>,
        stop: Option<watch::Receiver<bool>>,
    ) -> Result<TickReport> {
        let deadline = tokio::time::Instant::now() + ROUND;
        self.deliver_batches(scope, Some(deadline), stop).await
    }

    /// The delivery pipeline. Three kinds of work overlap, polled together by this one task:
    /// - sends (`send`), at most `concurrency` per channel;
    /// - group writes: whatever finished while the previous write was in flight is recorded
    ///   as one group (group commit), with the store effects the sends called for, and then
    ///   the rows about to be sent are marked as started (`mark_started`). A row is sent only
    ///   once its mark is written, and counts against its channel's `concurrency` in-flight
    ///   places from its mark until its result is written; a group's results free their
    ///   places for the rows it marks. So a crash leaves at most `concurrency` started but
    ///   unrecorded rows per channel, and only those count as possible duplicates when their
    ///   leases are taken over; rows claimed ahead and never started do not;
    /// - with a `deadline`, the next claim (and its contexts), on its own task, started when
    ///   half of the current batch is left to send and the last claim came back full.
    ///
    /// Only one store call of this task is ever pending besides the spawned claim: a SQLite
    /// store has a single connection, and a store future that is not polled while another
    /// waits for the connection would never finish.
    pub(super) async fn deliver_batches(
        &self,
        scope: Option<BroadcastId>,
        deadline: Option<tokio::time::Instant>,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> Result<TickReport> {
        let mut report = TickReport::default();
        let mut touched = BTreeSet::new();
        // The sends' copy; `stop` itself is polled for changes.
        let stop_sends = stop.clone();
        let mut sending = FuturesUnordered::new();
        let mut finished: Vec<Done> = Vec::new();
        // Rendered rows not yet marked, per channel, in claim order.
        let mut waiting: BTreeMap<ChannelKind, VecDeque<Ready>> = BTreeMap::new();
        // Rows marked as started whose results are not written yet, per channel.
        let mut in_flight: BTreeMap<ChannelKind, usize> = BTreeMap::new();
        let mut write: Option<Write<'_>> = None;
        let mut claim = Some(self.spawn_claim(scope)?);
        let mut claims = 1u32;
        let mut exhausted = false;
        let mut error = None;
        let half = (self.settings.batch_size / 2) as usize;
        let places = self.settings.concurrency.max(1);
        loop {
            let stopping = stop.as_ref().is_some_and(|s| *s.borrow());
            if write.is_none() {
                let mut start = Vec::new();
                for (kind, queue) in &mut waiting {
                    let freed = finished
                        .iter()
                        .filter(|d| d.in_flight == Some(*kind))
                        .count();
                    let busy = in_flight.get(kind).copied().unwrap_or(0) - freed;
                    let take = match stopping {
                        true => queue.len(),
                        false => places.saturating_sub(busy).min(queue.len()),
                    };
                    for ready in queue.drain(..take) {
                        // Rows that will not be sent now go back untried and unmarked.
                        match self.held_back(&ready.row, stopping) {
                            Some(why) => finished.push(Done::early(self.released(&ready.row, why))),
                            None => start.push(ready),
                        }
                    }
                }
                if !finished.is_empty() || !start.is_empty() {
                    write = Some(
                        self.write_group(std::mem::take(&mut finished), start)
                            .boxed(),
                    );
                }
            }
            let may_claim = error.is_none()
                && !exhausted
                && !stopping
                && !self.has_fault()
                && deadline.is_some_and(|d| tokio::time::Instant::now() < d);
            let queued = sending.len() + waiting.values().map(VecDeque::len).sum::<usize>();
            if claim.is_none() && may_claim && queued <= half {
                claim = Some(self.spawn_claim(scope)?);
                claims += 1;
            }
            if sending.is_empty() && write.is_none() && claim.is_none() {
                if waiting.values().all(VecDeque::is_empty) {
                    break;
                }
                // Places are all taken by results still unwritten: impossible, as every
                // finished result is written above. Guard against a silent hang anyway.
                return Err(Error::Internal(
                    "delivery pipeline stalled with rows waiting".into(),
                ));
            }
            tokio::select! {
                // Wakes the loop when the worker is told to stop; waiting rows then go back.
                changed = async { stop.as_mut().expect("guarded").changed().await }, if stop.is_some() && !stopping => {
                    if changed.is_err() {
                        // The worker loop is gone: nobody can ask to stop any more.
                        stop = None;
                    }
                }
                Some(first) = sending.next(), if !sending.is_empty() => {
                    let mut ready: Vec<Done> = vec![first];
                    while let Some(Some(more)) = sending.next().now_or_never() {
                        ready.push(more);
                    }
                    finished.extend(ready);
                }
                written = async { write.as_mut().expect("guarded").await }, if write.is_some() => {
                    write = None;
                    // On an error, stop claiming and sending: rows not recorded are taken
                    // again when their lease expires.
                    let (recorded, started) = written?;
                    settle(&mut report, &mut in_flight, &recorded, &started);
                    sending.extend(started.into_iter().map(|r| self.send(r, stop_sends.as_ref())));
                }
                claimed = async { claim.as_mut().expect("guarded").await }, if claim.is_some() => {
                    claim = None;
                    let claimed = claimed
                        .map_err(|e| Error::Internal(format!("claim task failed: {e}")))
                        .and_then(|r| r);
                    let (rows, contexts) = match claimed {
                        Ok(batch) => batch,
                        Err(e) => {
                            // Finish what is in flight, then report the error.
                            error = Some(e);
                            continue;
                        }
                    };
                    report.claimed += rows.len() as u64;
                    exhausted = (rows.len() as u64) < self.settings.batch_size;
                    for (row, context) in rows.into_iter().zip(contexts) {
                        if touched.insert(row.broadcast_id) && !self.is_compiled(row.broadcast_id) {
                            // Loading a template reads the store: no write may be pending.
                            if let Some(w) = write.take() {
                                let (recorded, started) = w.await?;
                                settle(&mut report, &mut in_flight, &recorded, &started);
                                sending.extend(started.into_iter().map(|r| self.send(r, stop_sends.as_ref())));
                            }
                        }
                        let compiled = self.compiled_for(row.broadcast_id).await.ok();
                        match self.prepare(row, &context, compiled) {
                            Ok(ready) => waiting.entry(ready.row.channel).or_default().push_back(ready),
                            Err(done) => finished.push(done),
                        }
                    }
                }
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        self.pause_tripped().await?;
        self.pause_faulted().await?;
        for id in touched {
            // A short claim means the queue may be empty: only then is counting worth it.
            if exhausted && self.complete_if_done(id).await? {
                report.completed.push(id);
                self.publish(id, true).await?;
            } else {
                self.publish(id, false).await?;
            }
        }
        tracing::debug!(claims, ?report, "delivered");
        Ok(report)
    }

    /// Claims the next batch and loads its recipients' contexts, on a task of its own so that
    /// it runs while the batch loop sends and writes results.
    pub(super) fn spawn_claim(
        &self,
        scope: Option<BroadcastId>,
    ) -> Result<tokio::task::JoinHandle<Result<ClaimedBatch>>> {
        let lease = chrono::Duration::from_std(self.settings.lease)
            .map_err(|e| Error::Invalid(format!("lease duration: {e}")))?;
        let request = ClaimRequest {
            worker_id: self.settings.worker_id.clone(),
            now: self.ports.clock.now(),
            lease_for: lease,
            limit: self.settings.batch_size,
            broadcast_id: scope,
            channels: self.ports.channels.kinds(),
        };
        let deliveries = self.ports.deliveries.clone();
        let audience = self.ports.audience.clone();
        Ok(tokio::spawn(async move {
            let rows = deliveries.claim_due(&request).await?;
            if rows.is_empty() {
                return Ok((rows, Vec::new()));
            }
            let contexts = audience.contexts(&rows).await?;
            Ok((rows, contexts))
        }))
    }

    /// Writes a group: the finished deliveries' store effects, then their results in one call,
    /// then marks `start` as started. Answers with the results and with the rows of `start`
    /// that are still leased to this worker (only those may be sent).
    pub(super) async fn write_group(
        &self,
        mut group: Vec<Done>,
        start: Vec<Ready>,
    ) -> Result<(Vec<Done>, Vec<Ready>)> {
        let mut results = Vec::with_capacity(group.len());
        for done in &mut group {
            for effect in std::mem::take(&mut done.effects) {
                self.apply(effect).await;
            }
            results.push(done.result.clone());
        }
        if !results.is_empty() {
            self.ports.deliveries.record_results(&results).await?;
        }
        if start.is_empty() {
            return Ok((group, start));
        }
        let ids: Vec<RecipientId> = start.iter().map(|r| r.row.id).collect();
        let marked: BTreeSet<RecipientId> = self
            .ports
            .deliveries
            .mark_started(&self.settings.worker_id, &ids, self.ports.clock.now())
            .await?
            .into_iter()
            .collect();
        if marked.len() < start.len() {
            tracing::warn!(
                lost = start.len() - marked.len(),
                "not sending rows whose lease another worker took over"
            );
        }
        let start = start
            .into_iter()
            .filter(|r| marked.contains(&r.row.id))
            .collect();
        Ok((group, start))
    }

    /// The next shared send slot of a rate-shared channel, or `None` when the channel is
    /// paced in-process only. Slots are reserved from the [`SendBudget`] a few at a time, just
    /// before they are used; slots that went stale while this worker was busy are dropped
    /// rather than used late, so workers never bunch up and exceed the shared rate.
    pub(super) async fn take_slot(&self, kind: ChannelKind) -> Result<Option<DateTime<Utc>>> {
        let (Some(budget), Some(pool)) = (&self.ports.budget, self.slots.get(&kind)) else {
            return Ok(None);
        };
        let rate = self.settings.shared_rates[&kind];
        // Rounded up: `rate` intervals never add up to less than the window.
        let window = Duration::from_secs(1) + self.settings.pacing_margin;
        let nanos = window.as_nanos().div_ceil(u128::from(rate));
        let interval = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let step = chrono::Duration::from_std(interval).unwrap_or_default();
        let mut slots = pool.lock().await;
        let now = self.ports.clock.now();
        while slots.front().is_some_and(|s| *s + step < now) {
            slots.pop_front();
        }
        if slots.is_empty() {
            let chunk = (rate / 10).clamp(1, 50);
            // On its own task: this runs while the batch loop may be writing results, and a
            // store with a single connection must not wait for a future nobody polls.
            let budget = budget.clone();
            let first =
                tokio::spawn(
                    async move { budget.reserve(kind.as_str(), interval, chunk, now).await },
                )
                .await
                .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))??;
            slots.extend((0..chunk).map(|i| first + step * i as i32));
        }
        Ok(slots.pop_front())
    }

    /// Pauses the broadcasts whose circuit breaker tripped during the last batch.
    pub(super) async fn pause_tripped(&self) -> Result<()> {
        let tripped = self.breaker.lock().expect("breaker poisoned").tripped();
        for (id, reason) in tripped {
            tracing::warn!(broadcast = id, %reason, "circuit breaker tripped");
            let worker = Actor::worker(&self.settings.worker_id);
            match self.pause(&worker, id, Some(reason)).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            self.breaker.lock().expect("breaker poisoned").reset(id);
        }
        Ok(())
    }

    /// Pauses every running broadcast that sends on a channel which answered with a channel
    /// fault in the last batch (wrong credentials, refused TLS, invalid token), with the reason,
    /// and writes the pause to the audit log. Their rows stay pending, untried.
    pub(super) async fn pause_faulted(&self) -> Result<()> {
        let faults = std::mem::take(&mut *self.faults.lock().expect("faults poisoned"));
        if faults.is_empty() {
            return Ok(());
        }
        let running = self
            .ports
            .broadcasts
            .list_broadcasts(&[BroadcastStatus::Running], 10_000)
            .await?;
        for (kind, message) in faults {
            let reason = format!(
                "paused: the {kind} channel failed for every recipient ({message}); fix its \
                 settings, then resume"
            );
            tracing::error!(channel = %kind, %reason, "channel fault");
            for b in running
                .iter()
                .filter(|b| b.channel_policy.channels().contains(&kind))
            {
                match self
                    .transition(b.id, Transition::Pause, Some(reason.clone()))
                    .await
                {
                    Ok(_) => {}
                    Err(Error::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
                self.breaker.lock().expect("breaker poisoned").reset(b.id);
                self.audit_broadcast(
                    &Actor::worker(&self.settings.worker_id),
                    "broadcast.pause",
                    b.id,
                    serde_json::json!({
                        "reason": reason,
                        "channel": kind.as_str(),
                        "cause": "channel_fault",
                    }),
                )
                .await;
            }
        }
        Ok(())
    }

    #[inline]
    pub(super) fn has_fault(&self) -> bool {
        !self.faults.lock().expect("faults poisoned").is_empty()
    }
}
