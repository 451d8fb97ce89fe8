//! `admin_users`: administrators of the panel and CLI.

use sea_orm::entity::prelude::*;

/// A row of `admin_users`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admin_users")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique login name (case-sensitive).
    #[sea_orm(unique)]
    pub username: String,
    /// PHC password hash.
    pub password_hash: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last successful login.
    pub last_login_at: Option<DateTimeUtc>,
}

/// `admin_users` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
