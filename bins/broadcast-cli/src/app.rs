//! Settings from the environment and the composition of adapters into an orchestrator.

use std::sync::Arc;
use std::time::Duration;

use broadcast_channels::ChannelSettings;
use broadcast_domain::{Channel, SystemClock, UnsubscribeLinks};
use broadcast_filter::SqlAudience;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;

/// A failure of a command: invalid input (exit code 2) or anything else (exit code 1).
#[derive(Debug)]
pub(crate) enum CliError {
    /// The operator's input is wrong; the message says what to fix.
    Invalid(String),
    /// Something failed.
    Failed(anyhow::Error),
}

pub(crate) type CliResult<T> = Result<T, CliError>;

impl From<broadcast_domain::Error> for CliError {
    fn from(e: broadcast_domain::Error) -> Self {
        if e.is_invalid_input() {
            Self::Invalid(e.to_string())
        } else {
            Self::Failed(e.into())
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// Shorthand for an invalid-input error.
pub(crate) fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}

/// Settings read from the environment (and `.env`).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) database_url: String,
    pub(crate) channels: ChannelSettings,
    pub(crate) worker: Settings,
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> CliResult<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| invalid(format!("{name}=`{v}` is not valid: {e}"))),
        _ => Ok(default),
    }
}

impl Config {
    pub(crate) fn from_env(database_url: String) -> CliResult<Self> {
        let defaults = Settings::default();
        let app_name = env_parse("APP_NAME", "Broadcast".to_owned())?;
        let worker = Settings {
            app_name,
            batch_size: env_parse("BATCH_SIZE", defaults.batch_size)?,
            concurrency: env_parse("WORKER_CONCURRENCY", defaults.concurrency)?,
            max_attempts: env_parse("MAX_ATTEMPTS", defaults.max_attempts)?,
            retry_base: Duration::from_secs_f64(env_parse(
                "RETRY_BASE_SECONDS",
                defaults.retry_base.as_secs_f64(),
            )?),
            retry_max: Duration::from_secs_f64(env_parse(
                "RETRY_MAX_SECONDS",
                defaults.retry_max.as_secs_f64(),
            )?),
            lease: Duration::from_secs_f64(env_parse(
                "LEASE_SECONDS",
                defaults.lease.as_secs_f64(),
            )?),
            worker_id: env_parse("WORKER_ID", default_worker_id())?,
            schedule_grace: Duration::from_secs_f64(env_parse(
                "SCHEDULE_GRACE_SECONDS",
                defaults.schedule_grace.as_secs_f64(),
            )?),
            breaker_consecutive: env_parse("BREAKER_CONSECUTIVE", defaults.breaker_consecutive)?,
            breaker_window: env_parse("BREAKER_WINDOW", defaults.breaker_window)?,
            breaker_ratio: env_parse("BREAKER_RATIO", defaults.breaker_ratio)?,
            ..defaults
        };
        for (name, d) in [
            ("RETRY_BASE_SECONDS", worker.retry_base),
            ("RETRY_MAX_SECONDS", worker.retry_max),
            ("LEASE_SECONDS", worker.lease),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("{name} must be more than 0")));
            }
        }
        if worker.batch_size == 0 || worker.concurrency == 0 || worker.max_attempts < 1 {
            return Err(invalid(
                "BATCH_SIZE, WORKER_CONCURRENCY and MAX_ATTEMPTS must be at least 1",
            ));
        }
        Ok(Self {
            database_url,
            channels: ChannelSettings::from_lookup(|name| std::env::var(name).ok())
                .map_err(|e| invalid(e.to_string()))?,
            worker,
        })
    }
}

/// `<host>-<pid>`: unique among the workers sharing a database.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Everything a command needs.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) orchestrator: Orchestrator,
    pub(crate) channels: Vec<Arc<dyn Channel>>,
}

impl App {
    /// Connects to the database (applying pending migrations) and builds the orchestrator.
    pub(crate) async fn build(mut config: Config) -> CliResult<Self> {
        let store = Store::connect(&config.database_url)
            .await
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot open the database: {e}")))?;
        store
            .migrate()
            .await
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot migrate the database: {e}")))?;
        // Rates of the real channels are shared by every worker through the database.
        let (shared_rates, pacing_margin) = config.channels.share_rates();
        let channels = config
            .channels
            .build()
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot set up the channels: {e}")))?;
        let links = config
            .channels
            .unsubscribe_links()
            .map_err(|e| invalid(e.to_string()))?
            .map(|l| Arc::new(l) as Arc<dyn UnsubscribeLinks>);
        let mut set = Channels::new();
        for c in &channels {
            set = set.with(c.clone());
        }
        let shared = Arc::new(store.clone());
        let shared_budget: Arc<dyn broadcast_domain::SendBudget> = shared.clone();
        let shared_audit: Arc<dyn broadcast_domain::AuditLog> = shared.clone();
        let ports = Ports {
            templates: shared.clone(),
            broadcasts: shared.clone(),
            deliveries: shared.clone(),
            audience: shared,
            source: Arc::new(SqlAudience::new(store.conn().clone())),
            renderer: Arc::new(TeraRenderer::new()),
            channels: set,
            clock: Arc::new(SystemClock),
            links,
            budget: Some(shared_budget),
            audit: Some(shared_audit),
        };
        let mut settings = config.worker.clone();
        settings.shared_rates.extend(shared_rates);
        settings.pacing_margin = pacing_margin;
        let orchestrator = Orchestrator::new(ports, settings);
        Ok(Self {
            config,
            store,
            orchestrator,
            channels,
        })
    }

    /// Tells the operator (on stderr) which channel implementation each channel uses.
    pub(crate) fn announce_channels(&self) {
        for c in &self.channels {
            eprintln!("{:<8} -> {}", c.kind().as_str(), c.describe());
        }
    }
}
