//! [`SqlAudience`]: the [`AudienceSource`] port over a sea-orm connection.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use broadcast_domain::{
    AudienceCount, AudienceFilter, AudienceSource, BroadcastId, ChannelKind, ChannelPolicy,
    DeliveryStatus, Error, MaterialiseReport, RecipientContext, Result, SkipReason,
};
use broadcast_store::entity::{competitions, registrations, users};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryResult, TransactionTrait,
};

use crate::compile::{self, Rows};
use broadcast_store::counts::{self, CountChanges, LedgerCounts};
use broadcast_store::{convert, db_err as db_error};

/// Ids looked up per `IN (...)` query when loading sampled recipients.
const LOOKUP_CHUNK: usize = 500;

/// The audience of the store's `users` and `registrations` tables, queried with set-based SQL.
///
/// Cheap to clone (the connection is a pool handle).
#[derive(Clone, Debug)]
pub struct SqlAudience {
    conn: DatabaseConnection,
}

impl SqlAudience {
    /// An audience source over this connection (SQLite or PostgreSQL, migrated).
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// The connection it queries.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// Rejects filters the database could not run: invalid values, or more text values than one
/// statement can bind.
fn check(filter: &AudienceFilter) -> Result<()> {
    filter.validate()?;
    let bound = compile::bound_values(filter);
    if bound > compile::MAX_BOUND_VALUES {
        return Err(Error::Invalid(format!(
            "invalid audience filter: {bound} text values in `countries`, `cities`, `emails`, \
             `roles` and `registration_statuses` together; at most {} are supported (split the \
             audience, or use `user_ids`)",
            compile::MAX_BOUND_VALUES
        )));
    }
    Ok(())
}

fn get_u64(row: &QueryResult, column: &str) -> Result<u64> {
    let v: i64 = row.try_get("", column).map_err(db_error)?;
    u64::try_from(v).map_err(|_| Error::Internal(format!("negative count {v} in `{column}`")))
}

/// The statements of a policy: which channel, for which users.
fn plan(policy: ChannelPolicy) -> &'static [(ChannelKind, Rows)] {
    match policy {
        ChannelPolicy::Telegram => &[(ChannelKind::Telegram, Rows::Everyone)],
        ChannelPolicy::Email => &[(ChannelKind::Email, Rows::Everyone)],
        ChannelPolicy::Both => &[
            (ChannelKind::Telegram, Rows::Everyone),
            (ChannelKind::Email, Rows::Everyone),
        ],
        // E-mail only for those Telegram cannot reach; the orchestrator adds an e-mail row later
        // for users whose Telegram delivery fails for good.
        ChannelPolicy::TelegramThenEmail => &[
            (ChannelKind::Telegram, Rows::Everyone),
            (ChannelKind::Email, Rows::NotTelegramReachable),
        ],
    }
}

/// The broadcast's skipped rows per channel and reason.
async fn skipped(
    txn: &DatabaseTransaction,
    broadcast: BroadcastId,
) -> Result<BTreeMap<(ChannelKind, SkipReason), u64>> {
    let mut out = BTreeMap::new();
    for row in txn
        .query_all(&compile::skipped_query(broadcast))
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
        let channel: ChannelKind = text("channel")?
            .parse()
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
impl AudienceSource for SqlAudience {
    #[tracing::instrument(skip_all, fields(filter = %filter.describe()))]
    async fn count(&self, filter: &AudienceFilter) -> Result<AudienceCount> {
        check(filter)?;
        let row = self
            .conn
            .query_one(&compile::count_query(filter))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("the audience count returned no row".into()))?;
        let count = AudienceCount {
            users: get_u64(&row, "users")?,
            telegram: get_u64(&row, "telegram")?,
            email: get_u64(&row, "email")?,
            both: get_u64(&row, "both")?,
        };
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
        check(filter)?;
        let txn = self.conn.begin().await.map_err(db_error)?;
        // A write first: it proves the broadcast exists, and on SQLite it takes the write lock
        // before anything is read, so the transaction never has to upgrade a read lock.
        let touched = txn
            .execute(&compile::touch_broadcast(broadcast, now))
            .await
            .map_err(db_error)?
            .rows_affected();
        if touched == 0 {
            return Err(Error::not_found("broadcast", broadcast));
        }

        let before = skipped(&txn, broadcast).await?;
        let mut inserted = BTreeMap::new();
        for (channel, rows) in plan(policy) {
            let insert = compile::insert_recipients(broadcast, filter, *channel, *rows, now);
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
        txn.execute(&compile::set_total_recipients(broadcast, total))
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
        check(filter)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut picked = Vec::new();
        for row in self
            .conn
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
                .all(&self.conn)
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
                .all(&self.conn)
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
                .all(&self.conn)
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
