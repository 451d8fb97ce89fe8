//! [`SendBudget`]: send slots shared by workers, by the rules of [`BudgetState`].

use std::time::Duration;

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

fn delta(d: Duration, what: &str) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d).map_err(|e| Error::Invalid(format!("budget {what}: {e}")))
}

/// The key's state, new (free from `now`) when the key has none yet.
fn state<'a>(
    budgets: &'a mut std::collections::BTreeMap<String, BudgetState>,
    key: &str,
    now: DateTime<Utc>,
) -> &'a mut BudgetState {
    budgets
        .entry(key.to_owned())
        .or_insert_with(|| BudgetState::new(now))
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
        let span = delta(interval, "interval")? * n as i32;
        Slots::check_key(key)?;
        let mut s = self.lock();
        let b = state(&mut s.budgets, key, now);
        let first = b.reserve(span, now);
        Ok(Slots {
            first,
            moves: b.moves,
        })
    }

    async fn move_back(
        &self,
        key: &str,
        late: Duration,
        moved_then: Duration,
        by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Moves> {
        Slots::check_key(key)?;
        delta(late, "move")?;
        let mut s = self.lock();
        let b = state(&mut s.budgets, key, now);
        b.move_back(late, moved_then, by, now);
        Ok(b.moves)
    }

    async fn hold(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        Slots::check_key(key)?;
        let mut s = self.lock();
        state(&mut s.budgets, key, now).hold(until);
        Ok(())
    }

    async fn held_until(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.lock().budgets.get(key).and_then(|b| b.held))
    }
}
