//! The media library's page: the files with their kind, type and size, an upload form
//! (multipart; the same checks as `broadcast-cli media add`: the type from the bytes, Telegram's
//! size limits), removal, and each file's bytes for previews.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use broadcast_domain::{Actor, Medium, human_size};
use serde::{Deserialize, Serialize};

use super::templates::Empty;
use super::upload::Upload;
use crate::auth::{CsrfForm, Session, csrf_refused};
use crate::error::PageResult;
use crate::state::AppState;
use crate::views::{fmt_time, notice, page};

#[derive(Debug, Serialize)]
struct MediumView {
    id: i64,
    name: String,
    kind: String,
    content_type: String,
    size: String,
    sha256: String,
    updated: String,
    image: bool,
}

impl From<&Medium> for MediumView {
    fn from(m: &Medium) -> Self {
        Self {
            id: m.id,
            name: m.name.clone(),
            kind: m.kind.to_string(),
            content_type: m.content_type.clone(),
            size: human_size(m.size),
            sha256: m.sha256.clone(),
            updated: fmt_time(m.updated_at),
            image: m.content_type.starts_with("image/"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

async fn media_page(
    state: &AppState,
    session: &Session,
    notice_text: Option<&str>,
    error: Option<String>,
) -> PageResult {
    let media = state.orchestrator.list_media().await?;
    let rows: Vec<MediumView> = media.iter().map(MediumView::from).collect();
    let mut ctx = page(session, "media", "Media");
    ctx.insert("media", &rows);
    ctx.insert("notice", &notice_text);
    let status = match error {
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    ctx.insert("error", &error);
    Ok((status, state.views.render("media.html", &ctx)?).into_response())
}

/// `GET /media`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Done>,
) -> PageResult {
    media_page(&state, &session, notice(q.done.as_deref()), None).await
}

/// `POST /media` (multipart: `csrf`, `file`, `name`, `replace`).
pub(crate) async fn upload(
    State(state): State<AppState>,
    session: Session,
    multipart: Multipart,
) -> PageResult {
    let upload = Upload::read(multipart).await?;
    if !upload.csrf_matches(&session) {
        return Ok(csrf_refused(&state));
    }
    let replace = upload.field("replace") == Some("on");
    let name = upload.field("name").map(str::to_owned);
    let Some((file_name, bytes)) = upload.file.filter(|(n, b)| !n.is_empty() || !b.is_empty())
    else {
        let error = "choose a file to upload".to_owned();
        return media_page(&state, &session, None, Some(error)).await;
    };
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or(file_name);
    let actor = Actor::new(session.username.as_str())?;
    match state
        .orchestrator
        .add_medium(&actor, &name, bytes, replace)
        .await
    {
        Ok(_) => Ok(Redirect::to("/media?done=medium_saved").into_response()),
        Err(e) if e.is_invalid_input() => {
            media_page(&state, &session, None, Some(e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /media/{id}/delete`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    let actor = Actor::new(session.username.as_str())?;
    state.orchestrator.remove_medium(&actor, id).await?;
    Ok(Redirect::to("/media?done=medium_removed").into_response())
}

/// `GET /media/{id}/file`: the bytes, with their sniffed type; an attachment unless it is an
/// image, which the page shows. Nothing in them runs: `nosniff` and a CSP that allows nothing.
pub(crate) async fn file(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<i64>,
) -> PageResult<Response> {
    let medium = state.orchestrator.medium(&id.to_string()).await?;
    let bytes = state.orchestrator.medium_bytes(&medium).await?;
    let disposition = match medium.content_type.starts_with("image/") {
        true => "inline".to_owned(),
        false => format!(
            "attachment; filename=\"{}\"",
            medium.name.replace(['"', '\\'], "_")
        ),
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&medium.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"),
    );
    Ok(response)
}
