//! The signed-in administrator's own account: changing the password (which ends every other
//! session of theirs) and logging out everywhere.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum_extra::extract::cookie::PrivateCookieJar;
use broadcast_app::password::{MIN_PASSWORD_CHARS, hash_password, verify_password};
use broadcast_domain::{AdminStore, Error};
use serde::Deserialize;

use crate::auth::{CsrfForm, Session};
use crate::error::PageResult;
use crate::state::AppState;
use crate::views::{notice, page};

#[derive(Debug, Deserialize)]
pub(crate) struct AccountQuery {
    done: Option<String>,
}

fn account_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    error: Option<&str>,
    done: Option<&str>,
) -> PageResult {
    let mut ctx = page(session, "account", "Your account");
    ctx.insert("error", &error);
    ctx.insert("min_chars", &MIN_PASSWORD_CHARS);
    ctx.insert("notice", &notice(done));
    Ok((status, state.views.render("account.html", &ctx)?).into_response())
}

/// `GET /account`.
pub(crate) async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AccountQuery>,
) -> PageResult {
    account_page(&state, &session, StatusCode::OK, None, q.done.as_deref())
}

/// The form; no `Debug`, so the passwords cannot end up in a log line.
#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

/// `POST /account/password`: checks the current password, stores the new one (which ends
/// every session of this administrator, see `AdminStore::set_admin_password`) and starts a
/// new session for this browser.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    form: CsrfForm<PasswordForm>,
) -> PageResult {
    let session = form.session;
    let form = form.form;
    let refuse =
        |why: &str| account_page(&state, &session, StatusCode::BAD_REQUEST, Some(why), None);
    let Some(admin) = state.store.find_admin(&session.username).await? else {
        return refuse("Your administrator account no longer exists.");
    };
    let current = form.current_password;
    let hash = admin.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&current, &hash))
        .await
        .map_err(|e| anyhow::anyhow!("password check panicked: {e}"))?;
    if !matches {
        tracing::warn!(user = %session.username, "password change refused: wrong current password");
        return refuse("The current password is wrong; nothing was changed.");
    }
    if form.new_password != form.new_password_again {
        return refuse("The two new passwords differ; nothing was changed.");
    }
    let new = form.new_password;
    let hashed = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| anyhow::anyhow!("password hashing panicked: {e}"))?;
    let hash = match hashed {
        Ok(hash) => hash,
        Err(Error::Invalid(why)) => return refuse(&format!("{why}; nothing was changed.")),
        Err(e) => return Err(e.into()),
    };
    let actor = broadcast_domain::Actor::new(session.username.as_str())?;
    state
        .orchestrator
        .set_admin_password(&actor, &session.username, &hash, "panel")
        .await?;
    let cookie = Session::start(&state, &session.username).await?;
    Ok((
        jar.add(cookie),
        Redirect::to("/account?done=password_changed"),
    )
        .into_response())
}
