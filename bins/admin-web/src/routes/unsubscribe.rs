//! The public unsubscribe endpoint of the links in every e-mail.
//!
//! `GET /unsubscribe/<token>` shows a confirmation page (link scanners that follow GET links
//! must not unsubscribe anyone); `POST /unsubscribe/<token>` unsubscribes, which is also the
//! RFC 8058 one-click request mail providers send with `List-Unsubscribe=One-Click`. The token
//! is signed per user (HMAC with `ADMIN_SECRET_KEY`), so ids cannot be guessed; an invalid or
//! foreign token gets a 404 page. Unsubscribing twice is fine.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broadcast_domain::{Error, User};
use tera::Context;

use crate::error::{PageError, PublicResult};
use crate::state::AppState;
use broadcast_domain::Actor;

/// `an•••@example.org`: enough to recognise one's address, not enough to harvest it.
fn masked(user: &User) -> String {
    let Some(email) = &user.email else {
        return "your address".to_owned();
    };
    let email = email.as_ref();
    match email.split_once('@') {
        Some((local, domain)) => {
            let shown: String = local.chars().take(2).collect();
            format!("{shown}•••@{domain}")
        }
        None => "your address".to_owned(),
    }
}

fn invalid_link() -> PageError {
    PageError::NotFound(
        "This unsubscribe link is not valid. Use the link from the most recent e-mail.".to_owned(),
    )
}

async fn user_of(state: &AppState, token: &str) -> PublicResult<User> {
    let id = state.links.verify(token).ok_or_else(invalid_link)?;
    match state.orchestrator.ports().audience.get_user(id).await {
        Ok(u) => Ok(u),
        Err(Error::NotFound { .. }) => Err(invalid_link().into()),
        Err(e) => Err(e.into()),
    }
}

fn render(state: &AppState, token: &str, user: &User, done: bool) -> PublicResult {
    let mut ctx = Context::new();
    ctx.insert("title", if done { "Unsubscribed" } else { "Unsubscribe" });
    ctx.insert("app_name", &state.settings.worker.app_name);
    ctx.insert("notice", &None::<String>);
    ctx.insert("token", token);
    ctx.insert("address", &masked(user));
    ctx.insert("done", &done);
    let mut response = state
        .views
        .render("unsubscribe.html", &ctx)?
        .into_response();
    response.headers_mut().insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// `GET /unsubscribe/{token}`: the confirmation page.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> PublicResult {
    let user = user_of(&state, &token).await?;
    render(&state, &token, &user, user.email_unsubscribed_at.is_some())
}

/// `POST /unsubscribe/{token}`: unsubscribes (one click, RFC 8058).
pub(crate) async fn one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> PublicResult<Response> {
    let user = user_of(&state, &token).await?;
    // The user acts on their own behalf, through the link.
    let actor = Actor::new(format!("user:{}", user.id))?;
    if state
        .orchestrator
        .unsubscribe_email(&actor, user.id, "link")
        .await?
    {
        state.metrics.record_unsubscribe();
        tracing::info!(user = user.id, "unsubscribed from e-mail");
    }
    let mut response = render(&state, &token, &user, true)?;
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}
