//! The delivery pipeline of one round: one lane per channel kind, side by side, each claiming
//! only its own kind's due rows (the next batch on its own task while the current one is
//! sent), reserving send slots, sending, and writing results by group commit, so that a paced
//! channel never holds another back; then, once every lane has ended its round, pausing the
//! broadcasts whose breaker tripped or whose channel has a fault.

use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// The delivery pipeline: a [`lane`](Self::lane) per channel kind, polled together by this
    /// one task, then what a round does once for all of them (pause tripped breakers and
    /// faulted channels, sweep cancelled broadcasts, complete and publish).
    pub(super) async fn deliver_batches(
        &self,
        scope: Option<BroadcastId>,
        deadline: Option<tokio::time::Instant>,
        stop: Option<watch::Receiver<bool>>,
    ) -> Result<TickReport> {
        let lanes = self
            .ports
            .channels
            .kinds()
            .into_iter()
            .map(|kind| self.lane(kind, scope, deadline, stop.clone()));
        let mut report = TickReport::default();
        let mut touched = BTreeSet::new();
        let mut error = None;
        for lane in futures::future::join_all(lanes).await {
            match lane {
                Ok(lane) => {
                    report.claimed += lane.report.claimed;
                    report.sent += lane.report.sent;
                    report.failed += lane.report.failed;
                    report.retried += lane.report.retried;
                    report.held_back += lane.report.held_back;
                    report.completed.extend(lane.report.completed);
                    touched.extend(lane.touched);
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        self.pause_tripped().await?;
        self.pause_faulted().await?;
        for id in &touched {
            self.sweep_if_cancelled(*id).await?;
        }
        for id in touched {
            if report.completed.contains(&id) {
                continue;
            }
            // A read of the maintained counters: cheap enough for every broadcast touched (a
            // small one may be done while a large one keeps every lane's claims full).
            if self.complete_if_done(id).await? {
                report.completed.push(id);
                self.publish(id, true).await?;
            } else {
                self.publish(id, false).await?;
            }
        }
        tracing::debug!(?report, "delivered");
        Ok(report)
    }

    /// One channel kind's lane of a round. Three kinds of work overlap, polled together:
    /// - sends (`send`), at most the channel's places ([`Settings::places`]);
    /// - group writes: whatever finished while the previous write was in flight is recorded
    ///   as one group (group commit), with the store effects the sends called for, and then
    ///   the rows about to be sent are marked as started (`mark_started`). A row is sent only
    ///   once its mark is written, and counts against its channel's in-flight
    ///   places from its mark until its result is written; a group's results free their
    ///   places for the rows it marks. So a crash leaves at most a channel's places started but
    ///   unrecorded rows per channel, and only those count as possible duplicates when their
    ///   leases are taken over; rows claimed ahead and never started do not;
    /// - with a `deadline`, the next claim (and its contexts), on its own task, started when
    ///   half of the current batch is left to send and the last claim came back full.
    ///
    /// Only one store call of a lane is ever pending besides its spawned claim, and the lanes
    /// are polled together (`join_all`): a SQLite store has a single connection, and a store
    /// future that is not polled while another waits for the connection would never finish.
    ///
    /// A broadcast whose rows the lane has all claimed is completed as soon as its last result
    /// is written (checked at most every [`COMPLETION_CHECK`]), so a small broadcast served
    /// beside a large one does not wait for the end of the round.
    async fn lane(
        &self,
        kind: ChannelKind,
        scope: Option<BroadcastId>,
        deadline: Option<tokio::time::Instant>,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> Result<Lane> {
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
        let mut claim = Some(self.spawn_claim(scope, kind)?);
        let mut claims = 1u32;
        let mut exhausted = false;
        // Broadcasts this lane took rows of whose rows it has all claimed (the last claim had
        // none of them, or came back short), with when their completion was last checked.
        let mut drained: BTreeMap<BroadcastId, Option<tokio::time::Instant>> = BTreeMap::new();
        let mut error = None;
        let batch = self.lane_batch(kind);
        let half = (batch / 2) as usize;
        let places = self.settings.places(kind);
        loop {
            let stopping = stop.as_ref().is_some_and(|s| *s.borrow());
            if write.is_none() && !drained.is_empty() {
                // Completes a small broadcast as soon as its last row is recorded, not at the
                // end of the round (a read of the counters, at most every COMPLETION_CHECK).
                for id in self.complete_drained(&mut drained).await? {
                    report.completed.push(id);
                    self.publish(id, true).await?;
                }
            }
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
                            Some(released) => finished.push(Done::early(released)),
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
                && !self.has_fault(kind)
                && deadline.is_some_and(|d| tokio::time::Instant::now() < d);
            let unstarted = waiting.values().map(VecDeque::len).sum::<usize>();
            if let Some(shared) = self.slots.get(&kind) {
                shared.queued.store(unstarted, Ordering::Relaxed);
            }
            let queued = sending.len() + unstarted;
            if claim.is_none() && may_claim && queued <= half {
                claim = Some(self.spawn_claim(scope, kind)?);
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
                    exhausted = (rows.len() as u64) < batch;
                    let present: BTreeSet<BroadcastId> = rows.iter().map(|r| r.broadcast_id).collect();
                    for id in &touched {
                        if exhausted || !present.contains(id) {
                            drained.entry(*id).or_insert(None);
                        } else {
                            drained.remove(id);
                        }
                    }
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
        tracing::debug!(channel = %kind, claims, ?report, "lane ended its round");
        Ok(Lane { report, touched })
    }

    /// Cancels the rows of a cancelled broadcast that results written while it was being
    /// cancelled handed back as `pending` (a result whose statement began before the cancel
    /// committed): after a round of every worker that held its rows, it has none open.
    async fn sweep_if_cancelled(&self, id: BroadcastId) -> Result<()> {
        let broadcast = match self.ports.broadcasts.get_broadcast(id).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if broadcast.status == BroadcastStatus::Cancelled {
            let n = self
                .ports
                .deliveries
                .cancel_pending(id, self.ports.clock.now())
                .await?;
            if n > 0 {
                tracing::info!(broadcast = id, rows = n, "cancelled rows handed back late");
            }
        }
        Ok(())
    }

    /// Completes the `drained` broadcasts that have no open row left (checked at most every
    /// [`COMPLETION_CHECK`] each); returns the ones completed, which leave `drained`.
    async fn complete_drained(
        &self,
        drained: &mut BTreeMap<BroadcastId, Option<tokio::time::Instant>>,
    ) -> Result<Vec<BroadcastId>> {
        let now = tokio::time::Instant::now();
        let mut completed = Vec::new();
        for (id, checked) in drained.iter_mut() {
            if checked.is_some_and(|at| now < at + COMPLETION_CHECK) {
                continue;
            }
            *checked = Some(now);
            if self.complete_if_done(*id).await? {
                completed.push(*id);
            }
        }
        for id in &completed {
            drained.remove(id);
        }
        Ok(completed)
    }

    /// How long a claim leases its rows (`settings.lease`), as the store takes it.
    pub(super) fn lease(&self) -> Result<chrono::Duration> {
        chrono::Duration::from_std(self.settings.lease)
            .map_err(|e| Error::Invalid(format!("lease duration: {e}")))
    }

    /// How many rows a lane claims at once: `batch_size`, but on a rate-shared channel no more
    /// than about a second of its rate (and not fewer than its in-flight places), so that a
    /// broadcast launched meanwhile waits at most that long behind rows claimed ahead.
    pub(super) fn lane_batch(&self, kind: ChannelKind) -> u64 {
        let batch = self.settings.batch_size;
        match self.settings.shared_rates.get(&kind) {
            Some(rate) => batch.min(u64::from(*rate).max(self.settings.places(kind) as u64)),
            None => batch,
        }
    }

    /// Claims the next batch and loads its recipients' contexts, on a task of its own so that
    /// it runs while the batch loop sends and writes results.
    pub(super) fn spawn_claim(
        &self,
        scope: Option<BroadcastId>,
        kind: ChannelKind,
    ) -> Result<tokio::task::JoinHandle<Result<ClaimedBatch>>> {
        let lease = self.lease()?;
        let request = ClaimRequest {
            worker_id: self.settings.worker_id.clone(),
            now: self.ports.clock.now(),
            lease_for: lease,
            limit: self.lane_batch(kind),
            broadcast_id: scope,
            channels: vec![kind],
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
        let (start, unmarked): (Vec<Ready>, Vec<Ready>) =
            start.into_iter().partition(|r| marked.contains(&r.row.id));
        if !unmarked.is_empty() {
            // Their broadcast was paused or cancelled (handed back: pending, or cancelled), or
            // another worker took their lease over (then this changes nothing).
            tracing::info!(
                rows = unmarked.len(),
                "not sending rows of a broadcast that is no longer running, or whose lease \
                 another worker took over"
            );
            let back: Vec<DeliveryResult> = unmarked
                .iter()
                .map(|r| {
                    self.released(
                        &r.row,
                        "held back: the broadcast is no longer running".into(),
                    )
                })
                .collect();
            self.ports.deliveries.record_results(&back).await?;
        }
        Ok((group, start))
    }

    /// The spacing of a rate-shared channel's slots: `rate` of them span one second plus the
    /// pacing margin, rounded up so that they never span less.
    fn slot_interval(&self, kind: ChannelKind) -> Duration {
        let rate = self.settings.shared_rates[&kind];
        let window = Duration::from_secs(1) + self.settings.pacing_margin;
        let nanos = window.as_nanos().div_ceil(u128::from(rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The next shared send slot of a rate-shared channel, or `None` when the channel is
    /// paced in-process only. Slots are reserved from the [`SendBudget`] a few at a time, just
    /// before they are used; slots that went stale while this worker was busy (a third of the
    /// pacing margin past) are dropped rather than used late, so workers never bunch up and
    /// exceed the shared rate.
    pub(super) async fn take_slot(&self, kind: ChannelKind) -> Result<Option<Slot>> {
        let (Some(budget), Some(shared)) = (&self.ports.budget, self.slots.get(&kind)) else {
            return Ok(None);
        };
        let interval = self.slot_interval(kind);
        let step = chrono::Duration::from_std(interval).unwrap_or_default();
        // A slot a little past is still used: its message then reaches the provider later
        // than its slot, which the margin absorbs, and an answer later than the margin moves
        // the budget's slots back (`answered_in`). Slots further past went stale while this
        // worker was busy and are dropped, so that a worker that stalled sends no burst.
        let stale = chrono::Duration::from_std(interval.max(self.settings.pacing_margin / 3))
            .unwrap_or_default();
        let _wanting = Wanting::new(&shared.wanting);
        let mut pool = shared.pool.lock().await;
        let mut now = self.ports.clock.now();
        let before = pool.slots.len();
        while pool.slots.front().is_some_and(|s| s.at + stale < now) {
            pool.slots.pop_front();
        }
        if pool.slots.len() < before {
            tracing::debug!(channel = %kind, dropped = before - pool.slots.len(), "stale shared slots dropped");
        }
        if pool.slots.is_empty() {
            // Not further ahead than the lookahead: a late answer moves only slots nobody has
            // reserved yet, and must come before the slot `rate` after it is reserved.
            if let Some(ahead) = pool
                .until
                .and_then(|until| (until - now).to_std().ok())
                .and_then(|ahead| ahead.checked_sub(SLOT_LOOKAHEAD))
            {
                tokio::time::sleep(ahead).await;
                now = self.ports.clock.now();
            }
            // About 33 ms of slots at a time, what one worker holds ahead stays short; and no
            // more than this worker's sends can use, so that none go stale at the end of a
            // round (each would be a gap in the bot's rate while every other worker waits).
            let wanted =
                shared.wanting.load(Ordering::Relaxed) + shared.queued.load(Ordering::Relaxed);
            let chunk = (self.settings.shared_rates[&kind] / 30)
                .clamp(1, 50)
                .min(u32::try_from(wanted).unwrap_or(u32::MAX).max(1));
            // On its own task: this runs while the batch loop may be writing results, and a
            // store with a single connection must not wait for a future nobody polls.
            let budget = budget.clone();
            let reserved =
                tokio::spawn(
                    async move { budget.reserve(kind.as_str(), interval, chunk, now).await },
                )
                .await
                .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))??;
            shared.learn(reserved.moves);
            pool.until = Some(reserved.first + step * chunk as i32);
            pool.slots.extend((0..chunk).map(|i| Slot {
                at: reserved.first + step * i as i32,
                moved: reserved.moves.moved,
            }));
        }
        Ok(pool.slots.pop_front())
    }

    /// The end of the wait the channel's service asked for, if it is still on, as far as this
    /// worker knows.
    pub(super) fn known_hold(&self, kind: ChannelKind) -> Option<DateTime<Utc>> {
        let now = self.ports.clock.now();
        self.holds
            .lock()
            .expect("holds poisoned")
            .get(&kind)
            .copied()
            .filter(|until| *until > now)
    }

    /// Takes note of a wait until `until` on a channel; true when it is new to this worker
    /// (later than what it knew by more than [`HOLD_SLACK`]).
    fn learn_hold(&self, kind: ChannelKind, until: DateTime<Utc>) -> bool {
        let mut holds = self.holds.lock().expect("holds poisoned");
        let slack = chrono::Duration::from_std(HOLD_SLACK).unwrap_or_default();
        match holds.get(&kind) {
            Some(known) if until <= *known + slack => false,
            _ => {
                holds.insert(kind, until);
                true
            }
        }
    }

    /// The service answered a send with "wait `retry_after`": this worker waits, and on a
    /// rate-shared channel every other worker too, through the budget's hold.
    pub(super) async fn hold_back_for(
        &self,
        kind: ChannelKind,
        retry_after: Duration,
    ) -> Result<()> {
        let now = self.ports.clock.now();
        let until = now + chrono::Duration::from_std(retry_after).unwrap_or_default();
        if !self.learn_hold(kind, until) {
            return Ok(());
        }
        let Some(budget) = self
            .ports
            .budget
            .as_ref()
            .filter(|_| self.slots.contains_key(&kind))
        else {
            return Ok(());
        };
        tracing::warn!(channel = %kind, ?retry_after, "holding every worker back as the service asked");
        let budget = budget.clone();
        tokio::spawn(async move { budget.hold(kind.as_str(), until, now).await })
            .await
            .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))?
    }

    /// On a rate-shared channel, reads the budget's hold unless this worker read it within
    /// `max_age`, and takes note of it. Sends call this just before they go, so that a hold
    /// another worker wrote stops slots reserved before it.
    pub(super) async fn refresh_hold(&self, kind: ChannelKind, max_age: Duration) -> Result<()> {
        let (Some(budget), Some(shared)) = (&self.ports.budget, self.slots.get(&kind)) else {
            return Ok(());
        };
        let mut read = shared.hold_read.lock().await;
        if read.is_some_and(|t| t.elapsed() < max_age) {
            return Ok(());
        }
        let budget = budget.clone();
        let held = tokio::spawn(async move { budget.held_until(kind.as_str()).await })
            .await
            .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))??;
        *read = Some(std::time::Instant::now());
        if let Some(until) = held {
            self.learn_hold(kind, until);
        }
        Ok(())
    }

    /// How old this worker's reading of a shared channel's hold may be when it sends: none at
    /// rates where one read per message is cheap (slots 10 ms or more apart, where the next
    /// slot after a 429 comes well after the hold is written), 10 ms above.
    pub(super) fn hold_max_age(&self, kind: ChannelKind) -> Duration {
        if !self.settings.shared_rates.contains_key(&kind) {
            return Duration::ZERO;
        }
        match self.slot_interval(kind) >= Duration::from_millis(10) {
            true => Duration::ZERO,
            false => Duration::from_millis(10),
        }
    }

    /// A message of a strict-window channel ([`ChannelSpec::strict_window`], Telegram) sent in
    /// `slot` was answered now. Telegram counts at its end in any
    /// sliding second, and the message reached it at some time before its answer: when that
    /// is later than the pacing margin allows, the slot `rate` after it could share a second
    /// with it, so the budget's unreserved slots move back by the difference (see
    /// [`SendBudget::move_back`]), by one window at most. Moves already made since the slot
    /// was reserved count.
    pub(super) async fn answered_in(&self, kind: ChannelKind, slot: Slot) -> Result<()> {
        let (Some(budget), Some(shared)) = (&self.ports.budget, self.slots.get(&kind)) else {
            return Ok(());
        };
        if !self
            .ports
            .channels
            .spec(kind)
            .is_some_and(|spec| spec.strict_window)
        {
            // E-mail relays count per second without this strictness; their round trips are
            // long, and this would cost a round trip per window.
            return Ok(());
        }
        let now = self.ports.clock.now();
        let took = (now - slot.at).to_std().unwrap_or_default();
        // At most one window: an answer later than that is an accident of the network, and
        // the slots after it have been reserved by then anyway.
        let late = took
            .saturating_sub(self.settings.pacing_margin)
            .min(Duration::from_secs(1));
        if late.is_zero() {
            return Ok(());
        }
        // The slot `rate` after this one, less one slot against rounding: from there on the
        // slots must come later.
        let rate = self.settings.shared_rates[&kind];
        let step = chrono::Duration::from_std(self.slot_interval(kind)).unwrap_or_default();
        let by = slot.at + step * rate.saturating_sub(1) as i32;
        // Not through the pool's lock: a send waiting for its slot may hold it.
        if shared.moves().cover(late, slot.moved, by) {
            return Ok(());
        }
        let budget = budget.clone();
        let moved_then = slot.moved;
        let moves = tokio::spawn(async move {
            budget
                .move_back(kind.as_str(), late, moved_then, by, now)
                .await
        })
        .await
        .map_err(|e| Error::Internal(format!("send budget task failed: {e}")))??;
        tracing::debug!(channel = %kind, ?took, ?moves, "a late answer moved the shared slots back or owes a move");
        shared.learn(moves);
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

    /// True when `kind` answered with a channel fault in this round: its lane stops claiming.
    #[inline]
    pub(super) fn has_fault(&self, kind: ChannelKind) -> bool {
        self.faults
            .lock()
            .expect("faults poisoned")
            .contains_key(&kind)
    }
}

/// What one lane did in a round.
#[derive(Debug)]
struct Lane {
    report: TickReport,
    /// Broadcasts it claimed rows of.
    touched: BTreeSet<BroadcastId>,
}

/// A shared send slot: when a message may go, and how far the budget's slots had been moved
/// back when it was reserved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) at: DateTime<Utc>,
    pub(super) moved: Duration,
}

/// The slots a worker reserved for one channel and has not used yet, and the end of its last
/// reservation.
#[derive(Debug, Default)]
pub(crate) struct SlotPool {
    slots: VecDeque<Slot>,
    until: Option<DateTime<Utc>>,
}

/// A rate-shared channel's slots in this worker, and the furthest the budget has been moved
/// back as far as this worker knows (apart, so that an answer never waits for the pool).
#[derive(Debug, Default)]
pub(crate) struct SharedSlots {
    pool: tokio::sync::Mutex<SlotPool>,
    moves: Mutex<Moves>,
    /// When this worker last read the budget's hold (`SendBudget::held_until`).
    hold_read: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Sends asking for a slot now.
    wanting: AtomicUsize,
    /// Rows the lane has ready and not started yet: they will ask for slots soon.
    queued: AtomicUsize,
}

/// A send asking for a shared slot, counted in [`SharedSlots::wanting`] until dropped (also
/// when its future is).
struct Wanting<'a>(&'a AtomicUsize);

impl<'a> Wanting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Wanting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SharedSlots {
    fn moves(&self) -> Moves {
        *self.moves.lock().expect("moves poisoned")
    }

    fn learn(&self, moves: Moves) {
        let mut known = self.moves.lock().expect("moves poisoned");
        *known = known.newer(moves);
    }
}

/// How far ahead of now a worker reserves shared slots at most (plus one chunk): every worker
/// reserves close to when it sends, so the slots of all workers reach about 100 ms plus a
/// chunk per worker ahead, and a late answer's move has most of a second to reach the budget
/// before the slot a second later is reserved.
const SLOT_LOOKAHEAD: Duration = Duration::from_millis(100);

/// How often a lane checks whether a broadcast whose rows it has all claimed is complete.
const COMPLETION_CHECK: Duration = Duration::from_millis(200);

/// A wait a service asks for again within this of one already known is the same wait (the
/// channel's own held-back sends report what is left of it).
const HOLD_SLACK: Duration = Duration::from_millis(100);
