//! [`SendBudget`]: send slots shared by workers.

use std::time::Duration;

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

fn delta(d: Duration, what: &str) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d).map_err(|e| Error::Invalid(format!("budget {what}: {e}")))
}

#[async_trait]
impl SendBudget for MemoryStore {
    async fn reserve(
        &self,
        key: &str,
        interval: Duration,
        n: u32,
        now: DateTime<Utc>,
    ) -> Result<Slots> {
        let step = delta(interval, "interval")?;
        Slots::check_key(key)?;
        let mut s = self.lock();
        let b = Budget::of(&mut s.budgets, key, now);
        let first = b.next.max(now);
        b.next = first + step * n as i32;
        Ok(Slots {
            first,
            moved: b.moved,
        })
    }

    async fn move_back(
        &self,
        key: &str,
        late: Duration,
        moved_then: Duration,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        Slots::check_key(key)?;
        let mut s = self.lock();
        let b = Budget::of(&mut s.budgets, key, now);
        let missing = Slots::still_to_move(late, moved_then, b.moved);
        if !missing.is_zero() {
            b.next = b.next.max(now) + delta(missing, "move")?;
            b.moved += missing;
        }
        Ok(b.moved)
    }

    async fn hold(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        Slots::check_key(key)?;
        let mut s = self.lock();
        let b = Budget::of(&mut s.budgets, key, now);
        b.next = b.next.max(until);
        b.held = Some(b.held.map_or(until, |h| h.max(until)));
        Ok(())
    }

    async fn held_until(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.lock().budgets.get(key).and_then(|b| b.held))
    }
}

/// One key of the budget: the next free slot, how far it was moved back in all, and the end of
/// its latest hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    next: DateTime<Utc>,
    moved: Duration,
    held: Option<DateTime<Utc>>,
}

impl Budget {
    /// The key's budget, new (free from `now`) when the key has none yet.
    fn of<'a>(
        budgets: &'a mut std::collections::BTreeMap<String, Budget>,
        key: &str,
        now: DateTime<Utc>,
    ) -> &'a mut Budget {
        budgets
            .entry(key.to_owned())
            .or_insert_with(|| Budget::new(now))
    }

    fn new(now: DateTime<Utc>) -> Self {
        Self {
            next: now,
            moved: Duration::ZERO,
            held: None,
        }
    }
}
