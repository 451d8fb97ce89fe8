//! Audience pages: users with search and pagination, one user with registrations and flags,
//! and the CSV import with row-level errors.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use broadcast_app::csv_import::{self, CsvErrors};
use broadcast_domain::{Actor, Error, ImportReport, User, UserQuery};
use serde::{Deserialize, Serialize};

use super::upload::Upload;
use crate::auth::{Session, csrf_refused};
use crate::error::{PageError, PageResult};
use crate::state::AppState;
use crate::views::{Pager, SourceLine, fmt_opt, fmt_time, page, source_excerpt};

/// Users per page.
const USERS_PER_PAGE: u64 = 50;
/// The kinds of CSV file, in the order they should be imported.
const KINDS: [&str; 3] = ["users", "competitions", "registrations"];

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u64>,
}

fn user_view(u: &User) -> serde_json::Value {
    let name = match u.full_name() {
        n if n.is_empty() => format!("user {}", u.id),
        n => n,
    };
    serde_json::json!({
        "id": u.id,
        "name": name,
        "external_id": u.external_id,
        "username": u.username,
        "email": u.email,
        "telegram": u.telegram_chat_id,
        "language": u.language,
        "country": u.country,
        "city": u.city,
        "blocked": fmt_opt(u.telegram_blocked_at),
        "unsubscribed": fmt_opt(u.email_unsubscribed_at),
        "bounced": fmt_opt(u.email_bounced_at),
        "created": fmt_time(u.created_at),
        "attributes": serde_json::to_string_pretty(&u.attributes).unwrap_or_default(),
    })
}

/// `GET /audience`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let audience = &state.orchestrator.ports().audience;
    let page_no = q.page.unwrap_or(1).max(1);
    let search = Some(q.q.trim().to_owned()).filter(|s| !s.is_empty());
    let users = audience
        .list_users(&UserQuery {
            search: search.clone(),
            offset: (page_no - 1) * USERS_PER_PAGE,
            limit: USERS_PER_PAGE,
        })
        .await?;
    let competitions = audience.list_competitions().await?;
    let pager = Pager::new(users.total, USERS_PER_PAGE, page_no, |p| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(search) = &search {
            s.append_pair("q", search);
        }
        s.append_pair("page", &p.to_string());
        format!("/audience?{}", s.finish())
    });
    let mut ctx = page(&session, "audience", "Audience");
    ctx.insert("q", q.q.trim());
    ctx.insert(
        "users",
        &users.items.iter().map(user_view).collect::<Vec<_>>(),
    );
    ctx.insert("pager", &pager);
    ctx.insert(
        "competitions",
        &competitions
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "slug": c.slug,
                    "starts_on": c.starts_on.map(|d| d.to_string()), "city": c.city,
                })
            })
            .collect::<Vec<_>>(),
    );
    Ok(state.views.render("audience.html", &ctx)?.into_response())
}

