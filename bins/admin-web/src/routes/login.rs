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
use axum::response::{IntoResponse, Redirect};
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use broadcast_domain::AdminStore;
use serde::Deserialize;
use tera::Context;

use crate::auth::{CsrfForm, LOGIN_COOKIE, Session, client_ip, random_token};
use crate::error::PublicResult;
use crate::metrics::LoginOutcome;
use crate::state::{AppState, constant_time_eq};
use crate::views::notice;

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// Where to go after login: `next` when it is a path of this site, `/` otherwise.
///
/// Browsers drop ASCII control characters from a `Location` and read `\` as `/`, so
/// `/<TAB>/evil.example` or `/\evil.example` would lead to another site. `next` is accepted
/// only when, with every control character removed, both as given and percent-decoded once
/// more (a doubled encoding must not hide `//`), it is an absolute path without `\` that
/// resolves on this site; the answer is that path as the URL parser serialises it (ASCII,
/// percent-encoded), so it is always a valid header value.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    const SITE: &str = "http://panel.invalid/";
    let home = || "/".to_owned();
    let Some(raw) = next else { return home() };
    let Ok(site) = url::Url::parse(SITE) else {
        return home();
    };
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_ascii_control()).collect() };
    let given = clean(raw);
    let decoded = clean(&percent_decode(&given));
    let local = |path: &str| {
        let mut chars = path.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !path.contains('\\')
            && site
                .join(path)
                .is_ok_and(|u| u.scheme() == "http" && u.host_str() == Some("panel.invalid"))
    };
    if !local(&given) || !local(&decoded) {
        return home();
    }
    match site.join(&given) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        Err(_) => home(),
    }
}

/// `s` with each `%XX` decoded (invalid UTF-8 replaced); a `%` not followed by two hex digits
/// is kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed() {
        for (next, expected) in [
            ("/audit", "/audit"),
            (
                "/broadcasts/1/recipients?status=failed",
                "/broadcasts/1/recipients?status=failed",
            ),
            (
                "/templates?q=%C5%81%C3%B3d%C5%BA",
                "/templates?q=%C5%81%C3%B3d%C5%BA",
            ),
            ("/templates?q=Łódź", "/templates?q=%C5%81%C3%B3d%C5%BA"),
            ("/a/../audit", "/audit"),
            // Decoded once by the query extractor and once here, it is still a path of this
            // site (a browser asks this server for `/%252F/evil.example`).
            ("/%25252F/evil.example", "/%25252F/evil.example"),
        ] {
            assert_eq!(safe_next(Some(next)), expected, "{next:?}");
        }
        for next in [
            "https://evil.example/",
            "//evil.example/",
            "/\t/evil.example/",
            "/\t\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "///evil.example",
            "/\u{0}/evil.example",
        ] {
            assert_eq!(safe_next(Some(next)), "/", "{next:?}");
        }
        assert_eq!(safe_next(None), "/");
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
) -> PublicResult {
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
) -> PublicResult {
    let next = safe_next(q.next.as_deref());
    if Session::from_headers(&state, &headers).await.is_some() {
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
) -> PublicResult {
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
        audit_refused(&state, "admin.login_locked", &username, ip).await;
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
            let session = Session::start(&state, &admin.username).await?;
            let jar = jar
                .remove(Cookie::build(LOGIN_COOKIE).path("/login").build())
                .add(session);
            Ok((jar, Redirect::to(&next)).into_response())
        }
        _ => {
            let delay = state.throttle.failure(&username, ip, Instant::now());
            state.metrics.record_login(LoginOutcome::Failure);
            tracing::warn!(%ip, "failed login");
            audit_refused(&state, "admin.login_failed", &username, ip).await;
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

/// Records a refused login in the audit log: the name tried and the address, never the
/// password. The actor is `anonymous`: nobody is known to be asking.
async fn audit_refused(state: &AppState, action: &str, username: &str, ip: std::net::IpAddr) {
    // A name typed into the form is untrusted input: stored as text, cut to a sane length.
    let tried: String = username.chars().take(100).collect();
    state
        .audit(
            "anonymous",
            action,
            "admin_user",
            None,
            serde_json::json!({ "username": tried, "ip": ip.to_string() }),
        )
        .await;
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `POST /logout`: ends this session on the server, so a copy of its cookie opens nothing.
pub(crate) async fn logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    form: CsrfForm<Empty>,
) -> PublicResult {
    state.store.end_session(&form.session.id_hash).await?;
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
    Ok((jar, Redirect::to("/login?done=logged_out")).into_response())
}

/// `POST /logout/everywhere`: ends every session of this administrator, on every device.
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    form: CsrfForm<Empty>,
) -> PublicResult {
    let username = &form.session.username;
    let ended = state
        .store
        .end_sessions(username, chrono::Utc::now())
        .await?;
    state
        .audit(
            username,
            "admin.logout_everywhere",
            "admin_user",
            None,
            serde_json::json!({ "sessions": ended }),
        )
        .await;
    let jar = jar.remove(Session::removal());
    Ok((jar, Redirect::to("/login?done=logged_out_everywhere")).into_response())
}
