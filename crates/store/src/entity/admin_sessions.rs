//! `admin_sessions`: signed-in sessions of the admin panel, so that they can be ended.

use sea_orm::entity::prelude::*;

/// A row of `admin_sessions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admin_sessions")]
pub struct Model {
    /// SHA-256 (hex) of the session's secret token.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    /// The administrator's login name.
    pub username: String,
    /// Signed in.
    pub created_at: DateTimeUtc,
    /// Ends by itself.
    pub expires_at: DateTimeUtc,
}

/// `admin_sessions` has no relations the store uses.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
