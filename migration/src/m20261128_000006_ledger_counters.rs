//! A leaner ledger and maintained statistics: `broadcast_counts`, the partial lease index, and
//! no more `(status, next_attempt_at)` index.
//!
//! - `broadcast_counts` holds, per broadcast, channel, status, error kind and skip reason, the
//!   number of ledger rows (`n`), how many of them had a lease expire while being sent
//!   (`duplicates`), and the first and last `sent_at` among them. The store updates it in the same
//!   statement or transaction as every write to `broadcast_recipients`, so statistics read tens of
//!   rows instead of the ledger. Each key is split over up to 16 `shard`s (PostgreSQL writes to
//!   the shard of its backend process) so that concurrent workers do not all queue for the same
//!   counter row; readers add the shards up. `error_kind` is keyed (not `''`) only for `failed`
//!   and `pending` rows, the two statuses whose error kinds the statistics report.
//! - `up` fills it from the rows that exist (shard 0).
//! - Deletes of ledger rows (cascades from `users` or `broadcasts`, manual SQL) are counted by a
//!   trigger: a row trigger on SQLite, a statement trigger over the deleted rows on PostgreSQL.
//! - `idx_broadcast_recipients_status_next` is gone (claims use the per-broadcast index), and
//!   `(status, lease_expires_at)` became a partial index on `lease_expires_at` of `sending` rows:
//!   a launch writes no entry to it, a claim one, a result removes it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The counters of the existing ledger rows, in shard 0.
pub(crate) const BACKFILL: &str = "INSERT INTO broadcast_counts (broadcast_id, shard, channel, status, \
    error_kind, skip_reason, n, duplicates, first_sent_at, last_sent_at) \
    SELECT broadcast_id, 0, channel, status, \
    CASE WHEN status IN ('failed', 'pending') THEN COALESCE(error_kind, '') ELSE '' END, \
    COALESCE(skip_reason, ''), COUNT(*), \
    SUM(CASE WHEN lease_expirations > 0 THEN 1 ELSE 0 END), MIN(sent_at), MAX(sent_at) \
    FROM broadcast_recipients \
    GROUP BY broadcast_id, channel, status, \
    CASE WHEN status IN ('failed', 'pending') THEN COALESCE(error_kind, '') ELSE '' END, \
    COALESCE(skip_reason, '')";

pub(crate) const SQLITE_TRIGGER: &str = "CREATE TRIGGER trg_broadcast_recipients_count_delete \
    AFTER DELETE ON broadcast_recipients FOR EACH ROW BEGIN \
    INSERT INTO broadcast_counts (broadcast_id, shard, channel, status, error_kind, skip_reason, \
    n, duplicates) \
    SELECT OLD.broadcast_id, 0, OLD.channel, OLD.status, \
    CASE WHEN OLD.status IN ('failed', 'pending') THEN COALESCE(OLD.error_kind, '') ELSE '' END, \
    COALESCE(OLD.skip_reason, ''), -1, CASE WHEN OLD.lease_expirations > 0 THEN -1 ELSE 0 END \
    WHERE EXISTS (SELECT 1 FROM broadcasts WHERE broadcasts.id = OLD.broadcast_id) \
    ON CONFLICT (broadcast_id, channel, status, error_kind, skip_reason, shard) DO UPDATE \
    SET n = n + excluded.n, duplicates = duplicates + excluded.duplicates; \
    END";

pub(crate) const POSTGRES_FUNCTION: &str = "CREATE OR REPLACE FUNCTION broadcast_counts_on_delete() \
    RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
    INSERT INTO broadcast_counts AS c (broadcast_id, shard, channel, status, error_kind, \
    skip_reason, n, duplicates) \
    SELECT g.broadcast_id, 0, g.channel, g.status, g.error_kind, g.skip_reason, -COUNT(*), \
    -SUM(CASE WHEN g.lease_expirations > 0 THEN 1 ELSE 0 END) \
    FROM (SELECT broadcast_id, channel, status, \
    CASE WHEN status IN ('failed', 'pending') THEN COALESCE(error_kind, '') ELSE '' END \
    AS error_kind, COALESCE(skip_reason, '') AS skip_reason, lease_expirations FROM gone) AS g \
    WHERE EXISTS (SELECT 1 FROM broadcasts b WHERE b.id = g.broadcast_id) \
    GROUP BY g.broadcast_id, g.channel, g.status, g.error_kind, g.skip_reason \
    ORDER BY g.broadcast_id, g.channel COLLATE \"C\", g.status COLLATE \"C\", \
    g.error_kind COLLATE \"C\", g.skip_reason COLLATE \"C\" \
    ON CONFLICT (broadcast_id, channel, status, error_kind, skip_reason, shard) DO UPDATE \
    SET n = c.n + EXCLUDED.n, duplicates = c.duplicates + EXCLUDED.duplicates; \
    RETURN NULL; END $$";

