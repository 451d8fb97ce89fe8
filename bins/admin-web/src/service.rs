//! What the HTML pages and the JSON API both do, written once: load a broadcast, run a lifecycle
//! action or a template change through the orchestrator (which writes its audit entry, naming
//! the session's admin or the API token), check a template before it is stored, read a page of
//! recipients. Every function answers with the
//! domain error; each handler turns it into its own error type (a page or the API's JSON).

use broadcast_domain::{
    Actor, Broadcast, BroadcastId, ChannelKind, DeliveryStatus, Error, ErrorKind, MessageTemplate,
    NewBroadcast, NewTemplate, Page, Recipient, RecipientId, RecipientQuery, Result,
    TemplateContent, TemplateError, TemplateId, TemplateName,
};
use broadcast_orchestrator::LaunchReport;
use chrono::{DateTime, Utc};

use crate::present::ProgressView;
use crate::state::AppState;

/// One broadcast by id.
pub(crate) async fn broadcast(state: &AppState, id: BroadcastId) -> Result<Broadcast> {
    state
        .orchestrator
        .ports()
        .broadcasts
        .get_broadcast(id)
        .await
}

/// The current progress of a broadcast.
pub(crate) async fn progress(state: &AppState, id: BroadcastId) -> Result<ProgressView> {
    let p = state.orchestrator.progress(id).await?;
    Ok(ProgressView::from(&p))
}

/// One template by id.
pub(crate) async fn template(state: &AppState, id: TemplateId) -> Result<MessageTemplate> {
    state.orchestrator.ports().templates.get_template(id).await
}

/// The acting admin (a session's user name) or API token (`api:<id>`), as the audit log names
/// them.
fn actor(name: &str) -> Result<Actor> {
    Actor::new(name)
}

/// Creates a broadcast (`broadcast.create`).
pub(crate) async fn create_broadcast(
    state: &AppState,
    actor_name: &str,
    new: NewBroadcast,
) -> Result<Broadcast> {
    state
        .orchestrator
        .create_broadcast(&actor(actor_name)?, new)
        .await
}

/// Launches a broadcast (`broadcast.launch`).
pub(crate) async fn launch(
    state: &AppState,
    actor_name: &str,
    id: BroadcastId,
) -> Result<LaunchReport> {
    state.orchestrator.launch(&actor(actor_name)?, id).await
}

/// Pauses a running broadcast (`broadcast.pause`); without a reason, "paused by <actor>".
pub(crate) async fn pause(
    state: &AppState,
    actor_name: &str,
    id: BroadcastId,
    reason: Option<String>,
) -> Result<Broadcast> {
    state
        .orchestrator
        .pause(&actor(actor_name)?, id, reason)
        .await
}

/// Resumes a paused broadcast (`broadcast.resume`).
pub(crate) async fn resume(
    state: &AppState,
    actor_name: &str,
    id: BroadcastId,
) -> Result<Broadcast> {
    state.orchestrator.resume(&actor(actor_name)?, id).await
}

/// Cancels a broadcast (`broadcast.cancel`): the broadcast and how many rows were cancelled.
pub(crate) async fn cancel(
    state: &AppState,
    actor_name: &str,
    id: BroadcastId,
) -> Result<(Broadcast, u64)> {
    state.orchestrator.cancel(&actor(actor_name)?, id).await
}

/// Sets (or with `None` removes) the start time of a broadcast (`broadcast.schedule`).
pub(crate) async fn schedule(
    state: &AppState,
    actor_name: &str,
    id: BroadcastId,
    at: Option<DateTime<Utc>>,
) -> Result<Broadcast> {
    state
        .orchestrator
        .schedule(&actor(actor_name)?, id, at)
        .await
}

/// `raw` (trimmed) parsed, or `None` when it is empty.
fn parse_opt<T: std::str::FromStr<Err = broadcast_domain::ParseError>>(
    raw: &str,
) -> Result<Option<T>> {
    match raw.trim() {
        "" => Ok(None),
        s => s
            .parse()
            .map(Some)
            .map_err(|e: broadcast_domain::ParseError| Error::Invalid(e.0)),
    }
}

