//! Unique constraints, foreign keys (enforced on SQLite too), defaults, and timestamp ordering.

use broadcast_testkit::{Backend, TestDb};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, Value};
use serde_json::json;

/// Inserts one row and returns its id.
async fn insert(db: &TestDb, table: &str, row: Vec<(&str, Value)>) -> Result<i64, DbErr> {
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
        .await?
        .expect("INSERT ... RETURNING id gives a row");
    row.try_get("", "id")
}

async fn must_insert(db: &TestDb, table: &str, row: Vec<(&str, Value)>) -> i64 {
    insert(db, table, row)
        .await
        .unwrap_or_else(|e| panic!("{}: insert into {table} failed: {e}", db.backend()))
}

async fn must_fail(db: &TestDb, table: &str, row: Vec<(&str, Value)>, why: &str) {
    let result = insert(db, table, row).await;
    assert!(
        result.is_err(),
        "{}: insert into {table} should fail ({why}) but gave {result:?}",
        db.backend()
    );
}

fn stamps(now: DateTime<Utc>) -> Vec<(&'static str, Value)> {
    vec![("created_at", now.into()), ("updated_at", now.into())]
}

fn with(
    mut row: Vec<(&'static str, Value)>,
    more: Vec<(&'static str, Value)>,
) -> Vec<(&'static str, Value)> {
    row.extend(more);
    row
}

/// The value of `column` in the row of `table` with `id`, `None` when the row does not exist.
async fn get<T: sea_orm::TryGetable>(db: &TestDb, table: &str, column: &str, id: i64) -> Option<T> {
    let stmt = Query::select()
        .column(Alias::new(column))
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    let row = db.conn().query_one(&stmt).await.expect("select")?;
    Some(row.try_get("", column).expect("column value"))
}

#[tokio::test]
async fn constraints_defaults_and_cascades() {
    for db in TestDb::all().await {
        let backend = db.backend();
        let now = Utc::now();

        // users: defaults, unique external id and chat id (several NULLs allowed).
        let alice = must_insert(
            &db,
            "users",
            with(
                stamps(now),
                vec![
                    ("external_id", "ext-1".into()),
                    ("telegram_chat_id", 1001_i64.into()),
                    ("email", "alice@example.org".into()),
                ],
            ),
        )
        .await;
        let bob = must_insert(&db, "users", stamps(now)).await;
        must_insert(&db, "users", stamps(now)).await;
        assert_eq!(
            get::<String>(&db, "users", "first_name", alice)
                .await
                .as_deref(),
            Some("")
        );
        assert_eq!(
            get::<String>(&db, "users", "last_name", bob)
                .await
                .as_deref(),
            Some("")
        );
        assert_eq!(
            get::<serde_json::Value>(&db, "users", "attributes", bob).await,
            Some(json!({})),
            "{backend}"
        );
        must_fail(
            &db,
            "users",
            with(stamps(now), vec![("external_id", "ext-1".into())]),
            "duplicate external_id",
        )
        .await;
        must_fail(
            &db,
            "users",
            with(stamps(now), vec![("telegram_chat_id", 1001_i64.into())]),
            "duplicate telegram_chat_id",
        )
        .await;
        must_fail(
            &db,
            "users",
            vec![("created_at", now.into())],
            "updated_at is NOT NULL",
        )
        .await;

        // competitions and registrations.
        let competition = must_insert(
            &db,
            "competitions",
            vec![
                ("slug", "spring-open".into()),
                ("name", "Spring Open".into()),
                (
                    "starts_on",
                    chrono::NaiveDate::from_ymd_opt(2027, 3, 1).into(),
                ),
                ("created_at", now.into()),
            ],
        )
        .await;
        must_fail(
            &db,
            "competitions",
            vec![
                ("slug", "spring-open".into()),
                ("name", "Again".into()),
                ("created_at", now.into()),
            ],
            "duplicate slug",
        )
        .await;
        let registration = |user: i64| {
            with(
                stamps(now),
                vec![
                    ("user_id", user.into()),
                    ("competition_id", competition.into()),
                    ("role", "athlete".into()),
                    ("status", "confirmed".into()),
                ],
            )
        };
        let alice_registration = must_insert(&db, "registrations", registration(alice)).await;
        must_insert(&db, "registrations", registration(bob)).await;
        must_fail(
            &db,
            "registrations",
            registration(alice),
            "duplicate (user, competition)",
        )
        .await;
        must_fail(
            &db,
            "registrations",
            registration(999_999),
            "user does not exist",
        )
        .await;

        // message_templates: defaults and unique name.
        let template = must_insert(
            &db,
            "message_templates",
            with(stamps(now), vec![("name", "welcome".into())]),
        )
        .await;
        assert_eq!(
            get::<String>(&db, "message_templates", "parse_mode", template)
                .await
                .as_deref(),
            Some("html")
        );
        assert_eq!(
            get::<String>(&db, "message_templates", "description", template)
                .await
                .as_deref(),
            Some("")
        );
        assert_eq!(
            get::<bool>(&db, "message_templates", "link_preview", template).await,
            Some(false)
        );
        assert_eq!(
            get::<i32>(&db, "message_templates", "version", template).await,
            Some(1)
        );
        must_fail(
            &db,
            "message_templates",
            with(stamps(now), vec![("name", "welcome".into())]),
            "duplicate template name",
        )
        .await;

        // broadcasts and the delivery ledger.
        let broadcast = must_insert(
            &db,
            "broadcasts",
            with(
                stamps(now),
                vec![
                    ("name", "Spring news".into()),
                    ("template_id", template.into()),
                    ("channel_policy", "telegram_then_email".into()),
                    ("filter", json!({"all": []}).into()),
                    ("status", "draft".into()),
                ],
            ),
        )
        .await;
        assert_eq!(
            get::<i64>(&db, "broadcasts", "total_recipients", broadcast).await,
            Some(0)
        );
        must_fail(
            &db,
            "broadcasts",
            with(
                stamps(now),
                vec![
                    ("name", "Bad".into()),
                    ("template_id", 999_999_i64.into()),
                    ("channel_policy", "email".into()),
                    ("filter", json!({}).into()),
                    ("status", "draft".into()),
                ],
            ),
            "template does not exist",
        )
        .await;
        let recipient = |broadcast: i64, user: i64, channel: &str, registration: Option<i64>| {
            with(
                stamps(now),
                vec![
                    ("broadcast_id", broadcast.into()),
                    ("user_id", user.into()),
                    ("registration_id", registration.into()),
                    ("channel", channel.into()),
                    ("address", "somewhere".into()),
                    ("status", "pending".into()),
                    ("next_attempt_at", now.into()),
                ],
            )
        };
        let alice_telegram = must_insert(
            &db,
            "broadcast_recipients",
            recipient(broadcast, alice, "telegram", Some(alice_registration)),
        )
        .await;
        let alice_email = must_insert(
            &db,
            "broadcast_recipients",
            recipient(broadcast, alice, "email", None),
        )
        .await;
        let bob_email = must_insert(
            &db,
            "broadcast_recipients",
            recipient(broadcast, bob, "email", None),
        )
        .await;
        assert_eq!(
            get::<i32>(&db, "broadcast_recipients", "attempts", alice_email).await,
            Some(0)
        );
        assert_eq!(
            get::<i32>(&db, "broadcast_recipients", "uncertain_sends", alice_email).await,
            Some(0)
        );
        must_fail(
            &db,
            "broadcast_recipients",
            recipient(broadcast, alice, "telegram", None),
            "duplicate (broadcast, user, channel)",
        )
        .await;
        must_fail(
            &db,
            "broadcast_recipients",
            recipient(999_999, alice, "telegram", None),
            "broadcast does not exist",
        )
        .await;
        must_fail(
            &db,
            "broadcast_recipients",
            recipient(broadcast, 999_999, "telegram", None),
            "user does not exist",
        )
        .await;

        // admin tables.
        let admin = vec![
            ("username", "root".into()),
            ("password_hash", "$argon2id$...".into()),
            ("created_at", now.into()),
        ];
        must_insert(&db, "admin_users", admin.clone()).await;
        must_fail(&db, "admin_users", admin, "duplicate admin username").await;
        must_insert(
            &db,
            "audit_log",
            vec![
                ("actor", "root".into()),
                ("action", "broadcast.launch".into()),
                ("target_type", "broadcast".into()),
                ("target_id", broadcast.into()),
                ("details", json!({"recipients": 3}).into()),
                ("at", now.into()),
            ],
        )
        .await;

        // ON DELETE SET NULL and CASCADE.
        delete(&db, "registrations", alice_registration).await;
        assert_eq!(
            get::<Option<i64>>(
                &db,
                "broadcast_recipients",
                "registration_id",
                alice_telegram
            )
            .await,
            Some(None),
            "{backend}: registration_id is set to NULL"
        );
        delete(&db, "message_templates", template).await;
        assert_eq!(
            get::<Option<i64>>(&db, "broadcasts", "template_id", broadcast).await,
            Some(None),
            "{backend}: template_id is set to NULL"
        );
        delete(&db, "users", alice).await;
        assert_eq!(
            get::<i64>(&db, "broadcast_recipients", "id", alice_telegram).await,
            None
        );
        assert_eq!(
            get::<i64>(&db, "broadcast_recipients", "id", alice_email).await,
            None
        );
        assert_eq!(
            get::<i64>(&db, "broadcast_recipients", "id", bob_email).await,
            Some(bob_email)
        );
        delete(&db, "broadcasts", broadcast).await;
        assert_eq!(
            get::<i64>(&db, "broadcast_recipients", "id", bob_email).await,
            None,
            "{backend}: recipients go with their broadcast"
        );
        delete(&db, "competitions", competition).await;
        let left = db
            .conn()
            .query_all(
                &Query::select()
                    .column(Alias::new("id"))
                    .from(Alias::new("registrations"))
                    .to_owned(),
            )
            .await
            .expect("select registrations");
        assert!(
            left.is_empty(),
            "{backend}: registrations go with their competition"
        );
    }
}

async fn delete(db: &TestDb, table: &str, id: i64) {
    let stmt = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    let result = db.conn().execute(&stmt).await.expect("delete");
    assert_eq!(
        result.rows_affected(),
        1,
        "{}: delete from {table}",
        db.backend()
    );
}

/// Bound `DateTime<Utc>` values compare in time order in SQL, including on SQLite where they are
/// stored as RFC 3339 text with a variable number of fraction digits.
#[tokio::test]
async fn bound_timestamps_compare_in_time_order() {
    for db in TestDb::all().await {
        let backend = db.backend();
        let base = Utc.with_ymd_and_hms(2026, 11, 28, 9, 59, 59).unwrap();
        let user = must_insert(&db, "users", stamps(base)).await;
        let broadcast = must_insert(
            &db,
            "broadcasts",
            with(
                stamps(base),
                vec![
                    ("name", "clock".into()),
                    ("channel_policy", "email".into()),
                    ("filter", json!({}).into()),
                    ("status", "running".into()),
                ],
            ),
        )
        .await;
        // Whole seconds, milli- and microsecond fractions, across a minute boundary. PostgreSQL keeps
        // microseconds only, so nanoseconds would not round-trip there.
        let offsets_ns: [i64; 7] = [
            0,
            1_000,
            500_000_000,
            999_999_000,
            1_000_000_000,
            1_000_001_000,
            1_120_000_000,
        ];
        let mut ids = Vec::new();
        for (i, offset) in offsets_ns.into_iter().enumerate() {
            let at = base + Duration::nanoseconds(offset);
            let id = must_insert(
                &db,
                "broadcast_recipients",
                with(
                    stamps(base),
                    vec![
                        ("broadcast_id", broadcast.into()),
                        ("user_id", user.into()),
                        ("channel", format!("channel-{i}").into()),
                        ("address", "a".into()),
                        ("status", "pending".into()),
                        ("next_attempt_at", at.into()),
                    ],
                ),
            )
            .await;
            ids.push((id, at));
            assert_eq!(
                get::<DateTime<Utc>>(&db, "broadcast_recipients", "next_attempt_at", id).await,
                Some(at),
                "{backend}: timestamp round trip"
            );
        }
        if backend == Backend::Sqlite {
            let stored =
                get::<String>(&db, "broadcast_recipients", "next_attempt_at", ids[2].0).await;
            assert_eq!(stored.as_deref(), Some("2026-11-28T09:59:59.500+00:00"));
        }

        for (_, bound) in &ids {
            let stmt = Query::select()
                .column(Alias::new("id"))
                .from(Alias::new("broadcast_recipients"))
                .and_where(Expr::col(Alias::new("next_attempt_at")).lte(*bound))
                .order_by(Alias::new("next_attempt_at"), Order::Asc)
                .to_owned();
            let due: Vec<i64> = db
                .conn()
                .query_all(&stmt)
                .await
                .expect("select due")
                .iter()
                .map(|row| row.try_get("", "id").expect("id"))
                .collect();
            let expected: Vec<i64> = ids
                .iter()
                .filter(|(_, at)| at <= bound)
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(due, expected, "{backend}: rows due at {bound}");
        }
    }
}

/// `send_budgets`: one row per key, both timestamps required, microseconds kept.
#[tokio::test]
async fn send_budgets_have_one_row_per_key() {
    for db in TestDb::all().await {
        let backend = db.backend();
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + Duration::microseconds(7);
        let budget = |key: &str, next: Option<DateTime<Utc>>, updated: Option<DateTime<Utc>>| {
            let mut columns = vec![Alias::new("key")];
            let mut values = vec![Expr::val(key)];
            if let Some(next) = next {
                columns.push(Alias::new("next_free_at"));
                values.push(Expr::val(next));
            }
            if let Some(updated) = updated {
                columns.push(Alias::new("updated_at"));
                values.push(Expr::val(updated));
            }
            Query::insert()
                .into_table(Alias::new("send_budgets"))
                .columns(columns)
                .values_panic(values)
                .to_owned()
        };
        db.conn()
            .execute(&budget("telegram", Some(now), Some(now)))
            .await
            .unwrap_or_else(|e| panic!("{backend}: insert a budget: {e}"));
        db.conn()
            .execute(&budget("email", Some(now), Some(now)))
            .await
            .unwrap_or_else(|e| panic!("{backend}: insert a second key: {e}"));
        for (stmt, why) in [
            (budget("telegram", Some(now), Some(now)), "duplicate key"),
            (budget("x", None, Some(now)), "next_free_at is NOT NULL"),
            (budget("y", Some(now), None), "updated_at is NOT NULL"),
        ] {
            let result = db.conn().execute(&stmt).await;
            assert!(result.is_err(), "{backend}: {why} accepted: {result:?}");
        }
        let row = db
            .conn()
            .query_one(
                &Query::select()
                    .column(Alias::new("next_free_at"))
                    .from(Alias::new("send_budgets"))
                    .and_where(Expr::col(Alias::new("key")).eq("telegram"))
                    .to_owned(),
            )
            .await
            .expect("select budget")
            .expect("budget row");
        let stored: DateTime<Utc> = row.try_get("", "next_free_at").expect("next_free_at");
        assert_eq!(stored, now, "{backend}: microseconds kept");
    }
}
