//! Broadcast pages: list, create with the filter builder, the broadcast page (progress,
//! statistics, actions), launch confirmation, lifecycle actions, schedule, test send, the
//! recipient table and its CSV export.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use broadcast_domain::{
    Actor, Broadcast, BroadcastStatus, ChannelKind, ChannelPolicy, DeliveryStatus, EmailAddress,
    ErrorKind, NewBroadcast, RegistrationStatus, Role, TelegramChatId, Transition,
};
use broadcast_orchestrator::TestTarget;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::auth::{CsrfForm, Session};
use crate::error::{ApiError, PageError, PageResult};
use crate::filter_form::{FilterFields, choices, parse_schedule, schedule_value};
use crate::present::{
    CountView, ProgressView, StatsView, TemplateRef, broadcast_row, estimate, policy_label,
};
use crate::routes::progress_of;
use crate::service::{self, RecipientFilter, Recipients};
use crate::state::AppState;
use crate::views::{Pager, fmt_duration, fmt_opt, notice, page};

/// Most broadcasts the list shows.
const LIST_LIMIT: u64 = 200;
/// Recipient rows per page.
const RECIPIENTS_PER_PAGE: u64 = 50;
/// Rows read per query while exporting.
const EXPORT_CHUNK: u64 = 2_000;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    done: Option<String>,
}

/// `GET /broadcasts`.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let statuses = match q.status.trim() {
        "" => vec![],
        s => vec![
            s.parse::<BroadcastStatus>()
                .map_err(|e| PageError::BadRequest(e.0))?,
        ],
    };
    let broadcasts = state
        .orchestrator
        .ports()
        .broadcasts
        .list_broadcasts(&statuses, LIST_LIMIT)
        .await?;
    let needle = q.q.trim().to_lowercase();
    let mut rows = Vec::new();
    let competitions = state.competition_names().await?;
    for b in broadcasts
        .iter()
        .filter(|b| needle.is_empty() || b.name.to_lowercase().contains(&needle))
    {
        let progress = progress_of(&state, b).await?;
        rows.push(broadcast_row(b, None, progress.as_ref(), &competitions));
    }
    let mut ctx = page(&session, "broadcasts", "Broadcasts");
    ctx.insert("notice", &notice(q.done.as_deref()));
    ctx.insert("broadcasts", &rows);
    ctx.insert("status", q.status.trim());
    ctx.insert("q", &q.q);
    ctx.insert(
        "statuses",
        &BroadcastStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    Ok(state
        .views
        .render("broadcasts_list.html", &ctx)?
        .into_response())
}

/// The broadcast form as posted.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct BroadcastForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    scheduled_at: String,
    #[serde(default)]
    channel_policy: String,
    #[serde(default)]
    competition_ids: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    registration_statuses: Vec<String>,
    #[serde(default)]
    countries: Vec<String>,
    #[serde(default)]
    cities: Vec<String>,
    #[serde(default)]
    has_email: String,
    #[serde(default)]
    has_telegram: String,
}

impl BroadcastForm {
    fn fields(&self) -> FilterFields {
        FilterFields {
            competition_ids: self.competition_ids.clone(),
            roles: self.roles.clone(),
            registration_statuses: self.registration_statuses.clone(),
            countries: self.countries.clone(),
            cities: self.cities.clone(),
            has_email: self.has_email.clone(),
            has_telegram: self.has_telegram.clone(),
            channel_policy: self.channel_policy.clone(),
        }
    }
}

