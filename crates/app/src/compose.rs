//! Composition: the store opened and migrated, the ports of the application over it, the
//! orchestrator on those ports with the channels' rates shared through the database, and the
//! signal that stops a worker. Both front-ends build the application here, so a CLI worker and
//! the panel's in-process worker run the same thing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use broadcast_channels::ChannelSettings;
use broadcast_domain::{Channel, ChannelKind, SystemClock, UnsubscribeLinks};
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;

/// What could not be set up; the message says what and why, without secrets.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Open(broadcast_domain::Error),
    /// The database could not be migrated.
    #[error("cannot migrate the database: {0}")]
    Migrate(broadcast_domain::Error),
}

/// Connects to `database_url` and applies every pending migration.
pub async fn open_store(database_url: &str) -> Result<Store, ComposeError> {
    let store = Store::connect(database_url)
        .await
        .map_err(ComposeError::Open)?;
    store.migrate().await.map_err(ComposeError::Migrate)?;
    Ok(store)
}

/// The ports over one SQL store: it plays every store, the audience source (reaching users on
/// the channels registered in `channels`), the send budget shared by workers and the audit log;
/// tera renders; the system clock tells the time.
pub fn sql_ports(
    store: &Store,
    channels: Channels,
    links: Option<Arc<dyn UnsubscribeLinks>>,
) -> Ports {
    let shared = Arc::new(store.clone().with_reaches(channels.reaches()));
    Ports {
        templates: shared.clone(),
        broadcasts: shared.clone(),
        deliveries: shared.clone(),
        audience: shared.clone(),
        source: shared.clone(),
        renderer: Arc::new(TeraRenderer::new()),
        channels,
        clock: Arc::new(SystemClock),
        links,
        budget: Some(shared.clone()),
        audit: Some(shared.clone()),
        admins: Some(shared.clone()),
        media: Some(shared),
    }
}

/// The real channels' rates, which every worker shares through the database (so that two
/// workers together stay inside one bot's limit), and the pacing margin the budget adds.
#[derive(Debug, Clone)]
pub struct SharedRates {
    rates: BTreeMap<ChannelKind, u32>,
    margin: Duration,
}

/// Builds the channels of `settings` for a worker that shares their rates with the others (media
/// read from `store`, where their Telegram `file_id`s are kept too): the
/// returned rates go to [`orchestrator`], which paces every worker's sends through the
/// database; each channel still paces its own.
pub fn shared_channels(
    settings: &ChannelSettings,
    store: &Store,
) -> broadcast_channels::Result<(Vec<Arc<dyn Channel>>, SharedRates)> {
    let (rates, margin) = settings.share_rates();
    let channels = settings.build(Some(Arc::new(store.clone())))?;
    Ok((channels, SharedRates { rates, margin }))
}

/// The orchestrator over [`sql_ports`] with `channels` (from [`shared_channels`], possibly
/// wrapped), their shared rates and the worker settings `worker`.
pub fn orchestrator(
    store: &Store,
    channels: &[Arc<dyn Channel>],
    shared: SharedRates,
    links: Option<Arc<dyn UnsubscribeLinks>>,
    mut worker: Settings,
) -> Orchestrator {
    worker.shared_rates.extend(shared.rates);
    worker.pacing_margin = shared.margin;
    let set = channels
        .iter()
        .fold(Channels::new(), |set, c| set.with(c.clone()));
    Orchestrator::new(sql_ports(store, set, links), worker)
}

/// Why a process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C (SIGINT).
    Interrupted,
    /// SIGTERM (a service manager, a container stop).
    Terminated,
}

/// Completes on SIGINT or SIGTERM, saying which. A signal that cannot be listened to is never
/// reported (the other still is).
pub async fn shutdown_signal() -> Stop {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => Stop::Interrupted,
        () = terminate => Stop::Terminated,
    }
}
