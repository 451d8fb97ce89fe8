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
//! WHERE users.country_key IN (...) AND users.city_key IN (...)
//!   AND users.email IS [NOT] NULL AND users.telegram_chat_id IS [NOT] NULL
//!   AND users.id IN (...) AND users.email_key IN (...) AND users.id NOT IN (...)
//! ```
//!
//! On top of it: the audience itself ([`audience_query`]), the one-pass count
//! ([`count_query`], `SUM(CASE ...)`), the sample ([`sample_query`], `ORDER BY users.id LIMIT n`)
//! and the `CASE` expressions of a recipient row's address, status and skip reason
//! ([`channel_columns`]), from which the store builds its `INSERT ... SELECT`.
//!
//! Ids are written into the SQL as integer literals (they are `i64`, so this is safe, and a list
//! of 50,000 user ids does not run into the bind-parameter limits); text is always bound.

use std::collections::BTreeSet;

use broadcast_domain::{
    AddressSource, AudienceFilter, DeliveryStatus, Error, Reach, Result, SkipReason, UserField,
    fold_case,
};

use crate::schema::{Registrations, Users};
use sea_orm::sea_query::{
    BinOper, CaseStatement, Condition, Expr, ExprTrait, Func, JoinType, Order, Query,
    SelectStatement, Value,
};

/// Alias of the derived table of matched registrations.
const MATCHED: &str = "matched";
/// Column of [`MATCHED`] (and of [`audience_query`]) holding the matched registration's id.
pub const REGISTRATION_ID: &str = "registration_id";
/// Column of [`audience_query`] holding the user's id.
pub const USER_ID: &str = "user_id";

/// Most text values one statement may bind (SQLite allows 32,766 parameters).
pub const MAX_BOUND_VALUES: usize = 30_000;

/// The audience as `SELECT user_id, registration_id`, one row per user, ordered by user id.
///
/// `registration_id` is the smallest id among the user's registrations matching the filter, or
/// `NULL` when the filter has no registration field.
pub fn audience_query(filter: &AudienceFilter) -> SelectStatement {
    let mut select = audience_from(filter);
    select
        .expr_as(Expr::col((Users::Table, Users::Id)), USER_ID)
        .expr_as(registration_id(filter), REGISTRATION_ID)
        .order_by((Users::Table, Users::Id), Order::Asc);
    select
}

/// `SELECT` without columns: `FROM users [JOIN matched] WHERE <user-level fields>`.
pub fn audience_from(filter: &AudienceFilter) -> SelectStatement {
    let mut select = Query::select();
    select.from(Users::Table);
    if filter.uses_registrations() {
        select.join_subquery(
            JoinType::InnerJoin,
            matched_registrations(filter),
            MATCHED,
            Expr::col((MATCHED, Registrations::UserId)).equals((Users::Table, Users::Id)),
        );
    }
    let cond = user_condition(filter);
    if !cond.is_empty() {
        select.cond_where(cond);
    }
    select
}

/// The matched registration's id, or a typed `NULL` when the filter has no registration field.
pub fn registration_id(filter: &AudienceFilter) -> Expr {
    if filter.uses_registrations() {
        Expr::col((MATCHED, REGISTRATION_ID))
    } else {
        Expr::null().cast_as("BIGINT")
    }
}

/// Per user, the smallest id of the registrations satisfying every registration field.
fn matched_registrations(filter: &AudienceFilter) -> SelectStatement {
    let r = Registrations::Table;
    let mut cond = Condition::all();
    if !filter.competition_ids.is_empty() {
        cond = cond.add(
            Expr::col((r, Registrations::CompetitionId))
                .is_in(int_literals(&filter.competition_ids)),
        );
    }
    if !filter.roles.is_empty() {
        cond = cond.add(
            Expr::col((r, Registrations::Role)).is_in(filter.roles.iter().map(|v| v.as_str())),
        );
    }
    if !filter.registration_statuses.is_empty() {
        cond = cond.add(
            Expr::col((r, Registrations::Status))
                .is_in(filter.registration_statuses.iter().map(|v| v.as_str())),
        );
    }
    Query::select()
        .column((r, Registrations::UserId))
        .expr_as(
            Func::min(Expr::col((r, Registrations::Id))),
            REGISTRATION_ID,
        )
        .from(r)
        .cond_where(cond)
        .group_by_col((r, Registrations::UserId))
        .take()
}

