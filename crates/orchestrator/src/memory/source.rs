//! [`AudienceSource`]: audiences by [`AudienceFilter::matches`], materialised into recipient
//! rows.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl AudienceSource for MemoryStore {
    async fn count(&self, filter: &AudienceFilter, policy: ChannelPolicy) -> Result<AudienceCount> {
        let s = self.lock();
        let reaches = policy
            .channels()
            .iter()
            .map(|k| Ok((*k, s.reaches.get(*k)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut c = AudienceCount::default();
        for (kind, _) in &reaches {
            c.reachable.insert(*kind, 0);
            c.messages.insert(*kind, 0);
        }
        for (uid, _) in s.audience(filter) {
            let u = &s.users[&uid];
            c.users += 1;
            let mut reached_before = false;
            for (kind, reach) in &reaches {
                if reach.address_of(u).is_err() {
                    continue;
                }
                *c.reachable.entry(*kind).or_default() += 1;
                if !(reached_before && policy.mode() == PolicyMode::FirstReachable) {
                    *c.messages.entry(*kind).or_default() += 1;
                }
                reached_before = true;
            }
            c.unreachable += u64::from(!reached_before);
        }
        Ok(c)
    }

    async fn materialise(
        &self,
        broadcast: BroadcastId,
        filter: &AudienceFilter,
        policy: ChannelPolicy,
        now: DateTime<Utc>,
    ) -> Result<MaterialiseReport> {
        let mut s = self.lock();
        s.broadcast(broadcast)?;
        let mut report = MaterialiseReport::default();
        let mut new_rows = Vec::new();
        for (uid, reg) in s.audience(filter) {
            let u = &s.users[&uid];
            for channel in policy.channels() {
                // In a `first_reachable` chain, a row only when no earlier channel reaches the
                // user.
                let reached_before = policy
                    .before(*channel)
                    .iter()
                    .map(|k| Ok(s.reaches.get(*k)?.address_of(u).is_ok()))
                    .collect::<Result<Vec<bool>>>()?
                    .contains(&true);
                if !reached_before {
                    let address = s.reaches.get(*channel)?.address_of(u);
                    new_rows.push((uid, reg, *channel, address));
                }
            }
        }
        for (uid, reg, channel, address) in new_rows {
            let exists = s
                .recipients
                .values()
                .any(|r| r.broadcast_id == broadcast && r.user_id == uid && r.channel == channel);
            if exists {
                continue;
            }
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
                    user_id: uid,
                    registration_id: reg,
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
            report.inserted += 1;
        }
        for channel in policy.channels() {
            report.queued.insert(*channel, 0);
        }
        let mut total = 0;
        for r in s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
        {
            total += 1;
            match r.skip_reason {
                Some(reason) => *report.skipped.entry(reason).or_default() += 1,
                None => *report.queued.entry(r.channel).or_default() += 1,
            }
        }
        s.broadcast(broadcast)?.total_recipients = total;
        Ok(report)
    }

    async fn sample(&self, filter: &AudienceFilter, limit: u64) -> Result<Vec<RecipientContext>> {
        let s = self.lock();
        s.audience(filter)
            .into_iter()
            .take(limit as usize)
            .map(|(u, r)| s.context(u, r))
            .collect()
    }
}
