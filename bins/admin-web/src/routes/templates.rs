//! Template pages: list, create, edit (validation problems shown at their line), delete and
//! preview for a chosen or the sample user.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use broadcast_domain::{
    AudienceFilter, Error, MediaRef, MessageTemplate, NewTemplate, ParseMode, TemplateContent,
    TemplateError, TemplateErrorKind, TemplatePart, UrlButton,
};
use broadcast_render::{SAMPLE_UNSUBSCRIBE_URL, catalogue, sample_env, sample_recipient};
use serde::{Deserialize, Serialize};

use crate::auth::{CsrfForm, Session};
use crate::error::{PageError, PageResult};
use crate::service;
use crate::state::AppState;
use crate::telegram_html::to_safe_html;
use crate::views::{SourceLine, fmt_time, notice, page, source_excerpt};

/// The template form as posted (and as shown again after a problem).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct TemplateForm {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) telegram_text: String,
    #[serde(default)]
    pub(crate) parse_mode: String,
    #[serde(default)]
    pub(crate) link_preview: Option<String>,
    /// The name of the medium the Telegram message shows; empty for none.
    #[serde(default)]
    pub(crate) telegram_medium: String,
    /// The URL buttons, one `Label -> URL` per line ([`buttons_text`]).
    #[serde(default)]
    pub(crate) telegram_buttons: String,
    #[serde(default)]
    pub(crate) email_subject: String,
    #[serde(default)]
    pub(crate) email_html: String,
    #[serde(default)]
    pub(crate) email_text: String,
}

fn nonempty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.replace("\r\n", "\n"))
}

impl TemplateForm {
    fn from_template(t: &MessageTemplate) -> Self {
        let c = &t.content;
        Self {
            name: t.name.to_string(),
            description: t.description.clone(),
            telegram_text: c.telegram_text.clone().unwrap_or_default(),
            parse_mode: c.parse_mode.to_string(),
            link_preview: c.link_preview.then(|| "true".to_owned()),
            telegram_medium: c
                .telegram_media
                .first()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            telegram_buttons: buttons_text(&c.telegram_buttons),
            email_subject: c.email_subject.clone().unwrap_or_default(),
            email_html: c.email_html.clone().unwrap_or_default(),
            email_text: c.email_text.clone().unwrap_or_default(),
        }
    }

    /// The content the form describes, or the field that does not parse and why.
    fn content(&self) -> Result<TemplateContent, (&'static str, &'static str, String)> {
        let parse_mode = if self.parse_mode.trim().is_empty() {
            ParseMode::Html
        } else {
            self.parse_mode
                .parse::<ParseMode>()
                .map_err(|e| ("parse_mode", "Parse mode", e.0))?
        };
        let telegram_buttons = parse_buttons(&self.telegram_buttons)
            .map_err(|e| ("telegram_buttons", "Buttons", e))?;
        Ok(TemplateContent {
            telegram_text: nonempty(&self.telegram_text),
            parse_mode,
            link_preview: self.link_preview.is_some(),
            telegram_media: nonempty(&self.telegram_medium)
                .map(|name| MediaRef::named(name.trim()))
                .into_iter()
                .collect(),
            telegram_buttons,
            email_subject: nonempty(&self.email_subject),
            email_html: nonempty(&self.email_html),
            email_text: nonempty(&self.email_text),
        })
    }
}

/// Buttons as the form writes them: one `Label -> URL` per line, each on a row of its own
/// unless the line starts with `+`, which puts it on the row of the line before.
fn buttons_text(rows: &[Vec<UrlButton>]) -> String {
    let mut text = String::new();
    for row in rows {
        for (i, b) in row.iter().enumerate() {
            let join = if i > 0 { "+ " } else { "" };
            text.push_str(&format!("{join}{} -> {}\n", b.text, b.url));
        }
    }
    text
}

/// The rows of [`buttons_text`] back; a line without ` -> ` is refused naming it.
fn parse_buttons(text: &str) -> Result<Vec<Vec<UrlButton>>, String> {
    let mut rows: Vec<Vec<UrlButton>> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (join, line) = match line.strip_prefix('+') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let Some((label, url)) = line.split_once("->") else {
            return Err(format!(
                "line {}: write a button as `Label -> URL`, not `{line}`",
                n + 1
            ));
        };
        let button = UrlButton {
            text: label.trim().to_owned(),
            url: url.trim().to_owned(),
        };
        match rows.last_mut() {
            Some(row) if join => row.push(button),
            None if join => {
                return Err(format!(
                    "line {}: `+` joins the row of the line before, and there is none",
                    n + 1
                ));
            }
            _ => rows.push(vec![button]),
        }
    }
    Ok(rows)
}

