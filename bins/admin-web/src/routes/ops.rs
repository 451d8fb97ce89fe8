//! Operations: `/healthz`, `/metrics`, the embedded static assets and the page for unknown URLs.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broadcast_domain::BroadcastStatus;

use crate::auth::{Session, bearer};
use crate::error::{ApiError, PageError};
use crate::state::AppState;

/// The stylesheet, embedded in the binary.
const APP_CSS: &str = include_str!("../../static/app.css");
/// The script, embedded in the binary.
const APP_JS: &str = include_str!("../../static/app.js");

/// `GET /healthz`: 200 when the database answers, 503 otherwise. No authentication.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let db = state
        .orchestrator
        .ports()
        .broadcasts
        .list_broadcasts(&[BroadcastStatus::Running], 1)
        .await;
    let body = |status: &str, database: &str| {
        Json(serde_json::json!({
            "status": status,
            "database": database,
            "worker": state.worker_running,
        }))
    };
    match db {
        Ok(_) => (StatusCode::OK, body("ok", "ok")).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                body("unavailable", "unavailable"),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format; needs an API bearer token or a session.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let allowed = bearer(&headers).and_then(|t| state.api_actor(t)).is_some()
        || Session::from_headers(&state, &headers).await.is_some();
    if !allowed {
        return ApiError::unauthorized().into_response();
    }
    let backlog = match state.backlog().await {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&backlog, state.worker_running),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// `GET /static/app.css`.
pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /static/app.js`.
pub(crate) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /favicon.ico`: no icon (browsers ask on every page; answering keeps them from being
/// sent to the login page).
pub(crate) async fn favicon() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
        .into_response()
}

/// Unknown URLs: the login page without a session (nothing is revealed), 404 with one.
pub(crate) async fn not_found(_session: Session) -> PageError {
    PageError::NotFound("There is no page at this address.".to_owned())
}
