//! `broadcast_recipients`: the delivery ledger and queue, one row per (broadcast, user, channel).

use sea_orm::entity::prelude::*;

/// A row of `broadcast_recipients`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "broadcast_recipients")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The broadcast.
    pub broadcast_id: i64,
    /// The user.
    pub user_id: i64,
    /// The registration the filter matched.
    pub registration_id: Option<i64>,
    /// `ChannelKind::as_str()`.
    pub channel: String,
    /// Chat id or e-mail address; empty when skipped for lack of one.
    pub address: String,
    /// `DeliveryStatus::as_str()`.
    pub status: String,
    /// `SkipReason::as_str()`.
    pub skip_reason: Option<String>,
    /// Counted send attempts.
    pub attempts: i32,
    /// Earliest next attempt.
    pub next_attempt_at: DateTimeUtc,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// When the lease holder started sending; cleared with the result.
    pub send_started_at: Option<DateTimeUtc>,
    /// `ErrorKind::as_str()` of the last error.
    pub error_kind: Option<String>,
    /// Text of the last error.
    pub last_error: Option<String>,
    /// Provider's message id.
    pub provider_message_id: Option<String>,
    /// Delivered.
    pub sent_at: Option<DateTimeUtc>,
    /// Sends whose outcome is unknown (a takeover after the send started, a dropped
    /// connection after the request was written).
    pub uncertain_sends: i32,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `broadcast_recipients`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The broadcast.
    #[sea_orm(
        belongs_to = "super::broadcasts::Entity",
        from = "Column::BroadcastId",
        to = "super::broadcasts::Column::Id",
        on_delete = "Cascade"
    )]
    Broadcast,
    /// The user.
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    /// The matched registration.
    #[sea_orm(
        belongs_to = "super::registrations::Entity",
        from = "Column::RegistrationId",
        to = "super::registrations::Column::Id",
        on_delete = "SetNull"
    )]
    Registration,
}

impl Related<super::broadcasts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Broadcast.def()
    }
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::registrations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Registration.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
