//! `broadcast_counts`: the ledger's maintained counters, one row per (broadcast, channel, status,
//! error kind, skip reason, shard). See `crate::counts`.

use sea_orm::entity::prelude::*;

/// A row of `broadcast_counts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "broadcast_counts")]
pub struct Model {
    /// The broadcast.
    #[sea_orm(primary_key, auto_increment = false)]
    pub broadcast_id: i64,
    /// `ChannelKind::as_str()`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    /// `DeliveryStatus::as_str()`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub status: String,
    /// `ErrorKind::as_str()` of `failed` and `pending` rows; `''` for other statuses and none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub error_kind: String,
    /// `SkipReason::as_str()`, `''` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub skip_reason: String,
    /// Which of the key's counter rows; readers add the shards up.
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i32,
    /// Ledger rows (this shard's share; may be negative, the sum over shards is not).
    pub n: i64,
    /// Of those, rows whose lease expired while being sent (`uncertain_sends > 0`).
    pub duplicates: i64,
    /// Earliest `sent_at` counted here.
    pub first_sent_at: Option<DateTimeUtc>,
    /// Latest `sent_at` counted here.
    pub last_sent_at: Option<DateTimeUtc>,
}

/// Relations of `broadcast_counts`.
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
}

impl Related<super::broadcasts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Broadcast.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