async fn form_page(
    state: &AppState,
    session: &Session,
    form: &BroadcastForm,
    error: Option<String>,
) -> PageResult {
    let ports = state.orchestrator.ports();
    let templates = ports.templates.list_templates().await?;
    let competitions = ports.audience.list_competitions().await?;
    let names = competitions
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    let locations = state.locations().await?;
    let fields = form.fields();
    let policy = fields.policy().unwrap_or(ChannelPolicy::BOTH);
    let count = match fields.filter() {
        Ok(filter) => {
            let c = state.orchestrator.count_audience(&filter, policy).await?;
            CountView::new(&c, policy, &filter, &names)
        }
        Err(_) => CountView::new(&Default::default(), policy, &Default::default(), &names),
    };
    let mut ctx = page(session, "broadcasts", "New broadcast");
    ctx.insert("error", &error);
    let template_id: Option<i64> = form.template_id.trim().parse().ok();
    ctx.insert(
        "form",
        &serde_json::json!({
            "name": form.name,
            "template_id": template_id,
            "channel_policy": policy.to_string(),
            "scheduled_at": form.scheduled_at,
            "has_email": form.has_email,
            "has_telegram": form.has_telegram,
        }),
    );
    ctx.insert(
        "templates",
        &templates
            .iter()
            .map(|t| serde_json::json!({ "id": t.id, "name": t.name }))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "policies",
        &ChannelPolicy::NAMED
            .iter()
            .map(|p| serde_json::json!({ "value": p.to_string(), "label": policy_label(*p) }))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "competitions",
        &competitions
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "selected": form.competition_ids.iter().any(|v| v.trim() == c.id.to_string()),
                })
            })
            .collect::<Vec<_>>(),
    );
    let enum_choices = |all: Vec<&str>, picked: &[String]| {
        choices(
            &all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            picked,
        )
    };
    ctx.insert(
        "roles",
        &enum_choices(Role::ALL.iter().map(|r| r.as_str()).collect(), &form.roles),
    );
    ctx.insert(
        "registration_statuses",
        &enum_choices(
            RegistrationStatus::ALL.iter().map(|r| r.as_str()).collect(),
            &form.registration_statuses,
        ),
    );
    ctx.insert("countries", &choices(&locations.countries, &form.countries));
    ctx.insert("cities", &choices(&locations.cities, &form.cities));
    ctx.insert(
        "tristate",
        &serde_json::json!([
            { "value": "", "label": "any" },
            { "value": "yes", "label": "has one" },
            { "value": "no", "label": "has none" },
        ]),
    );
    ctx.insert("count", &count);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, state.views.render("broadcast_form.html", &ctx)?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewQuery {
    /// Start from a copy of this broadcast's settings.
    from: Option<i64>,
}

/// `GET /broadcasts/new[?from=<id>]`.
pub(crate) async fn new_form(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<NewQuery>,
) -> PageResult {
    let form = match q.from {
        None => BroadcastForm {
            channel_policy: ChannelPolicy::BOTH.to_string(),
            ..BroadcastForm::default()
        },
        Some(id) => {
            let b = service::broadcast(&state, id).await?;
            let f = FilterFields::from_filter(&b.filter, b.channel_policy);
            BroadcastForm {
                name: format!("Copy of {}", b.name),
                template_id: b.template_id.map(|t| t.to_string()).unwrap_or_default(),
                scheduled_at: String::new(),
                channel_policy: f.channel_policy,
                competition_ids: f.competition_ids,
                roles: f.roles,
                registration_statuses: f.registration_statuses,
                countries: f.countries,
                cities: f.cities,
                has_email: f.has_email,
                has_telegram: f.has_telegram,
            }
        }
    };
    form_page(&state, &session, &form, None).await
}

