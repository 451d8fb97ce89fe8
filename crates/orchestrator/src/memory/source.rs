//! [`AudienceSource`]: audiences by [`AudienceFilter::matches`], materialised into recipient
//! rows.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl AudienceSource for MemoryStore {
    async fn count(&self, filter: &AudienceFilter) -> Result<AudienceCount> {
        let s = self.lock();
        let mut c = AudienceCount::default();
        for (uid, _) in s.audience(filter) {
            let u = &s.users[&uid];
            let (t, e) = (
                Reach::telegram().address_of(u).is_ok(),
                Reach::email().address_of(u).is_ok(),
            );
            c.users += 1;
            c.telegram += u64::from(t);
            c.email += u64::from(e);
            c.both += u64::from(t && e);
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
