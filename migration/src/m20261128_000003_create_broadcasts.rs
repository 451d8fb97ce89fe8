//! Broadcasts and their delivery ledger: `broadcasts` and `broadcast_recipients`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_audience::{Registrations, Users};
use crate::m20261128_000002_create_templates::MessageTemplates;

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
                    .table(Broadcasts::Table)
                    .col(big_pk_auto(Broadcasts::Id))
                    .col(text(Broadcasts::Name))
                    .col(big_integer_null(Broadcasts::TemplateId))
                    .col(json_binary_null(Broadcasts::FrozenTemplate))
                    .col(text(Broadcasts::ChannelPolicy))
                    .col(json_binary(Broadcasts::Filter))
                    .col(text(Broadcasts::Status))
                    .col(text_null(Broadcasts::StatusReason))
                    .col(timestamp_with_time_zone_null(Broadcasts::ScheduledAt))
                    .col(timestamp_with_time_zone_null(Broadcasts::StartedAt))
                    .col(timestamp_with_time_zone_null(Broadcasts::FinishedAt))
                    .col(text_null(Broadcasts::CreatedBy))
                    .col(big_integer(Broadcasts::TotalRecipients).default(0))
                    .col(timestamp_with_time_zone(Broadcasts::CreatedAt))
                    .col(timestamp_with_time_zone(Broadcasts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_broadcasts_template")
                            .from(Broadcasts::Table, Broadcasts::TemplateId)
                            .to(MessageTemplates::Table, MessageTemplates::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_broadcasts_status_scheduled_at")
                    .table(Broadcasts::Table)
                    .col(Broadcasts::Status)
                    .col(Broadcasts::ScheduledAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BroadcastRecipients::Table)
                    .col(big_pk_auto(BroadcastRecipients::Id))
                    .col(big_integer(BroadcastRecipients::BroadcastId))
                    .col(big_integer(BroadcastRecipients::UserId))
                    .col(big_integer_null(BroadcastRecipients::RegistrationId))
                    .col(text(BroadcastRecipients::Channel))
                    .col(text(BroadcastRecipients::Address))
                    .col(text(BroadcastRecipients::Status))
                    .col(text_null(BroadcastRecipients::SkipReason))
                    .col(integer(BroadcastRecipients::Attempts).default(0))
                    .col(timestamp_with_time_zone(BroadcastRecipients::NextAttemptAt))
                    .col(text_null(BroadcastRecipients::LeaseOwner))
                    .col(timestamp_with_time_zone_null(
                        BroadcastRecipients::LeaseExpiresAt,
                    ))
                    .col(text_null(BroadcastRecipients::ErrorKind))
                    .col(text_null(BroadcastRecipients::LastError))
                    .col(text_null(BroadcastRecipients::ProviderMessageId))
                    .col(timestamp_with_time_zone_null(BroadcastRecipients::SentAt))
                    .col(integer(BroadcastRecipients::LeaseExpirations).default(0))
                    .col(timestamp_with_time_zone(BroadcastRecipients::CreatedAt))
                    .col(timestamp_with_time_zone(BroadcastRecipients::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_broadcast_recipients_broadcast")
                            .from(BroadcastRecipients::Table, BroadcastRecipients::BroadcastId)
                            .to(Broadcasts::Table, Broadcasts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_broadcast_recipients_user")
                            .from(BroadcastRecipients::Table, BroadcastRecipients::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_broadcast_recipients_registration")
                            .from(
                                BroadcastRecipients::Table,
                                BroadcastRecipients::RegistrationId,
                            )
                            .to(Registrations::Table, Registrations::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        let indexes: [(&str, bool, &[BroadcastRecipients]); 4] = [
            (
                "uq_broadcast_recipients_broadcast_user_channel",
                true,
                &[
                    BroadcastRecipients::BroadcastId,
                    BroadcastRecipients::UserId,
                    BroadcastRecipients::Channel,
                ],
            ),
            (
                "idx_broadcast_recipients_broadcast_status_next",
                false,
                &[
                    BroadcastRecipients::BroadcastId,
                    BroadcastRecipients::Status,
                    BroadcastRecipients::NextAttemptAt,
                ],
            ),
            (
                "idx_broadcast_recipients_status_next",
                false,
                &[
                    BroadcastRecipients::Status,
                    BroadcastRecipients::NextAttemptAt,
                ],
            ),
            (
                "idx_broadcast_recipients_status_lease",
                false,
                &[
                    BroadcastRecipients::Status,
                    BroadcastRecipients::LeaseExpiresAt,
                ],
            ),
        ];
        for (name, unique, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(BroadcastRecipients::Table);
            for column in columns {
                index.col(*column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BroadcastRecipients::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Broadcasts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Broadcasts {
    Table,
    Id,
    Name,
    TemplateId,
    FrozenTemplate,
    ChannelPolicy,
    Filter,
    Status,
    StatusReason,
    ScheduledAt,
    StartedAt,
    FinishedAt,
    CreatedBy,
    TotalRecipients,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum BroadcastRecipients {
    Table,
    Id,
    BroadcastId,
    UserId,
    RegistrationId,
    Channel,
    Address,
    Status,
    SkipReason,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseExpiresAt,
    ErrorKind,
    LastError,
    ProviderMessageId,
    SentAt,
    LeaseExpirations,
    CreatedAt,
    UpdatedAt,
}
