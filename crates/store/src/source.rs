//! [`AudienceSource`] for [`Store`]: the audience filter compiled by `broadcast-filter`, run
//! here, so the ledger rows and counters of a launch are written by the store alone, under its
//! SQLite writer lock and in one transaction with their counters.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use broadcast_domain::{
    AudienceCount, AudienceFilter, AudienceSource, BroadcastId, ChannelKind, ChannelPolicy,
    DeliveryStatus, Error, MaterialiseReport, Reach, Reaches, RecipientContext, Result, SkipReason,
};
use broadcast_filter as compile;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Expr, ExprTrait, Func, InsertStatement, OnConflict, Query, SelectStatement, UpdateStatement,
    Value,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryResult,
};

use crate::Store;
use crate::convert;
use crate::counts::{self, CountChanges, LedgerCounts};
use crate::entity::{broadcast_recipients, broadcasts, competitions, registrations, users};
use crate::error::db_err as db_error;

/// Ids looked up per `IN (...)` query when loading sampled recipients.
const LOOKUP_CHUNK: usize = 500;

fn get_u64(row: &QueryResult, column: &str) -> Result<u64> {
    let v: i64 = row.try_get("", column).map_err(db_error)?;
    u64::try_from(v).map_err(|_| Error::Internal(format!("negative count {v} in `{column}`")))
}

/// The statements of a policy: per channel, its reach and the reaches of the channels before
/// it in a `first_reachable` chain (a user gets a row on the channel only when none of those
/// reaches the user; the orchestrator adds a row later for users whose delivery on an earlier
/// channel fails for good).
fn plan(
    reaches: &Reaches,
    policy: ChannelPolicy,
) -> Result<Vec<(ChannelKind, &Reach, Vec<&Reach>)>> {
    policy
        .channels()
        .iter()
        .map(|channel| {
            let before = policy
                .before(*channel)
                .iter()
                .map(|k| reaches.get(*k))
                .collect::<Result<Vec<_>>>()?;
            Ok((*channel, reaches.get(*channel)?, before))
        })
        .collect()
}

/// The broadcast's skipped rows per channel and reason.
async fn skipped(
    txn: &DatabaseTransaction,
    broadcast: BroadcastId,
) -> Result<BTreeMap<(ChannelKind, SkipReason), u64>> {
    let mut out = BTreeMap::new();
    for row in txn
        .query_all(&skipped_query(broadcast))
        .await
        .map_err(db_error)?
    {
        let text = |column: &str| -> Result<String> {
            row.try_get::<Option<String>>("", column)
                .map(Option::unwrap_or_default)
                .map_err(db_error)
        };
        let bad = |what: &str, e: broadcast_domain::ParseError| {
            Error::Internal(format!(
                "broadcast {broadcast} has a skipped recipient row with {what}: {e}"
            ))
        };
        let channel = ChannelKind::from_stored(&text("channel")?)
            .map_err(|e| bad("an unknown channel", e))?;
        let reason: SkipReason = text("skip_reason")?
            .parse()
            .map_err(|e| bad("no known skip reason", e))?;
        out.insert((channel, reason), get_u64(&row, "n")?);
    }
    Ok(out)
}

/// The counter changes of a launch: per channel, the rows inserted, of which skipped (per
/// reason) the growth of the skipped rows across the inserts, and the rest pending. Exact: the
/// transaction holds the broadcast row (`touch_broadcast`), and the only other writer that
/// inserts rows, the e-mail fallback, updates that row before it commits, so no other insert
/// commits between the two reads of the skipped rows.
fn launch_changes(
    broadcast: BroadcastId,
    inserted: &BTreeMap<ChannelKind, u64>,
    before: &BTreeMap<(ChannelKind, SkipReason), u64>,
    after: &BTreeMap<(ChannelKind, SkipReason), u64>,
) -> Result<CountChanges> {
    let mut changes = CountChanges::new();
    let rows = |n: u64| {
        i64::try_from(n).map_err(|_| Error::Internal(format!("{n} rows do not fit a BIGINT")))
    };
    for (channel, n) in inserted {
        let mut pending = *n;
        for ((c, reason), now) in after.iter().filter(|((c, _), _)| c == channel) {
            let added = now.saturating_sub(before.get(&(*c, *reason)).copied().unwrap_or(0));
            pending = pending.saturating_sub(added);
            changes.add(
                broadcast,
                *c,
                DeliveryStatus::Skipped,
                Some(*reason),
                rows(added)?,
            );
        }
        changes.add(
            broadcast,
            *channel,
            DeliveryStatus::Pending,
            None,
            rows(pending)?,
        );
    }
    Ok(changes)
}