/// A problem as the form shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    part: String,
    part_label: &'static str,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
    excerpt: Vec<SourceLine>,
}

fn part_label(part: TemplatePart) -> &'static str {
    match part {
        TemplatePart::TelegramText => "Telegram text",
        TemplatePart::EmailSubject => "E-mail subject",
        TemplatePart::EmailHtml => "E-mail HTML body",
        TemplatePart::EmailText => "E-mail plain-text body",
        TemplatePart::TelegramButtons => "Buttons",
    }
}

/// The 1-based line and column of the first use of `name` in `source`, when it can be found.
fn find_variable(source: &str, name: &str) -> Option<(usize, usize)> {
    source.lines().enumerate().find_map(|(i, line)| {
        line.find(name)
            .map(|col| (i + 1, line[..col].chars().count() + 1))
    })
}

fn problem(e: &TemplateError, content: &TemplateContent) -> Problem {
    let source = content.part(e.part).unwrap_or_default();
    let (line, column) = match &e.kind {
        TemplateErrorKind::Syntax { line, column, .. } => (Some(*line), Some(*column)),
        TemplateErrorKind::UnknownVariable {
            name, line, column, ..
        } => match (line, column) {
            (Some(l), c) => (Some(*l), *c),
            _ => find_variable(source, name).map_or((None, None), |(l, c)| (Some(l), Some(c))),
        },
        _ => (None, None),
    };
    Problem {
        part: e.part.to_string(),
        part_label: part_label(e.part),
        line,
        column,
        message: match &e.kind {
            // The line and column are shown separately.
            TemplateErrorKind::Syntax { message, .. } => message.clone(),
            TemplateErrorKind::UnknownVariable { name, known, .. } => format!(
                "unknown variable `{name}`; known variables: {}",
                known.join(", ")
            ),
            other => other.to_string(),
        },
        excerpt: line.map_or_else(Vec::new, |l| source_excerpt(source, l, column)),
    }
}

fn simple_problem(part: &str, label: &'static str, message: String) -> Problem {
    Problem {
        part: part.to_owned(),
        part_label: label,
        line: None,
        column: None,
        message,
        excerpt: Vec::new(),
    }
}

async fn form_page(
    state: &AppState,
    session: &Session,
    id: Option<i64>,
    version: Option<i32>,
    form: &TemplateForm,
    problems: &[Problem],
    notice_text: Option<&str>,
) -> PageResult<Response> {
    let title = if id.is_some() {
        "Edit template"
    } else {
        "New template"
    };
    let mut ctx = page(session, "templates", title);
    ctx.insert("notice", &notice_text);
    ctx.insert("id", &id);
    ctx.insert("version", &version);
    ctx.insert("form", form);
    ctx.insert("problems", problems);
    let errors_in: std::collections::BTreeMap<&str, bool> =
        problems.iter().map(|p| (p.part.as_str(), true)).collect();
    ctx.insert("errors_in", &errors_in);
    ctx.insert(
        "parse_modes",
        &ParseMode::ALL
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
    );
    let variables: Vec<_> = catalogue()
        .iter()
        .map(|v| serde_json::json!({ "name": v.name, "description": v.description, "example": v.example }))
        .collect();
    ctx.insert("variables", &variables);
    let media: Vec<_> = match state.orchestrator.list_media().await {
        Ok(media) => media
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "label": format!("{} ({}, {})", m.name, m.kind, broadcast_domain::human_size(m.size)),
                })
            })
            .collect(),
        // A program without a media library offers none.
        Err(Error::Invalid(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let chosen = form.telegram_medium.trim();
    let missing = !chosen.is_empty() && !media.iter().any(|m| m["name"] == chosen);
    ctx.insert("medium_missing", &missing);
    ctx.insert("media", &media);
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, state.views.render("template_form.html", &ctx)?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// `GET /templates`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Done>,
) -> PageResult<Response> {
    let templates = state
        .orchestrator
        .ports()
        .templates
        .list_templates()
        .await?;
    let rows: Vec<_> = templates
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "telegram": t.content.supports(broadcast_domain::MessageFormat::Chat),
                "parse_mode": t.content.parse_mode,
                "email": t.content.supports(broadcast_domain::MessageFormat::Email),
                "version": t.version,
                "updated": fmt_time(t.updated_at),
            })
        })
        .collect();
    let mut ctx = page(&session, "templates", "Templates");
    ctx.insert("notice", &notice(q.done.as_deref()));
    ctx.insert("templates", &rows);
    Ok(state
        .views
        .render("templates_list.html", &ctx)?
        .into_response())
}

