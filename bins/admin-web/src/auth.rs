//! Who is asking: the session cookie of the pages (with its CSRF token), the bearer token of the
//! API, and the client address used by login throttling.
//!
//! The session is a private cookie (`bc_session`): AES-256-GCM encrypted and authenticated with
//! a key derived from `ADMIN_SECRET_KEY`, so it can be neither read nor forged. It holds the
//! session's secret token, its CSRF token and its issue time. The server keeps every session
//! (`AdminStore::create_session`, by the SHA-256 of its token) and looks it up on every
//! request, so a session ends for good, also for a copy of the cookie, when its admin logs out,
//! logs out everywhere or changes the password, or when it expires after `session_ttl`. The
//! cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` when `PUBLIC_BASE_URL` is https;
//! changing `ADMIN_SECRET_KEY` ends every session too.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use broadcast_domain::{AdminSession, AdminStore};

use crate::error::{ApiError, PageError};
use crate::state::{AppState, constant_time_eq};

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "bc_session";
/// Name of the cookie holding the login form's CSRF token.
pub(crate) const LOGIN_COOKIE: &str = "bc_login";
/// Largest form body accepted (the CSV import has its own limit).
const FORM_LIMIT: usize = 1024 * 1024;

/// A fresh random token (256 bits, URL-safe base64).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionData {
    /// The session's secret token (the server keeps its SHA-256).
    s: String,
    /// CSRF token.
    c: String,
    /// Issued at, Unix seconds.
    t: i64,
}

/// A logged-in administrator.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Login name, the actor of audit entries.
    pub(crate) username: String,
    /// The token every form of this session must send back.
    pub(crate) csrf: String,
    /// The id of the session on the server (SHA-256 of its secret token, hex).
    pub(crate) id_hash: String,
}

/// The server's id of a session token.
fn session_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Session {
    /// Starts a session of `username` on the server; answers the cookie that carries it.
    pub(crate) async fn start(
        state: &AppState,
        username: &str,
    ) -> broadcast_domain::Result<Cookie<'static>> {
        let now = chrono::Utc::now();
        let token = random_token();
        let ttl = chrono::Duration::from_std(state.settings.session_ttl)
            .unwrap_or(chrono::Duration::hours(12));
        state
            .store
            .create_session(AdminSession {
                id_hash: session_id(&token),
                username: username.to_owned(),
                created_at: now,
                expires_at: now + ttl,
            })
            .await?;
        let data = SessionData {
            s: token,
            c: random_token(),
            t: now.timestamp(),
        };
        let value = serde_json::to_string(&data).expect("session data serialises");
        Ok(Cookie::build((SESSION_COOKIE, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(state.settings.https())
            .build())
    }

    /// The cookie that removes the session.
    pub(crate) fn removal() -> Cookie<'static> {
        Cookie::build((SESSION_COOKIE, "")).path("/").build()
    }

    /// Reads the session from the request's cookies and checks it on the server; `None` when
    /// absent, forged, ended or expired (a store that cannot answer is logged and counts as no
    /// session).
    pub(crate) async fn from_headers(state: &AppState, headers: &HeaderMap) -> Option<Session> {
        let jar = PrivateCookieJar::from_headers(headers, state.cookie_key.clone());
        let data: SessionData = serde_json::from_str(jar.get(SESSION_COOKIE)?.value()).ok()?;
        if data.s.is_empty() || data.c.is_empty() {
            return None;
        }
        let id_hash = session_id(&data.s);
        let found = match state.store.find_session(&id_hash, chrono::Utc::now()).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the session store");
                return None;
            }
        };
        Some(Session {
            username: found.username,
            csrf: data.c,
            id_hash,
        })
    }

    /// True when `token` is this session's CSRF token (compared in constant time).
    pub(crate) fn csrf_matches(&self, token: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), token.as_bytes())
    }
}

/// Where to send someone without a session: the login page, coming back here afterwards.
fn to_login(parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned())
    } else {
        "/".to_owned()
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &next)
        .finish();
    Redirect::to(&format!("/login?{query}")).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Session::from_headers(state, &parts.headers)
            .await
            .ok_or_else(|| to_login(parts))
    }
}

/// A URL-encoded form of a logged-in session whose `csrf` field matched the session's token.
#[derive(Debug)]
pub(crate) struct CsrfForm<T> {
    pub(crate) session: Session,
    pub(crate) form: T,
}

/// Reads the `csrf` field of a URL-encoded body.
pub(crate) fn csrf_field(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
}

/// The answer to a form without a valid CSRF token.
pub(crate) fn csrf_refused(state: &AppState) -> Response {
    state.metrics.record_csrf_rejection();
    PageError::Forbidden(
        "This form was not sent from a page of this panel, or the page is too old: the security \
         token is missing or wrong. Reload the page and try again."
            .to_owned(),
    )
    .into_response()
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            PageError::BadRequest(format!("the form is larger than {FORM_LIMIT} bytes"))
                .into_response()
        })?;
        match csrf_field(&bytes) {
            Some(token) if session.csrf_matches(&token) => {}
            _ => return Err(csrf_refused(state)),
        }
        let form = serde_html_form::from_bytes::<T>(&bytes).map_err(|e| {
            PageError::BadRequest(format!("the form is incomplete or malformed: {e}"))
                .into_response()
        })?;
        Ok(CsrfForm { session, form })
    }
}

/// A caller of the JSON API with a valid bearer token.
#[derive(Debug, Clone)]
pub(crate) struct ApiCaller {
    /// `api:<token fingerprint>`, the actor of audit entries.
    pub(crate) actor: String,
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        bearer(&parts.headers)
            .and_then(|token| state.api_actor(token))
            .map(|actor| ApiCaller { actor })
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The client's address: the TCP peer, or with `ADMIN_TRUST_PROXY` the last `X-Forwarded-For`
/// entry (the one the trusted proxy added).
pub(crate) fn client_ip(state: &AppState, parts_headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    if state.settings.trust_proxy
        && let Some(ip) = parts_headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    peer.ip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens_and_csrf_fields() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert_eq!(csrf_field(b"name=x&csrf=a%2Bb&y=1").as_deref(), Some("a+b"));
        assert_eq!(csrf_field(b"name=x"), None);
        assert_eq!(random_token().len(), 43);
        assert_ne!(random_token(), random_token());
    }
}