/// The recipient filters as entered (empty: any).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecipientFilter<'a> {
    pub(crate) status: &'a str,
    pub(crate) channel: &'a str,
    pub(crate) error_kind: &'a str,
}

impl RecipientFilter<'_> {
    /// The query for rows `offset..offset + limit` matching the filters.
    pub(crate) fn query(self, offset: u64, limit: u64) -> Result<RecipientQuery> {
        Ok(RecipientQuery {
            status: parse_opt::<DeliveryStatus>(self.status)?,
            channel: parse_opt::<ChannelKind>(self.channel)?,
            error_kind: parse_opt::<ErrorKind>(self.error_kind)?,
            offset,
            limit,
        })
    }
}

/// One page of a broadcast's recipients.
#[derive(Debug)]
pub(crate) struct Recipients {
    pub(crate) broadcast: Broadcast,
    pub(crate) query: RecipientQuery,
    pub(crate) page: Page<Recipient>,
}

/// The recipients of broadcast `id` matching `filter`, rows `offset..offset + limit`.
pub(crate) async fn recipients(
    state: &AppState,
    id: BroadcastId,
    filter: RecipientFilter<'_>,
    offset: u64,
    limit: u64,
) -> Result<Recipients> {
    let broadcast = broadcast(state, id).await?;
    let query = filter.query(offset, limit)?;
    let page = state
        .orchestrator
        .ports()
        .deliveries
        .list_recipients(id, &query)
        .await?;
    Ok(Recipients {
        broadcast,
        query,
        page,
    })
}

/// Up to `limit` recipients of broadcast `id` matching `filter` with an id above `after`, by id.
pub(crate) async fn recipients_after(
    state: &AppState,
    id: BroadcastId,
    filter: RecipientFilter<'_>,
    after: RecipientId,
    limit: u64,
) -> Result<Vec<Recipient>> {
    broadcast(state, id).await?;
    let query = filter.query(0, limit)?;
    state
        .orchestrator
        .ports()
        .deliveries
        .list_recipients_after(id, &query, after)
        .await
}

/// What is wrong with a template as entered.
#[derive(Debug, Default)]
pub(crate) struct TemplateProblems {
    /// The name is not a valid template name.
    pub(crate) name: Option<String>,
    /// The content could not be read (e.g. an unknown parse mode).
    pub(crate) content: Option<String>,
    /// The content, when it could be read, and what the renderer found wrong in it.
    pub(crate) render: Option<(TemplateContent, Vec<TemplateError>)>,
}

/// Checks a template as entered: the template to store, or every problem found.
pub(crate) fn check_template(
    state: &AppState,
    name: &str,
    description: &str,
    content: Result<TemplateContent, String>,
) -> Result<NewTemplate, Box<TemplateProblems>> {
    let name = TemplateName::parse(name).map_err(|e| e.0);
    let errors = content
        .as_ref()
        .map(|c| state.orchestrator.ports().renderer.validate(c))
        .unwrap_or_default();
    match (name, content) {
        (Ok(name), Ok(content)) if errors.is_empty() => Ok(NewTemplate {
            name,
            description: description.trim().to_owned(),
            content,
        }),
        (name, content) => Err(Box::new(TemplateProblems {
            name: name.err(),
            content: content.as_ref().err().cloned(),
            render: content.ok().map(|c| (c, errors)),
        })),
    }
}

/// Creates a template (`template.create`).
pub(crate) async fn create_template(
    state: &AppState,
    actor_name: &str,
    new: NewTemplate,
) -> Result<MessageTemplate> {
    state
        .orchestrator
        .create_template(&actor(actor_name)?, new)
        .await
}

/// Replaces a template (`template.update`).
pub(crate) async fn update_template(
    state: &AppState,
    actor_name: &str,
    id: TemplateId,
    new: NewTemplate,
) -> Result<MessageTemplate> {
    state
        .orchestrator
        .update_template(&actor(actor_name)?, id, new)
        .await
}

/// Deletes a template (`template.delete`).
pub(crate) async fn delete_template(
    state: &AppState,
    actor_name: &str,
    id: TemplateId,
) -> Result<()> {
    state
        .orchestrator
        .delete_template(&actor(actor_name)?, id)
        .await
}
