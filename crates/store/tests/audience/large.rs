//! A generated audience of 20,000 users: the count equals the materialised rows, and long id
//! lists work.

use std::time::Instant;

use broadcast_domain::{
    AudienceCount, AudienceFilter, AudienceSource, ChannelKind, ChannelPolicy, DeliveryStatus,
    RegistrationStatus, Role,
};
use broadcast_store::Store;
use broadcast_store::entity::{
    broadcast_recipients, broadcasts, competitions, registrations, users,
};
use broadcast_testkit::TestDb;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, Set, Statement, TransactionTrait, Value,
};

use crate::harness::now;

const USERS: i64 = 20_000;

/// The generated user number `i` (1-based), as plain data for the expectations.
#[derive(Debug, Clone)]
struct Gen {
    i: i64,
    email: Option<String>,
    chat: Option<i64>,
    blocked: bool,
    unsubscribed: bool,
    bounced: bool,
    country: &'static str,
    /// (competition index, role, status)
    registrations: Vec<(usize, Role, RegistrationStatus)>,
}

fn generate(i: i64) -> Gen {
    let statuses = [
        RegistrationStatus::Confirmed,
        RegistrationStatus::Confirmed,
        RegistrationStatus::Pending,
        RegistrationStatus::Waitlisted,
        RegistrationStatus::Cancelled,
    ];
    let mut registrations = Vec::new();
    if i % 2 == 0 {
        registrations.push((0, Role::Participant, statuses[(i % 5) as usize]));
    }
    if i % 3 == 0 {
        registrations.push((1, Role::Volunteer, RegistrationStatus::Confirmed));
    }
    Gen {
        i,
        email: (i % 10 != 0).then(|| format!("person{i}@example.org")),
        chat: (i % 7 != 0).then_some(5_000_000_000 + i),
        blocked: i % 97 == 0,
        unsubscribed: i % 89 == 0,
        bounced: i % 83 == 0,
        country: ["Germany", "France", "Poland"][(i % 3) as usize],
        registrations,
    }
}

