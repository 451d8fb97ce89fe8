//! `telegram_files`: the `file_id` Telegram gave each bot for an upload of some bytes.

use sea_orm::entity::prelude::*;

/// A row of `telegram_files`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "telegram_files")]
pub struct Model {
    /// The bot: the number before the colon of its token.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bot_id: i64,
    /// SHA-256 of the uploaded bytes, lowercase hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    /// `MediaKind::as_str()` of the upload.
    pub kind: String,
    /// What Telegram answered.
    pub file_id: String,
    /// When it was kept.
    pub created_at: DateTimeUtc,
}

/// `telegram_files` has no relations that are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
