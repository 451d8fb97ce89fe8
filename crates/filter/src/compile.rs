//! Compiles an [`AudienceFilter`] into sea-query statements: the one place where filter fields
//! become SQL.
//!
//! Every statement starts from the same `FROM ... WHERE` (`audience_from`): `users`, joined
//! (when the filter constrains registrations) to a derived table `matched` holding, per user, the
//! smallest id of the registrations that satisfy *all* registration fields at once, and
//! restricted by the user-level fields. Because `matched` has one row per user, nothing
//! downstream ever sees a user twice.
//!
//! ```sql
//! FROM users
//! INNER JOIN (SELECT user_id, MIN(id) AS registration_id FROM registrations
//!             WHERE <competition_ids> AND <roles> AND <registration_statuses>
//!             GROUP BY user_id) AS matched ON matched.user_id = users.id
//! WHERE LOWER(users.country) IN (...) AND LOWER(users.city) IN (...)
//!   AND users.email IS [NOT] NULL AND users.telegram_chat_id IS [NOT] NULL
//!   AND users.id IN (...) AND LOWER(users.email) IN (...) AND users.id NOT IN (...)
//! ```
//!
//! On top of it: the audience itself ([`audience_query`]), the one-pass count (`SUM(CASE ...)`),
//! the per-channel `INSERT INTO broadcast_recipients ... SELECT ... ON CONFLICT DO NOTHING` with
//! `CASE` expressions for status, skip reason and address, the skipped rows of a broadcast per
//! channel and reason (`GROUP BY channel, skip_reason`) and the sample (`ORDER BY users.id
//! LIMIT n`).
//!
//! Ids are written into the SQL as integer literals (they are `i64`, so this is safe, and a list
//! of 50,000 user ids does not run into the bind-parameter limits); text is always bound.

use std::collections::BTreeSet;

use broadcast_domain::{AudienceFilter, BroadcastId, ChannelKind, DeliveryStatus, SkipReason};
use broadcast_store::entity::{broadcast_recipients, broadcasts, registrations, users};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    CaseStatement, Condition, Expr, ExprTrait, Func, InsertStatement, JoinType, OnConflict, Order,
    Query, SelectStatement, UpdateStatement, Value,
};

/// Alias of the derived table of matched registrations.
const MATCHED: &str = "matched";
/// Column of [`MATCHED`] (and of [`audience_query`]) holding the matched registration's id.
pub(crate) const REGISTRATION_ID: &str = "registration_id";
/// Column of [`audience_query`] holding the user's id.
pub(crate) const USER_ID: &str = "user_id";

/// Most text values one statement may bind (SQLite allows 32,766 parameters).
pub(crate) const MAX_BOUND_VALUES: usize = 30_000;

/// The audience as `SELECT user_id, registration_id`, one row per user, ordered by user id.
///
/// `registration_id` is the smallest id among the user's registrations matching the filter, or
/// `NULL` when the filter has no registration field.
pub fn audience_query(filter: &AudienceFilter) -> SelectStatement {
    let mut select = audience_from(filter);
    select
        .expr_as(Expr::col((users::Entity, users::Column::Id)), USER_ID)
        .expr_as(registration_id(filter), REGISTRATION_ID)
        .order_by((users::Entity, users::Column::Id), Order::Asc);
    select
}

/// `SELECT` without columns: `FROM users [JOIN matched] WHERE <user-level fields>`.
pub(crate) fn audience_from(filter: &AudienceFilter) -> SelectStatement {
    let mut select = Query::select();
    select.from(users::Entity);
    if filter.uses_registrations() {
        select.join_subquery(
            JoinType::InnerJoin,
            matched_registrations(filter),
            MATCHED,
            Expr::col((MATCHED, registrations::Column::UserId))
                .equals((users::Entity, users::Column::Id)),
        );
    }
    let cond = user_condition(filter);
    if !cond.is_empty() {
        select.cond_where(cond);
    }
    select
}

/// The matched registration's id, or a typed `NULL` when the filter has no registration field.
pub(crate) fn registration_id(filter: &AudienceFilter) -> Expr {
    if filter.uses_registrations() {
        Expr::col((MATCHED, REGISTRATION_ID))
    } else {
        Expr::null().cast_as("BIGINT")
    }
}

