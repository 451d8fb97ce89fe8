//! `send_budgets`: send rates shared by every worker, one row per key.

use sea_orm::entity::prelude::*;

/// A row of `send_budgets`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "send_budgets")]
pub struct Model {
    /// What is rate-limited, e.g. `telegram`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Earliest time of the next free slot.
    pub next_free_at: DateTimeUtc,
    /// Last reservation or move.
    pub updated_at: DateTimeUtc,
    /// How far the slots have been moved back in all, in microseconds.
    pub moved_us: i64,
    /// The end of the latest wait the service asked for (a 429's `retry_after`).
    pub held_until: Option<DateTimeUtc>,
    /// The total of moves, in microseconds, the key must reach before it hands out a slot at
    /// or after `owed_by`; null when nothing is owed.
    pub owed_us: Option<i64>,
    /// See `owed_us`.
    pub owed_by: Option<DateTimeUtc>,
}

/// `send_budgets` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