/// `GET /templates/new`.
pub(crate) async fn new_form(State(state): State<AppState>, session: Session) -> PageResult {
    let form = TemplateForm {
        parse_mode: ParseMode::Html.to_string(),
        ..TemplateForm::default()
    };
    form_page(&state, &session, None, None, &form, &[], None).await
}

/// Checks a posted form: the template to store, or the problems to show.
fn check(state: &AppState, form: &TemplateForm) -> Result<NewTemplate, Vec<Problem>> {
    let content = form.content();
    let (field, label) = match &content {
        Err((field, label, _)) => (*field, *label),
        Ok(_) => ("parse_mode", "Parse mode"),
    };
    let content = content.map_err(|(_, _, e)| e);
    service::check_template(state, &form.name, &form.description, content).map_err(|p| {
        let mut problems = Vec::new();
        if let Some(e) = p.name {
            problems.push(simple_problem("name", "Name", e));
        }
        if let Some(e) = p.content {
            problems.push(simple_problem(field, label, e));
        }
        if let Some((content, errors)) = &p.render {
            problems.extend(errors.iter().map(|e| problem(e, content)));
        }
        problems
    })
}

/// A refusal on saving as a problem on the form: a name another template has, a medium that is
/// not in the library; any other error is the page's.
fn refusal(e: Error) -> Result<Problem, Error> {
    match e {
        Error::Conflict(m) => Ok(simple_problem("name", "Name", m)),
        Error::Invalid(m) => Ok(simple_problem("telegram_medium", "Medium", m)),
        e => Err(e),
    }
}

/// `POST /templates`.
pub(crate) async fn create(
    State(state): State<AppState>,
    CsrfForm { session, form }: CsrfForm<TemplateForm>,
) -> PageResult {
    let new = match check(&state, &form) {
        Ok(new) => new,
        Err(problems) => {
            return form_page(&state, &session, None, None, &form, &problems, None).await;
        }
    };
    match service::create_template(&state, &session.username, new).await {
        Ok(t) => {
            Ok(Redirect::to(&format!("/templates/{}?done=template_created", t.id)).into_response())
        }
        Err(e) => form_page(&state, &session, None, None, &form, &[refusal(e)?], None).await,
    }
}

/// `GET /templates/{id}`.
pub(crate) async fn edit(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<Done>,
) -> PageResult {
    let t = service::template(&state, id).await?;
    form_page(
        &state,
        &session,
        Some(id),
        Some(t.version),
        &TemplateForm::from_template(&t),
        &[],
        notice(q.done.as_deref()),
    )
    .await
}

