//! The audit log page: who did what, newest first, searchable by actor, action, target and
//! time.

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use broadcast_domain::{AuditLog, AuditQuery as Search};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Session;
use crate::error::{PageError, PageResult};
use crate::state::AppState;
use crate::views::{fmt_time, page};

/// Entries per page.
const PER_PAGE: u64 = 50;

/// The search form, as sent (and shown again).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    target_id: String,
    /// First day, `YYYY-MM-DD` (UTC).
    #[serde(default)]
    from: String,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    #[serde(default)]
    to: String,
}

impl AuditQuery {
    /// The search, or what is wrong with the form.
    fn search(&self, offset: u64, limit: u64) -> Result<Search, PageError> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let day = |field: &str, raw: &str| -> Result<Option<DateTime<Utc>>, PageError> {
            let Some(raw) = text(raw) else {
                return Ok(None);
            };
            NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
                .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
                .map_err(|_| {
                    PageError::BadRequest(format!(
                        "{field}: `{raw}` is not a date such as 2027-03-01"
                    ))
                })
        };
        let target_id = match text(&self.target_id) {
            None => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                PageError::BadRequest(format!("target id: `{raw}` is not a number"))
            })?),
        };
        Ok(Search {
            actor: text(&self.actor),
            action: text(&self.action),
            target_type: text(&self.target),
            target_id,
            from: day("from", &self.from)?,
            until: day("to", &self.to)?.map(|d| d + chrono::Duration::days(1)),
            offset,
            limit,
        })
    }

    /// This search's address on page `page`.
    fn link(&self, page: u64) -> String {
        let mut params: Vec<(&str, String)> = vec![("page", page.to_string())];
        for (key, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("target_id", &self.target_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.trim().is_empty() {
                params.push((key, value.trim().to_owned()));
            }
        }
        let query = serde_html_form::to_string(&params).unwrap_or_default();
        format!("/audit?{query}")
    }
}

/// `GET /audit`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let page_no = q.page.unwrap_or(1).max(1);
    // One more than a page tells whether there is an older page.
    let search = q.search((page_no - 1) * PER_PAGE, PER_PAGE + 1)?;
    let mut entries = state.store.search(&search).await?;
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
    ctx.insert("prev", &(page_no > 1).then(|| q.link(page_no - 1)));
    ctx.insert("next", &older.then(|| q.link(page_no + 1)));
    ctx.insert("search", &q);
    ctx.insert(
        "filtered",
        &(search.actor.is_some()
            || search.action.is_some()
            || search.target_type.is_some()
            || search.target_id.is_some()
            || search.from.is_some()
            || search.until.is_some()),
    );
    Ok(state.views.render("audit.html", &ctx)?.into_response())
}
