//! [`BroadcastStore`]: broadcasts and their compare-and-set status changes.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl BroadcastStore for MemoryStore {
    async fn create_broadcast(&self, new: NewBroadcast, now: DateTime<Utc>) -> Result<Broadcast> {
        let mut s = self.lock();
        if !s.templates.contains_key(&new.template_id) {
            return Err(Error::not_found("template", new.template_id));
        }
        let b = Broadcast {
            id: s.id(),
            name: new.name,
            template_id: Some(new.template_id),
            frozen_template: None,
            channel_policy: new.channel_policy,
            filter: new.filter,
            status: if new.scheduled_at.is_some() {
                BroadcastStatus::Scheduled
            } else {
                BroadcastStatus::Draft
            },
            status_reason: None,
            scheduled_at: new.scheduled_at,
            started_at: None,
            finished_at: None,
            created_by: new.created_by,
            total_recipients: 0,
            created_at: now,
            updated_at: now,
            probe: None,
        };
        s.broadcasts.insert(b.id, b.clone());
        Ok(b)
    }

    async fn get_broadcast(&self, id: BroadcastId) -> Result<Broadcast> {
        self.lock().broadcast(id).cloned()
    }

    async fn list_broadcasts(
        &self,
        statuses: &[BroadcastStatus],
        limit: u64,
    ) -> Result<Vec<Broadcast>> {
        Ok(self
            .lock()
            .broadcasts
            .values()
            .rev()
            .filter(|b| statuses.is_empty() || statuses.contains(&b.status))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn change_status(&self, id: BroadcastId, change: StatusChange) -> Result<Broadcast> {
        let mut s = self.lock();
        if let Some(content) = &change.freeze {
            for frozen in &content.telegram_media {
                let current = s.media.get(&frozen.medium).map(|m| m.sha256.as_str());
                check_still_held(frozen, current)?;
            }
        }
        let b = s.broadcast(id)?;
        if !change.from.contains(&b.status) {
            return Err(Error::Conflict(format!(
                "broadcast {id} is {}; cannot move it to {}",
                b.status, change.to
            )));
        }
        b.status = change.to;
        b.status_reason = change.reason;
        if change.to == BroadcastStatus::Running && b.started_at.is_none() {
            b.started_at = Some(change.at);
        }
        if change.to.is_final() {
            b.finished_at = Some(change.at);
        }
        if let Some(content) = change.freeze {
            b.frozen_template = Some(content);
        }
        b.probe = change.probe;
        b.updated_at = change.at;
        Ok(b.clone())
    }

    async fn take_probe(
        &self,
        id: BroadcastId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BreakerProbe>> {
        let mut s = self.lock();
        let b = s.broadcast(id)?;
        if b.status != BroadcastStatus::Paused {
            return Ok(None);
        }
        Ok(b.probe.as_mut().filter(|p| p.at <= now).map(|p| {
            p.at = lease_until;
            *p
        }))
    }

    async fn set_schedule(
        &self,
        id: BroadcastId,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast> {
        let mut s = self.lock();
        let b = s.broadcast(id)?;
        Transition::Schedule.check(id, b.status)?;
        b.scheduled_at = at;
        b.status = if at.is_some() {
            BroadcastStatus::Scheduled
        } else {
            BroadcastStatus::Draft
        };
        b.updated_at = now;
        Ok(b.clone())
    }
}
