//! `admin_sessions`: the admin panel's sessions, kept on the server so that logout, a password
//! change and "log out everywhere" end them before they expire. A row holds the SHA-256 of the
//! session's secret token (the token itself is only in the browser's cookie), the
//! administrator's name, and when the session began and when it expires.

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
                    .table(AdminSessions::Table)
                    .col(text(AdminSessions::IdHash).primary_key())
                    .col(text(AdminSessions::Username))
                    .col(timestamp_with_time_zone(AdminSessions::CreatedAt))
                    .col(timestamp_with_time_zone(AdminSessions::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_admin_sessions_username")
                    .table(AdminSessions::Table)
                    .col(AdminSessions::Username)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AdminSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AdminSessions {
    Table,
    IdHash,
    Username,
    CreatedAt,
    ExpiresAt,
}
