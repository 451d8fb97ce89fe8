//! Exponential backoff with jitter for transient delivery failures.

use std::time::Duration;

/// Computes retry delays: `base * 2^(attempt-1)`, capped, with deterministic jitter.
///
/// The jitter spreads retries of a failed burst over the second half of the interval (so a
/// provider outage does not come back as a thundering herd) and is derived from the row id, so
/// tests can predict it without a random source.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// The delay after the given (1-based) failed attempt of the given row: `base * 2^(attempt-1)`
    /// capped at `max`, then jittered into its upper half by `seed` (the row id).
    ///
    /// ```
    /// use std::time::Duration;
    /// use broadcast_orchestrator::Backoff;
    ///
    /// let backoff = Backoff { base: Duration::from_secs(30), max: Duration::from_secs(3600) };
    /// // After the third failure: 2 minutes, jittered to between 1 and 2 minutes.
    /// let d = backoff.delay(3, 17);
    /// assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(120));
    /// // The same row and attempt always wait the same time; the cap holds.
    /// assert_eq!(d, backoff.delay(3, 17));
    /// assert!(backoff.delay(20, 17) <= Duration::from_secs(3600));
    /// ```
    pub fn delay(&self, attempt: i32, seed: i64) -> Duration {
        let exp = attempt.clamp(1, 30) as u32 - 1;
        let full = self
            .base
            .checked_mul(2u32.saturating_pow(exp))
            .unwrap_or(self.max)
            .min(self.max);
        // Jitter in [full/2, full]: splitmix64 of the seed picks the point.
        let mut z = (seed as u64)
            .wrapping_add(attempt as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let fraction = (z % 1000) as f64 / 1000.0;
        full.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        for seed in 0..50 {
            let d1 = b.delay(1, seed);
            assert!(
                d1 >= Duration::from_secs(5) && d1 <= Duration::from_secs(10),
                "{d1:?}"
            );
            let d3 = b.delay(3, seed);
            assert!(
                d3 >= Duration::from_secs(20) && d3 <= Duration::from_secs(40),
                "{d3:?}"
            );
            let d9 = b.delay(9, seed);
            assert!(
                d9 >= Duration::from_secs(50) && d9 <= Duration::from_secs(100),
                "{d9:?}"
            );
        }
        assert_eq!(b.delay(2, 7), b.delay(2, 7));
        assert_ne!(b.delay(2, 7), b.delay(2, 8));
    }
}
