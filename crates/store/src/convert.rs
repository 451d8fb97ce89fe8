//! Conversions between entity models (strings, JSON) and domain types. A stored value that does
//! not parse is reported as [`Error::Internal`] naming the table, column and row.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use broadcast_domain::{
    AdminUser, AuditEntry, BreakerProbe, Broadcast, ChannelKind, ChannelPolicy, Competition,
    EmailAddress, Error, MessageTemplate, Recipient, Registration, Result, TelegramChatId,
    TemplateContent, TemplateName, User,
};

use crate::entity::{
    admin_users, audit_log, broadcast_recipients, broadcasts, competitions, message_templates,
    registrations, users,
};

/// The error for garbage in `table.column` of row `id`.
fn garbage(table: &str, column: &str, id: i64, why: impl Display) -> Error {
    Error::Internal(format!(
        "the database holds an invalid value in {table}.{column} of row {id}: {why}"
    ))
}

/// Parses a stored enum spelling (or any `FromStr` value).
pub(crate) fn parse<T>(table: &str, column: &str, id: i64, raw: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    raw.parse().map_err(|e| garbage(table, column, id, e))
}

/// Parses a stored channel kind, which this process need not serve.
pub(crate) fn kind(table: &str, column: &str, id: i64, raw: &str) -> Result<ChannelKind> {
    ChannelKind::from_stored(raw).map_err(|e| garbage(table, column, id, e))
}

/// Parses an optional stored enum spelling.
pub(crate) fn parse_opt<T>(
    table: &str,
    column: &str,
    id: i64,
    raw: Option<&str>,
) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    raw.map(|raw| parse(table, column, id, raw)).transpose()
}

/// Reads a JSON column into a domain type.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    table: &str,
    column: &str,
    id: i64,
    value: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(value).map_err(|e| garbage(table, column, id, e))
}

/// A list of a template for its JSON column (`what` it is, for errors): null when empty.
pub(crate) fn list_json<T: serde::Serialize>(
    what: &str,
    list: &[T],
) -> Result<Option<serde_json::Value>> {
    match list {
        [] => Ok(None),
        list => to_json(what, &list).map(Some),
    }
}

/// Serialises a domain value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::Internal(format!("cannot serialise {what}: {e}")))
}