/// The user-level fields, ANDed.
fn user_condition(filter: &AudienceFilter) -> Condition {
    let col = |c: Users| Expr::col((Users::Table, c));
    let mut cond = Condition::all();
    if !filter.countries.is_empty() {
        cond = cond.add(col(Users::CountryKey).is_in(folded(&filter.countries)));
    }
    if !filter.cities.is_empty() {
        cond = cond.add(col(Users::CityKey).is_in(folded(&filter.cities)));
    }
    if let Some(has) = filter.has_email {
        cond = cond.add(null_test(col(Users::Email), has));
    }
    if let Some(has) = filter.has_telegram {
        cond = cond.add(null_test(col(Users::TelegramChatId), has));
    }
    if !filter.user_ids.is_empty() {
        cond = cond.add(col(Users::Id).is_in(int_literals(&filter.user_ids)));
    }
    if !filter.emails.is_empty() {
        cond = cond.add(col(Users::EmailKey).is_in(folded(&filter.emails)));
    }
    if !filter.exclude_user_ids.is_empty() {
        cond = cond.add(col(Users::Id).is_not_in(int_literals(&filter.exclude_user_ids)));
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

/// The values in the form the store keeps next to the column ([`fold_case`]), deduplicated.
fn folded<T: AsRef<str>>(values: &[T]) -> Vec<String> {
    let set: BTreeSet<String> = values.iter().map(|v| fold_case(v.as_ref())).collect();
    set.into_iter().collect()
}

/// Rejects filters the database could not run: invalid values, or more text values than one
/// statement can bind.
pub fn check(filter: &AudienceFilter) -> Result<()> {
    filter.validate()?;
    let bound = bound_values(filter);
    if bound > MAX_BOUND_VALUES {
        return Err(Error::Invalid(format!(
            "invalid audience filter: {bound} text values in `countries`, `cities`, `emails`, \
             `roles` and `registration_statuses` together; at most {MAX_BOUND_VALUES} are \
             supported (split the audience, or use `user_ids`)"
        )));
    }
    Ok(())
}

/// True when the filter restricts users by a user-level field (so `audience_from` has a
/// `WHERE`).
pub fn constrains_users(filter: &AudienceFilter) -> bool {
    !user_condition(filter).is_empty()
}

/// Text values the filter's statements bind (for the parameter limit check).
pub fn bound_values(filter: &AudienceFilter) -> usize {
    folded(&filter.countries).len()
        + folded(&filter.cities).len()
        + folded(&filter.emails).len()
        + filter.roles.len()
        + filter.registration_statuses.len()
}

fn field(f: UserField) -> Expr {
    let c = match f {
        UserField::TelegramChatId => Users::TelegramChatId,
        UserField::Email => Users::Email,
        UserField::TelegramBlockedAt => Users::TelegramBlockedAt,
        UserField::EmailUnsubscribedAt => Users::EmailUnsubscribedAt,
        UserField::EmailBouncedAt => Users::EmailBouncedAt,
    };
    Expr::col((Users::Table, c))
}

/// A user's address on a channel, `NULL` when there is none: the column, or
/// `NULLIF(TRIM(users.attributes ->> 'name'), '')` for an attribute (`->>` reads a JSON key as
/// text on PostgreSQL and on SQLite 3.38 and later).
fn address(reach: &Reach) -> Expr {
    match &reach.address {
        AddressSource::Field(f) => field(*f),
        AddressSource::Attribute(name) => {
            let text = Expr::col((Users::Table, Users::Attributes))
                .binary(BinOper::Custom("->>"), Expr::val(name.as_str()));
            Func::cust("NULLIF")
                .arg(Func::cust("TRIM").arg(text))
                .arg("")
                .into()
        }
    }
}

/// [`address`] as text, for the recipient row.
fn address_text(reach: &Reach) -> Expr {
    match &reach.address {
        AddressSource::Field(UserField::TelegramChatId) => address(reach).cast_as("TEXT"),
        _ => address(reach),
    }
}

/// Reachable on a channel: an address, and none of the refusals set (the bot not blocked, not
/// unsubscribed, never bounced...).
pub fn reachable(reach: &Reach) -> Condition {
    reach.refusals.iter().fold(
        Condition::all().add(address(reach).is_not_null()),
        |all, (f, _)| all.add(field(*f).is_null()),
    )
}

/// Refused the channel: one of its refusals set (blocked the bot, unsubscribed, bounced...).
/// Never true for a channel without refusals.
pub fn refused(reach: &Reach) -> Condition {
    reach
        .refusals
        .iter()
        .fold(Condition::any().add(Expr::val(false)), |any, (f, _)| {
            any.add(field(*f).is_not_null())
        })
}

/// What a user's recipient row on a channel holds, as expressions over `users`: the address
/// (empty when there is none), the status (`pending`, or `skipped` when the user cannot be
/// reached there) and the skip reason (`NULL` when pending), with the reasons in the order of
/// [`Reach::address_of`]: a missing address first, then the user's own choice.
pub fn channel_columns(reach: &Reach) -> [Expr; 3] {
    let skipped = || Expr::val(DeliveryStatus::Skipped.as_str());
    let reason = |r: SkipReason| Expr::val(r.as_str());
    let address = address(reach);
    let mut status = CaseStatement::new().case(address.clone().is_null(), skipped());
    let mut skip_reason =
        CaseStatement::new().case(address.clone().is_null(), reason(reach.missing));
    for (f, why) in &reach.refusals {
        status = status.case(field(*f).is_not_null(), skipped());
        skip_reason = skip_reason.case(field(*f).is_not_null(), reason(*why));
    }
    [
        Func::coalesce([address_text(reach), Expr::val("")]).into(),
        status
            .finally(Expr::val(DeliveryStatus::Pending.as_str()))
            .into(),
        skip_reason.into(),
    ]
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

/// Column of [`count_query`] with the users the `i`-th channel reaches.
pub fn reachable_column(i: usize) -> String {
    format!("reachable_{i}")
}

/// Column of [`count_query`] with the messages a launch queues on the `i`-th channel.
pub fn messages_column(i: usize) -> String {
    format!("messages_{i}")
}

/// `SELECT COUNT(*) AS users, SUM(CASE ...) AS reachable_0, ... AS messages_0, ...,
/// ... AS unreachable`: the audience counted in one pass, per channel of a plan given as each
/// channel's reach with the reaches of the channels before it in a `first_reachable` chain
/// (none for `all`): the users it reaches, and of those the ones none of the earlier reaches
/// (its messages at launch); and the users no channel reaches.
pub fn count_query(filter: &AudienceFilter, channels: &[(&Reach, &[&Reach])]) -> SelectStatement {
    let mut select = audience_from(filter);
    select.expr_as(
        Func::count(Expr::col(sea_orm::sea_query::Asterisk)),
        "users",
    );
    for (i, (reach, before)) in channels.iter().enumerate() {
        let first = before
            .iter()
            .fold(Condition::all().add(reachable(reach)), |all, earlier| {
                all.add(reachable(earlier).not())
            });
        select
            .expr_as(count_when(reachable(reach)), reachable_column(i))
            .expr_as(count_when(first), messages_column(i));
    }
    let none = channels.iter().fold(Condition::all(), |all, (reach, _)| {
        all.add(reachable(reach).not())
    });
    select.expr_as(count_when(none), "unreachable");
    select
}

/// The audience's first `limit` users.
pub fn sample_query(filter: &AudienceFilter, limit: u64) -> SelectStatement {
    let mut select = audience_query(filter);
    select.limit(limit);
    select
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    fn filter(json: &str) -> AudienceFilter {
        AudienceFilter::from_json(json).unwrap()
    }

    #[test]
    fn an_attribute_address_is_read_as_trimmed_text_and_blank_is_none() {
        let reach = Reach::attribute("phone").unwrap();
        let mut select = Query::select();
        select
            .from(Users::Table)
            .exprs(channel_columns(&reach))
            .cond_where(reachable(&reach));
        expect![[r#"
            SELECT COALESCE(NULLIF(TRIM("users"."attributes" ->> 'phone'), ''), ''), (CASE WHEN (NULLIF(TRIM("users"."attributes" ->> 'phone'), '') IS NULL) THEN 'skipped' ELSE 'pending' END), (CASE WHEN (NULLIF(TRIM("users"."attributes" ->> 'phone'), '') IS NULL) THEN 'no_address' END) FROM "users" WHERE NULLIF(TRIM("users"."attributes" ->> 'phone'), '') IS NOT NULL"#]]
        .assert_eq(&select.to_string(SqliteQueryBuilder));
        // The same on PostgreSQL, where `attributes` is `jsonb`.
        assert_eq!(
            select.to_string(PostgresQueryBuilder),
            select.to_string(SqliteQueryBuilder)
        );
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
                WHERE "users"."country_key" IN ('germany', 'poland') AND "users"."city_key" IN ('łódź') AND "users"."email" IS NOT NULL AND "users"."telegram_chat_id" IS NULL AND "users"."id" IN (5, 7) AND "users"."email_key" IN ('ann@x.org') AND "users"."id" NOT IN (9)
                ORDER BY "users"."id" ASC"#]],
        );
    }

    #[test]
    fn count_is_one_pass_with_conditional_sums() {
        check_pg(
            &count_query(
                &filter(r#"{"roles":["volunteer"]}"#),
                &[
                    (&Reach::telegram(), &[]),
                    (&Reach::email(), &[&Reach::telegram()]),
                ],
            ),
            expect![[r#"
                SELECT COUNT(*) AS "users", COALESCE(SUM((CASE WHEN ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL) THEN 1 ELSE 0 END)), 0) AS "reachable_0", COALESCE(SUM((CASE WHEN ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL) THEN 1 ELSE 0 END)), 0) AS "messages_0", COALESCE(SUM((CASE WHEN ("users"."email" IS NOT NULL AND "users"."email_unsubscribed_at" IS NULL AND "users"."email_bounced_at" IS NULL) THEN 1 ELSE 0 END)), 0) AS "reachable_1", COALESCE(SUM((CASE WHEN ("users"."email" IS NOT NULL AND "users"."email_unsubscribed_at" IS NULL AND "users"."email_bounced_at" IS NULL AND (NOT ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL))) THEN 1 ELSE 0 END)), 0) AS "messages_1", COALESCE(SUM((CASE WHEN ((NOT ("users"."telegram_chat_id" IS NOT NULL AND "users"."telegram_blocked_at" IS NULL)) AND (NOT ("users"."email" IS NOT NULL AND "users"."email_unsubscribed_at" IS NULL AND "users"."email_bounced_at" IS NULL))) THEN 1 ELSE 0 END)), 0) AS "unreachable"
                FROM "users"
                INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id"
                FROM "registrations"
                WHERE "registrations"."role" IN ('volunteer')
                GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id""#]],
        );
    }

    #[test]
    fn text_is_bound_and_ids_are_literals() {
        let f = filter(r#"{"countries":["Spain"],"user_ids":[4],"roles":["judge"]}"#);
        let (sql, values) = audience_query(&f).build(SqliteQueryBuilder);
        expect![[r#"SELECT "users"."id" AS "user_id", "matched"."registration_id" AS "registration_id" FROM "users" INNER JOIN (SELECT "registrations"."user_id", MIN("registrations"."id") AS "registration_id" FROM "registrations" WHERE "registrations"."role" IN (?) GROUP BY "registrations"."user_id") AS "matched" ON "matched"."user_id" = "users"."id" WHERE "users"."country_key" IN (?) AND "users"."id" IN (4) ORDER BY "users"."id" ASC"#]]
        .assert_eq(&sql);
        assert_eq!(values.0.len(), 2);
        assert_eq!(bound_values(&f), 2);
    }

    #[test]
    fn values_are_compared_folded() {
        assert_eq!(folded(&["BERLIN", " Berlin"]), vec!["berlin"]);
        assert_eq!(folded(&[" ŁÓDŹ ", "Łódź"]), vec!["łódź"]);
    }
}
