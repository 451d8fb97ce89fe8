//! [`AudienceSource`]: audiences by [`AudienceFilter::matches`], materialised into recipient
//! rows.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

/// The rows a user gets at launch: per channel of the policy, the address or the skip reason;
/// in a `first_reachable` chain, none after the first channel that reaches the user.
fn launch_rows(
    policy: ChannelPolicy,
    reaches: &[(ChannelKind, &Reach)],
    user: &User,
) -> Vec<(ChannelKind, std::result::Result<String, SkipReason>)> {
    let mut rows = Vec::new();
    for (kind, reach) in reaches {
        let address = reach.address_of(user);
        let reached = address.is_ok();
        rows.push((*kind, address));
        if reached && policy.mode() == PolicyMode::FirstReachable {
            break;
        }
    }
    rows
}

/// The reach of every channel of `policy`, in its order.
fn reaches_of(reaches: &Reaches, policy: ChannelPolicy) -> Result<Vec<(ChannelKind, &Reach)>> {
    policy
        .channels()
        .iter()
        .map(|k| Ok((*k, reaches.get(*k)?)))
        .collect()
}

#[async_trait]
impl AudienceSource for MemoryStore {
    async fn count(&self, filter: &AudienceFilter, policy: ChannelPolicy) -> Result<AudienceCount> {
        let s = self.lock();
        let reaches = reaches_of(&s.reaches, policy)?;
        let mut c = AudienceCount::default();
        for (kind, _) in &reaches {
            c.reachable.insert(*kind, 0);
            c.messages.insert(*kind, 0);
        }
        for (uid, _) in s.audience(filter) {
            let u = &s.users[&uid];
            c.users += 1;
            let mut reached = false;
            for (kind, reach) in &reaches {
                if reach.address_of(u).is_ok() {
                    *c.reachable.entry(*kind).or_default() += 1;
                    reached = true;
                }
            }
            for (kind, _) in launch_rows(policy, &reaches, u)
                .into_iter()
                .filter(|(_, address)| address.is_ok())
            {
                *c.messages.entry(kind).or_default() += 1;
            }
            c.unreachable += u64::from(!reached);
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
        let reaches = reaches_of(&s.reaches, policy)?;
        for (uid, reg) in s.audience(filter) {
            for (channel, address) in launch_rows(policy, &reaches, &s.users[&uid]) {
                new_rows.push((uid, reg, channel, address));
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
