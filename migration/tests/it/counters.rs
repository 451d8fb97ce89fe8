//! Migration 6: `broadcast_counts` is filled from the ledger that exists, follows deletes of
//! ledger rows through its trigger, and goes away (with the old indexes back) on `down`.
//! Migration 11: `duplicates` becomes the sum of the rows' uncertain sends, in the counters it
//! recounts and in the trigger; `down` counts rows again.

use std::collections::BTreeMap;

use broadcast_migration::Migrator;
use broadcast_testkit::TestDb;
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Statement, Value};
use sea_orm_migration::{MigratorTrait, SchemaManager};

type Key = (i64, String, String, String, String);

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, second).unwrap()
}

async fn insert(db: &TestDb, table: &str, row: Vec<(&str, Value)>) -> i64 {
    let (columns, values): (Vec<_>, Vec<_>) = row.into_iter().unzip();
    let stmt = Query::insert()
        .into_table(Alias::new(table))
        .columns(columns.into_iter().map(Alias::new))
        .values_panic(values.into_iter().map(Expr::val))
        .returning_col(Alias::new("id"))
        .to_owned();
    let row = db
        .conn()
        .query_one(&stmt)
        .await
        .unwrap_or_else(|e| panic!("{}: insert into {table}: {e}", db.backend()))
        .expect("RETURNING id");
    row.try_get("", "id").expect("id")
}

async fn user(db: &TestDb) -> i64 {
    insert(
        db,
        "users",
        vec![("created_at", at(0).into()), ("updated_at", at(0).into())],
    )
    .await
}

async fn broadcast(db: &TestDb) -> i64 {
    insert(
        db,
        "broadcasts",
        vec![
            ("name", "b".into()),
            ("channel_policy", "both".into()),
            ("filter", serde_json::json!({}).into()),
            ("status", "running".into()),
            ("created_at", at(0).into()),
            ("updated_at", at(0).into()),
        ],
    )
    .await
}

/// A ledger row: (channel, status, error_kind, skip_reason, lease_expirations, sent_at), as
/// inserted before migration 7 renamed `lease_expirations` to `uncertain_sends`.
type Ledger<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    i32,
    Option<DateTime<Utc>>,
);

/// Inserts a ledger row, its uncertain sends in `column` (`lease_expirations` before migration
/// 7, `uncertain_sends` after).
async fn recipient(db: &TestDb, column: &str, broadcast: i64, user: i64, row: Ledger<'_>) {
    let (channel, status, error_kind, skip_reason, uncertain, sent_at) = row;
    insert(
        db,
        "broadcast_recipients",
        vec![
            ("broadcast_id", broadcast.into()),
            ("user_id", user.into()),
            ("channel", channel.into()),
            ("address", "a".into()),
            ("status", status.into()),
            ("error_kind", error_kind.into()),
            ("skip_reason", skip_reason.into()),
            (column, uncertain.into()),
            ("sent_at", sent_at.into()),
            ("next_attempt_at", at(0).into()),
            ("created_at", at(0).into()),
            ("updated_at", at(0).into()),
        ],
    )
    .await;
}

fn sql(db: &TestDb, text: &str) -> Statement {
    Statement::from_string(db.conn().get_database_backend(), text)
}

/// How the counters add up a row's uncertain sends.
#[derive(Debug, Clone, Copy)]
enum Duplicates {
    /// 1 for a row with any (migrations 6 to 10).
    Rows,
    /// All of them (migration 11).
    Sends,
}

