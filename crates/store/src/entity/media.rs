//! `media`: the media library's names, each pointing at bytes in `media_blobs`.

use sea_orm::entity::prelude::*;

/// A row of `media`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media")]
pub struct Model {
    /// Identifier.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Content type, sniffed from the bytes.
    pub content_type: String,
    /// `photo`, `video`, `animation` or `document`.
    pub kind: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the bytes (lowercase hex), the key of `media_blobs`.
    pub sha256: String,
    /// Who added it or last replaced its bytes.
    pub created_by: String,
    /// When it was added.
    pub created_at: DateTimeUtc,
    /// When it was last changed.
    pub updated_at: DateTimeUtc,
}

/// `media` points at `media_blobs`; the relation is not navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
