//! `audit_log`: who did what to which object, when.

use sea_orm::entity::prelude::*;

/// A row of `audit_log`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Who.
    pub actor: String,
    /// What, e.g. `broadcast.launch`.
    pub action: String,
    /// Kind of object.
    pub target_type: String,
    /// Its id.
    pub target_id: Option<i64>,
    /// Details.
    #[sea_orm(column_type = "JsonBinary")]
    pub details: Json,
    /// When.
    pub at: DateTimeUtc,
}

/// `audit_log` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