/// `POST /templates/{id}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, form }: CsrfForm<TemplateForm>,
) -> PageResult {
    let current = service::template(&state, id).await?;
    let new = match check(&state, &form) {
        Ok(new) => new,
        Err(problems) => {
            return form_page(
                &state,
                &session,
                Some(id),
                Some(current.version),
                &form,
                &problems,
                None,
            )
            .await;
        }
    };
    match service::update_template(&state, &session.username, id, new).await {
        Ok(_) => Ok(Redirect::to(&format!("/templates/{id}?done=template_saved")).into_response()),
        Err(e) => {
            let problem = refusal(e)?;
            form_page(
                &state,
                &session,
                Some(id),
                Some(current.version),
                &form,
                &[problem],
                None,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `POST /templates/{id}/delete`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    service::delete_template(&state, &session.username, id).await?;
    Ok(Redirect::to("/templates?done=template_deleted").into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewQuery {
    #[serde(default)]
    user_id: Option<String>,
}

impl PreviewQuery {
    /// The chosen user, `None` for the sample recipient.
    fn user(&self) -> Result<Option<i64>, PageError> {
        let Some(raw) = self
            .user_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        raw.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                PageError::BadRequest(format!("`{raw}` is not a user id (a positive number)"))
            })
    }
}

/// A template rendered for the preview page.
struct Rendered {
    /// Who it was rendered for, and with which registration.
    recipient: String,
    picked: Option<String>,
    telegram: Option<Result<broadcast_domain::TelegramMessage, String>>,
    email: Option<Result<broadcast_domain::EmailMessage, String>>,
}

/// Renders `content` for a chosen user (with their first registration, named in `picked`) or
/// for the sample recipient. An unknown user is the only error: one clear message.
async fn render_for(
    state: &AppState,
    content: &TemplateContent,
    user: Option<i64>,
) -> Result<Rendered, String> {
    match user {
        Some(user) => {
            let preview = state
                .orchestrator
                .preview_for_user(content, "Preview", user, &AudienceFilter::default())
                .await;
            match preview {
                Ok((p, picked)) => Ok(Rendered {
                    recipient: format!("{} (user {})", p.full_name, p.user_id),
                    picked: Some(picked),
                    telegram: p.telegram,
                    email: p.email,
                }),
                Err(Error::NotFound { .. }) => Err(format!(
                    "There is no user with id {user}: choose another, or leave the field empty \
                     for the sample recipient."
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        None => {
            let p = state
                .orchestrator
                .preview_sample(
                    content,
                    &sample_recipient(),
                    &sample_env(),
                    Some(SAMPLE_UNSUBSCRIBE_URL),
                )
                .map_err(|e| e.to_string())?;
            Ok(Rendered {
                recipient: format!("the sample recipient ({})", p.full_name),
                picked: None,
                telegram: p.telegram,
                email: p.email,
            })
        }
    }
}

/// A rendered Telegram message as the previews show it: Telegram's HTML made safe to show,
/// the length Telegram counts, or the error.
fn telegram_view(
    r: Result<broadcast_domain::TelegramMessage, String>,
    parse_mode: ParseMode,
) -> serde_json::Value {
    match r {
        Ok(m) => {
            // The medium as the library serves it now (a photo shown, anything else named).
            let medium = m.media.first().map(|medium| {
                serde_json::json!({
                    "url": format!("/media/{}/file", medium.medium),
                    "name": medium.name,
                    "kind": medium.kind,
                    "photo": medium.kind == broadcast_domain::MediaKind::Photo,
                })
            });
            let limit = match medium {
                Some(_) => broadcast_render::TELEGRAM_CAPTION_LIMIT,
                None => broadcast_render::TELEGRAM_TEXT_LIMIT,
            };
            serde_json::json!({
                "parse_mode": m.parse_mode,
                "html": (m.parse_mode == ParseMode::Html).then(|| to_safe_html(&m.text)),
                "text": m.text,
                "length": broadcast_render::telegram_length(&m.text, m.parse_mode),
                "limit": limit,
                "medium": medium,
                "buttons": m.buttons,
                "note": (m.parse_mode == ParseMode::MarkdownV2)
                    .then_some("MarkdownV2 is shown as written."),
                "error": None::<String>,
            })
        }
        Err(e) => serde_json::json!({ "parse_mode": parse_mode, "error": e }),
    }
}

/// `POST /templates/live-preview`: the editor's form, unsaved, rendered for the sample
/// recipient, as JSON for the preview beside the editor: `problems` (each with its part and
/// line) or the `telegram` and `email` parts (the e-mail's HTML through `email.frame`).
pub(crate) async fn live_preview(
    State(state): State<AppState>,
    CsrfForm { form, .. }: CsrfForm<TemplateForm>,
) -> Response {
    let mut content = match form.content() {
        Ok(c) => c,
        Err((_, label, e)) => {
            let problem = format!("{label}: {e}");
            return axum::Json(serde_json::json!({ "problems": [problem] })).into_response();
        }
    };
    // The medium as the library holds it, so that the preview shows it.
    if let Err(e) = state.orchestrator.resolve_media(&mut content).await {
        let problem = format!("Medium: {e}");
        return axum::Json(serde_json::json!({ "problems": [problem] })).into_response();
    }
    let problems: Vec<String> = state
        .orchestrator
        .ports()
        .renderer
        .validate(&content)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !problems.is_empty() {
        return axum::Json(serde_json::json!({ "problems": problems })).into_response();
    }
    let rendered = match render_for(&state, &content, None).await {
        Ok(r) => r,
        Err(e) => return axum::Json(serde_json::json!({ "problems": [e] })).into_response(),
    };
    let email = rendered.email.map(|r| match r {
        Ok(m) => serde_json::json!({
            "subject": m.subject,
            "frame": m.html.map(|html| format!("/templates/live-preview/{}", state.keep_live_preview(html))),
            "text": m.text,
            "error": None::<String>,
        }),
        Err(e) => serde_json::json!({ "error": e }),
    });
    axum::Json(serde_json::json!({
        "problems": [],
        "recipient": rendered.recipient,
        "telegram": rendered.telegram.map(|r| telegram_view(r, content.parse_mode)),
        "email": email,
    }))
    .into_response()
}

/// `GET /templates/live-preview/{token}`: a live preview's e-mail HTML, for its frame.
pub(crate) async fn live_preview_email(
    State(state): State<AppState>,
    _session: Session,
    Path(token): Path<String>,
) -> PageResult<Response> {
    let html = state.live_preview(&token).ok_or_else(|| {
        PageError::NotFound("this preview is no longer kept; edit the template again".to_owned())
    })?;
    Ok(email_frame(html))
}

/// E-mail HTML under the frame's own policy.
fn email_frame(html: String) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, EMAIL_FRAME_CSP),
            (axum::http::header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        html,
    )
        .into_response()
}

/// What the e-mail preview frame may do: show the message's own styles and images, and
/// nothing that runs (a sandbox without scripts, even when the frame is opened on its own).
const EMAIL_FRAME_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                               img-src data: https:; font-src data: https:; \
                               frame-ancestors 'self'; base-uri 'none'; form-action 'none'; \
                               sandbox";

/// `GET /templates/{id}/preview[?user_id=N]`.
pub(crate) async fn preview(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQuery>,
) -> PageResult {
    let t = service::template(&state, id).await?;
    let content = &t.content;
    let user_id = q.user()?;
    let mut ctx = page(&session, "templates", "Preview");
    ctx.insert(
        "template",
        &serde_json::json!({ "id": t.id, "name": t.name }),
    );
    ctx.insert("user_id", &user_id);
    let (telegram, email, error, recipient, picked) =
        match render_for(&state, content, user_id).await {
            Ok(r) => (r.telegram, r.email, None, Some(r.recipient), r.picked),
            Err(e) => (None, None, Some(e), None, None),
        };
    let telegram = telegram.map(|r| telegram_view(r, content.parse_mode));
    let frame = match user_id {
        Some(user) => format!("/templates/{id}/preview/email?user_id={user}"),
        None => format!("/templates/{id}/preview/email"),
    };
    let email = email.map(|r| match r {
        Ok(m) => serde_json::json!({
            "subject": m.subject, "has_html": m.html.is_some(), "frame": frame, "text": m.text,
            "error": None::<String>,
        }),
        Err(e) => serde_json::json!({ "error": e }),
    });
    ctx.insert("telegram", &telegram);
    ctx.insert("email", &email);
    ctx.insert("error", &error);
    ctx.insert("recipient", &recipient);
    ctx.insert("picked", &picked);
    Ok(state
        .views
        .render("template_preview.html", &ctx)?
        .into_response())
}

/// `GET /templates/{id}/preview/email[?user_id=N]`: the e-mail's HTML body alone, for the
/// preview page's sandboxed frame, under its own content security policy.
pub(crate) async fn preview_email(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQuery>,
) -> PageResult<Response> {
    let t = service::template(&state, id).await?;
    let html = match render_for(&state, &t.content, q.user()?).await {
        Ok(Rendered {
            email: Some(Ok(m)), ..
        }) => m.html.ok_or_else(|| {
            PageError::BadRequest("this template's e-mail has no HTML body".to_owned())
        })?,
        Ok(Rendered {
            email: Some(Err(e)),
            ..
        })
        | Err(e) => return Err(PageError::BadRequest(e)),
        Ok(_) => {
            return Err(PageError::BadRequest(
                "this template has no e-mail part".to_owned(),
            ));
        }
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, EMAIL_FRAME_CSP),
            (axum::http::header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        html,
    )
        .into_response())
}
