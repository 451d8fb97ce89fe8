//! Login and logout.
//!
//! The login form carries its own CSRF token (a private `bc_login` cookie set with the form),
//! so a foreign site cannot log a browser into someone else's account. Failed logins are
//! slowed down and locked by [`crate::throttle::LoginThrottle`]; an unknown user name costs
//! as much time as a wrong password.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use broadcast_domain::AdminStore;
use serde::Deserialize;
use tera::Context;

use crate::auth::{CsrfForm, LOGIN_COOKIE, Session, client_ip, random_token};
use crate::error::PageResult;
use crate::metrics::LoginOutcome;
use crate::state::{AppState, constant_time_eq};
use crate::views::notice;

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// Only local paths are followed after login (no `//host` or `https://` redirects).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn login_page(
    state: &AppState,
    jar: PrivateCookieJar,
    status: StatusCode,
    username: &str,
    next: &str,
    error: Option<String>,
    notice_text: Option<&str>,
) -> PageResult {
    // Keep the token of a login form already open (another tab, a favicon request that ended
    // here): a new token would make that form fail.
    let token = jar
        .get(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| t.len() >= 32)
        .unwrap_or_else(random_token);
    let jar = jar.add(
        Cookie::build((LOGIN_COOKIE, token.clone()))
            .path("/login")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(state.settings.https())
            .build(),
    );
    let mut ctx = Context::new();
    ctx.insert("title", "Log in");
    ctx.insert("app_name", &state.settings.worker.app_name);
    ctx.insert("csrf", &token);
    ctx.insert("next", next);
    ctx.insert("username", username);
    ctx.insert("error", &error);
    ctx.insert("notice", &notice_text);
    let html = state.views.render("login.html", &ctx)?;
    Ok((status, jar, html).into_response())
}

/// `GET /login`: the form (or straight on, with a valid session).
pub(crate) async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Query(q): Query<LoginQuery>,
) -> PageResult {
    let next = safe_next(q.next.as_deref());
    if Session::from_headers(&state, &headers).is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    login_page(
        &state,
        jar,
        StatusCode::OK,
        "",
        &next,
        None,
        notice(q.done.as_deref()),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    let username = form.username.trim().to_owned();
    let expected = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if !expected
        .is_some_and(|t| !t.is_empty() && constant_time_eq(t.as_bytes(), form.csrf.as_bytes()))
    {
        state.metrics.record_csrf_rejection();
        return login_page(
            &state,
            jar,
            StatusCode::FORBIDDEN,
            &username,
            &next,
            Some(
                "The login form expired or was not sent from this panel. Please try again."
                    .to_owned(),
            ),
            None,
        );
    }
    let ip = client_ip(&state, &headers, peer);
    if let Err(locked) = state.throttle.check(&username, ip, Instant::now()) {
        state.metrics.record_login(LoginOutcome::Locked);
        tracing::warn!(%ip, "login refused: too many failed attempts");
        let secs = locked.retry_after.as_secs().max(1);
        let mut response = login_page(
            &state,
            jar,
            StatusCode::TOO_MANY_REQUESTS,
            &username,
            &next,
            Some(format!(
                "Too many failed logins for this user or from this address. Try again in {secs} s."
            )),
            None,
        )?;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }

    let admin = if username.is_empty() {
        None
    } else {
        state.store.find_admin(&username).await?
    };
    // Verify even when the user is unknown, against a dummy hash, so both take as long.
    let hash = admin
        .as_ref()
        .map_or_else(|| state.dummy_hash.clone(), |a| a.password_hash.clone());
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || {
        broadcast_app::password::verify_password(&password, &hash)
    })
    .await
    .map_err(|e| anyhow::anyhow!("password check panicked: {e}"))?;

    match admin {
        Some(admin) if matches => {
            state.throttle.success(&admin.username);
            state.metrics.record_login(LoginOutcome::Success);
            state
                .store
                .record_login(&admin.username, chrono::Utc::now())
                .await?;
            state
                .audit(
                    &admin.username,
                    "admin.login",
                    "admin_user",
                    Some(admin.id),
                    serde_json::json!({ "ip": ip.to_string() }),
                )
                .await;
            tracing::info!(user = %admin.username, "logged in");
            let jar = jar
                .remove(Cookie::build(LOGIN_COOKIE).path("/login").build())
                .add(Session::cookie(&state, &admin.username));
            Ok((jar, Redirect::to(&next)).into_response())
        }
        _ => {
            let delay = state.throttle.failure(&username, ip, Instant::now());
            state.metrics.record_login(LoginOutcome::Failure);
            tracing::warn!(%ip, "failed login");
            tokio::time::sleep(delay).await;
            login_page(
                &state,
                jar,
                StatusCode::UNAUTHORIZED,
                &username,
                &next,
                Some("Wrong user name or password.".to_owned()),
                None,
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    form: CsrfForm<Empty>,
) -> Response {
    state
        .audit(
            &form.session.username,
            "admin.logout",
            "admin_user",
            None,
            serde_json::json!({}),
        )
        .await;
    let jar = jar.remove(Session::removal());
    (jar, Redirect::to("/login?done=logged_out")).into_response()
}
