//! Moves a send budget owes: `send_budgets.owed_us` and `owed_by`.
//!
//! A late answer needs the slot a window after its own, and every slot after it, to come
//! later. Made at once, a steady lateness moved the slots again for every reservation since
//! the last move, several times a window; now the move is owed (the total of moves the key
//! must reach, `owed_us`, before it hands out a slot at or after `owed_by`) and made by the
//! reservation that reaches that time, so the late answers of one window share one move.
//! Both are null when nothing is owed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer_null, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for mut column in [
            big_integer_null(SendBudgets::OwedUs),
            timestamp_with_time_zone_null(SendBudgets::OwedBy),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SendBudgets::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [SendBudgets::OwedBy, SendBudgets::OwedUs] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SendBudgets::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SendBudgets {
    Table,
    OwedUs,
    OwedBy,
}
