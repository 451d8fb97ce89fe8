//! `broadcasts`: announcements with their template, audience filter and lifecycle status.

use sea_orm::entity::prelude::*;

/// A row of `broadcasts`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "broadcasts")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Name.
    pub name: String,
    /// The template it was created from (NULL when deleted).
    pub template_id: Option<i64>,
    /// serde JSON of `TemplateContent`, frozen at launch.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub frozen_template: Option<Json>,
    /// `ChannelPolicy::as_str()`.
    pub channel_policy: String,
    /// serde JSON of `AudienceFilter`.
    #[sea_orm(column_type = "JsonBinary")]
    pub filter: Json,
    /// `BroadcastStatus::as_str()`.
    pub status: String,
    /// Why it is paused or failed.
    pub status_reason: Option<String>,
    /// Start time of a scheduled broadcast.
    pub scheduled_at: Option<DateTimeUtc>,
    /// Launched.
    pub started_at: Option<DateTimeUtc>,
    /// Reached a final status.
    pub finished_at: Option<DateTimeUtc>,
    /// Operator.
    pub created_by: Option<String>,
    /// Recipient rows materialised at launch.
    pub total_recipients: i64,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
    /// While paused by the circuit breaker: the channel to probe (`ChannelKind::as_str()`).
    pub probe_channel: Option<String>,
    /// ... the cool-down that led to `probe_at`, in milliseconds.
    pub probe_cooldown_ms: Option<i64>,
    /// ... when the next probe is due.
    pub probe_at: Option<DateTimeUtc>,
}

/// Relations of `broadcasts`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The template.
    #[sea_orm(
        belongs_to = "super::message_templates::Entity",
        from = "Column::TemplateId",
        to = "super::message_templates::Column::Id",
        on_delete = "SetNull"
    )]
    Template,
    /// The delivery rows.
    #[sea_orm(has_many = "super::broadcast_recipients::Entity")]
    Recipients,
}

impl Related<super::message_templates::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl Related<super::broadcast_recipients::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Recipients.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
