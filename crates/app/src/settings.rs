//! Worker settings from a lookup, checked once for every front-end.
//!
//! Each setting is read by name through `lookup` (an empty or blank value counts as unset and
//! takes the default). A value that does not parse, or is out of range, is a
//! [`SettingsError`] naming the setting and saying what is allowed; nothing panics on bad
//! input (`Duration::from_secs_f64(-1.0)` would).

use std::time::Duration;

use broadcast_orchestrator::{DEFAULT_CONCURRENCY, Settings};

/// A setting with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}=`{value}` is not valid: {reason}")]
pub struct SettingsError {
    /// The setting's name, e.g. `RETRY_BASE_SECONDS`.
    pub name: &'static str,
    /// The value as given.
    pub value: String,
    /// What is allowed instead.
    pub reason: String,
}

impl SettingsError {
    fn new(name: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// One named setting read through the lookup.
struct Lookup<'a, F> {
    get: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Lookup<'_, F> {
    /// The trimmed value, or `None` when unset or blank.
    fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A whole number in `min..=max`.
    fn int<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, SettingsError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        let range = || format!("use a whole number from {min} to {max}");
        let n: T = v
            .parse()
            .map_err(|_| SettingsError::new(name, &v, range()))?;
        if n < min || n > max {
            return Err(SettingsError::new(name, &v, range()));
        }
        Ok(n)
    }

    /// A duration in seconds (fractions allowed), more than 0 and at most `max`.
    fn seconds(
        &self,
        name: &'static str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, SettingsError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        let reason = || {
            format!(
                "use a number of seconds more than 0 and at most {}",
                max.as_secs()
            )
        };
        let secs: f64 = v
            .parse()
            .map_err(|_| SettingsError::new(name, &v, reason()))?;
        if !secs.is_finite() || secs <= 0.0 || secs > max.as_secs_f64() {
            return Err(SettingsError::new(name, &v, reason()));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A fraction in `(0, 1]`.
    fn ratio(&self, name: &'static str, default: f64) -> Result<f64, SettingsError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        let reason = "use a fraction more than 0 and at most 1, e.g. 0.5";
        let r: f64 = v
            .parse()
            .map_err(|_| SettingsError::new(name, &v, reason))?;
        if !r.is_finite() || r <= 0.0 || r > 1.0 {
            return Err(SettingsError::new(name, &v, reason));
        }
        Ok(r)
    }

    /// Text of at most `max` characters.
    fn text(
        &self,
        name: &'static str,
        default: String,
        max: usize,
    ) -> Result<String, SettingsError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(SettingsError::new(
                name,
                &v,
                format!("use at most {max} characters, none of them control characters"),
            ));
        }
        Ok(v)
    }
}

/// A day: the longest lease, retry delay or schedule grace accepted.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The worker settings read through `lookup`: `APP_NAME`, `WORKER_ID` (default
/// `default_worker_id`), `BATCH_SIZE`, `WORKER_CONCURRENCY`, `MAX_ATTEMPTS`,
/// `RETRY_BASE_SECONDS`, `RETRY_MAX_SECONDS`, `LEASE_SECONDS`, `SCHEDULE_GRACE_SECONDS`,
/// `BREAKER_CONSECUTIVE`, `BREAKER_WINDOW`, `BREAKER_RATIO`, `BREAKER_COOLDOWN_SECONDS` and
/// `BREAKER_COOLDOWN_MAX_SECONDS`. Shared rates and the pacing
/// margin come from the channel settings (`ChannelSettings::share_rates`).
pub fn worker_settings(
    lookup: impl Fn(&str) -> Option<String>,
    default_worker_id: String,
) -> Result<Settings, SettingsError> {
    let env = Lookup { get: &lookup };
    let d = Settings::default();
    let settings = Settings {
        app_name: env.text("APP_NAME", d.app_name.clone(), 200)?,
        worker_id: env.text("WORKER_ID", default_worker_id, 200)?,
        batch_size: env.int("BATCH_SIZE", d.batch_size, 1, 100_000)?,
        concurrency: match env.raw("WORKER_CONCURRENCY") {
            Some(_) => Some(env.int("WORKER_CONCURRENCY", DEFAULT_CONCURRENCY, 1, 10_000)?),
            None => None,
        },
        max_attempts: env.int("MAX_ATTEMPTS", d.max_attempts, 1, 1_000)?,
        retry_base: env.seconds("RETRY_BASE_SECONDS", d.retry_base, DAY)?,
        retry_max: env.seconds("RETRY_MAX_SECONDS", d.retry_max, DAY * 7)?,
        lease: env.seconds("LEASE_SECONDS", d.lease, DAY)?,
        schedule_grace: env.seconds("SCHEDULE_GRACE_SECONDS", d.schedule_grace, DAY * 7)?,
        breaker_consecutive: env.int("BREAKER_CONSECUTIVE", d.breaker_consecutive, 1, 1_000_000)?,
        breaker_window: env.int("BREAKER_WINDOW", d.breaker_window, 1, 1_000_000)?,
        breaker_ratio: env.ratio("BREAKER_RATIO", d.breaker_ratio)?,
        breaker_cooldown: env.seconds("BREAKER_COOLDOWN_SECONDS", d.breaker_cooldown, DAY)?,
        breaker_cooldown_max: env.seconds(
            "BREAKER_COOLDOWN_MAX_SECONDS",
            d.breaker_cooldown_max,
            DAY,
        )?,
        ..d
    };
    if settings.breaker_cooldown_max < settings.breaker_cooldown {
        return Err(SettingsError::new(
            "BREAKER_COOLDOWN_MAX_SECONDS",
            &format!("{}", settings.breaker_cooldown_max.as_secs_f64()),
            format!(
                "it must not be shorter than BREAKER_COOLDOWN_SECONDS ({} s)",
                settings.breaker_cooldown.as_secs_f64()
            ),
        ));
    }
    if settings.retry_max < settings.retry_base {
        return Err(SettingsError::new(
            "RETRY_MAX_SECONDS",
            &format!("{}", settings.retry_max.as_secs_f64()),
            format!(
                "it must not be shorter than RETRY_BASE_SECONDS ({} s)",
                settings.retry_base.as_secs_f64()
            ),
        ));
    }
    Ok(settings)
}