/// The counts a full `GROUP BY` over the ledger gives: (rows, possible duplicates), with the
/// duplicates column named as in the schema version at hand (`lease_expirations` before
/// migration 7, `uncertain_sends` after).
async fn ledger_counts(db: &TestDb, column: &str, mode: Duplicates) -> BTreeMap<Key, (i64, i64)> {
    let duplicates = match mode {
        Duplicates::Rows => format!("CASE WHEN {column} > 0 THEN 1 ELSE 0 END"),
        Duplicates::Sends => column.to_owned(),
    };
    let rows = db
        .conn()
        .query_all_raw(sql(
            db,
            &format!(
                "SELECT broadcast_id, channel, status, \
                 CASE WHEN status IN ('failed', 'pending') THEN COALESCE(error_kind, '') \
                 ELSE '' END AS error_kind, COALESCE(skip_reason, '') AS skip_reason, \
                 COUNT(*) AS n, CAST(SUM({duplicates}) AS BIGINT) AS duplicates \
                 FROM broadcast_recipients GROUP BY 1, 2, 3, 4, 5"
            ),
        ))
        .await
        .expect("group the ledger");
    rows.iter()
        .map(|r| (key(r), (get(r, "n"), get(r, "duplicates"))))
        .collect()
}

/// The counters, shards added up, without keys that add up to nothing.
async fn counters(db: &TestDb) -> BTreeMap<Key, (i64, i64)> {
    let rows = db
        .conn()
        .query_all_raw(sql(
            db,
            "SELECT broadcast_id, channel, status, error_kind, skip_reason, \
             CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(duplicates) AS BIGINT) AS duplicates \
             FROM broadcast_counts GROUP BY 1, 2, 3, 4, 5",
        ))
        .await
        .expect("read the counters");
    rows.iter()
        .map(|r| (key(r), (get(r, "n"), get(r, "duplicates"))))
        .filter(|(_, v)| *v != (0, 0))
        .collect()
}

fn key(r: &sea_orm::QueryResult) -> Key {
    let text = |c: &str| r.try_get::<String>("", c).expect(c);
    (
        get(r, "broadcast_id"),
        text("channel"),
        text("status"),
        text("error_kind"),
        text("skip_reason"),
    )
}

fn get(r: &sea_orm::QueryResult, column: &str) -> i64 {
    r.try_get::<i64>("", column).expect(column)
}

async fn sent_range(db: &TestDb, broadcast: i64) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let stmt = Query::select()
        .columns([Alias::new("first_sent_at"), Alias::new("last_sent_at")])
        .from(Alias::new("broadcast_counts"))
        .and_where(Expr::col(Alias::new("broadcast_id")).eq(broadcast))
        .and_where(Expr::col(Alias::new("status")).eq("sent"))
        .to_owned();
    let row = db
        .conn()
        .query_one(&stmt)
        .await
        .expect("select")
        .expect("a sent row");
    (
        row.try_get("", "first_sent_at").expect("first"),
        row.try_get("", "last_sent_at").expect("last"),
    )
}

async fn delete(db: &TestDb, table: &str, id: i64) {
    let stmt = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    db.conn()
        .execute(&stmt)
        .await
        .unwrap_or_else(|e| panic!("{}: delete from {table}: {e}", db.backend()));
}

