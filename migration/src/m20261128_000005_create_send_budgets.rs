//! `send_budgets`: send rates shared by every worker process, one row per key (e.g. `telegram`)
//! holding the earliest time the next message of that key may go out.

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
                    .table(SendBudgets::Table)
                    .col(text(SendBudgets::Key).primary_key())
                    .col(timestamp_with_time_zone(SendBudgets::NextFreeAt))
                    .col(timestamp_with_time_zone(SendBudgets::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SendBudgets::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SendBudgets {
    Table,
    Key,
    NextFreeAt,
    UpdatedAt,
}