/// `POST /broadcasts`.
pub(crate) async fn create(
    State(state): State<AppState>,
    CsrfForm { session, form }: CsrfForm<BroadcastForm>,
) -> PageResult {
    let fields = form.fields();
    let checked = (|| {
        let template_id = form
            .template_id
            .trim()
            .parse::<i64>()
            .map_err(|_| "choose a template".to_owned())?;
        Ok::<_, String>(NewBroadcast {
            name: form.name.trim().to_owned(),
            template_id,
            channel_policy: fields.policy()?,
            filter: fields.filter()?,
            scheduled_at: parse_schedule(&form.scheduled_at)?,
            created_by: Some(session.username.clone()),
        })
    })();
    let new = match checked {
        Ok(new) => new,
        Err(e) => return form_page(&state, &session, &form, Some(e)).await,
    };
    if let Some(at) = new.scheduled_at
        && at < chrono::Utc::now() - chrono::Duration::minutes(1)
    {
        let msg = format!(
            "the start time {} is in the past; leave it empty to create a draft",
            fmt_opt(Some(at))
        );
        return form_page(&state, &session, &form, Some(msg)).await;
    }
    match service::create_broadcast(&state, &session.username, new).await {
        Ok(b) => {
            let done = if b.scheduled_at.is_some() {
                "broadcast_scheduled"
            } else {
                "broadcast_created"
            };
            Ok(Redirect::to(&format!("/broadcasts/{}?done={done}", b.id)).into_response())
        }
        Err(e) if e.is_invalid_input() => {
            form_page(&state, &session, &form, Some(e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /broadcasts/audience-count?<filter fields>`: the filter builder's live count (JSON).
pub(crate) async fn audience_count(
    State(state): State<AppState>,
    _session: Session,
    RawQuery(query): RawQuery,
) -> Result<Json<CountView>, ApiError> {
    let fields: FilterFields = serde_html_form::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::invalid(format!("malformed filter: {e}")))?;
    let filter = fields.filter().map_err(ApiError::invalid)?;
    let policy = fields.policy().map_err(ApiError::invalid)?;
    let count = state.orchestrator.count_audience(&filter, policy).await?;
    let names = state.competition_names().await?;
    Ok(Json(CountView::new(&count, policy, &filter, &names)))
}

async fn template_ref(state: &AppState, b: &Broadcast) -> Option<TemplateRef> {
    let id = b.template_id?;
    let t = service::template(state, id).await.ok()?;
    Some(TemplateRef {
        id,
        name: t.name.to_string(),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// `GET /broadcasts/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<Done>,
) -> PageResult {
    let view = service::progress(&state, id).await?;
    let b = service::broadcast(&state, id).await?;
    let stats = state.orchestrator.stats(id).await?;
    let template = template_ref(&state, &b).await;
    let mut ctx = page(&session, "broadcasts", &b.name);
    ctx.insert("notice", &notice(q.done.as_deref()));
    let names = state.competition_names().await?;
    ctx.insert("b", &broadcast_row(&b, template, Some(&view), &names));
    ctx.insert(
        "progress",
        &serde_json::json!({
            "percent": view.percent,
            "done": view.done,
            "total": view.total,
            "sent": view.sent,
            "failed": view.failed,
            "skipped": view.skipped,
            "open": view.open,
            "rate": view.rate.map_or_else(|| "–".to_owned(), |r| format!("{r:.1} /s")),
            "eta": match (view.open, view.eta_seconds) {
                (0, _) => "–".to_owned(),
                (_, Some(s)) => fmt_duration(s),
                // Only a running broadcast is on its way; a paused one has no time left.
                (_, None) if view.status == BroadcastStatus::Running => "estimating…".to_owned(),
                (_, None) => "–".to_owned(),
            },
        }),
    );
    ctx.insert("stats", &StatsView::from(&stats));
    ctx.insert(
        "delivery_statuses",
        &DeliveryStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "actions",
        &serde_json::json!({
            "launch": Transition::Launch.allowed(b.status),
            "pause": Transition::Pause.allowed(b.status),
            "resume": Transition::Resume.allowed(b.status),
            "cancel": Transition::Cancel.allowed(b.status),
            "schedule": Transition::Schedule.allowed(b.status),
            "test": b.frozen_template.is_some() || b.template_id.is_some(),
        }),
    );
    ctx.insert("schedule_value", &schedule_value(b.scheduled_at));
    Ok(state.views.render("broadcast.html", &ctx)?.into_response())
}

/// `GET /broadcasts/{id}/progress`: the current progress as JSON.
pub(crate) async fn progress_json(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<i64>,
) -> Result<Json<ProgressView>, ApiError> {
    Ok(Json(service::progress(&state, id).await?))
}

/// `GET /broadcasts/{id}/launch`: the confirmation page.
pub(crate) async fn confirm_launch(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> PageResult {
    let b = service::broadcast(&state, id).await?;
    Transition::Launch.check(id, b.status)?;
    let count = state
        .orchestrator
        .count_audience(&b.filter, b.channel_policy)
        .await?;
    let names = state.competition_names().await?;
    let view = CountView::new(&count, b.channel_policy, &b.filter, &names);
    let (template_name, problem) = match b.template_id {
        None => (
            "deleted".to_owned(),
            Some("The template of this broadcast was deleted.".to_owned()),
        ),
        Some(t) => match service::template(&state, t).await {
            Ok(t) => (
                t.name.to_string(),
                state
                    .orchestrator
                    .check_template(&t.content, b.channel_policy)
                    .err()
                    .map(|e| e.to_string()),
            ),
            Err(e) => ("unavailable".to_owned(), Some(e.to_string())),
        },
    };
    let mut ctx = page(&session, "broadcasts", "Launch broadcast");
    let template = template_ref(&state, &b).await;
    ctx.insert("b", &broadcast_row(&b, template, None, &names));
    ctx.insert("count", &view);
    ctx.insert("estimate", &estimate(&state.settings, &count));
    ctx.insert("template_name", &template_name);
    ctx.insert("problem", &problem);
    Ok(state
        .views
        .render("broadcast_launch.html", &ctx)?
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `POST /broadcasts/{id}/launch`.
pub(crate) async fn launch(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    service::launch(&state, &session.username, id).await?;
    Ok(Redirect::to(&format!("/broadcasts/{id}?done=launched")).into_response())
}

/// `POST /broadcasts/{id}/pause`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    service::pause(&state, &session.username, id, None).await?;
    Ok(Redirect::to(&format!("/broadcasts/{id}?done=paused")).into_response())
}

/// `POST /broadcasts/{id}/resume`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    service::resume(&state, &session.username, id).await?;
    Ok(Redirect::to(&format!("/broadcasts/{id}?done=resumed")).into_response())
}

/// `POST /broadcasts/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, .. }: CsrfForm<Empty>,
) -> PageResult {
    service::cancel(&state, &session.username, id).await?;
    Ok(Redirect::to(&format!("/broadcasts/{id}?done=cancelled")).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ScheduleForm {
    #[serde(default)]
    scheduled_at: String,
    #[serde(default)]
    clear: Option<String>,
}

/// `POST /broadcasts/{id}/schedule`: sets (or with `clear`, removes) the start time.
pub(crate) async fn schedule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, form }: CsrfForm<ScheduleForm>,
) -> PageResult {
    let now = chrono::Utc::now();
    let at = if form.clear.is_some() {
        None
    } else {
        let at = parse_schedule(&form.scheduled_at)
            .map_err(PageError::BadRequest)?
            .ok_or_else(|| {
                PageError::BadRequest("choose a start time, or clear the schedule".to_owned())
            })?;
        if at < now - chrono::Duration::minutes(1) {
            return Err(PageError::BadRequest(format!(
                "the start time {} is in the past",
                fmt_opt(Some(at))
            )));
        }
        Some(at)
    };
    service::schedule(&state, &session.username, id, at).await?;
    let done = if at.is_some() {
        "broadcast_scheduled"
    } else {
        "schedule_cleared"
    };
    Ok(Redirect::to(&format!("/broadcasts/{id}?done={done}")).into_response())
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct TestForm {
    #[serde(default)]
    target: String,
    #[serde(default)]
    value: String,
}

async fn test_page(
    state: &AppState,
    session: &Session,
    b: &Broadcast,
    form: &TestForm,
    results: Option<Vec<serde_json::Value>>,
    error: Option<String>,
) -> PageResult {
    let mut ctx = page(session, "broadcasts", "Test send");
    let names = state.competition_names().await?;
    ctx.insert("b", &broadcast_row(b, None, None, &names));
    ctx.insert("form", form);
    ctx.insert("results", &results);
    ctx.insert("error", &error);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, state.views.render("broadcast_test.html", &ctx)?).into_response())
}

/// `GET /broadcasts/{id}/test`.
pub(crate) async fn test_form(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> PageResult {
    let b = service::broadcast(&state, id).await?;
    let form = TestForm {
        target: "user".to_owned(),
        value: String::new(),
    };
    test_page(&state, &session, &b, &form, None, None).await
}

fn test_target(form: &TestForm) -> Result<TestTarget, String> {
    let value = form.value.trim();
    match form.target.as_str() {
        "user" => value
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(TestTarget::User)
            .ok_or_else(|| format!("`{value}` is not a user id (a positive number)")),
        "chat" => TelegramChatId::parse(value)
            .map(TestTarget::Chat)
            .map_err(|e| e.0),
        "email" => EmailAddress::parse(value)
            .map(TestTarget::Email)
            .map_err(|e| e.0),
        other => Err(format!(
            "`{other}` is not a test target; choose user, chat or email"
        )),
    }
}

/// `POST /broadcasts/{id}/test`.
pub(crate) async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { session, form }: CsrfForm<TestForm>,
) -> PageResult {
    let b = service::broadcast(&state, id).await?;
    let target = match test_target(&form) {
        Ok(t) => t,
        Err(e) => return test_page(&state, &session, &b, &form, None, Some(e)).await,
    };
    let actor = Actor::new(session.username.as_str())?;
    let results = match state.orchestrator.test_send(&actor, id, target).await {
        Ok(r) => r,
        Err(e) if e.is_invalid_input() => {
            return test_page(&state, &session, &b, &form, None, Some(e.to_string())).await;
        }
        Err(e) => return Err(e.into()),
    };
    let views: Vec<serde_json::Value> = results
        .iter()
        .map(|(channel, r)| match r {
            Ok(d) => {
                serde_json::json!({ "channel": channel, "ok": true, "id": d.provider_message_id })
            }
            Err(e) => {
                serde_json::json!({ "channel": channel, "ok": false, "error": e.to_string() })
            }
        })
        .collect();
    test_page(&state, &session, &b, &form, Some(views), None).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RecipientsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    error_kind: String,
    #[serde(default)]
    page: Option<u64>,
}

impl RecipientsQuery {
    fn filter(&self) -> RecipientFilter<'_> {
        RecipientFilter {
            status: &self.status,
            channel: &self.channel,
            error_kind: &self.error_kind,
        }
    }

    fn link(&self, base: &str, page: Option<u64>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("channel", &self.channel),
            ("error_kind", &self.error_kind),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        if let Some(p) = page {
            q.append_pair("page", &p.to_string());
        }
        let q = q.finish();
        if q.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{q}")
        }
    }
}

/// `GET /broadcasts/{id}/recipients`.
pub(crate) async fn recipients(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<RecipientsQuery>,
) -> PageResult {
    let page_no = q.page.unwrap_or(1).max(1);
    let Recipients {
        broadcast: b,
        page: rows,
        ..
    } = service::recipients(
        &state,
        id,
        q.filter(),
        (page_no - 1) * RECIPIENTS_PER_PAGE,
        RECIPIENTS_PER_PAGE,
    )
    .await?;
    let base = format!("/broadcasts/{id}/recipients");
    let pager = Pager::new(rows.total, RECIPIENTS_PER_PAGE, page_no, |p| {
        q.link(&base, Some(p))
    });
    let names =
        broadcast_app::names::user_names(&*state.orchestrator.ports().audience, &rows.items)
            .await?;
    let views: Vec<_> = rows
        .items
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "user_id": r.user_id,
                "name": names.get(&r.user_id),
                "channel": r.channel,
                "address": r.address,
                "status": r.status,
                "skip_reason": r.skip_reason,
                "attempts": r.attempts,
                "error_kind": r.error_kind,
                "last_error": r.last_error,
                "sent_at": fmt_opt(r.sent_at),
            })
        })
        .collect();
    let mut ctx = page(&session, "broadcasts", "Recipients");
    let names = state.competition_names().await?;
    ctx.insert("b", &broadcast_row(&b, None, None, &names));
    ctx.insert("rows", &views);
    ctx.insert("pager", &pager);
    ctx.insert(
        "filter",
        &BTreeMap::from([
            ("status", q.status.trim()),
            ("channel", q.channel.trim()),
            ("error_kind", q.error_kind.trim()),
        ]),
    );
    ctx.insert(
        "statuses",
        &DeliveryStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "channels",
        &ChannelKind::all()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "error_kinds",
        &ErrorKind::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "csv_url",
        &q.link(&format!("/broadcasts/{id}/recipients.csv"), None),
    );
    Ok(state.views.render("recipients.html", &ctx)?.into_response())
}

