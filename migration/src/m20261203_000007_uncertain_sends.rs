//! An honest duplicate count: `lease_expirations` becomes `uncertain_sends`, and a row records
//! when its send started (`send_started_at`).
//!
//! Before, every takeover of an expired lease counted the row as a possible duplicate, also
//! rows a worker had claimed ahead and never started sending. Now the worker marks a row
//! (`send_started_at`) just before its send, in the same write that records earlier results;
//! a takeover adds one to `uncertain_sends` only when the row was marked, and a send whose
//! outcome is unknown (the connection dropped after the request was written) adds one when its
//! result is recorded. `broadcast_counts.duplicates` keeps counting rows with a value above 0;
//! the delete trigger's PostgreSQL function is rewritten for the new column name (SQLite
//! rewrites its trigger itself when the column is renamed).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261128_000006_ledger_counters::POSTGRES_FUNCTION;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const RENAME_UP: &str =
    "ALTER TABLE broadcast_recipients RENAME COLUMN lease_expirations TO uncertain_sends";
const RENAME_DOWN: &str =
    "ALTER TABLE broadcast_recipients RENAME COLUMN uncertain_sends TO lease_expirations";

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(RENAME_UP).await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                &POSTGRES_FUNCTION.replace("lease_expirations", "uncertain_sends"),
            )
            .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(BroadcastRecipients::Table)
                    .add_column(timestamp_with_time_zone_null(
                        BroadcastRecipients::SendStartedAt,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BroadcastRecipients::Table)
                    .drop_column(BroadcastRecipients::SendStartedAt)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(RENAME_DOWN).await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(POSTGRES_FUNCTION).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum BroadcastRecipients {
    Table,
    SendStartedAt,
}
