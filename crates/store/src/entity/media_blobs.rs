//! `media_blobs`: the media library's bytes, once per content.

use sea_orm::entity::prelude::*;

/// A row of `media_blobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media_blobs")]
pub struct Model {
    /// SHA-256 of the bytes, lowercase hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// When they were first kept.
    pub created_at: DateTimeUtc,
}

/// `media_blobs` has no relations that are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
