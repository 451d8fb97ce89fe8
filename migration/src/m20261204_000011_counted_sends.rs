//! `possible_duplicates` counts sends, not rows: `broadcast_counts.duplicates` becomes the sum
//! of the rows' `uncertain_sends` (each send whose outcome was unknown, or whose lease expired
//! after it started, adds one) instead of the number of rows with one or more.
//!
//! A row whose connection dropped twice after the server had accepted the message was sent
//! three times: two duplicates, where the old count said one. `up` rewrites the delete
//! trigger (SQLite) or its function (PostgreSQL) and recounts every broadcast's counters from
//! the ledger; `down` puts back migration 7's versions and recounts the old way.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261128_000006_ledger_counters::{BACKFILL, POSTGRES_FUNCTION, SQLITE_TRIGGER};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Migration 6's SQL as migration 7 left it (the column renamed); with `sends`, each ledger row
/// adds its `uncertain_sends` to `duplicates` instead of 1 when it has any.
fn counted(sql: &str, sends: bool) -> String {
    let old = sql.replace("lease_expirations", "uncertain_sends");
    if !sends {
        return old;
    }
    old.replace(
        "SUM(CASE WHEN uncertain_sends > 0 THEN 1 ELSE 0 END)",
        "SUM(uncertain_sends)",
    )
    .replace(
        "SUM(CASE WHEN g.uncertain_sends > 0 THEN 1 ELSE 0 END)",
        "SUM(g.uncertain_sends)",
    )
    .replace(
        "CASE WHEN OLD.uncertain_sends > 0 THEN -1 ELSE 0 END",
        "-OLD.uncertain_sends",
    )
}

async fn rewrite(manager: &SchemaManager<'_>, sends: bool) -> Result<(), DbErr> {
    let db = manager.get_connection();
    match manager.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.execute_unprepared(&counted(POSTGRES_FUNCTION, sends))
                .await?;
        }
        _ => {
            db.execute_unprepared("DROP TRIGGER IF EXISTS trg_broadcast_recipients_count_delete")
                .await?;
            db.execute_unprepared(&counted(SQLITE_TRIGGER, sends))
                .await?;
        }
    }
    db.execute_unprepared("DELETE FROM broadcast_counts")
        .await?;
    db.execute_unprepared(&counted(BACKFILL, sends)).await?;
    Ok(())
}

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rewrite(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rewrite(manager, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_term_becomes_a_sum_of_sends_and_down_restores_it() {
        let backfill = counted(BACKFILL, true);
        assert!(backfill.contains("SUM(uncertain_sends)"), "{backfill}");
        let function = counted(POSTGRES_FUNCTION, true);
        assert!(function.contains("-SUM(g.uncertain_sends)"), "{function}");
        let trigger = counted(SQLITE_TRIGGER, true);
        assert!(trigger.contains(", -OLD.uncertain_sends"), "{trigger}");
        for sql in [&backfill, &function, &trigger] {
            assert!(!sql.contains("uncertain_sends > 0"), "{sql}");
            assert!(!sql.contains("lease_expirations"), "{sql}");
        }
        for sql in [BACKFILL, POSTGRES_FUNCTION, SQLITE_TRIGGER] {
            let old = counted(sql, false);
            assert!(old.contains("uncertain_sends > 0"), "{old}");
            assert!(!old.contains("lease_expirations"), "{old}");
        }
    }
}
