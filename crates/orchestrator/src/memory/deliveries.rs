//! [`DeliveryStore`]: the ledger as the queue: leases, results, counts, fallback, requeue.

use std::collections::BTreeMap;

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Recipient>> {
        let mut s = self.lock();
        let mut running = s.broadcasts_in(BroadcastStatus::Running);
        running.retain(|id| req.broadcast_id.is_none_or(|only| only == *id));
        let due: Vec<&mut Recipient> = s
            .recipients
            .values_mut()
            .filter(|r| running.contains(&r.broadcast_id))
            .filter(|r| req.channels.is_empty() || req.channels.contains(&r.channel))
            .filter(|r| match r.status {
                DeliveryStatus::Pending => r.next_attempt_at <= req.now,
                DeliveryStatus::Sending => r.lease_expires_at.is_some_and(|t| t < req.now),
                _ => false,
            })
            .collect();
        // As the SQL store: expired leases first, then each running broadcast's fair share,
        // then what is left, oldest broadcast first.
        let (mut expired, pending): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|r| r.status == DeliveryStatus::Sending);
        expired.sort_by_key(|r| (r.send_started_at.is_none(), r.lease_expires_at, r.id));
        let mut per_broadcast: BTreeMap<BroadcastId, Vec<&mut Recipient>> = BTreeMap::new();
        for r in pending {
            per_broadcast.entry(r.broadcast_id).or_default().push(r);
        }
        for rows in per_broadcast.values_mut() {
            rows.sort_by_key(|r| std::cmp::Reverse((r.next_attempt_at, r.id)));
        }
        let limit = req.limit as usize;
        let mut taken: Vec<&mut Recipient> = expired.into_iter().take(limit).collect();
        let share = req.fair_share(per_broadcast.len()) as usize;
        for pass in [share, usize::MAX] {
            for rows in per_broadcast.values_mut() {
                for _ in 0..pass {
                    if taken.len() >= limit {
                        break;
                    }
                    match rows.pop() {
                        Some(r) => taken.push(r),
                        None => break,
                    }
                }
            }
        }
        Ok(taken
            .into_iter()
            .map(|r| {
                // A takeover of a row whose send had started: it may have gone out.
                if r.status == DeliveryStatus::Sending && r.send_started_at.is_some() {
                    r.uncertain_sends += 1;
                }
                r.send_started_at = None;
                r.status = DeliveryStatus::Sending;
                r.lease_owner = Some(req.worker_id.clone());
                r.lease_expires_at = Some(req.now + req.lease_for);
                r.updated_at = req.now;
                r.clone()
            })
            .collect())
    }

    async fn claim_probe(
        &self,
        broadcast: BroadcastId,
        channel: ChannelKind,
        worker_id: &str,
        now: DateTime<Utc>,
        lease_for: chrono::Duration,
    ) -> Result<Option<Recipient>> {
        let mut s = self.lock();
        if !s
            .broadcasts_in(BroadcastStatus::Paused)
            .contains(&broadcast)
        {
            return Ok(None);
        }
        let row = s
            .recipients
            .values_mut()
            .filter(|r| {
                r.broadcast_id == broadcast
                    && r.channel == channel
                    && r.status == DeliveryStatus::Pending
            })
            .min_by_key(|r| (r.next_attempt_at, r.id));
        Ok(row.map(|r| {
            r.status = DeliveryStatus::Sending;
            r.lease_owner = Some(worker_id.to_owned());
            r.lease_expires_at = Some(now + lease_for);
            r.send_started_at = Some(now);
            r.updated_at = now;
            r.clone()
        }))
    }

    async fn record_results(&self, results: &[DeliveryResult]) -> Result<u64> {
        let mut s = self.lock();
        let cancelled = s.broadcasts_in(BroadcastStatus::Cancelled);
        let mut n = 0;
        for res in results {
            let Some(r) = s.recipients.get_mut(&res.recipient_id) else {
                continue;
            };
            if r.status != DeliveryStatus::Sending
                || r.lease_owner.as_deref() != Some(res.worker_id.as_str())
            {
                continue;
            }
            n += 1;
            r.lease_owner = None;
            r.lease_expires_at = None;
            r.send_started_at = None;
            r.uncertain_sends += i32::from(res.uncertain);
            match &res.outcome {
                Outcome::Sent {
                    at,
                    provider_message_id,
                } => {
                    r.status = DeliveryStatus::Sent;
                    r.attempts += 1;
                    r.sent_at = Some(*at);
                    r.provider_message_id = provider_message_id.clone();
                    r.error_kind = None;
                    r.last_error = None;
                    r.updated_at = *at;
                }
                Outcome::Failed { at, kind, error } => {
                    r.status = DeliveryStatus::Failed;
                    r.attempts += 1;
                    r.error_kind = Some(*kind);
                    r.last_error = Some(error.clone());
                    r.updated_at = *at;
                }
                Outcome::Retry {
                    next_attempt_at,
                    kind,
                    error,
                    count_attempt,
                } => {
                    r.status = DeliveryStatus::Pending;
                    r.attempts += i32::from(*count_attempt);
                    r.next_attempt_at = *next_attempt_at;
                    r.error_kind = Some(*kind);
                    r.last_error = Some(error.clone());
                }
                Outcome::Released {
                    next_attempt_at,
                    note,
                } => {
                    r.status = DeliveryStatus::Pending;
                    r.next_attempt_at = *next_attempt_at;
                    r.error_kind = None;
                    r.last_error = Some(note.clone());
                }
            }
            if r.status == DeliveryStatus::Pending && cancelled.contains(&r.broadcast_id) {
                r.status = DeliveryStatus::Cancelled;
            }
        }
        Ok(n)
    }

    async fn mark_started(
        &self,
        worker_id: &str,
        rows: &[RecipientId],
        at: DateTime<Utc>,
    ) -> Result<Vec<RecipientId>> {
        let mut s = self.lock();
        let running = s.broadcasts_in(BroadcastStatus::Running);
        let mut marked = Vec::with_capacity(rows.len());
        for id in rows {
            if let Some(r) = s.recipients.get_mut(id)
                && r.status == DeliveryStatus::Sending
                && r.lease_owner.as_deref() == Some(worker_id)
                && running.contains(&r.broadcast_id)
            {
                r.send_started_at = Some(at);
                marked.push(*id);
            }
        }
        Ok(marked)
    }

    async fn release_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut s = self.lock();
        let paused = s.broadcasts_in(BroadcastStatus::Paused);
        let cancelled = s.broadcasts_in(BroadcastStatus::Cancelled);
        let mut freed = 0;
        for r in s.recipients.values_mut().filter(|r| {
            r.status == DeliveryStatus::Sending && r.lease_expires_at.is_some_and(|at| at < now)
        }) {
            if paused.contains(&r.broadcast_id) {
                r.status = DeliveryStatus::Pending;
                if r.send_started_at.is_some() {
                    r.uncertain_sends += 1;
                }
            } else if cancelled.contains(&r.broadcast_id) {
                r.status = DeliveryStatus::Cancelled;
            } else {
                continue;
            }
            r.lease_owner = None;
            r.lease_expires_at = None;
            r.send_started_at = None;
            r.updated_at = now;
            freed += 1;
        }
        Ok(freed)
    }

    async fn status_counts(&self, broadcast: BroadcastId) -> Result<Vec<StatusCount>> {
        let s = self.lock();
        let mut map: BTreeMap<_, u64> = BTreeMap::new();
        for r in s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
        {
            *map.entry((r.channel, r.status, r.error_kind, r.skip_reason))
                .or_default() += 1;
        }
        Ok(map
            .into_iter()
            .map(
                |((channel, status, error_kind, skip_reason), count)| StatusCount {
                    channel,
                    status,
                    error_kind,
                    skip_reason,
                    count,
                },
            )
            .collect())
    }

    async fn stats(&self, broadcast: BroadcastId) -> Result<DeliveryStats> {
        let mut stats = DeliveryStats::from_counts(&self.status_counts(broadcast).await?);
        let s = self.lock();
        let rows = s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast);
        for r in rows {
            stats.possible_duplicates += u64::try_from(r.uncertain_sends).unwrap_or(0);
            if let Some(at) = r.sent_at {
                stats.first_sent_at = Some(stats.first_sent_at.map_or(at, |f| f.min(at)));
                stats.last_sent_at = Some(stats.last_sent_at.map_or(at, |l| l.max(at)));
            }
        }
        Ok(stats)
    }

    async fn open_count(&self, broadcast: BroadcastId) -> Result<u64> {
        Ok(self
            .lock()
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast && r.status.is_open())
            .count() as u64)
    }

    async fn cancel_pending(&self, broadcast: BroadcastId, now: DateTime<Utc>) -> Result<u64> {
        let mut s = self.lock();
        let mut n = 0;
        for r in s.recipients.values_mut() {
            if r.broadcast_id == broadcast && r.status == DeliveryStatus::Pending {
                r.status = DeliveryStatus::Cancelled;
                r.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn add_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        chain: &[ChannelKind],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut s = self.lock();
        let Some(first) = chain.first() else {
            return Ok(false);
        };
        let reaches = chain
            .iter()
            .map(|k| Ok((*k, s.reaches.get(*k)?)))
            .collect::<Result<Vec<_>>>()?;
        let exists = s.recipients.values().any(|r| {
            r.broadcast_id == broadcast && r.user_id == user && chain.contains(&r.channel)
        });
        if exists {
            return Ok(false);
        }
        let u = s
            .users
            .get(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        let (channel, address) = reaches
            .iter()
            .find_map(|(k, reach)| Some((*k, Ok(reach.address_of(u).ok()?))))
            .unwrap_or_else(|| (*first, reaches[0].1.address_of(u)));
        let (status, skip_reason, address) = match address {
            Ok(a) => (DeliveryStatus::Pending, None, a),
            Err(reason) => (DeliveryStatus::Skipped, Some(reason), String::new()),
        };
        let id = s.id();
        s.recipients.insert(
            id,
            Recipient {
                id,
                broadcast_id: broadcast,
                user_id: user,
                registration_id: registration,
                channel,
                address,
                status,
                skip_reason,
                attempts: 0,
                next_attempt_at: now,
                lease_owner: None,
                lease_expires_at: None,
                send_started_at: None,
                error_kind: None,
                last_error: None,
                provider_message_id: None,
                sent_at: None,
                uncertain_sends: 0,
                updated_at: now,
            },
        );
        s.broadcast(broadcast)?.total_recipients += 1;
        Ok(status == DeliveryStatus::Pending)
    }

    /// Counts are computed on every read here: nothing to rebuild.
    async fn recount(&self, broadcast: BroadcastId) -> Result<()> {
        self.lock().broadcast(broadcast).map(|_| ())
    }

    async fn requeue_failed(
        &self,
        broadcast: BroadcastId,
        kinds: &[ErrorKind],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut s = self.lock();
        let mut flagged = Vec::new();
        for u in s.users.values() {
            for (kind, reach) in s.reaches.iter() {
                if reach.refused_by(u) {
                    flagged.push((u.id, kind));
                }
            }
        }
        let mut n = 0;
        for r in s.recipients.values_mut() {
            let eligible = r.broadcast_id == broadcast
                && r.status == DeliveryStatus::Failed
                && r.error_kind != Some(ErrorKind::Blocked)
                && (kinds.is_empty() || r.error_kind.is_some_and(|k| kinds.contains(&k)))
                && !flagged.contains(&(r.user_id, r.channel));
            if eligible {
                r.status = DeliveryStatus::Pending;
                r.attempts = 0;
                r.next_attempt_at = now;
                r.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn list_recipients(
        &self,
        broadcast: BroadcastId,
        q: &RecipientQuery,
    ) -> Result<Page<Recipient>> {
        let s = self.lock();
        let matching: Vec<&Recipient> = s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
            .filter(|r| q.status.is_none_or(|x| x == r.status))
            .filter(|r| q.channel.is_none_or(|x| x == r.channel))
            .filter(|r| q.error_kind.is_none_or(|x| Some(x) == r.error_kind))
            .collect();
        let limit = if q.limit == 0 {
            usize::MAX
        } else {
            q.limit as usize
        };
        Ok(Page {
            total: matching.len() as u64,
            items: matching
                .into_iter()
                .skip(q.offset as usize)
                .take(limit)
                .cloned()
                .collect(),
        })
    }
}
