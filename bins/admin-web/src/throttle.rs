//! Login throttling: failure counters per user name and per client address, kept in memory.
//!
//! Every failed login makes the answer to it slower (`base_delay` doubled per failure of the
//! name or address, up to `max_delay`), so guessing passwords gets slower the more one guesses.
//! After `user_lock_after` failures of one name, or `ip_lock_after` failures from one address,
//! that name or address is locked: logins are refused without checking the password for
//! `lock_for`, doubled for every further failure up to `max_lock`. A successful login clears the
//! name's counter (not the address's). Counters are forgotten `forget_after` the last failure.
//!
//! The counters live in this process only: several panel processes each count on their own,
//! and a restart clears them. The map is bounded (`max_entries`), oldest entries go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tunables of [`LoginThrottle`].
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Delay added to the answer to the first failure; doubles per failure.
    pub base_delay: Duration,
    /// Longest delay added to one answer.
    pub max_delay: Duration,
    /// Failures of one user name before it is locked.
    pub user_lock_after: u32,
    /// Failures from one client address before it is locked.
    pub ip_lock_after: u32,
    /// First lock duration; doubles per further failure.
    pub lock_for: Duration,
    /// Longest lock.
    pub max_lock: Duration,
    /// Counters are dropped this long after their last failure.
    pub forget_after: Duration,
    /// Most names and addresses tracked at once.
    pub max_entries: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            user_lock_after: 5,
            ip_lock_after: 20,
            lock_for: Duration::from_secs(60),
            max_lock: Duration::from_secs(3600),
            forget_after: Duration::from_secs(3600),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failure counters per user name and client address.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    settings: ThrottleSettings,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A refused attempt: the name or address is locked for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locked {
    /// Time left until the lock ends.
    pub retry_after: Duration,
}

fn user_key(username: &str) -> Key {
    Key::User(username.trim().to_lowercase().chars().take(200).collect())
}

fn doubled(base: Duration, times: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << times.min(20)).min(max)
}

impl LoginThrottle {
    /// An empty throttle.
    pub(crate) fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses the attempt when the name or the address is locked.
    pub(crate) fn check(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Locked> {
        let entries = self.entries();
        let remaining = [user_key(username), Key::Ip(ip)]
            .iter()
            .filter_map(|k| entries.get(k))
            .filter_map(|e| e.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match remaining {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Records a failed attempt; returns how long to delay the answer.
    pub(crate) fn failure(&self, username: &str, ip: IpAddr, now: Instant) -> Duration {
        let s = &self.settings;
        let mut entries = self.entries();
        if entries.len() >= s.max_entries {
            let forget_after = s.forget_after;
            entries.retain(|_, e| now.saturating_duration_since(e.last_failure) < forget_after);
            if entries.len() >= s.max_entries {
                // Still full: drop the older half.
                let mut by_age: Vec<(Instant, Key)> = entries
                    .iter()
                    .map(|(k, e)| (e.last_failure, k.clone()))
                    .collect();
                by_age.sort_unstable_by_key(|(at, _)| *at);
                for (_, key) in by_age.into_iter().take(entries.len() / 2) {
                    entries.remove(&key);
                }
            }
        }
        let mut most = 0;
        for (key, lock_after) in [
            (user_key(username), s.user_lock_after),
            (Key::Ip(ip), s.ip_lock_after),
        ] {
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if now.saturating_duration_since(entry.last_failure) >= s.forget_after {
                entry.failures = 0;
                entry.locked_until = None;
            }
            entry.failures += 1;
            entry.last_failure = now;
            if entry.failures >= lock_after {
                let lock = doubled(s.lock_for, entry.failures - lock_after, s.max_lock);
                entry.locked_until = Some(now + lock);
            }
            most = most.max(entry.failures);
        }
        doubled(s.base_delay, most.saturating_sub(1), s.max_delay)
    }

    /// Records a successful login: the name's counter is cleared.
    pub(crate) fn success(&self, username: &str) {
        self.entries().remove(&user_key(username));
    }

    /// Names and addresses tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn throttle() -> LoginThrottle {
        throttle_with(100)
    }

    fn throttle_with(max_entries: usize) -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            user_lock_after: 3,
            ip_lock_after: 5,
            lock_for: Duration::from_secs(10),
            max_lock: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
            max_entries,
        })
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn delays_double_and_the_name_locks() {
        let t = throttle();
        let now = Instant::now();
        assert_eq!(t.failure("Ann", IP, now), Duration::from_millis(100));
        assert_eq!(t.failure("ann ", IP, now), Duration::from_millis(200));
        assert!(t.check("ann", IP, now).is_ok());
        assert_eq!(t.failure("ANN", IP, now), Duration::from_millis(400));
        // Third failure of the name: locked for 10 s, from any address.
        let locked = t.check("ann", OTHER_IP, now).unwrap_err();
        assert_eq!(locked.retry_after, Duration::from_secs(10));
        assert!(t.check("bob", OTHER_IP, now).is_ok());
        // A further failure doubles the lock.
        t.failure("ann", OTHER_IP, now);
        assert_eq!(
            t.check("ann", OTHER_IP, now).unwrap_err().retry_after,
            Duration::from_secs(20)
        );
        // The lock ends.
        assert!(
            t.check("ann", OTHER_IP, now + Duration::from_secs(21))
                .is_ok()
        );
        assert_eq!(
            t.failure("ann", OTHER_IP, now),
            Duration::from_millis(1000),
            "capped"
        );
    }

    #[test]
    fn the_address_locks_across_names_and_success_clears_only_the_name() {
        let t = throttle();
        let now = Instant::now();
        for name in ["a", "b", "c", "d"] {
            t.failure(name, IP, now);
        }
        t.success("d");
        assert!(t.check("e", IP, now).is_ok());
        t.failure("e", IP, now);
        assert!(
            t.check("f", IP, now).is_err(),
            "fifth failure locks the address"
        );
        assert!(t.check("f", OTHER_IP, now).is_ok());
    }

    #[test]
    fn counters_are_forgotten_and_bounded() {
        let t = throttle_with(4);
        let now = Instant::now();
        t.failure("a", IP, now);
        t.failure("a", IP, now);
        let later = now + Duration::from_secs(601);
        assert_eq!(t.failure("a", IP, later), Duration::from_millis(100));
        for (i, name) in ["b", "c", "d", "e", "f"].iter().enumerate() {
            t.failure(name, IP, later + Duration::from_secs(i as u64));
        }
        assert!(t.tracked() <= 5, "{}", t.tracked());
    }
}
