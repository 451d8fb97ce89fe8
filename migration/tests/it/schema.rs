//! Up, down and up again: every table and index appears and disappears.

use broadcast_migration::{Migrator, TABLES};
use broadcast_testkit::TestDb;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::{MigrationStatus, MigratorTrait, SchemaManager};

const INDEXES: [(&str, &str); 9] = [
    ("users", "idx_users_email"),
    ("users", "idx_users_email_key"),
    ("registrations", "uq_registrations_user_competition"),
    ("registrations", "idx_registrations_competition_role_status"),
    ("broadcasts", "idx_broadcasts_status_scheduled_at"),
    (
        "broadcast_recipients",
        "uq_broadcast_recipients_broadcast_user_channel",
    ),
    (
        "broadcast_recipients",
        "idx_broadcast_recipients_broadcast_status_next",
    ),
    (
        "broadcast_recipients",
        "idx_broadcast_recipients_sending_lease",
    ),
    ("audit_log", "idx_audit_log_at"),
];

/// Indexes that migration 6 dropped (and its `down` restores).
const DROPPED_INDEXES: [&str; 2] = [
    "idx_broadcast_recipients_status_next",
    "idx_broadcast_recipients_status_lease",
];

async fn tables_present(manager: &SchemaManager<'_>) -> Vec<&'static str> {
    let mut present = Vec::new();
    for table in TABLES {
        if manager.has_table(table).await.expect("has_table") {
            present.push(table);
        }
    }
    present
}

#[tokio::test]
async fn up_down_up_creates_and_removes_every_table_and_index() {
    for db in crate::unmigrated().await {
        let backend = db.backend();
        let manager = SchemaManager::new(db.conn());
        assert!(tables_present(&manager).await.is_empty(), "{backend}");

        Migrator::up(db.conn(), None).await.expect("up");
        assert_eq!(tables_present(&manager).await, TABLES, "{backend}");
        for (table, index) in INDEXES
            .into_iter()
            .chain([("audit_log", "idx_audit_log_target")])
        {
            assert!(
                manager.has_index(table, index).await.expect("has_index"),
                "{backend}: index {index} on {table} is missing"
            );
        }
        let statuses = Migrator::get_migration_with_status(db.conn())
            .await
            .expect("status");
        assert_eq!(statuses.len(), 16, "{backend}");
        assert!(
            statuses
                .iter()
                .all(|m| m.status() == MigrationStatus::Applied),
            "{backend}"
        );

        for index in DROPPED_INDEXES {
            assert!(
                !manager
                    .has_index("broadcast_recipients", index)
                    .await
                    .expect("has_index"),
                "{backend}: index {index} should be gone"
            );
        }

        // Migration 16 adds buttons to templates; down takes them away.
        for (present, step) in [(true, "up"), (false, "down 16")] {
            if !present {
                Migrator::down(db.conn(), Some(1)).await.expect("down 16");
            }
            assert_eq!(
                manager
                    .has_column("message_templates", "telegram_buttons")
                    .await
                    .expect("has_column"),
                present,
                "{backend}: message_templates.telegram_buttons after {step}"
            );
        }

        // Migration 15 adds media to templates and Telegram's file ids; down takes them away.
        assert!(
            manager
                .has_column("message_templates", "telegram_media")
                .await
                .expect("has_column"),
            "{backend}: message_templates.telegram_media is missing"
        );
        Migrator::down(db.conn(), Some(1)).await.expect("down 15");
        assert_eq!(tables_present(&manager).await, TABLES[..13], "{backend}");
        assert!(
            !manager
                .has_column("message_templates", "telegram_media")
                .await
                .expect("has_column"),
            "{backend}: message_templates.telegram_media survived down"
        );

        // Migration 14 adds the media library; down takes its two tables away.
        Migrator::down(db.conn(), Some(1)).await.expect("down 14");
        assert_eq!(tables_present(&manager).await, TABLES[..11], "{backend}");

        // Migration 13 adds the budget's owed moves; down takes them away.
        for column in ["owed_us", "owed_by"] {
            assert!(
                manager
                    .has_column("send_budgets", column)
                    .await
                    .expect("has_column"),
                "{backend}: send_budgets.{column} is missing"
            );
        }
        Migrator::down(db.conn(), Some(1)).await.expect("down 13");
        for column in ["owed_us", "owed_by"] {
            assert!(
                !manager
                    .has_column("send_budgets", column)
                    .await
                    .expect("has_column"),
                "{backend}: send_budgets.{column} survived down"
            );
        }

        // Migration 12 adds the panel's sessions; down takes the table away.
        Migrator::down(db.conn(), Some(1)).await.expect("down 12");
        assert_eq!(tables_present(&manager).await, TABLES[..10], "{backend}");

        // Migration 11 changes only what the counters count (its own test in `counters`).
        Migrator::down(db.conn(), Some(1)).await.expect("down 11");

        // Migration 10 adds the breaker's probe and the budget's hold; down takes them away.
        let added = [
            ("broadcasts", "probe_channel"),
            ("broadcasts", "probe_cooldown_ms"),
            ("broadcasts", "probe_at"),
            ("send_budgets", "held_until"),
        ];
        for (table, column) in added {
            assert!(
                manager.has_column(table, column).await.expect("has_column"),
                "{backend}: {table}.{column} is missing"
            );
        }
        Migrator::down(db.conn(), Some(1)).await.expect("down 10");
        for (table, column) in added {
            assert!(
                !manager.has_column(table, column).await.expect("has_column"),
                "{backend}: {table}.{column} survived down"
            );
        }

        // Migration 9 adds the budget's moves; down takes the column away.
        assert!(
            manager
                .has_column("send_budgets", "moved_us")
                .await
                .expect("has_column"),
            "{backend}"
        );
        Migrator::down(db.conn(), Some(1)).await.expect("down 9");
        assert!(
            !manager
                .has_column("send_budgets", "moved_us")
                .await
                .expect("has_column"),
            "{backend}"
        );

        // Migration 8 adds the folded keys (its own test checks the backfill); down takes
        // them and their index away.
        Migrator::down(db.conn(), Some(1)).await.expect("down 8");
        assert!(
            !manager
                .has_column("users", "email_key")
                .await
                .expect("has_column")
                && !manager
                    .has_index("users", "idx_users_email_key")
                    .await
                    .expect("has_index"),
            "{backend}"
        );

        // Migration 7 adds `send_started_at` (and renames a column); down takes it away.
        assert!(
            manager
                .has_column("broadcast_recipients", "send_started_at")
                .await
                .expect("has_column"),
            "{backend}"
        );
        Migrator::down(db.conn(), Some(1)).await.expect("down 7");
        assert!(
            !manager
                .has_column("broadcast_recipients", "send_started_at")
                .await
                .expect("has_column"),
            "{backend}"
        );
        assert!(
            manager
                .has_column("broadcast_recipients", "lease_expirations")
                .await
                .expect("has_column"),
            "{backend}"
        );
        // One step down removes exactly the last migration's tables (and restores the indexes
        // migration 6 dropped).
        Migrator::down(db.conn(), Some(1)).await.expect("down 1");
        assert_eq!(tables_present(&manager).await, TABLES[..9], "{backend}");
        for index in DROPPED_INDEXES {
            assert!(
                manager
                    .has_index("broadcast_recipients", index)
                    .await
                    .expect("has_index"),
                "{backend}: down 1 did not restore {index}"
            );
        }
        assert!(
            !manager
                .has_index(
                    "broadcast_recipients",
                    "idx_broadcast_recipients_sending_lease"
                )
                .await
                .expect("has_index"),
            "{backend}: down 1 left the partial index"
        );
        Migrator::down(db.conn(), Some(1)).await.expect("down 2");
        assert_eq!(tables_present(&manager).await, TABLES[..8], "{backend}");
        Migrator::down(db.conn(), Some(1)).await.expect("down 3");
        assert_eq!(tables_present(&manager).await, TABLES[..6], "{backend}");

        Migrator::down(db.conn(), None).await.expect("down all");
        assert!(
            tables_present(&manager).await.is_empty(),
            "{backend}: tables left after down"
        );
        for (table, index) in INDEXES {
            assert!(
                !manager.has_index(table, index).await.expect("has_index"),
                "{backend}: index {index} survived down"
            );
        }

        Migrator::up(db.conn(), None).await.expect("up again");
        assert_eq!(tables_present(&manager).await, TABLES, "{backend}");

        // Fresh drops tables that hold rows referenced by other tables (SQLite must switch
        // foreign keys off on the connection it drops them with).
        db.conn()
            .execute_unprepared(
                "INSERT INTO users (id, created_at, updated_at) VALUES (1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00'); \
                 INSERT INTO competitions (id, slug, name, created_at) VALUES (1, 'c', 'C', '2026-01-01T00:00:00+00:00'); \
                 INSERT INTO registrations (user_id, competition_id, role, status, created_at, updated_at) \
                 VALUES (1, 1, 'athlete', 'confirmed', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            )
            .await
            .expect("seed rows");
        Migrator::fresh(db.conn()).await.expect("fresh");
        assert_eq!(tables_present(&manager).await, TABLES, "{backend}");
    }
}

#[tokio::test]
async fn sqlite_connections_are_set_up_for_a_queue() {
    let db = TestDb::sqlite().await;
    for (pragma, expected) in [
        ("journal_mode", "wal"),
        ("foreign_keys", "1"),
        ("busy_timeout", "10000"),
        ("synchronous", "1"),
    ] {
        let row = db
            .conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("PRAGMA {pragma}"),
            ))
            .await
            .expect("pragma")
            .expect("pragma row");
        let value = row
            .try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
            .expect("pragma value");
        assert_eq!(value, expected, "PRAGMA {pragma}");
    }
}

