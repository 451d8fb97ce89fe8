//! The dashboard: recent broadcasts with live status, counts, and which channels are in use.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use broadcast_domain::{BroadcastStatus, UserQuery};
use serde::Deserialize;

use crate::auth::Session;
use crate::error::PageResult;
use crate::present::broadcast_row;
use crate::routes::progress_of;
use crate::state::AppState;
use crate::views::{notice, page};

#[derive(Debug, Deserialize)]
pub(crate) struct DashboardQuery {
    done: Option<String>,
}

/// `GET /`.
pub(crate) async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<DashboardQuery>,
) -> PageResult<Response> {
    let ports = state.orchestrator.ports();
    let recent = ports.broadcasts.list_broadcasts(&[], 10).await?;
    let mut rows = Vec::with_capacity(recent.len());
    let competitions = state.competition_names().await?;
    for b in &recent {
        let progress = progress_of(&state, b).await?;
        rows.push(broadcast_row(b, None, progress.as_ref(), &competitions));
    }
    let running = ports
        .broadcasts
        .list_broadcasts(&[BroadcastStatus::Running], 10_000)
        .await?
        .len();
    let scheduled = ports
        .broadcasts
        .list_broadcasts(&[BroadcastStatus::Scheduled], 10_000)
        .await?
        .len();
    let templates = ports.templates.list_templates().await?.len();
    let users = ports
        .audience
        .list_users(&UserQuery {
            search: None,
            offset: 0,
            limit: 1,
        })
        .await?
        .total;
    let mut ctx = page(&session, "dashboard", "Dashboard");
    ctx.insert("notice", &notice(q.done.as_deref()));
    ctx.insert("broadcasts", &rows);
    ctx.insert(
        "counts",
        &serde_json::json!({
            "running": running,
            "scheduled": scheduled,
            "templates": templates,
            "users": users,
        }),
    );
    let channels: Vec<_> = state
        .channel_descriptions
        .iter()
        .map(|(kind, describe)| serde_json::json!({ "kind": kind, "describe": describe }))
        .collect();
    ctx.insert("channels", &channels);
    ctx.insert("worker_running", &state.worker_running);
    Ok(state.views.render("dashboard.html", &ctx)?.into_response())
}