/// A `users` row as a domain [`User`].
pub(crate) fn user(m: users::Model) -> Result<User> {
    const T: &str = "users";
    let id = m.id;
    let attributes = match m.attributes {
        serde_json::Value::Object(map) => map,
        // Some drivers hand JSON text back as a string; accept a string holding an object.
        serde_json::Value::String(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(garbage(T, "attributes", id, "not a JSON object")),
        },
        other => {
            return Err(garbage(
                T,
                "attributes",
                id,
                format!("not a JSON object: {other}"),
            ));
        }
    };
    Ok(User {
        id,
        external_id: m.external_id,
        telegram_chat_id: m
            .telegram_chat_id
            .map(|c| TelegramChatId::new(c).map_err(|e| garbage(T, "telegram_chat_id", id, e)))
            .transpose()?,
        email: m
            .email
            .as_deref()
            .map(|e| EmailAddress::parse(e).map_err(|err| garbage(T, "email", id, err)))
            .transpose()?,
        first_name: m.first_name,
        last_name: m.last_name,
        username: m.username,
        language: m.language,
        country: m.country,
        city: m.city,
        attributes,
        telegram_blocked_at: m.telegram_blocked_at,
        email_unsubscribed_at: m.email_unsubscribed_at,
        email_bounced_at: m.email_bounced_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// A `competitions` row as a domain [`Competition`].
pub(crate) fn competition(m: competitions::Model) -> Competition {
    Competition {
        id: m.id,
        slug: m.slug,
        name: m.name,
        starts_on: m.starts_on,
        city: m.city,
        country: m.country,
        created_at: m.created_at,
    }
}

/// A `registrations` row as a domain [`Registration`].
pub(crate) fn registration(m: registrations::Model) -> Result<Registration> {
    const T: &str = "registrations";
    Ok(Registration {
        id: m.id,
        user_id: m.user_id,
        competition_id: m.competition_id,
        role: parse(T, "role", m.id, &m.role)?,
        status: parse(T, "status", m.id, &m.status)?,
        created_at: m.created_at,
    })
}

pub(crate) fn template(m: message_templates::Model) -> Result<MessageTemplate> {
    const T: &str = "message_templates";
    Ok(MessageTemplate {
        id: m.id,
        name: TemplateName::parse(&m.name).map_err(|e| garbage(T, "name", m.id, e))?,
        description: m.description,
        content: TemplateContent {
            telegram_text: m.telegram_text,
            parse_mode: parse(T, "parse_mode", m.id, &m.parse_mode)?,
            link_preview: m.link_preview,
            telegram_media: match m.telegram_media {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => from_json(T, "telegram_media", m.id, v)?,
            },
            telegram_buttons: match m.telegram_buttons {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => from_json(T, "telegram_buttons", m.id, v)?,
            },
            email_subject: m.email_subject,
            email_html: m.email_html,
            email_text: m.email_text,
        },
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(crate) fn broadcast(m: broadcasts::Model) -> Result<Broadcast> {
    const T: &str = "broadcasts";
    let id = m.id;
    Ok(Broadcast {
        id,
        name: m.name,
        template_id: m.template_id,
        frozen_template: match m.frozen_template {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(from_json(T, "frozen_template", id, v)?),
        },
        channel_policy: ChannelPolicy::from_stored(&m.channel_policy)
            .map_err(|e| garbage(T, "channel_policy", id, e))?,
        filter: from_json(T, "filter", id, m.filter)?,
        status: parse(T, "status", id, &m.status)?,
        status_reason: m.status_reason,
        scheduled_at: m.scheduled_at,
        started_at: m.started_at,
        finished_at: m.finished_at,
        created_by: m.created_by,
        total_recipients: m.total_recipients,
        created_at: m.created_at,
        updated_at: m.updated_at,
        probe: match (m.probe_channel, m.probe_cooldown_ms, m.probe_at) {
            (Some(channel), Some(cooldown), Some(at)) => Some(BreakerProbe {
                channel: kind(T, "probe_channel", id, &channel)?,
                cooldown: Duration::from_millis(u64::try_from(cooldown).unwrap_or(0)),
                at,
            }),
            _ => None,
        },
    })
}

pub(crate) fn recipient(m: broadcast_recipients::Model) -> Result<Recipient> {
    const T: &str = "broadcast_recipients";
    let id = m.id;
    Ok(Recipient {
        id,
        broadcast_id: m.broadcast_id,
        user_id: m.user_id,
        registration_id: m.registration_id,
        channel: kind(T, "channel", id, &m.channel)?,
        address: m.address,
        status: parse(T, "status", id, &m.status)?,
        skip_reason: parse_opt(T, "skip_reason", id, m.skip_reason.as_deref())?,
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        lease_owner: m.lease_owner,
        lease_expires_at: m.lease_expires_at,
        send_started_at: m.send_started_at,
        error_kind: parse_opt(T, "error_kind", id, m.error_kind.as_deref())?,
        last_error: m.last_error,
        provider_message_id: m.provider_message_id,
        sent_at: m.sent_at,
        uncertain_sends: m.uncertain_sends,
        updated_at: m.updated_at,
    })
}

pub(crate) fn admin(m: admin_users::Model) -> AdminUser {
    AdminUser {
        id: m.id,
        username: m.username,
        password_hash: m.password_hash,
        created_at: m.created_at,
        last_login_at: m.last_login_at,
    }
}

pub(crate) fn audit(m: audit_log::Model) -> AuditEntry {
    AuditEntry {
        id: m.id,
        actor: m.actor,
        action: m.action,
        target_type: m.target_type,
        target_id: m.target_id,
        details: m.details,
        at: m.at,
    }
}

/// Converts every model, failing on the first garbage value.
pub(crate) fn all<M, T>(models: Vec<M>, f: impl Fn(M) -> Result<T>) -> Result<Vec<T>> {
    models.into_iter().map(f).collect()
}
