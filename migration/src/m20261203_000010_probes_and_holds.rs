//! A circuit breaker that heals and a 429 that holds every worker:
//!
//! - `broadcasts.probe_channel`, `probe_cooldown_ms`, `probe_at`: set while a broadcast is
//!   paused by its circuit breaker. At `probe_at` one worker takes the probe (moving
//!   `probe_at` to the end of its probe lease) and sends one message on `probe_channel`;
//!   success resumes the broadcast, failure schedules the next probe twice the cool-down
//!   later. Every other status change clears the three columns.
//! - `send_budgets.held_until`: the end of the latest wait a service asked for (Telegram's
//!   429 `retry_after`), which every worker sharing the budget checks before it sends.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer_null, text_null, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            text_null(Broadcasts::ProbeChannel),
            big_integer_null(Broadcasts::ProbeCooldownMs),
            timestamp_with_time_zone_null(Broadcasts::ProbeAt),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Broadcasts::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SendBudgets::Table)
                    .add_column(timestamp_with_time_zone_null(SendBudgets::HeldUntil))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SendBudgets::Table)
                    .drop_column(SendBudgets::HeldUntil)
                    .to_owned(),
            )
            .await?;
        for column in [
            Broadcasts::ProbeAt,
            Broadcasts::ProbeCooldownMs,
            Broadcasts::ProbeChannel,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Broadcasts::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Broadcasts {
    Table,
    ProbeChannel,
    ProbeCooldownMs,
    ProbeAt,
}

#[derive(DeriveIden)]
enum SendBudgets {
    Table,
    HeldUntil,
}