/// The report of a broadcast's rows, from its counters: per channel of the policy the rows that
/// are not skipped ("queued", whatever happened to them since), the skipped rows per reason, and
/// the total.
fn report(policy: ChannelPolicy, counts: &LedgerCounts) -> MaterialiseReport {
    let mut report = MaterialiseReport::default();
    for channel in policy.channels() {
        report.queued.insert(*channel, 0);
    }
    for c in &counts.counts {
        match c.skip_reason {
            Some(reason) if c.status == DeliveryStatus::Skipped => {
                *report.skipped.entry(reason).or_default() += c.count;
            }
            _ => *report.queued.entry(c.channel).or_default() += c.count,
        }
    }
    report
}

#[async_trait]
impl AudienceSource for Store {
    #[tracing::instrument(skip_all, fields(filter = %filter.describe(), %policy))]
    async fn count(&self, filter: &AudienceFilter, policy: ChannelPolicy) -> Result<AudienceCount> {
        compile::check(filter)?;
        let plan = plan(self.reaches(), policy)?;
        let channels: Vec<(&Reach, &[&Reach])> = plan
            .iter()
            .map(|(_, reach, before)| (*reach, before.as_slice()))
            .collect();
        let row = self
            .conn()
            .query_one(&compile::count_query(filter, &channels))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("the audience count returned no row".into()))?;
        let mut count = AudienceCount {
            users: get_u64(&row, "users")?,
            unreachable: get_u64(&row, "unreachable")?,
            ..AudienceCount::default()
        };
        for (i, (kind, _, _)) in plan.iter().enumerate() {
            count
                .reachable
                .insert(*kind, get_u64(&row, &compile::reachable_column(i))?);
            count
                .messages
                .insert(*kind, get_u64(&row, &compile::messages_column(i))?);
        }
        tracing::debug!(?count, "counted audience");
        Ok(count)
    }

    #[tracing::instrument(skip(self, filter), fields(filter = %filter.describe()))]
    async fn materialise(
        &self,
        broadcast: BroadcastId,
        filter: &AudienceFilter,
        policy: ChannelPolicy,
        now: DateTime<Utc>,
    ) -> Result<MaterialiseReport> {
        compile::check(filter)?;
        let plan = plan(self.reaches(), policy)?;
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        // A write first: it proves the broadcast exists, and on SQLite it takes the write lock
        // before anything is read, so the transaction never has to upgrade a read lock.
        let touched = txn
            .execute(&touch_broadcast(broadcast, now))
            .await
            .map_err(db_error)?
            .rows_affected();
        if touched == 0 {
            return Err(Error::not_found("broadcast", broadcast));
        }

        let before = skipped(&txn, broadcast).await?;
        let mut inserted = BTreeMap::new();
        for (channel, reach, before) in &plan {
            let insert = insert_recipients(broadcast, filter, *channel, reach, before, now);
            let n = txn
                .execute(&insert)
                .await
                .map_err(db_error)?
                .rows_affected();
            *inserted.entry(*channel).or_default() += n;
        }
        let after = skipped(&txn, broadcast).await?;
        // The counters last: the transaction holds their rows for the shortest time.
        launch_changes(broadcast, &inserted, &before, &after)?
            .apply(&txn)
            .await?;
        let counts = counts::read(&txn, broadcast).await?;
        let mut report = report(policy, &counts);
        let inserted: u64 = inserted.values().sum();
        report.inserted = inserted;
        let total = counts.total();
        let total = i64::try_from(total)
            .map_err(|_| Error::Internal(format!("{total} recipient rows do not fit a BIGINT")))?;
        txn.execute(&set_total_recipients(broadcast, total))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        tracing::info!(
            inserted,
            total,
            queued = ?report.queued,
            skipped = ?report.skipped,
            "materialised recipients"
        );
        Ok(report)
    }

    #[tracing::instrument(skip(self, filter), fields(filter = %filter.describe()))]
    async fn sample(&self, filter: &AudienceFilter, limit: u64) -> Result<Vec<RecipientContext>> {
        compile::check(filter)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut picked = Vec::new();
        for row in self
            .conn()
            .query_all(&compile::sample_query(filter, limit))
            .await
            .map_err(db_error)?
        {
            let user: i64 = row.try_get("", compile::USER_ID).map_err(db_error)?;
            let registration: Option<i64> = row
                .try_get("", compile::REGISTRATION_ID)
                .map_err(db_error)?;
            picked.push((user, registration));
        }

        let user_ids: Vec<i64> = picked.iter().map(|(u, _)| *u).collect();
        let registration_ids: Vec<i64> = picked.iter().filter_map(|(_, r)| *r).collect();
        let mut users = HashMap::new();
        for chunk in user_ids.chunks(LOOKUP_CHUNK) {
            for m in users::Entity::find()
                .filter(users::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                users.insert(m.id, convert::user(m)?);
            }
        }
        let mut registrations = HashMap::new();
        for chunk in registration_ids.chunks(LOOKUP_CHUNK) {
            for m in registrations::Entity::find()
                .filter(registrations::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                registrations.insert(m.id, convert::registration(m)?);
            }
        }
        let mut competition_ids: Vec<i64> =
            registrations.values().map(|r| r.competition_id).collect();
        competition_ids.sort_unstable();
        competition_ids.dedup();
        let mut competitions = HashMap::new();
        for chunk in competition_ids.chunks(LOOKUP_CHUNK) {
            for m in competitions::Entity::find()
                .filter(competitions::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                competitions.insert(m.id, convert::competition(m));
            }
        }

        // A user deleted between the queries is left out rather than failing the preview.
        Ok(picked
            .into_iter()
            .filter_map(|(user_id, registration_id)| {
                let user = users.remove(&user_id)?;
                let registration = registration_id.and_then(|id| registrations.get(&id).cloned());
                let competition = registration
                    .as_ref()
                    .and_then(|r| competitions.get(&r.competition_id).cloned());
                Some(RecipientContext {
                    user,
                    competition,
                    registration,
                })
            })
            .collect())
    }
}

