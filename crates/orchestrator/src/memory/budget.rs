//! [`SendBudget`]: send slots shared by workers.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl SendBudget for MemoryStore {
    async fn reserve(
        &self,
        key: &str,
        interval: std::time::Duration,
        n: u32,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let mut s = self.lock();
        let step = chrono::Duration::from_std(interval)
            .map_err(|e| Error::Invalid(format!("budget interval: {e}")))?;
        let next = s.budgets.entry(key.to_owned()).or_insert(now);
        let first = (*next).max(now);
        *next = first + step * n as i32;
        Ok(first)
    }
}
