//! Settings from the environment and the composition of adapters into an orchestrator.

use std::sync::Arc;

use broadcast_app::compose;
use broadcast_channels::ChannelSettings;
use broadcast_domain::{Actor, Channel, UnsubscribeLinks};
use broadcast_orchestrator::{Orchestrator, Settings};
use broadcast_store::Store;

/// A failure of a command: invalid input (exit code 2), a run that delivered nothing (exit code
/// 3) or anything else (exit code 1).
#[derive(Debug)]
pub(crate) enum CliError {
    /// The operator's input is wrong; the message says what to fix.
    Invalid(String),
    /// Something failed.
    Failed(anyhow::Error),
    /// The run ended without delivering: a broadcast is paused, failed or cancelled, or
    /// completed without a message sent (exit code 3); the message says which and why.
    Undelivered(String),
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

/// `cli:<login>` from `USER`, or `cli` when it is unset or not a valid name.
pub(crate) fn cli_actor() -> Actor {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .and_then(|u| Actor::new(format!("cli:{u}")).ok())
        .unwrap_or_else(|| Actor::new("cli").expect("a valid actor name"))
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

impl Config {
    pub(crate) fn from_env(database_url: String) -> CliResult<Self> {
        let env = |name: &str| std::env::var(name).ok();
        let worker = broadcast_app::worker_settings(env, broadcast_app::worker_id(None, env))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            database_url,
            channels: ChannelSettings::from_lookup(|name| std::env::var(name).ok())
                .map_err(|e| invalid(e.to_string()))?,
            worker,
        })
    }
}

/// Everything a command needs.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) orchestrator: Orchestrator,
    pub(crate) channels: Vec<Arc<dyn Channel>>,
    /// Who runs the CLI, as the audit log names them: `cli:<login>`.
    pub(crate) actor: Actor,
}

impl App {
    /// Connects to the database (applying pending migrations) and builds the orchestrator.
    pub(crate) async fn build(config: Config) -> CliResult<Self> {
        let store = compose::open_store(&config.database_url)
            .await
            .map_err(|e| CliError::Failed(e.into()))?;
        let (channels, shared) = compose::shared_channels(&config.channels, &store)
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot set up the channels: {e}")))?;
        let links = config
            .channels
            .unsubscribe_links()
            .map_err(|e| invalid(e.to_string()))?
            .map(|l| Arc::new(l) as Arc<dyn UnsubscribeLinks>);
        let orchestrator =
            compose::orchestrator(&store, &channels, shared, links, config.worker.clone());
        Ok(Self {
            config,
            store,
            orchestrator,
            channels,
            actor: cli_actor(),
        })
    }

    /// Tells the operator (on stderr) which channel implementation each channel uses.
    pub(crate) fn announce_channels(&self) {
        for c in &self.channels {
            eprintln!("{:<8} -> {}", c.kind().as_str(), c.describe());
        }
    }
}