/// `INSERT INTO broadcast_recipients (...) SELECT ... ON CONFLICT DO NOTHING` for one channel:
/// a `pending` row with the address for reachable users, a `skipped` row with the reason (and an
/// empty address when there is none) for the others; only for users whom none of `not_reached_by`
/// reaches.
fn insert_recipients(
    broadcast: BroadcastId,
    filter: &AudienceFilter,
    channel: ChannelKind,
    reach: &Reach,
    not_reached_by: &[&Reach],
    now: DateTime<Utc>,
) -> InsertStatement {
    use broadcast_recipients::Column as R;
    let [address, status, skip_reason] = compile::channel_columns(reach);
    let mut select = compile::audience_from(filter);
    select
        .expr(Expr::Constant(Value::BigInt(Some(broadcast))))
        .expr(Expr::col((users::Entity, users::Column::Id)))
        .expr(compile::registration_id(filter))
        .expr(Expr::val(channel.as_str()))
        .expr(address)
        .expr(status)
        .expr(skip_reason)
        .expr(Expr::Constant(0i32.into()))
        .expr(Expr::val(now))
        .expr(Expr::Constant(0i32.into()))
        .expr(Expr::val(now))
        .expr(Expr::val(now));
    for earlier in not_reached_by {
        select.cond_where(compile::reachable(earlier).not());
    }
    // SQLite needs a WHERE clause in INSERT ... SELECT ... ON CONFLICT, or it may read the ON of
    // the upsert as the ON of a join.
    if not_reached_by.is_empty() && !compile::constrains_users(filter) {
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

/// `SELECT channel, skip_reason, COUNT(*) AS n` over a broadcast's `skipped` rows, found through
/// the index `(broadcast_id, status, next_attempt_at)`. Skipped rows are only ever inserted, so
/// two of these around a launch's inserts tell which of the inserted rows were skipped, and why;
/// the rest of each channel's inserted rows are pending. (Grouping every row of the broadcast
/// instead reads the whole table: a second at a million rows.)
fn skipped_query(broadcast: BroadcastId) -> SelectStatement {
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
fn touch_broadcast(broadcast: BroadcastId, now: DateTime<Utc>) -> UpdateStatement {
    Query::update()
        .table(broadcasts::Entity)
        .value(broadcasts::Column::UpdatedAt, now)
        .and_where(Expr::col(broadcasts::Column::Id).eq(broadcast))
        .to_owned()
}

/// `UPDATE broadcasts SET total_recipients = total`.
fn set_total_recipients(broadcast: BroadcastId, total: i64) -> UpdateStatement {
    Query::update()
        .table(broadcasts::Entity)
        .value(broadcasts::Column::TotalRecipients, total)
        .and_where(Expr::col(broadcasts::Column::Id).eq(broadcast))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use broadcast_domain::{RegistrationStatus, Role};
    use expect_test::expect;
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    /// One clause per line, for readable snapshots.
    fn pretty(sql: &str) -> String {
        let mut out = sql.to_owned();
        for kw in [
            " FROM ",
            " INNER JOIN ",
            " WHERE ",
            " GROUP BY ",
            " SELECT ",
            " ON CONFLICT ",
        ] {
            out = out.replace(kw, &format!("\n{}", kw.trim_start()));
        }
        out
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
        let telegram =
            insert_recipients(7, &f, ChannelKind::TELEGRAM, &Reach::telegram(), &[], now);
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
            ChannelKind::EMAIL,
            &Reach::email(),
            &[&Reach::telegram()],
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
}
