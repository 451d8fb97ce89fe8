//! A send budget that learns from late messages: `send_budgets.moved_us`, how far the key's
//! slots have been moved back in all, in microseconds.
//!
//! Slots are spaced so that `rate` of them span one window plus a margin. A message that took
//! longer than the margin from its slot to its answer may have reached the server late, so
//! the slot `rate` after it must come one window after that answer: the worker moves the
//! unreserved slots back by the difference. Reservations hand out the total moved so far, so
//! that a worker moves them back only by what earlier moves have not already covered (several
//! late messages in a row move the slots once, not once each).

use sea_orm_migration::prelude::*;

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
                    .table(SendBudgets::Table)
                    .add_column(
                        ColumnDef::new(SendBudgets::MovedUs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SendBudgets::Table)
                    .drop_column(SendBudgets::MovedUs)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SendBudgets {
    Table,
    MovedUs,
}