/// `GET /audience/users/{id}`.
pub(crate) async fn user(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> PageResult {
    let audience = &state.orchestrator.ports().audience;
    let u = audience.get_user(id).await?;
    let registrations = audience.registrations_of(id).await?;
    let mut ctx = page(&session, "audience", &u.full_name());
    ctx.insert("u", &user_view(&u));
    ctx.insert(
        "registrations",
        &registrations
            .iter()
            .map(|(r, c)| {
                serde_json::json!({
                    "competition": c.name, "role": r.role, "status": r.status,
                    "created": fmt_time(r.created_at),
                })
            })
            .collect::<Vec<_>>(),
    );
    Ok(state.views.render("user.html", &ctx)?.into_response())
}

/// A failed import as the page shows it.
#[derive(Debug, Serialize)]
struct ImportError {
    /// The summary: the only problem, or how many there are.
    message: String,
    /// Each problem with its place in the file (none for a problem of the upload itself).
    problems: Vec<ImportProblem>,
}

/// One problem of an uploaded file, with the lines around it.
#[derive(Debug, Serialize)]
struct ImportProblem {
    message: String,
    file: String,
    line: Option<u64>,
    column: Option<String>,
    excerpt: Vec<SourceLine>,
}

impl ImportError {
    /// A problem that is not at a place in the file.
    fn whole(message: String) -> Self {
        ImportError {
            message,
            problems: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ReportView {
    kind: String,
    inserted: u64,
    updated: u64,
}

fn import_page(
    state: &AppState,
    session: &Session,
    kind: &str,
    error: Option<ImportError>,
    report: Option<ReportView>,
) -> PageResult {
    let mut ctx = page(session, "audience", "Import");
    ctx.insert("kinds", &KINDS);
    ctx.insert("kind", kind);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    ctx.insert("error", &error);
    ctx.insert("report", &report);
    Ok((status, state.views.render("import.html", &ctx)?).into_response())
}

/// `GET /audience/import`.
pub(crate) async fn import_form(State(state): State<AppState>, session: Session) -> PageResult {
    import_page(&state, &session, "users", None, None)
}

/// `POST /audience/import` (multipart: `csrf`, `kind`, `file`).
pub(crate) async fn import(
    State(state): State<AppState>,
    session: Session,
    multipart: Multipart,
) -> PageResult {
    let upload = Upload::read(multipart).await?;
    if !upload.csrf_matches(&session) {
        return Ok(csrf_refused(&state));
    }
    let kind = upload.field("kind").unwrap_or_default().to_owned();
    if !KINDS.contains(&kind.as_str()) {
        return Err(PageError::BadRequest(format!(
            "`{kind}` is not a kind of audience file; choose users, competitions or registrations"
        )));
    }
    let file = upload.file.map(|(name, bytes)| match name.is_empty() {
        true => ("upload.csv".to_owned(), bytes),
        false => (name, bytes),
    });
    let Some((file_name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        return import_page(
            &state,
            &session,
            &kind,
            Some(ImportError::whole(
                "choose a CSV file to import (the upload was empty)".to_owned(),
            )),
            None,
        );
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let csv_error = |e: CsvErrors| {
        let e = e.in_file(file_name.clone());
        let message = match e.len() {
            1 => e.to_string(),
            n => format!("{n} problems in {file_name}; each is listed below"),
        };
        let problems = e
            .problems()
            .iter()
            .map(|p| ImportProblem {
                message: p.to_string(),
                file: p.file.clone(),
                line: p.line,
                column: p.column.clone(),
                excerpt: p.line.map_or_else(Vec::new, |l| {
                    source_excerpt(&text, usize::try_from(l).unwrap_or(usize::MAX), None)
                }),
            })
            .collect();
        ImportError { message, problems }
    };
    // The orchestrator imports all rows or none and writes the audit entry.
    let orch = &state.orchestrator;
    let actor = Actor::new(session.username.as_str())?;
    let file = file_name.as_str();
    let result: Result<Result<ImportReport, Error>, ImportError> = match kind.as_str() {
        "users" => match csv_import::parse_users(bytes.as_slice()) {
            Ok(rows) => Ok(orch.import_users(&actor, file, rows).await),
            Err(e) => Err(csv_error(e)),
        },
        "competitions" => match csv_import::parse_competitions(bytes.as_slice()) {
            Ok(rows) => Ok(orch.import_competitions(&actor, file, rows).await),
            Err(e) => Err(csv_error(e)),
        },
        _ => match csv_import::parse_registrations(bytes.as_slice()) {
            Ok(rows) => Ok(orch.import_registrations(&actor, file, rows).await),
            Err(e) => Err(csv_error(e)),
        },
    };
    let report = match result {
        Err(e) => return import_page(&state, &session, &kind, Some(e), None),
        Ok(Err(e)) if e.is_invalid_input() => {
            let error = ImportError::whole(format!("{file_name}: {e}"));
            return import_page(&state, &session, &kind, Some(error), None);
        }
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(report)) => report,
    };
    state.forget_locations();
    let view = ReportView {
        kind: kind.clone(),
        inserted: report.inserted,
        updated: report.updated,
    };
    import_page(&state, &session, &kind, None, Some(view))
}
