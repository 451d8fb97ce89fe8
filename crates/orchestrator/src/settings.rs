//! Tunables of the orchestrator, with defaults suitable for one worker on one machine.

use std::time::Duration;

/// How the orchestrator claims, sends and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name available to templates as `app_name`.
    pub app_name: String,
    /// Identifies this worker in leases; must be unique among running workers.
    pub worker_id: String,
    /// Rows claimed per batch.
    pub batch_size: u64,
    /// Messages in flight at once per channel (also bounded by the channel itself).
    pub concurrency: usize,
    /// How long a claimed row stays leased before another worker may take it over.
    pub lease: Duration,
    /// Attempts before a transient failure becomes final.
    pub max_attempts: i32,
    /// Delay before the first retry; doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// Pause between polls when there is nothing to do.
    pub idle_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_name: "Broadcast".to_owned(),
            worker_id: format!("worker-{}", std::process::id()),
            batch_size: 200,
            concurrency: 16,
            lease: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            idle_poll: Duration::from_millis(500),
        }
    }
}