/// `<prefix>-<host>-<pid>`, or `<host>-<pid>` without a prefix: unique among the workers sharing a
/// database. The host comes from `HOSTNAME` through `lookup`, else `/etc/hostname`.
pub fn worker_id(prefix: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> String {
    let host = lookup("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    match prefix {
        Some(p) => format!("{p}-{host}-{}", std::process::id()),
        None => format!("{host}-{}", std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        worker_settings(
            move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            },
            "w1".to_owned(),
        )
    }

    #[test]
    fn unset_and_blank_values_take_the_defaults() {
        let s = read(&[("BATCH_SIZE", "  "), ("WORKER_CONCURRENCY", "")]).unwrap();
        let d = Settings::default();
        assert_eq!(s.batch_size, d.batch_size);
        assert_eq!(s.concurrency, None);
        assert_eq!(s.retry_base, d.retry_base);
        assert_eq!(s.worker_id, "w1");
    }

    #[test]
    fn values_are_read_and_trimmed() {
        let s = read(&[
            ("RETRY_BASE_SECONDS", " 0.25 "),
            ("BATCH_SIZE", "7"),
            ("BREAKER_RATIO", "0.9"),
            ("WORKER_ID", "blue"),
            ("WORKER_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!(s.concurrency, Some(8));
        assert_eq!(s.retry_base, Duration::from_millis(250));
        assert_eq!(s.batch_size, 7);
        assert_eq!(s.breaker_ratio, 0.9);
        assert_eq!(s.worker_id, "blue");
    }

    #[test]
    fn every_bad_value_names_its_setting() {
        for (name, value) in [
            ("RETRY_BASE_SECONDS", "-1"),
            ("RETRY_BASE_SECONDS", "0"),
            ("RETRY_BASE_SECONDS", "NaN"),
            ("RETRY_BASE_SECONDS", "inf"),
            ("RETRY_MAX_SECONDS", "abc"),
            ("LEASE_SECONDS", "-5"),
            ("LEASE_SECONDS", "1e30"),
            ("SCHEDULE_GRACE_SECONDS", "0"),
            ("BATCH_SIZE", "0"),
            ("BATCH_SIZE", "-3"),
            ("WORKER_CONCURRENCY", "0"),
            ("WORKER_CONCURRENCY", "many"),
            ("MAX_ATTEMPTS", "0"),
            ("BREAKER_CONSECUTIVE", "0"),
            ("BREAKER_WINDOW", "1.5"),
            ("BREAKER_RATIO", "0"),
            ("BREAKER_RATIO", "1.5"),
            ("BREAKER_COOLDOWN_SECONDS", "0"),
            ("BREAKER_COOLDOWN_MAX_SECONDS", "x"),
            ("WORKER_ID", "a\u{7}b"),
        ] {
            let err = read(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, name, "{name}={value}: {err}");
            let text = err.to_string();
            assert!(text.starts_with(&format!("{name}=`")), "{text}");
        }
    }

    #[test]
    fn the_longest_retry_delay_is_not_shorter_than_the_first() {
        let err = read(&[("RETRY_BASE_SECONDS", "60"), ("RETRY_MAX_SECONDS", "10")]).unwrap_err();
        assert_eq!(err.name, "RETRY_MAX_SECONDS");
        assert!(err.to_string().contains("RETRY_BASE_SECONDS"), "{err}");
    }

    #[test]
    fn the_longest_breaker_cool_down_is_not_shorter_than_the_first() {
        let s = read(&[
            ("BREAKER_COOLDOWN_SECONDS", "2.5"),
            ("BREAKER_COOLDOWN_MAX_SECONDS", "20"),
        ])
        .unwrap();
        assert_eq!(s.breaker_cooldown, Duration::from_millis(2500));
        assert_eq!(s.breaker_cooldown_max, Duration::from_secs(20));
        let s = read(&[("BREAKER_COOLDOWN_SECONDS", "60")]).unwrap();
        assert_eq!(
            s.breaker_cooldown_max,
            Settings::default().breaker_cooldown_max
        );
        let err = read(&[
            ("BREAKER_COOLDOWN_SECONDS", "60"),
            ("BREAKER_COOLDOWN_MAX_SECONDS", "10"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "BREAKER_COOLDOWN_MAX_SECONDS");
        assert!(
            err.to_string().contains("BREAKER_COOLDOWN_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn worker_ids_name_host_and_process() {
        let id = worker_id(Some("admin-web"), |_| Some("box".to_owned()));
        assert_eq!(id, format!("admin-web-box-{}", std::process::id()));
        let id = worker_id(None, |_| Some("box".to_owned()));
        assert_eq!(id, format!("box-{}", std::process::id()));
    }
}
