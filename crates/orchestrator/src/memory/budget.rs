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
        let mut s = self.lock();
        let (next, moved) = s
            .budgets
            .entry(key.to_owned())
            .or_insert((now, Duration::ZERO));
        let first = (*next).max(now);
        *next = first + step * n as i32;
        Ok(Slots {
            first,
            moved: *moved,
        })
    }

    async fn move_back(
        &self,
        key: &str,
        late: Duration,
        moved_then: Duration,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        let mut s = self.lock();
        let (next, moved) = s
            .budgets
            .entry(key.to_owned())
            .or_insert((now, Duration::ZERO));
        let missing = Slots::still_to_move(late, moved_then, *moved);
        if !missing.is_zero() {
            *next = (*next).max(now) + delta(missing, "move")?;
            *moved += missing;
        }
        Ok(*moved)
    }
}
