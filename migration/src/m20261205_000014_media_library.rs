//! The media library: `media_blobs` holds each file's bytes once, by the SHA-256 of its
//! content; `media` names them. A template names a medium; a launched broadcast keeps the
//! SHA-256 it launched with, so replacing or renaming the medium later changes nothing for it.
//!
//! The bytes live in the database rather than in a directory beside it: every worker, on
//! whatever machine, reads them through the connection it already has (a directory would
//! have to be shared between machines), and a backup of the database is a backup of the
//! library. Files are at most 50 MB (Telegram's limit for uploads through the Bot API); a
//! broadcast uploads each to Telegram once and reuses the `file_id` after that.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MediaBlobs::Table)
                    .col(text(MediaBlobs::Sha256).primary_key())
                    .col(big_integer(MediaBlobs::Size))
                    .col(blob(MediaBlobs::Bytes))
                    .col(timestamp_with_time_zone(MediaBlobs::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Media::Table)
                    .col(big_pk_auto(Media::Id))
                    .col(text_uniq(Media::Name))
                    .col(text(Media::ContentType))
                    .col(text(Media::Kind))
                    .col(big_integer(Media::Size))
                    .col(text(Media::Sha256))
                    .col(text(Media::CreatedBy))
                    .col(timestamp_with_time_zone(Media::CreatedAt))
                    .col(timestamp_with_time_zone(Media::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_media_blob")
                            .from(Media::Table, Media::Sha256)
                            .to(MediaBlobs::Table, MediaBlobs::Sha256),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Media::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MediaBlobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum MediaBlobs {
    Table,
    Sha256,
    Size,
    Bytes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Media {
    Table,
    Id,
    Name,
    ContentType,
    Kind,
    Size,
    Sha256,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}