#[tokio::test]
async fn counters_are_backfilled_follow_deletes_and_go_away_on_down() {
    for db in crate::unmigrated().await {
        let backend = db.backend();
        Migrator::up(db.conn(), Some(5)).await.expect("up to 5");

        let (a, b) = (broadcast(&db).await, broadcast(&db).await);
        let mut users = Vec::new();
        for _ in 0..6 {
            users.push(user(&db).await);
        }
        let rows: [(i64, usize, Ledger<'_>); 9] = [
            (a, 0, ("telegram", "sent", None, None, 0, Some(at(30)))),
            (a, 1, ("telegram", "sent", None, None, 1, Some(at(10)))),
            (
                a,
                2,
                ("telegram", "failed", Some("permanent"), None, 0, None),
            ),
            (
                a,
                3,
                ("telegram", "pending", Some("transient"), None, 2, None),
            ),
            (
                a,
                4,
                ("telegram", "sending", Some("transient"), None, 0, None),
            ),
            (
                a,
                5,
                ("telegram", "skipped", None, Some("no_telegram"), 0, None),
            ),
            (a, 0, ("email", "pending", None, None, 0, None)),
            (
                a,
                1,
                ("email", "cancelled", Some("transient"), None, 0, None),
            ),
            (b, 0, ("email", "sent", None, None, 0, Some(at(50)))),
        ];
        for (broadcast, u, row) in rows {
            recipient(&db, "lease_expirations", broadcast, users[u], row).await;
        }
        let expected = ledger_counts(&db, "lease_expirations", Duplicates::Rows).await;
        assert_eq!(
            expected.len(),
            8,
            "{backend}: the two sent rows share a key"
        );

        Migrator::up(db.conn(), Some(1)).await.expect("up to 6");
        assert_eq!(counters(&db).await, expected, "{backend}: backfill");
        // Migration 7 renames the duplicates column; the counters and the trigger follow it.
        Migrator::up(db.conn(), Some(1)).await.expect("up to 7");
        assert_eq!(counters(&db).await, expected, "{backend}: after the rename");
        assert_eq!(
            ledger_counts(&db, "uncertain_sends", Duplicates::Rows).await,
            expected
        );
        let sending_key = (
            a,
            "telegram".to_owned(),
            "sending".to_owned(),
            String::new(),
            String::new(),
        );
        assert_eq!(
            expected.get(&sending_key),
            Some(&(1, 0)),
            "{backend}: error kinds are keyed for failed and pending rows only"
        );
        assert_eq!(
            sent_range(&db, a).await,
            (Some(at(10)), Some(at(30))),
            "{backend}"
        );

        // Deleting a user deletes its ledger rows (ON DELETE CASCADE); the trigger counts that.
        delete(&db, "users", users[1]).await;
        delete(&db, "users", users[3]).await;
        let after = ledger_counts(&db, "uncertain_sends", Duplicates::Rows).await;
        assert_ne!(after, expected, "{backend}: the deletes removed rows");
        assert_eq!(
            counters(&db).await,
            after,
            "{backend}: after deleting users"
        );

        // Deleting a broadcast deletes its rows and its counters, and nothing else.
        delete(&db, "broadcasts", b).await;
        assert_eq!(
            counters(&db).await,
            ledger_counts(&db, "uncertain_sends", Duplicates::Rows).await,
            "{backend}"
        );

        // Down (7, then 6) drops the table; up fills it again.
        Migrator::down(db.conn(), Some(2)).await.expect("down 2");
        let manager = SchemaManager::new(db.conn());
        assert!(
            !manager
                .has_table("broadcast_counts")
                .await
                .expect("has_table"),
            "{backend}"
        );
        delete(&db, "users", users[0]).await;
        Migrator::up(db.conn(), None).await.expect("up again");
        assert_eq!(
            counters(&db).await,
            ledger_counts(&db, "uncertain_sends", Duplicates::Sends).await,
            "{backend}: backfill after down and up"
        );

        // Migration 11 counts sends: a row with three uncertain sends adds 3, in the recount,
        // in the store's writes and in the delete trigger.
        let more: [(usize, Ledger<'_>); 2] = [
            (2, ("email", "failed", Some("transient"), None, 3, None)),
            (4, ("email", "sent", None, None, 2, Some(at(40)))),
        ];
        for (u, row) in more {
            recipient(&db, "uncertain_sends", a, users[u], row).await;
        }
        // Down to 10 (16 to 12, which change unrelated tables, then 11).
        Migrator::down(db.conn(), Some(6))
            .await
            .expect("down 16 to 11");
        let rows = ledger_counts(&db, "uncertain_sends", Duplicates::Rows).await;
        assert_eq!(counters(&db).await, rows, "{backend}: down counts rows");
        Migrator::up(db.conn(), Some(1)).await.expect("up 11");
        let sends = ledger_counts(&db, "uncertain_sends", Duplicates::Sends).await;
        assert_eq!(counters(&db).await, sends, "{backend}: up counts sends");
        let failed = (
            a,
            "email".to_owned(),
            "failed".to_owned(),
            "transient".to_owned(),
            String::new(),
        );
        assert_eq!(sends.get(&failed), Some(&(1, 3)), "{backend}");
        delete(&db, "users", users[2]).await;
        assert_eq!(
            counters(&db).await,
            ledger_counts(&db, "uncertain_sends", Duplicates::Sends).await,
            "{backend}: the trigger takes away a row's sends"
        );
    }
}
