//! The admin web panel and JSON API of the broadcast system (axum).
//!
//! A composition root like `broadcast-cli`: [`run`] connects the store (applying pending
//! migrations), builds the channels (outbox files unless Telegram or SMTP are configured), the
//! renderer and the orchestrator, optionally starts a delivery worker in the same process, and
//! serves the panel on the given listener until the shutdown future completes.
//!
//! - Pages (server-rendered tera templates embedded in the binary) need a session: log in at
//!   `/login` with an administrator made by `broadcast-cli admin create-user`.
//! - `/api/v1` needs `Authorization: Bearer <token>` with one of `ADMIN_API_TOKENS`.
//! - `/healthz`, `/login`, `/static/*`, `/unsubscribe/<token>` and `/api/v1/openapi.json` are
//!   public; `/metrics` takes a session or an API token.
//!
//! `docs/api.md` documents the API, the settings and the security measures.

mod auth;
mod error;
mod filter_form;
mod metrics;
mod present;
mod routes;
mod service;
mod settings;
mod state;
mod telegram_html;
mod throttle;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use broadcast_channels::SignedUnsubscribeLinks;
use broadcast_domain::{Channel, ChannelKind};
use broadcast_orchestrator::Orchestrator;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use settings::{MIN_API_TOKEN_BYTES, MIN_SECRET_KEY_BYTES, Settings};
pub use throttle::ThrottleSettings;

use crate::metrics::{MeteredChannel, Metrics};
use crate::state::{AppState, StateParts};

/// Pause before the in-process worker starts again after an error.
const WORKER_RESTART_DELAY: Duration = Duration::from_secs(5);

/// Serves the admin panel on `listener` until `shutdown` completes, then stops accepting
/// connections, ends the live progress streams, lets the in-process worker finish its batch,
/// and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.check()?;
    let store = broadcast_app::compose::open_store(&settings.database_url).await?;

    let metrics = Arc::new(Metrics::new());
    // Rates of the real channels are shared by every worker through the database (as in the CLI).
    let (built, shared) = broadcast_app::compose::shared_channels(&settings.channels, &store)
        .context("cannot build the channels")?;
    let channel_descriptions: Vec<(ChannelKind, String)> =
        built.iter().map(|c| (c.kind(), c.describe())).collect();
    let metered: Vec<Arc<dyn Channel>> = built
        .into_iter()
        .map(|c| Arc::new(MeteredChannel::new(c, metrics.clone())) as Arc<dyn Channel>)
        .collect();
    let links = SignedUnsubscribeLinks::new(
        settings.public_base_url.clone(),
        settings.secret_key.clone(),
    )
    .context("cannot set up unsubscribe links (PUBLIC_BASE_URL, ADMIN_SECRET_KEY)")?;
    let orchestrator = Arc::new(broadcast_app::compose::orchestrator(
        &store,
        &metered,
        shared,
        Some(Arc::new(links.clone())),
        settings.worker.clone(),
    ));
    // A hash of a random password, checked when a login names an unknown user.
    let dummy_hash = tokio::task::spawn_blocking(|| {
        broadcast_app::password::hash_password(&auth::random_token())
    })
    .await
    .context("hashing panicked")??;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let run_worker = settings.run_worker;
    for (kind, describe) in &channel_descriptions {
        tracing::info!(channel = %kind, "{describe}");
    }
    let state = AppState::new(StateParts {
        settings,
        store,
        orchestrator: orchestrator.clone(),
        links,
        metrics,
        dummy_hash,
        channel_descriptions,
        shutdown: stop_rx.clone(),
        worker_running: run_worker,
    })?;
    let app = routes::router(state);

    let worker = run_worker.then(|| tokio::spawn(worker_loop(orchestrator, stop_rx.clone())));
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, worker = run_worker, "admin panel listening");
    }
    let mut stopped = stop_rx.clone();
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
    .await;
    // However serving ended, stop the worker too.
    let _ = stop_tx.send(true);
    if let Some(worker) = worker {
        worker.await.context("the worker task panicked")?;
    }
    served.context("the server failed")?;
    tracing::info!("admin panel stopped");
    Ok(())
}

/// Runs the delivery worker until shutdown, starting it again after an error.
async fn worker_loop(orchestrator: Arc<Orchestrator>, stop: watch::Receiver<bool>) {
    loop {
        let mut until = stop.clone();
        let result = orchestrator
            .run_worker(async move {
                let _ = until.wait_for(|stop| *stop).await;
            })
            .await;
        if *stop.borrow() {
            return;
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "the delivery worker stopped; starting it again");
        }
        let mut wait = stop.clone();
        tokio::select! {
            _ = wait.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(WORKER_RESTART_DELAY) => {}
        }
    }
}