const POSTGRES_TRIGGER: &str = "CREATE TRIGGER trg_broadcast_recipients_count_delete \
    AFTER DELETE ON broadcast_recipients REFERENCING OLD TABLE AS gone \
    FOR EACH STATEMENT EXECUTE FUNCTION broadcast_counts_on_delete()";

const OLD_INDEXES: [(&str, [BroadcastRecipients; 2]); 2] = [
    (
        "idx_broadcast_recipients_status_next",
        [
            BroadcastRecipients::Status,
            BroadcastRecipients::NextAttemptAt,
        ],
    ),
    (
        "idx_broadcast_recipients_status_lease",
        [
            BroadcastRecipients::Status,
            BroadcastRecipients::LeaseExpiresAt,
        ],
    ),
];

/// The partial index the expired-lease claim walks.
const SENDING_LEASE_INDEX: &str = "idx_broadcast_recipients_sending_lease";

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in OLD_INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(BroadcastRecipients::Table)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(SENDING_LEASE_INDEX)
                    .table(BroadcastRecipients::Table)
                    .col(BroadcastRecipients::LeaseExpiresAt)
                    .and_where(Expr::col(BroadcastRecipients::Status).eq("sending"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BroadcastCounts::Table)
                    .col(big_integer(BroadcastCounts::BroadcastId))
                    .col(text(BroadcastCounts::Channel))
                    .col(text(BroadcastCounts::Status))
                    .col(text(BroadcastCounts::ErrorKind).default(""))
                    .col(text(BroadcastCounts::SkipReason).default(""))
                    .col(integer(BroadcastCounts::Shard).default(0))
                    .col(big_integer(BroadcastCounts::N).default(0))
                    .col(big_integer(BroadcastCounts::Duplicates).default(0))
                    .col(timestamp_with_time_zone_null(BroadcastCounts::FirstSentAt))
                    .col(timestamp_with_time_zone_null(BroadcastCounts::LastSentAt))
                    .primary_key(
                        Index::create()
                            .name("pk_broadcast_counts")
                            .col(BroadcastCounts::BroadcastId)
                            .col(BroadcastCounts::Channel)
                            .col(BroadcastCounts::Status)
                            .col(BroadcastCounts::ErrorKind)
                            .col(BroadcastCounts::SkipReason)
                            .col(BroadcastCounts::Shard),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_broadcast_counts_broadcast")
                            .from(BroadcastCounts::Table, BroadcastCounts::BroadcastId)
                            .to(Broadcasts::Table, Broadcasts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        db.execute_unprepared(BACKFILL).await?;
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(POSTGRES_FUNCTION).await?;
                db.execute_unprepared(POSTGRES_TRIGGER).await?;
            }
            _ => {
                db.execute_unprepared(SQLITE_TRIGGER).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "DROP TRIGGER IF EXISTS trg_broadcast_recipients_count_delete \
                 ON broadcast_recipients",
            )
            .await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS broadcast_counts_on_delete()")
                .await?;
        } else {
            db.execute_unprepared("DROP TRIGGER IF EXISTS trg_broadcast_recipients_count_delete")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(BroadcastCounts::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(SENDING_LEASE_INDEX)
                    .table(BroadcastRecipients::Table)
                    .to_owned(),
            )
            .await?;
        for (name, columns) in OLD_INDEXES {
            let mut index = Index::create();
            index.name(name).table(BroadcastRecipients::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Broadcasts {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum BroadcastRecipients {
    Table,
    Status,
    NextAttemptAt,
    LeaseExpiresAt,
}

#[derive(DeriveIden)]
enum BroadcastCounts {
    Table,
    BroadcastId,
    Shard,
    Channel,
    Status,
    ErrorKind,
    SkipReason,
    N,
    Duplicates,
    FirstSentAt,
    LastSentAt,
}
