//! The JSON API under `/api/v1`, for other services. Every route but the OpenAPI document needs
//! `Authorization: Bearer <token>` with one of `ADMIN_API_TOKENS`; errors always have the shape
//! `{"error":{"code":"...","message":"...","details":...}}` (see `docs/api.md`).

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use broadcast_app::documents::MediumDoc;
use broadcast_domain::{
    Actor, AudienceFilter, BroadcastStatus, ChannelPolicy, MediaRef, NewBroadcast, NewTemplate,
    ParseMode, TemplateContent, UrlButton,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::ApiCaller;
use crate::error::{ApiError, ApiResult, template_problems};
use crate::present::ProgressView;
use crate::service::{self, RecipientFilter, Recipients};
use crate::state::AppState;

/// The OpenAPI document, hand-written.
const OPENAPI: &str = include_str!("../../static/openapi.json");

/// The routes under `/api/v1`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/templates", get(list_templates).post(create_template))
        .route(
            "/templates/{id}",
            get(get_template)
                .put(update_template)
                .delete(delete_template),
        )
        .route("/broadcasts", get(list_broadcasts).post(create_broadcast))
        .route("/broadcasts/{id}", get(get_broadcast))
        .route("/broadcasts/{id}/launch", post(launch))
        .route("/broadcasts/{id}/pause", post(pause))
        .route("/broadcasts/{id}/resume", post(resume))
        .route("/broadcasts/{id}/cancel", post(cancel))
        .route("/broadcasts/{id}/schedule", post(schedule))
        .route("/broadcasts/{id}/stats", get(stats))
        .route("/broadcasts/{id}/progress", get(progress))
        .route("/broadcasts/{id}/recipients", get(recipients))
        .route("/audience/count", post(count))
        .route(
            "/media",
            get(list_media)
                .post(upload_medium)
                .layer(DefaultBodyLimit::max(super::MEDIA_LIMIT)),
        )
        .route("/media/{id}", get(get_medium).delete(delete_medium))
        .route("/media/{id}/file", get(medium_file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// JSON body whose rejection is an [`ApiError`].
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    let code = if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "unsupported_media_type"
    } else {
        "invalid_input"
    };
    ApiError::new(
        if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::BAD_REQUEST
        },
        code,
        r.body_text(),
    )
}

/// A numeric id in the path whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id(pub(crate) i64);

impl FromRequestParts<AppState> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Path(id) = axum::extract::Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| {
                ApiError::invalid(format!(
                    "the id in the path must be a number: {}",
                    e.body_text()
                ))
            })?;
        Ok(Self(id))
    }
}

/// Query parameters whose rejection is an [`ApiError`].
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))?;
        Ok(Self(v))
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(_caller: ApiCaller) -> ApiError {
    ApiError::not_found("no API route at this path; see /api/v1/openapi.json")
}

async fn method_not_allowed(_caller: ApiCaller) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept this method; see /api/v1/openapi.json",
    )
}

// --- Templates ----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentInput {
    #[serde(default)]
    telegram_text: Option<String>,
    #[serde(default)]
    parse_mode: Option<ParseMode>,
    #[serde(default)]
    link_preview: bool,
    /// Media of the library: names, or the objects a template read from the API has.
    #[serde(default)]
    telegram_media: Vec<MediaInput>,
    /// Rows of `{"text", "url"}` buttons.
    #[serde(default)]
    telegram_buttons: Vec<Vec<UrlButton>>,
    #[serde(default)]
    email_subject: Option<String>,
    #[serde(default)]
    email_html: Option<String>,
    #[serde(default)]
    email_text: Option<String>,
}

/// A medium a template names: its name, or an object with its name (what the API returns; the
/// other keys are looked up again when the template is saved).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MediaInput {
    Name(String),
    Object { name: String },
}