/// Per user, the smallest id of the registrations satisfying every registration field.
fn matched_registrations(filter: &AudienceFilter) -> SelectStatement {
    let r = registrations::Entity;
    let mut cond = Condition::all();
    if !filter.competition_ids.is_empty() {
        cond = cond.add(
            Expr::col((r, registrations::Column::CompetitionId))
                .is_in(int_literals(&filter.competition_ids)),
        );
    }
    if !filter.roles.is_empty() {
        cond = cond.add(
            Expr::col((r, registrations::Column::Role))
                .is_in(filter.roles.iter().map(|v| v.as_str())),
        );
    }
    if !filter.registration_statuses.is_empty() {
        cond = cond.add(
            Expr::col((r, registrations::Column::Status))
                .is_in(filter.registration_statuses.iter().map(|v| v.as_str())),
        );
    }
    Query::select()
        .column((r, registrations::Column::UserId))
        .expr_as(
            Func::min(Expr::col((r, registrations::Column::Id))),
            REGISTRATION_ID,
        )
        .from(r)
        .cond_where(cond)
        .group_by_col((r, registrations::Column::UserId))
        .take()
}

/// The user-level fields, ANDed.
fn user_condition(filter: &AudienceFilter) -> Condition {
    let col = |c: users::Column| Expr::col((users::Entity, c));
    let mut cond = Condition::all();
    if !filter.countries.is_empty() {
        cond = cond.add(
            Expr::expr(Func::lower(col(users::Column::Country)))
                .is_in(lower_variants(&filter.countries)),
        );
    }
    if !filter.cities.is_empty() {
        cond = cond.add(
            Expr::expr(Func::lower(col(users::Column::City))).is_in(lower_variants(&filter.cities)),
        );
    }
    if let Some(has) = filter.has_email {
        cond = cond.add(null_test(col(users::Column::Email), has));
    }
    if let Some(has) = filter.has_telegram {
        cond = cond.add(null_test(col(users::Column::TelegramChatId), has));
    }
    if !filter.user_ids.is_empty() {
        cond = cond.add(col(users::Column::Id).is_in(int_literals(&filter.user_ids)));
    }
    if !filter.emails.is_empty() {
        cond = cond.add(
            Expr::expr(Func::lower(col(users::Column::Email)))
                .is_in(lower_variants(&filter.emails)),
        );
    }
    if !filter.exclude_user_ids.is_empty() {
        cond = cond.add(col(users::Column::Id).is_not_in(int_literals(&filter.exclude_user_ids)));
    }
    cond
}

fn null_test(col: Expr, not_null: bool) -> Expr {
    if not_null {
        col.is_not_null()
    } else {
        col.is_null()
    }
}

/// Ids as SQL integer literals.
fn int_literals(ids: &[i64]) -> Vec<Expr> {
    ids.iter()
        .map(|id| Expr::Constant(Value::BigInt(Some(*id))))
        .collect()
}

/// The lower-case spellings `LOWER(column)` is compared with: the full Unicode lower case (what
/// PostgreSQL's `LOWER` produces) and, when it differs, the ASCII-only lower case (what SQLite's
/// built-in `LOWER` produces). So `Łódź` matches a stored `Łódź` on both, and `berlin` matches
/// `BERLIN` on both; only a differently-cased non-ASCII letter (`łódź` against `Łódź`) needs
/// PostgreSQL.
pub(crate) fn lower_variants<T: AsRef<str>>(values: &[T]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for v in values {
        let v = v.as_ref().trim();
        out.insert(v.to_lowercase());
        out.insert(v.to_ascii_lowercase());
    }
    out.into_iter().collect()
}

/// Text values the filter's statements bind (for the parameter limit check).
pub(crate) fn bound_values(filter: &AudienceFilter) -> usize {
    lower_variants(&filter.countries).len()
        + lower_variants(&filter.cities).len()
        + lower_variants(&filter.emails).len()
        + filter.roles.len()
        + filter.registration_statuses.len()
}

