//! The audit log page: who did what, newest first.

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use broadcast_domain::AuditLog;
use serde::Deserialize;

use crate::auth::Session;
use crate::error::PageResult;
use crate::state::AppState;
use crate::views::{fmt_time, page};

/// Entries per page.
const PER_PAGE: u64 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    page: Option<u64>,
}

/// `GET /audit`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let page_no = q.page.unwrap_or(1).max(1);
    // One more than a page tells whether there is an older page.
    let mut entries = state
        .store
        .recent(PER_PAGE + 1, (page_no - 1) * PER_PAGE)
        .await?;
    let older = entries.len() as u64 > PER_PAGE;
    entries.truncate(PER_PAGE as usize);
    let views: Vec<_> = entries
        .iter()
        .map(|e| {
            let target = match e.target_id {
                Some(id) => format!("{} {id}", e.target_type),
                None => e.target_type.clone(),
            };
            serde_json::json!({
                "at": fmt_time(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": target,
                "details": e.details.to_string(),
            })
        })
        .collect();
    let mut ctx = page(&session, "audit", "Audit log");
    ctx.insert("entries", &views);
    ctx.insert("page", &page_no);
    ctx.insert(
        "prev",
        &(page_no > 1).then(|| format!("/audit?page={}", page_no - 1)),
    );
    ctx.insert(
        "next",
        &older.then(|| format!("/audit?page={}", page_no + 1)),
    );
    Ok(state.views.render("audit.html", &ctx)?.into_response())
}