#[tokio::test]
async fn migrated_test_databases_are_isolated() {
    let a = TestDb::sqlite().await;
    let b = TestDb::sqlite().await;
    assert_ne!(a.url(), b.url());
    let manager = SchemaManager::new(a.conn());
    assert_eq!(tables_present(&manager).await, TABLES);

    if let (Some(a), Some(b)) = (TestDb::postgres().await, TestDb::postgres().await) {
        assert_ne!(a.url(), b.url());
        let manager = SchemaManager::new(b.conn());
        assert_eq!(tables_present(&manager).await, TABLES);

        // Dropping a TestDb drops its PostgreSQL database.
        let name = a
            .url()
            .rsplit('/')
            .next()
            .expect("database name")
            .to_owned();
        assert!(name.starts_with("broadcast_test_"), "{name}");
        assert_eq!(pg_databases_named(&b, &name).await, 1);
        drop(a);
        assert_eq!(
            pg_databases_named(&b, &name).await,
            0,
            "{name} was not dropped"
        );
    }
}

async fn pg_databases_named(db: &TestDb, name: &str) -> i64 {
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
        [name.into()],
    );
    let row = db
        .conn()
        .query_one_raw(stmt)
        .await
        .expect("query")
        .expect("row");
    row.try_get("", "n").expect("count")
}
