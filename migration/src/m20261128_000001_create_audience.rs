//! Audience tables: `users`, `competitions` and `registrations`.

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
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(text_null(Users::ExternalId).unique_key())
                    .col(big_integer_null(Users::TelegramChatId).unique_key())
                    .col(text_null(Users::Email))
                    .col(text(Users::FirstName).default(""))
                    .col(text(Users::LastName).default(""))
                    .col(text_null(Users::Username))
                    .col(text_null(Users::Language))
                    .col(text_null(Users::Country))
                    .col(text_null(Users::City))
                    .col(json_binary(Users::Attributes).default("{}"))
                    .col(timestamp_with_time_zone_null(Users::TelegramBlockedAt))
                    .col(timestamp_with_time_zone_null(Users::EmailUnsubscribedAt))
                    .col(timestamp_with_time_zone_null(Users::EmailBouncedAt))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Competitions::Table)
                    .col(big_pk_auto(Competitions::Id))
                    .col(text_uniq(Competitions::Slug))
                    .col(text(Competitions::Name))
                    .col(date_null(Competitions::StartsOn))
                    .col(text_null(Competitions::City))
                    .col(text_null(Competitions::Country))
                    .col(timestamp_with_time_zone(Competitions::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Registrations::Table)
                    .col(big_pk_auto(Registrations::Id))
                    .col(big_integer(Registrations::UserId))
                    .col(big_integer(Registrations::CompetitionId))
                    .col(text(Registrations::Role))
                    .col(text(Registrations::Status))
                    .col(timestamp_with_time_zone(Registrations::CreatedAt))
                    .col(timestamp_with_time_zone(Registrations::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_registrations_user")
                            .from(Registrations::Table, Registrations::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_registrations_competition")
                            .from(Registrations::Table, Registrations::CompetitionId)
                            .to(Competitions::Table, Competitions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_registrations_user_competition")
                    .table(Registrations::Table)
                    .col(Registrations::UserId)
                    .col(Registrations::CompetitionId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registrations_competition_role_status")
                    .table(Registrations::Table)
                    .col(Registrations::CompetitionId)
                    .col(Registrations::Role)
                    .col(Registrations::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Registrations::Table.into_iden(),
            Competitions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    ExternalId,
    TelegramChatId,
    Email,
    FirstName,
    LastName,
    Username,
    Language,
    Country,
    City,
    Attributes,
    TelegramBlockedAt,
    EmailUnsubscribedAt,
    EmailBouncedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Competitions {
    Table,
    Id,
    Slug,
    Name,
    StartsOn,
    City,
    Country,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Registrations {
    Table,
    Id,
    UserId,
    CompetitionId,
    Role,
    Status,
    CreatedAt,
    UpdatedAt,
}