/// Telegram reachable: a chat id, and the bot not blocked.
pub(crate) fn telegram_reachable() -> Condition {
    Condition::all()
        .add(Expr::col((users::Entity, users::Column::TelegramChatId)).is_not_null())
        .add(Expr::col((users::Entity, users::Column::TelegramBlockedAt)).is_null())
}

/// E-mail reachable: an address, not unsubscribed, never bounced.
pub(crate) fn email_reachable() -> Condition {
    Condition::all()
        .add(Expr::col((users::Entity, users::Column::Email)).is_not_null())
        .add(Expr::col((users::Entity, users::Column::EmailUnsubscribedAt)).is_null())
        .add(Expr::col((users::Entity, users::Column::EmailBouncedAt)).is_null())
}

fn count_when(cond: Condition) -> Expr {
    Func::coalesce([
        Func::sum(Into::<Expr>::into(
            CaseStatement::new()
                .case(cond, Expr::Constant(1i64.into()))
                .finally(Expr::Constant(0i64.into())),
        ))
        .into(),
        Expr::Constant(0i64.into()),
    ])
    .into()
}

/// `SELECT COUNT(*) AS users, <telegram>, <email>, <both>`: the audience counted in one pass.
pub(crate) fn count_query(filter: &AudienceFilter) -> SelectStatement {
    let mut select = audience_from(filter);
    select
        .expr_as(
            Func::count(Expr::col(sea_orm::sea_query::Asterisk)),
            "users",
        )
        .expr_as(count_when(telegram_reachable()), "telegram")
        .expr_as(count_when(email_reachable()), "email")
        .expr_as(
            count_when(
                Condition::all()
                    .add(telegram_reachable())
                    .add(email_reachable()),
            ),
            "both",
        );
    select
}

/// Which users get a row on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Every user of the audience.
    Everyone,
    /// Only users Telegram cannot reach (the e-mail part of `telegram_then_email`).
    NotTelegramReachable,
}

/// `INSERT INTO broadcast_recipients (...) SELECT ... ON CONFLICT DO NOTHING` for one channel:
/// a `pending` row with the address for reachable users, a `skipped` row with the reason (and an
/// empty address when there is none) for the others.
pub(crate) fn insert_recipients(
    broadcast: BroadcastId,
    filter: &AudienceFilter,
    channel: ChannelKind,
    rows: Rows,
    now: DateTime<Utc>,
) -> InsertStatement {
    use broadcast_recipients::Column as R;
    let col = |c: users::Column| Expr::col((users::Entity, c));
    let skipped = || Expr::val(DeliveryStatus::Skipped.as_str());
    let pending = Expr::val(DeliveryStatus::Pending.as_str());
    let reason = |r: SkipReason| Expr::val(r.as_str());

    // Reasons in order of precedence: a missing address first, then the user's own choice.
    let (address, status, skip_reason): (Expr, Expr, Expr) = match channel {
        ChannelKind::Telegram => {
            let chat = col(users::Column::TelegramChatId);
            let blocked = col(users::Column::TelegramBlockedAt);
            (
                Func::coalesce([chat.clone().cast_as("TEXT"), Expr::val("")]).into(),
                CaseStatement::new()
                    .case(chat.clone().is_null(), skipped())
                    .case(blocked.clone().is_not_null(), skipped())
                    .finally(pending)
                    .into(),
                CaseStatement::new()
                    .case(chat.is_null(), reason(SkipReason::NoTelegram))
                    .case(blocked.is_not_null(), reason(SkipReason::TelegramBlocked))
                    .into(),
            )
        }
        ChannelKind::Email => {
            let email = col(users::Column::Email);
            let unsubscribed = col(users::Column::EmailUnsubscribedAt);
            let bounced = col(users::Column::EmailBouncedAt);
            (
                Func::coalesce([email.clone(), Expr::val("")]).into(),
                CaseStatement::new()
                    .case(email.clone().is_null(), skipped())
                    .case(unsubscribed.clone().is_not_null(), skipped())
                    .case(bounced.clone().is_not_null(), skipped())
                    .finally(pending)
                    .into(),
                CaseStatement::new()
                    .case(email.is_null(), reason(SkipReason::NoEmail))
                    .case(
                        unsubscribed.is_not_null(),
                        reason(SkipReason::EmailUnsubscribed),
                    )
                    .case(bounced.is_not_null(), reason(SkipReason::EmailBounced))
                    .into(),
            )
        }
    };

    let mut select = audience_from(filter);
    select
        .expr(Expr::Constant(Value::BigInt(Some(broadcast))))
        .expr(col(users::Column::Id))
        .expr(registration_id(filter))
        .expr(Expr::val(channel.as_str()))
        .expr(address)
        .expr(status)
        .expr(skip_reason)
        .expr(Expr::Constant(0i32.into()))
        .expr(Expr::val(now))
        .expr(Expr::Constant(0i32.into()))
        .expr(Expr::val(now))
        .expr(Expr::val(now));
    if rows == Rows::NotTelegramReachable {
        select.cond_where(telegram_reachable().not());
    }
    // SQLite needs a WHERE clause in INSERT ... SELECT ... ON CONFLICT, or it may read the ON of
    // the upsert as the ON of a join.
    if !has_where(filter, rows) {
        select.and_where(Expr::cust("TRUE"));
    }

    Query::insert()
        .into_table(broadcast_recipients::Entity)
        .columns([
            R::BroadcastId,
            R::UserId,
            R::RegistrationId,
            R::Channel,
            R::Address,
            R::Status,
            R::SkipReason,
            R::Attempts,
            R::NextAttemptAt,
            R::UncertainSends,
            R::CreatedAt,
            R::UpdatedAt,
        ])
        .select_from(select)
        .expect("the SELECT has one expression per column")
        .on_conflict(
            OnConflict::columns([R::BroadcastId, R::UserId, R::Channel])
                .do_nothing()
                .to_owned(),
        )
        .to_owned()
}

