//! The `--json` documents of `docs/cli.md`: the CLI's own types, built from the domain's, so
//! that a script's interface changes only when this file does, never through a field renamed in
//! the domain. Audience filters keep the filter's own JSON format (the one `--filter` reads).

use std::collections::BTreeMap;

use broadcast_domain::{
    AdminUser, AudienceCount, AudienceFilter, BreakerProbe, Broadcast, ChannelKind, ChannelPolicy,
    ImportReport, MediaRef, MessageTemplate, Page, Recipient, TemplateContent, UrlButton, User,
};
use broadcast_orchestrator::LaunchReport;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// A template's parts.
#[derive(Debug, Serialize)]
pub(crate) struct ContentDoc {
    telegram_text: Option<String>,
    parse_mode: &'static str,
    link_preview: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    telegram_media: Vec<MediaRefDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    telegram_buttons: Vec<Vec<ButtonDoc>>,
    email_subject: Option<String>,
    email_html: Option<String>,
    email_text: Option<String>,
}

/// A URL button (`content.telegram_buttons[][]`; a preview's `telegram.buttons`).
#[derive(Debug, Serialize)]
pub(crate) struct ButtonDoc {
    text: String,
    url: String,
}

impl ButtonDoc {
    pub(crate) fn rows(rows: &[Vec<UrlButton>]) -> Vec<Vec<ButtonDoc>> {
        rows.iter()
            .map(|row| {
                row.iter()
                    .map(|b| ButtonDoc {
                        text: b.text.clone(),
                        url: b.url.clone(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// A medium a template shows (`content.telegram_media[]`).
#[derive(Debug, Serialize)]
pub(crate) struct MediaRefDoc {
    id: i64,
    name: String,
    kind: &'static str,
    content_type: String,
    size: u64,
    sha256: String,
}

impl From<&MediaRef> for MediaRefDoc {
    fn from(m: &MediaRef) -> Self {
        Self {
            id: m.medium,
            name: m.name.clone(),
            kind: m.kind.as_str(),
            content_type: m.content_type.clone(),
            size: m.size,
            sha256: m.sha256.clone(),
        }
    }
}

impl From<&TemplateContent> for ContentDoc {
    fn from(c: &TemplateContent) -> Self {
        Self {
            telegram_text: c.telegram_text.clone(),
            parse_mode: c.parse_mode.as_str(),
            link_preview: c.link_preview,
            telegram_media: c.telegram_media.iter().map(MediaRefDoc::from).collect(),
            telegram_buttons: ButtonDoc::rows(&c.telegram_buttons),
            email_subject: c.email_subject.clone(),
            email_html: c.email_html.clone(),
            email_text: c.email_text.clone(),
        }
    }
}

/// `template create|update|show|list`.
#[derive(Debug, Serialize)]
pub(crate) struct TemplateDoc {
    id: i64,
    name: String,
    description: String,
    content: ContentDoc,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&MessageTemplate> for TemplateDoc {
    fn from(t: &MessageTemplate) -> Self {
        Self {
            id: t.id,
            name: t.name.to_string(),
            description: t.description.clone(),
            content: (&t.content).into(),
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// `broadcast create|show|list`.
#[derive(Debug, Serialize)]
pub(crate) struct BroadcastDoc {
    id: i64,
    name: String,
    template_id: Option<i64>,
    frozen_template: Option<ContentDoc>,
    channel_policy: String,
    filter: AudienceFilter,
    status: &'static str,
    status_reason: Option<String>,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    created_by: Option<String>,
    total_recipients: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    probe: Option<ProbeDoc>,
}

/// The next probe of a broadcast paused by its circuit breaker.
#[derive(Debug, Serialize)]
pub(crate) struct ProbeDoc {
    channel: &'static str,
    at: DateTime<Utc>,
    cooldown_seconds: f64,
}

impl From<&BreakerProbe> for ProbeDoc {
    fn from(p: &BreakerProbe) -> Self {
        Self {
            channel: p.channel.as_str(),
            at: p.at,
            cooldown_seconds: p.cooldown.as_secs_f64(),
        }
    }
}

impl From<&Broadcast> for BroadcastDoc {
    fn from(b: &Broadcast) -> Self {
        Self {
            id: b.id,
            name: b.name.clone(),
            template_id: b.template_id,
            frozen_template: b.frozen_template.as_ref().map(Into::into),
            channel_policy: b.channel_policy.to_string(),
            filter: b.filter.clone(),
            status: b.status.as_str(),
            status_reason: b.status_reason.clone(),
            scheduled_at: b.scheduled_at,
            started_at: b.started_at,
            finished_at: b.finished_at,
            created_by: b.created_by.clone(),
            total_recipients: b.total_recipients,
            created_at: b.created_at,
            updated_at: b.updated_at,
            probe: b.probe.as_ref().map(Into::into),
        }
    }
}

/// The rows a launch wrote.
#[derive(Debug, Serialize)]
pub(crate) struct MaterialisedDoc {
    queued: BTreeMap<&'static str, u64>,
    skipped: BTreeMap<&'static str, u64>,
    inserted: u64,
}

/// `broadcast launch`.
#[derive(Debug, Serialize)]
pub(crate) struct LaunchDoc {
    broadcast: BroadcastDoc,
    materialised: MaterialisedDoc,
}

impl From<&LaunchReport> for LaunchDoc {
    fn from(r: &LaunchReport) -> Self {
        let m = &r.materialised;
        Self {
            broadcast: (&r.broadcast).into(),
            materialised: MaterialisedDoc {
                queued: m.queued.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
                skipped: m.skipped.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
                inserted: m.inserted,
            },
        }
    }
}

/// One recipient row (`broadcast recipients`).
#[derive(Debug, Serialize)]
pub(crate) struct RecipientDoc {
    id: i64,
    broadcast_id: i64,
    user_id: i64,
    registration_id: Option<i64>,
    channel: &'static str,
    address: String,
    status: &'static str,
    skip_reason: Option<&'static str>,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    send_started_at: Option<DateTime<Utc>>,
    error_kind: Option<&'static str>,
    last_error: Option<String>,
    provider_message_id: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    uncertain_sends: i32,
    updated_at: DateTime<Utc>,
}

impl From<&Recipient> for RecipientDoc {
    fn from(r: &Recipient) -> Self {
        Self {
            id: r.id,
            broadcast_id: r.broadcast_id,
            user_id: r.user_id,
            registration_id: r.registration_id,
            channel: r.channel.as_str(),
            address: r.address.clone(),
            status: r.status.as_str(),
            skip_reason: r.skip_reason.map(|s| s.as_str()),
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            lease_owner: r.lease_owner.clone(),
            lease_expires_at: r.lease_expires_at,
            send_started_at: r.send_started_at,
            error_kind: r.error_kind.map(|k| k.as_str()),
            last_error: r.last_error.clone(),
            provider_message_id: r.provider_message_id.clone(),
            sent_at: r.sent_at,
            uncertain_sends: r.uncertain_sends,
            updated_at: r.updated_at,
        }
    }
}

/// A member of the audience (`audience users`, `audience user`).
#[derive(Debug, Serialize)]
pub(crate) struct UserDoc {
    id: i64,
    external_id: Option<String>,
    telegram_chat_id: Option<i64>,
    email: Option<String>,
    first_name: String,
    last_name: String,
    username: Option<String>,
    language: Option<String>,
    country: Option<String>,
    city: Option<String>,
    attributes: serde_json::Map<String, serde_json::Value>,
    telegram_blocked_at: Option<DateTime<Utc>>,
    email_unsubscribed_at: Option<DateTime<Utc>>,
    email_bounced_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&User> for UserDoc {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            external_id: u.external_id.clone(),
            telegram_chat_id: u.telegram_chat_id.map(|c| c.get()),
            email: u.email.as_ref().map(ToString::to_string),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            username: u.username.clone(),
            language: u.language.clone(),
            country: u.country.clone(),
            city: u.city.clone(),
            attributes: u.attributes.clone(),
            telegram_blocked_at: u.telegram_blocked_at,
            email_unsubscribed_at: u.email_unsubscribed_at,
            email_bounced_at: u.email_bounced_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A competition (`audience competitions`).
#[derive(Debug, Serialize)]
pub(crate) struct CompetitionDoc {
    id: i64,
    slug: String,
    name: String,
    starts_on: Option<NaiveDate>,
    city: Option<String>,
    country: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<&broadcast_domain::Competition> for CompetitionDoc {
    fn from(c: &broadcast_domain::Competition) -> Self {
        Self {
            id: c.id,
            slug: c.slug.clone(),
            name: c.name.clone(),
            starts_on: c.starts_on,
            city: c.city.clone(),
            country: c.country.clone(),
            created_at: c.created_at,
        }
    }
}

/// A user's registration (`audience user`).
#[derive(Debug, Serialize)]
pub(crate) struct RegistrationDoc {
    id: i64,
    user_id: i64,
    competition_id: i64,
    role: &'static str,
    status: &'static str,
    created_at: DateTime<Utc>,
}

impl From<&broadcast_domain::Registration> for RegistrationDoc {
    fn from(r: &broadcast_domain::Registration) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            competition_id: r.competition_id,
            role: r.role.as_str(),
            status: r.status.as_str(),
            created_at: r.created_at,
        }
    }
}

/// One page of a list: `items` and the `total` matching.
#[derive(Debug, Serialize)]
pub(crate) struct PageDoc<T> {
    items: Vec<T>,
    total: u64,
}

impl<T> PageDoc<T> {
    /// The page with each item as its document.
    pub(crate) fn of<D>(page: &Page<D>) -> Self
    where
        for<'a> T: From<&'a D>,
    {
        Self {
            items: page.items.iter().map(T::from).collect(),
            total: page.total,
        }
    }
}

/// An administrator (`admin create-user`, `admin list`); never the password hash.
#[derive(Debug, Serialize)]
pub(crate) struct AdminDoc {
    id: i64,
    username: String,
    created_at: DateTime<Utc>,
    last_login_at: Option<DateTime<Utc>>,
}

impl From<&AdminUser> for AdminDoc {
    fn from(a: &AdminUser) -> Self {
        Self {
            id: a.id,
            username: a.username.clone(),
            created_at: a.created_at,
            last_login_at: a.last_login_at,
        }
    }
}

/// What an import did (`audience import`, per file).
#[derive(Debug, Serialize)]
pub(crate) struct ImportDoc {
    inserted: u64,
    updated: u64,
}

impl From<&ImportReport> for ImportDoc {
    fn from(r: &ImportReport) -> Self {
        Self {
            inserted: r.inserted,
            updated: r.updated,
        }
    }
}

/// An audience counted for a channel policy (`audience count`, `broadcast count`).
#[derive(Debug, Serialize)]
pub(crate) struct CountDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcast_id: Option<i64>,
    users: u64,
    channel_policy: String,
    reachable: BTreeMap<&'static str, u64>,
    messages: BTreeMap<&'static str, u64>,
    unreachable: u64,
}

impl CountDoc {
    pub(crate) fn new(c: &AudienceCount, policy: ChannelPolicy, broadcast_id: Option<i64>) -> Self {
        let by_name =
            |m: &BTreeMap<ChannelKind, u64>| m.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        Self {
            broadcast_id,
            users: c.users,
            channel_policy: policy.to_string(),
            reachable: by_name(&c.reachable),
            messages: by_name(&c.messages),
            unreachable: c.unreachable,
        }
    }
}

/// Each item as its document.
pub(crate) fn all<D, T: for<'a> From<&'a D>>(items: &[D]) -> Vec<T> {
    items.iter().map(T::from).collect()
}

#[cfg(test)]
mod tests {
    use broadcast_domain::{ChannelKind, DeliveryStatus, MaterialiseReport, SkipReason};
    use chrono::TimeZone;

    use super::*;

    fn keys(doc: impl Serialize) -> Vec<String> {
        match serde_json::to_value(doc).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("an object expected: {other}"),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
    }

    /// The documented keys (docs/cli.md), pinned: a change here is a change of the interface.
    #[test]
    fn documents_have_the_documented_keys() {
        let recipient = Recipient {
            id: 1,
            broadcast_id: 2,
            user_id: 3,
            registration_id: None,
            channel: ChannelKind::EMAIL,
            address: "a@example.org".into(),
            status: DeliveryStatus::Skipped,
            skip_reason: Some(SkipReason::EmailBounced),
            attempts: 0,
            next_attempt_at: at(),
            lease_owner: None,
            lease_expires_at: None,
            send_started_at: None,
            error_kind: None,
            last_error: None,
            provider_message_id: None,
            sent_at: None,
            uncertain_sends: 0,
            updated_at: at(),
        };
        let doc = serde_json::to_value(RecipientDoc::from(&recipient)).unwrap();
        assert_eq!(doc["channel"], "email");
        assert_eq!(doc["skip_reason"], "email_bounced");
        let mut expected = vec![
            "address",
            "attempts",
            "broadcast_id",
            "channel",
            "error_kind",
            "id",
            "last_error",
            "lease_expires_at",
            "lease_owner",
            "next_attempt_at",
            "provider_message_id",
            "registration_id",
            "send_started_at",
            "sent_at",
            "skip_reason",
            "status",
            "uncertain_sends",
            "updated_at",
            "user_id",
        ];
        expected.sort_unstable();
        assert_eq!(keys(RecipientDoc::from(&recipient)), expected);

        let report = MaterialiseReport {
            queued: BTreeMap::from([(ChannelKind::TELEGRAM, 4)]),
            skipped: BTreeMap::from([(SkipReason::NoEmail, 1)]),
            inserted: 5,
        };
        let m = MaterialisedDoc {
            queued: report
                .queued
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect(),
            skipped: report
                .skipped
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect(),
            inserted: report.inserted,
        };
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            serde_json::json!({
                "queued": { "telegram": 4 }, "skipped": { "no_email": 1 }, "inserted": 5
            })
        );
        let count = AudienceCount {
            users: 3,
            reachable: BTreeMap::from([(ChannelKind::TELEGRAM, 2), (ChannelKind::EMAIL, 2)]),
            messages: BTreeMap::from([(ChannelKind::TELEGRAM, 2), (ChannelKind::EMAIL, 1)]),
            unreachable: 0,
        };
        assert_eq!(
            serde_json::to_value(CountDoc::new(
                &count,
                ChannelPolicy::TELEGRAM_THEN_EMAIL,
                None
            ))
            .unwrap(),
            serde_json::json!({
                "users": 3, "channel_policy": "telegram_then_email",
                "reachable": { "telegram": 2, "email": 2 },
                "messages": { "telegram": 2, "email": 1 }, "unreachable": 0
            })
        );
    }
}
