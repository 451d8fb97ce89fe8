//! Live progress as server-sent events (`event: progress`, data: a JSON progress snapshot).
//!
//! Each stream merges two sources: the orchestrator's progress events (published after every
//! batch this process's worker delivers) and a poll of the store every `progress_poll`, which
//! shows the work of worker processes elsewhere. Only changed snapshots are sent. A stream ends
//! when the client goes away or the server shuts down.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use broadcast_domain::{BroadcastId, BroadcastStatus};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio::time::MissedTickBehavior;

use crate::auth::Session;
use crate::error::PageResult;
use crate::present::ProgressView;
use crate::routes::progress_of;
use crate::service;
use crate::state::AppState;

/// Which broadcasts a stream reports on.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// One broadcast.
    One(BroadcastId),
    /// Every broadcast that is running, paused or scheduled (and those that just stopped).
    Active,
}

impl Scope {
    fn includes(self, id: BroadcastId) -> bool {
        match self {
            Scope::One(one) => one == id,
            Scope::Active => true,
        }
    }
}

type EventStream = Sse<KeepAliveStream<BoxStream>>;
type BoxStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// `GET /broadcasts/{id}/events`.
pub(crate) async fn broadcast_events(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<BroadcastId>,
) -> PageResult<EventStream> {
    service::broadcast(&state, id).await?;
    Ok(stream(state, Scope::One(id)))
}

/// `GET /events`: progress of every active broadcast (dashboard and broadcast list).
pub(crate) async fn all_events(State(state): State<AppState>, _session: Session) -> EventStream {
    stream(state, Scope::Active)
}

fn stream(state: AppState, scope: Scope) -> EventStream {
    let (tx, rx) = mpsc::channel::<ProgressView>(64);
    tokio::spawn(pump(state, scope, tx));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let view = rx.recv().await?;
        let event = Event::default()
            .event("progress")
            .json_data(&view)
            .unwrap_or_else(|_| Event::default().comment("unserialisable progress"));
        Some((Ok(event), rx))
    });
    Sse::new(Box::pin(events) as BoxStream).keep_alive(KeepAlive::default())
}

/// Sends `view` unless the client already has the same counts; false when the client is gone.
async fn offer(
    tx: &mpsc::Sender<ProgressView>,
    last: &mut HashMap<BroadcastId, ProgressView>,
    view: ProgressView,
) -> bool {
    if last
        .get(&view.broadcast_id)
        .is_some_and(|prev| prev.same_counts(&view))
    {
        return true;
    }
    last.insert(view.broadcast_id, view.clone());
    tx.send(view).await.is_ok()
}

/// Current snapshots of the broadcasts in scope.
async fn poll(
    state: &AppState,
    scope: Scope,
    last: &HashMap<BroadcastId, ProgressView>,
) -> broadcast_domain::Result<Vec<ProgressView>> {
    let broadcasts = &state.orchestrator.ports().broadcasts;
    let list = match scope {
        Scope::One(id) => vec![broadcasts.get_broadcast(id).await?],
        Scope::Active => {
            let mut list = broadcasts
                .list_broadcasts(
                    &[
                        BroadcastStatus::Running,
                        BroadcastStatus::Paused,
                        BroadcastStatus::Scheduled,
                    ],
                    100,
                )
                .await?;
            // Broadcasts shown as active before that stopped since: report their final state.
            for (id, view) in last {
                if !view.status.is_final() && !list.iter().any(|b| b.id == *id) {
                    list.push(broadcasts.get_broadcast(*id).await?);
                }
            }
            list
        }
    };
    let mut views = Vec::with_capacity(list.len());
    for b in &list {
        if let Some(view) = progress_of(state, b).await? {
            views.push(view);
        }
    }
    Ok(views)
}

async fn recv(
    events: &mut Option<broadcast::Receiver<broadcast_orchestrator::Progress>>,
) -> Result<broadcast_orchestrator::Progress, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn pump(state: AppState, scope: Scope, tx: mpsc::Sender<ProgressView>) {
    let mut events = Some(state.orchestrator.subscribe());
    let mut shutdown = state.shutdown.clone();
    let mut last = HashMap::new();
    let mut tick = tokio::time::interval(state.settings.progress_poll);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if state.shutting_down() {
        return;
    }
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            () = tx.closed() => return,
            event = recv(&mut events), if events.is_some() => match event {
                Ok(p) => {
                    if scope.includes(p.broadcast_id)
                        && !offer(&tx, &mut last, ProgressView::from(&p)).await
                    {
                        return;
                    }
                }
                // Missed snapshots: the next poll catches up.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events = None,
            },
            _ = tick.tick() => {
                match poll(&state, scope, &last).await {
                    Ok(views) => {
                        for view in views {
                            if !offer(&tx, &mut last, view).await {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "progress poll failed"),
                }
            }
        }
    }
}