fn has_where(filter: &AudienceFilter, rows: Rows) -> bool {
    rows == Rows::NotTelegramReachable || !user_condition(filter).is_empty()
}

/// `SELECT channel, skip_reason, COUNT(*) AS n` over a broadcast's `skipped` rows, found through
/// the index `(broadcast_id, status, next_attempt_at)`. Skipped rows are only ever inserted, so
/// two of these around a launch's inserts tell which of the inserted rows were skipped, and why;
/// the rest of each channel's inserted rows are pending. (Grouping every row of the broadcast
/// instead reads the whole table: a second at a million rows.)
pub(crate) fn skipped_query(broadcast: BroadcastId) -> SelectStatement {
    use broadcast_recipients::Column as R;
    Query::select()
        .columns([R::Channel, R::SkipReason])
        .expr_as(Func::count(Expr::col(sea_orm::sea_query::Asterisk)), "n")
        .from(broadcast_recipients::Entity)
        .and_where(Expr::col(R::BroadcastId).eq(broadcast))
        .and_where(Expr::col(R::Status).eq(DeliveryStatus::Skipped.as_str()))
        .group_by_col(R::Channel)
        .group_by_col(R::SkipReason)
        .take()
}

/// `UPDATE broadcasts SET updated_at = now`: proves the broadcast exists (one row updated).
pub(crate) fn touch_broadcast(broadcast: BroadcastId, now: DateTime<Utc>) -> UpdateStatement {
    Query::update()
        .table(broadcasts::Entity)
        .value(broadcasts::Column::UpdatedAt, now)
        .and_where(Expr::col(broadcasts::Column::Id).eq(broadcast))
        .to_owned()
}

/// `UPDATE broadcasts SET total_recipients = total`.
pub(crate) fn set_total_recipients(broadcast: BroadcastId, total: i64) -> UpdateStatement {
    Query::update()
        .table(broadcasts::Entity)
        .value(broadcasts::Column::TotalRecipients, total)
        .and_where(Expr::col(broadcasts::Column::Id).eq(broadcast))
        .to_owned()
}

/// The audience's first `limit` users.
pub(crate) fn sample_query(filter: &AudienceFilter, limit: u64) -> SelectStatement {
    let mut select = audience_query(filter);
    select.limit(limit);
    select
}