impl MediaInput {
    fn into_ref(self) -> MediaRef {
        match self {
            MediaInput::Name(name) | MediaInput::Object { name } => MediaRef::named(name),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateInput {
    name: String,
    #[serde(default)]
    description: String,
    content: ContentInput,
}

fn check_template(state: &AppState, input: TemplateInput) -> ApiResult<NewTemplate> {
    let c = input.content;
    let content = TemplateContent {
        telegram_text: c.telegram_text.filter(|s| !s.trim().is_empty()),
        parse_mode: c.parse_mode.unwrap_or(ParseMode::Html),
        link_preview: c.link_preview,
        telegram_media: c
            .telegram_media
            .into_iter()
            .map(MediaInput::into_ref)
            .collect(),
        telegram_buttons: c.telegram_buttons,
        email_subject: c.email_subject.filter(|s| !s.trim().is_empty()),
        email_html: c.email_html.filter(|s| !s.trim().is_empty()),
        email_text: c.email_text.filter(|s| !s.trim().is_empty()),
    };
    service::check_template(state, &input.name, &input.description, Ok(content)).map_err(|p| {
        if let Some(name) = p.name {
            return ApiError::invalid(name);
        }
        let errors = p.render.map(|(_, errors)| errors).unwrap_or_default();
        ApiError {
            details: Some(template_problems(&errors)),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_template",
                errors.first().map(ToString::to_string).unwrap_or_default(),
            )
        }
    })
}

async fn list_templates(
    State(state): State<AppState>,
    _caller: ApiCaller,
) -> ApiResult<Json<serde_json::Value>> {
    let items = state
        .orchestrator
        .ports()
        .templates
        .list_templates()
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn create_template(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<Response> {
    let new = check_template(&state, input)?;
    let t = service::create_template(&state, &caller.actor, new).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

async fn get_template(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    Ok(Json(service::template(&state, id).await?).into_response())
}

async fn update_template(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<Response> {
    let new = check_template(&state, input)?;
    let t = service::update_template(&state, &caller.actor, id, new).await?;
    Ok(Json(t).into_response())
}

async fn delete_template(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    service::delete_template(&state, &caller.actor, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- Broadcasts ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

fn parse_list<T: std::str::FromStr<Err = broadcast_domain::ParseError>>(
    raw: Option<&str>,
) -> ApiResult<Vec<T>> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>().map_err(|e| ApiError::invalid(e.0)))
        .collect()
}

async fn list_broadcasts(
    State(state): State<AppState>,
    _caller: ApiCaller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let statuses = parse_list::<BroadcastStatus>(q.status.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .orchestrator
        .ports()
        .broadcasts
        .list_broadcasts(&statuses, limit)
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastInput {
    name: String,
    template_id: i64,
    #[serde(default)]
    channel_policy: Option<ChannelPolicy>,
    #[serde(default)]
    filter: Option<serde_json::Value>,
    #[serde(default)]
    scheduled_at: Option<DateTime<Utc>>,
}

fn filter_of(value: Option<serde_json::Value>) -> ApiResult<AudienceFilter> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(AudienceFilter::default()),
        Some(v) => AudienceFilter::from_value(v).map_err(|e| ApiError::invalid(e.to_string())),
    }
}

async fn create_broadcast(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(input): ApiJson<BroadcastInput>,
) -> ApiResult<Response> {
    let new = NewBroadcast {
        name: input.name.trim().to_owned(),
        template_id: input.template_id,
        channel_policy: input.channel_policy.unwrap_or(ChannelPolicy::BOTH),
        filter: filter_of(input.filter)?,
        scheduled_at: input.scheduled_at,
        created_by: Some(caller.actor.clone()),
    };
    let b = service::create_broadcast(&state, &caller.actor, new).await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

async fn get_broadcast(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    Ok(Json(service::broadcast(&state, id).await?).into_response())
}

async fn launch(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let report = service::launch(&state, &caller.actor, id).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseInput {
    #[serde(default)]
    reason: Option<String>,
}

async fn pause(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: no body, or `{"reason": "..."}`.
    let input: PauseInput = if body.iter().all(u8::is_ascii_whitespace) {
        PauseInput::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))?
    };
    let b = service::pause(&state, &caller.actor, id, input.reason).await?;
    Ok(Json(b).into_response())
}

async fn resume(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let b = service::resume(&state, &caller.actor, id).await?;
    Ok(Json(b).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let (b, cancelled) = service::cancel(&state, &caller.actor, id).await?;
    Ok(Json(serde_json::json!({ "broadcast": b, "cancelled_rows": cancelled })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleInput {
    scheduled_at: Option<DateTime<Utc>>,
}

async fn schedule(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<Response> {
    let b = service::schedule(&state, &caller.actor, id, input.scheduled_at).await?;
    Ok(Json(b).into_response())
}

async fn stats(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    service::broadcast(&state, id).await?;
    let s = state.orchestrator.stats(id).await?;
    let rate = s.send_rate();
    Ok(Json(serde_json::json!({
        "broadcast_id": id,
        "total": s.total,
        "by_status": s.by_status,
        "by_channel": s.by_channel,
        "by_error_kind": s.by_error_kind,
        "by_skip_reason": s.by_skip_reason,
        "possible_duplicates": s.possible_duplicates,
        "first_sent_at": s.first_sent_at,
        "last_sent_at": s.last_sent_at,
        "send_rate": rate,
    }))
    .into_response())
}

async fn progress(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Json<ProgressView>> {
    Ok(Json(service::progress(&state, id).await?))
}

#[derive(Debug, Deserialize)]
struct RecipientsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    error_kind: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    after_id: Option<i64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// Pages by `offset` (with the total), or with `after_id` by id: rows with a larger id, and the
/// `next_after_id` to ask for next (`null` after the last page), which costs every page the
/// same however deep into a large ledger it is.
async fn recipients(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
    ApiQuery(q): ApiQuery<RecipientsQuery>,
) -> ApiResult<Response> {
    let filter = RecipientFilter {
        status: q.status.as_deref().unwrap_or_default(),
        channel: q.channel.as_deref().unwrap_or_default(),
        error_kind: q.error_kind.as_deref().unwrap_or_default(),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if let Some(after) = q.after_id {
        if q.offset.is_some() {
            return Err(ApiError::invalid(
                "give either `offset` or `after_id`, not both",
            ));
        }
        let items = service::recipients_after(&state, id, filter, after, limit).await?;
        let next = match items.last() {
            Some(last) if items.len() as u64 == limit => Some(last.id),
            _ => None,
        };
        return Ok(Json(serde_json::json!({
            "items": items,
            "after_id": after,
            "limit": limit,
            "next_after_id": next,
        }))
        .into_response());
    }
    let offset = q.offset.unwrap_or(0);
    let Recipients { query, page, .. } =
        service::recipients(&state, id, filter, offset, limit).await?;
    Ok(Json(serde_json::json!({
        "items": page.items,
        "total": page.total,
        "offset": query.offset,
        "limit": query.limit,
    }))
    .into_response())
}

// --- Audience -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountInput {
    #[serde(default)]
    filter: Option<serde_json::Value>,
    #[serde(default)]
    channel_policy: Option<ChannelPolicy>,
}

async fn count(
    State(state): State<AppState>,
    _caller: ApiCaller,
    ApiJson(input): ApiJson<CountInput>,
) -> ApiResult<Response> {
    let filter = filter_of(input.filter)?;
    let policy = input.channel_policy.unwrap_or(ChannelPolicy::BOTH);
    let c = state.orchestrator.count_audience(&filter, policy).await?;
    Ok(Json(serde_json::json!({
        "users": c.users,
        "channel_policy": policy,
        "reachable": c.reachable,
        "messages": c.messages,
        "unreachable": c.unreachable,
        "filter": filter,
    }))
    .into_response())
}

// --- Media ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct UploadQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    replace: bool,
}

/// `GET /media`: the library, by name.
async fn list_media(State(state): State<AppState>, _caller: ApiCaller) -> ApiResult<Response> {
    let media = state.orchestrator.list_media().await?;
    let items: Vec<MediumDoc> = media.iter().map(MediumDoc::from).collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// `POST /media?name=N[&replace=true]` with the file as the body: 201 with the new medium, 200
/// when `replace` gave an existing one new bytes.
async fn upload_medium(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let name = q
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("name the file: POST /api/v1/media?name=poster.png"))?;
    let existed = q.replace && state.orchestrator.medium(&name).await.is_ok();
    let medium = state
        .orchestrator
        .add_medium(
            &Actor::new(caller.actor.as_str())?,
            &name,
            body.to_vec(),
            q.replace,
        )
        .await?;
    let status = match existed {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    };
    Ok((status, Json(MediumDoc::from(&medium))).into_response())
}

/// `GET /media/{id}`.
async fn get_medium(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let medium = state.orchestrator.medium(&id.to_string()).await?;
    Ok(Json(MediumDoc::from(&medium)).into_response())
}

/// `GET /media/{id}/file`: the bytes, with their sniffed type.
async fn medium_file(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let medium = state.orchestrator.medium(&id.to_string()).await?;
    let bytes = state.orchestrator.medium_bytes(&medium).await?;
    Ok(([(header::CONTENT_TYPE, medium.content_type)], bytes).into_response())
}

/// `DELETE /media/{id}`.
async fn delete_medium(
    State(state): State<AppState>,
    caller: ApiCaller,
    Id(id): Id,
) -> ApiResult<Response> {
    let actor = Actor::new(caller.actor.as_str())?;
    state.orchestrator.remove_medium(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
