//! The two error types of the panel: [`PageError`] answers with an HTML page, [`ApiError`] with
//! the API's JSON shape `{"error":{"code":"not_found","message":"..."}}`. Both show the user a
//! safe message and log the whole cause chain of internal errors.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use broadcast_domain::{Error, TemplateError, TemplateErrorKind};
use serde::Serialize;

/// Escapes text for HTML (element content and quoted attributes).
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The error and its causes on one line, for logs.
fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A failure of a page handler.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404 with a message.
    NotFound(String),
    /// 400: the input is wrong; the message says what to fix.
    BadRequest(String),
    /// 403: a form without a valid CSRF token.
    Forbidden(String),
    /// 409: refused in the current state (a lifecycle transition, a taken name).
    Conflict(String),
    /// 503: the database is unreachable.
    Unavailable(String),
    /// 500: logged in full, shown as a generic message.
    Internal(anyhow::Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => Self::NotFound(e.to_string()),
            Error::Invalid(_) | Error::Template(_) => Self::BadRequest(e.to_string()),
            Error::Conflict(_) => Self::Conflict(e.to_string()),
            Error::Unavailable(_) => Self::Unavailable(e.to_string()),
            Error::Internal(_) => Self::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl From<tera::Error> for PageError {
    fn from(e: tera::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("cannot render the page"))
    }
}

/// The panel's menu as on every page (without the logout form, which needs the session: the
/// account page has it), for error pages.
const MENU: &str = "<header class=\"top\"><a class=\"brand\" href=\"/\">Broadcast</a>\
    <input type=\"checkbox\" id=\"menu-toggle\" class=\"menu-toggle\" aria-controls=\"menu\">\
    <label for=\"menu-toggle\" class=\"menu-button\">Menu</label>\
    <div class=\"menu\" id=\"menu\"><nav aria-label=\"Main\"><a href=\"/\">Dashboard</a>\
    <a href=\"/templates\">Templates</a><a href=\"/broadcasts\">Broadcasts</a>\
    <a href=\"/audience\">Audience</a><a href=\"/audit\">Audit log</a></nav>\
    <div class=\"logout\"><a class=\"who\" href=\"/account\">Your account</a></div></div></header>";

/// A minimal page (it needs no template engine, so it works when rendering itself failed),
/// with the panel's menu when `menu`; pages people outside the panel see have none.
fn error_page(status: StatusCode, title: &str, message: &str, menu: bool) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Broadcast admin</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         </head><body{class}>{menu}<main class=\"narrow\"><h1>{title}</h1>\
         <p class=\"error-message\">{message}</p>{back}</main></body></html>",
        title = escape_html(title),
        message = escape_html(message),
        class = if menu { "" } else { " class=\"plain\"" },
        menu = if menu { MENU } else { "" },
        back = if menu {
            "<p><a href=\"/\">Back to the dashboard</a></p>"
        } else {
            ""
        },
    );
    (status, Html(body)).into_response()
}

impl PageError {
    /// Status, title and the message people may see (internal causes are logged instead).
    fn shown(self) -> (StatusCode, &'static str, String) {
        match self {
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "Invalid input", m),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m),
            Self::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The database does not answer right now; try again in a moment.".to_owned(),
                )
            }
            Self::Internal(e) => {
                tracing::error!(error = %chain(&e), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request failed; the details are in the server log.".to_owned(),
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = self.shown();
        error_page(status, title, &message, true)
    }
}

/// A [`PageError`] of a page people outside the panel see (login, unsubscribe): the same
/// page without the panel's menu.
#[derive(Debug)]
pub(crate) struct PublicError(PageError);

impl<E: Into<PageError>> From<E> for PublicError {
    fn from(e: E) -> Self {
        PublicError(e.into())
    }
}

impl IntoResponse for PublicError {
    fn into_response(self) -> Response {
        let (status, title, message) = self.0.shown();
        error_page(status, title, &message, false)
    }
}

/// Result of a public page handler.
pub(crate) type PublicResult<T = Response> = Result<T, PublicError>;

/// Result of a page handler.
pub(crate) type PageResult<T = Response> = Result<T, PageError>;

/// An error of the JSON API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid API token as `Authorization: Bearer <token>`",
        )
    }
}

/// The problems of a template as JSON: part, line, column, message.
pub(crate) fn template_problems(errors: &[TemplateError]) -> serde_json::Value {
    serde_json::Value::Array(
        errors
            .iter()
            .map(|e| {
                let (line, column) = match &e.kind {
                    TemplateErrorKind::Syntax { line, column, .. } => (Some(*line), Some(*column)),
                    TemplateErrorKind::UnknownVariable { line, column, .. } => (*line, *column),
                    _ => (None, None),
                };
                serde_json::json!({
                    "part": e.part.as_str(),
                    "line": line,
                    "column": column,
                    "message": e.to_string(),
                })
            })
            .collect(),
    )
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => Self::not_found(e.to_string()),
            Error::Invalid(_) => Self::invalid(e.to_string()),
            Error::Template(ref t) => Self {
                details: Some(template_problems(std::slice::from_ref(t))),
                ..Self::new(StatusCode::BAD_REQUEST, "invalid_template", e.to_string())
            },
            Error::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            Error::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database does not answer right now; retry later",
                )
            }
            Error::Internal(_) => {
                tracing::error!(error = %e, "API request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed; the details are in the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInner {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"broadcast\""),
            );
        }
        response
    }
}

/// Result of an API handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