/// Writes `sql` with `?` placeholders for the connection's backend (`$1`, `$2`, ... on PostgreSQL).
fn statement(conn: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Statement {
    let backend = conn.get_database_backend();
    let sql = if backend == DatabaseBackend::Postgres {
        let mut out = String::new();
        for (n, part) in sql.split('?').enumerate() {
            if n > 0 {
                out.push_str(&format!("${n}"));
            }
            out.push_str(part);
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Bulk-inserts the generated audience with set-based statements (a recursive CTE numbers the
/// users), mirroring [`generate`].
async fn seed(conn: &DatabaseConnection) -> (Vec<Gen>, [i64; 2]) {
    let people: Vec<Gen> = (1..=USERS).map(generate).collect();
    let txn = conn.begin().await.unwrap();
    let mut comp_ids = [0; 2];
    for (n, slug) in ["big-a", "big-b"].iter().enumerate() {
        comp_ids[n] = competitions::ActiveModel {
            slug: Set((*slug).to_owned()),
            name: Set(format!("Big {slug}")),
            starts_on: Set(None),
            city: Set(None),
            country: Set(None),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .unwrap()
        .id;
    }
    let now_value = || Value::from(now());
    // Generated in SQL for speed, so this writes the folded keys itself, as the store's import
    // would (`fold_case` of these ASCII values is their lower case).
    let users = statement(
        conn,
        &format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {USERS})
             INSERT INTO users (external_id, telegram_chat_id, email, first_name, last_name,
                 country, country_key, email_key, attributes, telegram_blocked_at,
                 email_unsubscribed_at, email_bounced_at, created_at, updated_at)
             SELECT 'gen-' || i,
                 CASE WHEN i % 7 <> 0 THEN 5000000000 + i END,
                 CASE WHEN i % 10 <> 0 THEN 'person' || i || '@example.org' END,
                 'Person ' || i, '',
                 CASE i % 3 WHEN 0 THEN 'Germany' WHEN 1 THEN 'France' ELSE 'Poland' END,
                 CASE i % 3 WHEN 0 THEN 'germany' WHEN 1 THEN 'france' ELSE 'poland' END,
                 CASE WHEN i % 10 <> 0 THEN 'person' || i || '@example.org' END,
                 ?,
                 CASE WHEN i % 97 = 0 THEN ? END,
                 CASE WHEN i % 89 = 0 THEN ? END,
                 CASE WHEN i % 83 = 0 THEN ? END,
                 ?, ?
             FROM seq"
        ),
        vec![
            Value::from(serde_json::json!({})),
            now_value(),
            now_value(),
            now_value(),
            now_value(),
            now_value(),
        ],
    );
    txn.execute_raw(users).await.unwrap();
    // A fresh database numbers the users 1..=USERS in order; the statements below and the
    // `user_ids` case rely on it.
    let check = users::Entity::find()
        .filter(users::Column::ExternalId.eq(format!("gen-{USERS}")))
        .one(&txn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(check.id, USERS);
    let registrations = statement(
        conn,
        "INSERT INTO registrations (user_id, competition_id, role, status, created_at, updated_at)
         SELECT id, ?, 'participant',
             CASE id % 5 WHEN 0 THEN 'confirmed' WHEN 1 THEN 'confirmed' WHEN 2 THEN 'pending'
                 WHEN 3 THEN 'waitlisted' ELSE 'cancelled' END,
             ?, ?
         FROM users WHERE id % 2 = 0
         UNION ALL
         SELECT id, ?, 'volunteer', 'confirmed', ?, ? FROM users WHERE id % 3 = 0",
        vec![
            Value::from(comp_ids[0]),
            now_value(),
            now_value(),
            Value::from(comp_ids[1]),
            now_value(),
            now_value(),
        ],
    );
    txn.execute_raw(registrations).await.unwrap();
    txn.commit().await.unwrap();
    let stored = registrations::Entity::find().count(conn).await.unwrap();
    let generated: usize = people.iter().map(|g| g.registrations.len()).sum();
    assert_eq!(stored, generated as u64, "the SQL mirrors generate()");
    (people, comp_ids)
}

/// Which generated users a case selects, decided from the generated data.
type Keep = Box<dyn Fn(&Gen) -> bool>;

/// The expected count for the policy `both`.
fn expected_count(people: &[Gen], keep: impl Fn(&Gen) -> bool) -> AudienceCount {
    let mut c = AudienceCount::default();
    for kind in [ChannelKind::TELEGRAM, ChannelKind::EMAIL] {
        c.reachable.insert(kind, 0);
    }
    for g in people.iter().filter(|g| keep(g)) {
        let tg = g.chat.is_some() && !g.blocked;
        let em = g.email.is_some() && !g.unsubscribed && !g.bounced;
        c.users += 1;
        *c.reachable.get_mut(&ChannelKind::TELEGRAM).unwrap() += u64::from(tg);
        *c.reachable.get_mut(&ChannelKind::EMAIL).unwrap() += u64::from(em);
        c.unreachable += u64::from(!tg && !em);
    }
    c.messages = c.reachable.clone();
    c
}

async fn rows_where(
    conn: &DatabaseConnection,
    broadcast: i64,
    channel: ChannelKind,
    status: Option<DeliveryStatus>,
) -> u64 {
    let mut q = broadcast_recipients::Entity::find()
        .filter(broadcast_recipients::Column::BroadcastId.eq(broadcast))
        .filter(broadcast_recipients::Column::Channel.eq(channel.as_str()));
    if let Some(s) = status {
        q = q.filter(broadcast_recipients::Column::Status.eq(s.as_str()));
    }
    q.count(conn).await.unwrap()
}

#[tokio::test]
async fn a_large_audience_counts_exactly_what_materialises() {
    for db in TestDb::all().await {
        let started = Instant::now();
        let conn = db.conn();
        let (people, comps) = seed(conn).await;
        let audience = Store::from_conn(conn.clone());
        let half: Vec<i64> = (1..=USERS).filter(|i| i % 2 == 1).collect();

        let cases: Vec<(&str, AudienceFilter, Keep)> = vec![
            ("everyone", AudienceFilter::default(), Box::new(|_| true)),
            (
                "confirmed participants of A",
                AudienceFilter {
                    competition_ids: vec![comps[0]],
                    registration_statuses: vec![RegistrationStatus::Confirmed],
                    ..AudienceFilter::default()
                },
                Box::new(|g: &Gen| {
                    g.registrations
                        .iter()
                        .any(|r| r.0 == 0 && r.2 == RegistrationStatus::Confirmed)
                }),
            ),
            (
                "confirmed anywhere in Germany (two registrations, one row)",
                AudienceFilter {
                    registration_statuses: vec![RegistrationStatus::Confirmed],
                    countries: vec!["GERMANY".to_owned()],
                    ..AudienceFilter::default()
                },
                Box::new(|g: &Gen| {
                    g.country == "Germany"
                        && g.registrations
                            .iter()
                            .any(|r| r.2 == RegistrationStatus::Confirmed)
                }),
            ),
            (
                "10,000 user ids (more than SQLite binds)",
                AudienceFilter {
                    user_ids: half.clone(),
                    ..AudienceFilter::default()
                },
                Box::new(|g: &Gen| g.i % 2 == 1),
            ),
        ];

        for (name, filter, keep) in &cases {
            let what = format!("{} / {name}", db.backend());
            let expected = expected_count(&people, keep);
            let count = audience.count(filter, ChannelPolicy::BOTH).await.unwrap();
            assert_eq!(count, expected, "{what}: count");

            let broadcast = broadcasts::ActiveModel {
                name: Set((*name).to_owned()),
                template_id: Set(None),
                frozen_template: Set(None),
                channel_policy: Set("both".to_owned()),
                filter: Set(serde_json::to_value(filter).unwrap()),
                status: Set("draft".to_owned()),
                total_recipients: Set(0),
                created_at: Set(now()),
                updated_at: Set(now()),
                ..Default::default()
            }
            .insert(conn)
            .await
            .unwrap()
            .id;
            let report = audience
                .materialise(broadcast, filter, ChannelPolicy::BOTH, now())
                .await
                .unwrap();
            assert_eq!(report.inserted, 2 * count.users, "{what}");
            for (channel, reachable) in [
                (
                    ChannelKind::TELEGRAM,
                    count.reachable_on(ChannelKind::TELEGRAM),
                ),
                (ChannelKind::EMAIL, count.reachable_on(ChannelKind::EMAIL)),
            ] {
                assert_eq!(
                    rows_where(conn, broadcast, channel, None).await,
                    count.users
                );
                assert_eq!(
                    rows_where(conn, broadcast, channel, Some(DeliveryStatus::Pending)).await,
                    reachable,
                    "{what}: {channel}"
                );
                assert_eq!(report.queued[&channel], reachable, "{what}: {channel}");
            }
            assert_eq!(
                report.skipped.values().sum::<u64>(),
                2 * count.users - count.total_messages(),
                "{what}"
            );
            let again = audience
                .materialise(broadcast, filter, ChannelPolicy::BOTH, now())
                .await
                .unwrap();
            assert_eq!(again.inserted, 0, "{what}");
        }
        // Not asserted (no timing assertions in tests), but a slow plan shows up here first.
        eprintln!(
            "{}: large audience test took {:?}",
            db.backend(),
            started.elapsed()
        );
    }
}
