//! The router: every page, the JSON API, the public endpoints, and the layers around them
//! (security headers, response metrics, request tracing, compression).

mod account;
mod api;
mod audience;
mod audit;
mod broadcasts;
mod dashboard;
mod login;
mod media;
mod ops;
mod progress;
mod templates;
mod unsubscribe;
mod upload;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use broadcast_domain::{Broadcast, BroadcastStatus};
use broadcast_orchestrator::Progress;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::present::ProgressView;
use crate::state::AppState;

/// Largest CSV upload accepted.
const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

/// Largest media upload accepted: Telegram's 50 MB, and room for the form around it (the
/// domain's check names the limit when a file is larger).
pub(crate) const MEDIA_LIMIT: usize = 51 * 1024 * 1024;

/// The content security policy of every response: only this origin's script and style, no
/// inline script, no framing by other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; object-src 'none'";

/// The progress of a broadcast (none for drafts, which have no recipient rows yet).
pub(crate) async fn progress_of(
    state: &AppState,
    b: &Broadcast,
) -> broadcast_domain::Result<Option<ProgressView>> {
    if b.status == BroadcastStatus::Draft {
        return Ok(None);
    }
    let stats = state.orchestrator.ports().deliveries.stats(b.id).await?;
    let p = Progress::from_stats(b.id, b.status, &stats, chrono::Utc::now());
    Ok(Some(ProgressView::from(&p)))
}

/// Adds the security headers and counts the response.
async fn headers_and_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    state.metrics.record_response(response.status().as_u16());
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A route that sets its own (the e-mail preview frame) keeps it.
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if state.settings.https() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Every route of the panel.
pub(crate) fn router(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        // The route's pattern, never the path itself (unsubscribe tokens stay out of logs).
        let path = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        tracing::info_span!("request", method = %req.method(), path)
    });
    Router::new()
        // Public: login, health, metrics (token or session), assets, unsubscribe.
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/logout/everywhere", post(login::logout_everywhere))
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/static/app.css", get(ops::css))
        .route("/static/app.js", get(ops::js))
        .route("/favicon.ico", get(ops::favicon))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::confirm).post(unsubscribe::one_click),
        )
        // Pages (session required).
        .route("/", get(dashboard::show))
        .route("/events", get(progress::all_events))
        .route("/templates", get(templates::list).post(templates::create))
        .route("/templates/new", get(templates::new_form))
        .route("/templates/live-preview", post(templates::live_preview))
        .route(
            "/templates/live-preview/{token}",
            get(templates::live_preview_email),
        )
        .route(
            "/templates/{id}",
            get(templates::edit).post(templates::update),
        )
        .route("/templates/{id}/delete", post(templates::delete))
        .route("/templates/{id}/preview", get(templates::preview))
        .route(
            "/templates/{id}/preview/email",
            get(templates::preview_email),
        )
        .route(
            "/broadcasts",
            get(broadcasts::list).post(broadcasts::create),
        )
        .route("/broadcasts/new", get(broadcasts::new_form))
        .route(
            "/broadcasts/audience-count",
            get(broadcasts::audience_count),
        )
        .route("/broadcasts/{id}", get(broadcasts::show))
        .route(
            "/broadcasts/{id}/launch",
            get(broadcasts::confirm_launch).post(broadcasts::launch),
        )
        .route("/broadcasts/{id}/pause", post(broadcasts::pause))
        .route("/broadcasts/{id}/resume", post(broadcasts::resume))
        .route("/broadcasts/{id}/cancel", post(broadcasts::cancel))
        .route("/broadcasts/{id}/schedule", post(broadcasts::schedule))
        .route(
            "/broadcasts/{id}/test",
            get(broadcasts::test_form).post(broadcasts::test_send),
        )
        .route("/broadcasts/{id}/recipients", get(broadcasts::recipients))
        .route(
            "/broadcasts/{id}/recipients.csv",
            get(broadcasts::recipients_csv),
        )
        .route("/broadcasts/{id}/progress", get(broadcasts::progress_json))
        .route("/broadcasts/{id}/events", get(progress::broadcast_events))
        .route("/audience", get(audience::list))
        .route("/audience/users/{id}", get(audience::user))
        .route(
            "/audience/import",
            get(audience::import_form)
                .post(audience::import)
                .layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route(
            "/media",
            get(media::list)
                .post(media::upload)
                .layer(DefaultBodyLimit::max(MEDIA_LIMIT)),
        )
        .route("/media/{id}/delete", post(media::delete))
        .route("/media/{id}/file", get(media::file))
        .route("/audit", get(audit::list))
        // JSON API (bearer token required).
        .nest("/api/v1", api::router())
        .fallback(ops::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers_and_metrics,
        ))
        .layer(trace)
        .layer(CompressionLayer::new())
        .with_state(state)
}