/// `GET /broadcasts/{id}/recipients.csv`: every matching row, streamed in chunks.
pub(crate) async fn recipients_csv(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<RecipientsQuery>,
) -> PageResult {
    service::broadcast(&state, id).await?;
    let base = q.filter().query(0, EXPORT_CHUNK)?;
    let actor = Actor::new(session.username.as_str())?;
    state.orchestrator.export(&actor, id, &base).await?;
    let deliveries = state.orchestrator.ports().deliveries.clone();
    let audience = state.orchestrator.ports().audience.clone();
    // Keyset pages (`id > last id`): each chunk costs the same however far the export got,
    // where offsets would re-read every row before the chunk.
    let stream = futures::stream::unfold(Some((0, true)), move |next| {
        let deliveries = deliveries.clone();
        let audience = audience.clone();
        let base = base.clone();
        async move {
            let (after, first) = next?;
            let read = async {
                let rows = deliveries.list_recipients_after(id, &base, after).await?;
                let names = broadcast_app::names::user_names(&*audience, &rows).await?;
                Ok::<_, broadcast_domain::Error>((rows, names))
            };
            let (rows, names) = match read.await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, broadcast = id, "CSV export failed");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            };
            let chunk = broadcast_app::export::csv_chunk(&rows, &names, first)
                .map_err(|e| std::io::Error::other(e.to_string()));
            let next = match rows.last() {
                Some(last) if rows.len() as u64 == EXPORT_CHUNK => Some((last.id, false)),
                _ => None,
            };
            Some((chunk, next))
        }
    })
    .map(|r| r.map(axum::body::Bytes::from));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"broadcast-{id}-recipients.csv\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_targets_are_parsed() {
        let t = |target: &str, value: &str| {
            test_target(&TestForm {
                target: target.to_owned(),
                value: value.to_owned(),
            })
        };
        assert_eq!(t("user", "7"), Ok(TestTarget::User(7)));
        assert!(t("user", "x").unwrap_err().contains("not a user id"));
        assert!(matches!(t("chat", "-100"), Ok(TestTarget::Chat(_))));
        assert!(
            t("email", "nope")
                .unwrap_err()
                .contains("not a valid e-mail")
        );
        assert!(t("pigeon", "1").is_err());
    }
}
