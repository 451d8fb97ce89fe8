//! `message_templates.telegram_buttons`: the rows of URL buttons under the Telegram message,
//! JSON (label and URL templates). A launched broadcast has its own copy in
//! `broadcasts.frozen_template`.

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
                    .add_column(json_binary_null(MessageTemplates::TelegramButtons))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MessageTemplates::Table)
                    .drop_column(MessageTemplates::TelegramButtons)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum MessageTemplates {
    Table,
    TelegramButtons,
}