#[cfg(test)]
mod tests {
    use broadcast_domain::{RegistrationStatus, Role};
    use expect_test::{Expect, expect};
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    fn filter(json: &str) -> AudienceFilter {
        AudienceFilter::from_json(json).unwrap()
    }

    /// Renders with values inlined, one clause per line for readable snapshots.
    fn check_pg(select: &SelectStatement, expect: Expect) {
        expect.assert_eq(&pretty(&select.to_string(PostgresQueryBuilder)));
    }

    fn pretty(sql: &str) -> String {
        let mut out = sql.to_owned();
        for kw in [
            " FROM ",
            " INNER JOIN ",
            " WHERE ",
            " GROUP BY ",
            " ORDER BY ",
            " LIMIT ",
            " SELECT ",
            " ON CONFLICT ",
        ] {
            out = out.replace(kw, &format!("\n{}", kw.trim_start()));
        }
        out
    }

    #[test]
    fn empty_filter_is_every_user() {
        check_pg(
            &audience_query(&AudienceFilter::default()),
            expect![[r#"
                SELECT "users"."id" AS "user_id", CAST(NULL AS BIGINT) AS "registration_id"
                FROM "users"
                ORDER BY "users"."id" ASC"#]],
        );
    }

    #[test]
    fn registration_fields_hold_on_one_registration() {
        check_pg(
            &audience_query(&filter(
                r#"{"competition_ids":[3,1],"roles":["judge","mentor"],
                    "registration_statuses":["confirmed"]}"#,
            )),
            expect![[r#"
                SELECT "users"."id" AS "user_id", "matched"."registration_id" AS "registration_id"
                FROM "users"
                INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id"
                FROM "registrations"
                WHERE "registrations"."competition_id" IN (1, 3) AND "registrations"."role" IN ('judge', 'mentor') AND "registrations"."status" IN ('confirmed')
                GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id"
                ORDER BY "users"."id" ASC"#]],
        );
    }

    #[test]
    fn user_fields_combine_with_and() {
        check_pg(
            &audience_query(&filter(
                r#"{"countries":["Germany","POLAND"],"cities":["Łódź"],"has_email":true,
                    "has_telegram":false,"user_ids":[5,7],"emails":["Ann@X.org"],
                    "exclude_user_ids":[9]}"#,
            )),
            expect![[r#"
                SELECT "users"."id" AS "user_id", CAST(NULL AS BIGINT) AS "registration_id"
                FROM "users"
                WHERE LOWER("users"."country") IN ('germany', 'poland') AND LOWER("users"."city") IN ('Łódź', 'łódź') AND "users"."email" IS NOT NULL AND "users"."telegram_chat_id" IS NULL AND "users"."id" IN (5, 7) AND LOWER("users"."email") IN ('ann@x.org') AND "users"."id" NOT IN (9)
                ORDER BY "users"."id" ASC"#]],
        );
    }

    #[test]
    fn count_is_one_pass_with_conditional_sums() {
        check_pg(
            &count_query(&filter(r#"{"roles":["volunteer"]}"#)),
            expect![[r#"
                SELECT COUNT(*) AS "users", COALESCE(SUM((CASE WHEN ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL) THEN 1 ELSE 0 END)), 0) AS "telegram", COALESCE(SUM((CASE WHEN ("users"."email" IS NOT NULL AND "users"."email_unsubscribed_at" IS NULL AND "users"."email_bounced_at" IS NULL) THEN 1 ELSE 0 END)), 0) AS "email", COALESCE(SUM((CASE WHEN ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL AND ("users"."email" IS NOT NULL AND "users"."email_unsubscribed_at" IS NULL AND "users"."email_bounced_at" IS NULL)) THEN 1 ELSE 0 END)), 0) AS "both"
                FROM "users"
                INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id"
                FROM "registrations"
                WHERE "registrations"."role" IN ('volunteer')
                GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id""#]],
        );
    }

    #[test]
    fn materialise_inserts_one_row_per_user_and_skips_with_a_reason() {
        let now = DateTime::parse_from_rfc3339("2027-03-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let f = AudienceFilter {
            competition_ids: vec![2],
            roles: vec![Role::Participant],
            registration_statuses: vec![RegistrationStatus::Confirmed],
            ..AudienceFilter::default()
        };
        let telegram = insert_recipients(7, &f, ChannelKind::Telegram, Rows::Everyone, now);
        expect![[r#"
            INSERT INTO "broadcast_recipients" ("broadcast_id", "user_id", "registration_id", "channel", "address", "status", "skip_reason", "attempts", "next_attempt_at", "uncertain_sends", "created_at", "updated_at")
            SELECT 7, "users"."id", "matched"."registration_id", 'telegram', COALESCE(CAST("users"."telegram_chat_id" AS TEXT), ''), (CASE WHEN ("users"."telegram_chat_id" IS NULL) THEN 'skipped' WHEN ("users"."telegram_blocked_at" IS NOT NULL) THEN 'skipped' ELSE 'pending' END), (CASE WHEN ("users"."telegram_chat_id" IS NULL) THEN 'no_telegram' WHEN ("users"."telegram_blocked_at" IS NOT NULL) THEN 'telegram_blocked' END), 0, '2027-03-01 09:00:00.000000 +00:00', 0, '2027-03-01 09:00:00.000000 +00:00', '2027-03-01 09:00:00.000000 +00:00'
            FROM "users"
            INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id"
            FROM "registrations"
            WHERE "registrations"."competition_id" IN (2) AND "registrations"."role" IN ('participant') AND "registrations"."status" IN ('confirmed')
            GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id"
            WHERE TRUE
            ON CONFLICT ("broadcast_id", "user_id", "channel") DO NOTHING"#]]
        .assert_eq(&pretty(&telegram.to_string(SqliteQueryBuilder)));

        let email = insert_recipients(
            7,
            &AudienceFilter::default(),
            ChannelKind::Email,
            Rows::NotTelegramReachable,
            now,
        );
        expect![[r#"
            INSERT INTO "broadcast_recipients" ("broadcast_id", "user_id", "registration_id", "channel", "address", "status", "skip_reason", "attempts", "next_attempt_at", "uncertain_sends", "created_at", "updated_at")
            SELECT 7, "users"."id", CAST(NULL AS BIGINT), 'email', COALESCE("users"."email", ''), (CASE WHEN ("users"."email" IS NULL) THEN 'skipped' WHEN ("users"."email_unsubscribed_at" IS NOT NULL) THEN 'skipped' WHEN ("users"."email_bounced_at" IS NOT NULL) THEN 'skipped' ELSE 'pending' END), (CASE WHEN ("users"."email" IS NULL) THEN 'no_email' WHEN ("users"."email_unsubscribed_at" IS NOT NULL) THEN 'email_unsubscribed' WHEN ("users"."email_bounced_at" IS NOT NULL) THEN 'email_bounced' END), 0, '2027-03-01 09:00:00.000000 +00:00', 0, '2027-03-01 09:00:00.000000 +00:00', '2027-03-01 09:00:00.000000 +00:00'
            FROM "users"
            WHERE NOT ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL)
            ON CONFLICT ("broadcast_id", "user_id", "channel") DO NOTHING"#]]
        .assert_eq(&pretty(&email.to_string(PostgresQueryBuilder)));
    }

    #[test]
    fn text_is_bound_and_ids_are_literals() {
        let f = filter(r#"{"countries":["Spain"],"user_ids":[4],"roles":["judge"]}"#);
        let (sql, values) = audience_query(&f).build(SqliteQueryBuilder);
        expect![[r#"SELECT "users"."id" AS "user_id", "matched"."registration_id" AS "registration_id" FROM "users" INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id" FROM "registrations" WHERE "registrations"."role" IN (?) GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id" WHERE LOWER("users"."country") IN (?) AND "users"."id" IN (4) ORDER BY "users"."id" ASC"#]]
        .assert_eq(&sql);
        assert_eq!(values.0.len(), 2);
        assert_eq!(bound_values(&f), 2);
    }

    #[test]
    fn lower_variants_cover_both_backends() {
        assert_eq!(lower_variants(&["BERLIN", "Berlin"]), vec!["berlin"]);
        assert_eq!(lower_variants(&[" Łódź "]), vec!["Łódź", "łódź"]);
    }
}
