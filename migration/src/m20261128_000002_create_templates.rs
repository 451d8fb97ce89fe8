//! Message templates: `message_templates`.

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
                    .table(MessageTemplates::Table)
                    .col(big_pk_auto(MessageTemplates::Id))
                    .col(text_uniq(MessageTemplates::Name))
                    .col(text(MessageTemplates::Description).default(""))
                    .col(text_null(MessageTemplates::TelegramText))
                    .col(text(MessageTemplates::ParseMode).default("html"))
                    .col(boolean(MessageTemplates::LinkPreview).default(false))
                    .col(text_null(MessageTemplates::EmailSubject))
                    .col(text_null(MessageTemplates::EmailHtml))
                    .col(text_null(MessageTemplates::EmailText))
                    .col(integer(MessageTemplates::Version).default(1))
                    .col(timestamp_with_time_zone(MessageTemplates::CreatedAt))
                    .col(timestamp_with_time_zone(MessageTemplates::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MessageTemplates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum MessageTemplates {
    Table,
    Id,
    Name,
    Description,
    TelegramText,
    ParseMode,
    LinkPreview,
    EmailSubject,
    EmailHtml,
    EmailText,
    Version,
    CreatedAt,
    UpdatedAt,
}
