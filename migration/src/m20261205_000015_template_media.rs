//! Media in templates and the `file_id`s Telegram gives uploads.
//!
//! - `message_templates.telegram_media`: the media the Telegram message shows, JSON (a list of
//!   references: library id, name, kind, SHA-256). A launched broadcast has its own copy in
//!   `broadcasts.frozen_template`, so later changes to the template or the library change
//!   nothing for it.
//! - `telegram_files`: per bot and content (SHA-256), the `file_id` Telegram returned for the
//!   first upload, so that every later message sends the id instead of the bytes. Not tied to
//!   `media_blobs`: an id stays valid at Telegram after the bytes leave the library, and is
//!   reused if the same bytes come back.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MessageTemplates::Table)
                    .add_column(json_binary_null(MessageTemplates::TelegramMedia))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TelegramFiles::Table)
                    .col(big_integer(TelegramFiles::BotId))
                    .col(text(TelegramFiles::Sha256))
                    .col(text(TelegramFiles::Kind))
                    .col(text(TelegramFiles::FileId))
                    .col(timestamp_with_time_zone(TelegramFiles::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(TelegramFiles::BotId)
                            .col(TelegramFiles::Sha256),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TelegramFiles::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(MessageTemplates::Table)
                    .drop_column(MessageTemplates::TelegramMedia)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum MessageTemplates {
    Table,
    TelegramMedia,
}

#[derive(DeriveIden)]
enum TelegramFiles {
    Table,
    BotId,
    Sha256,
    Kind,
    FileId,
    CreatedAt,
}
