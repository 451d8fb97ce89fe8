//! [`SqlAudience`]: the [`AudienceSource`] port over a sea-orm connection.

use std::collections::HashMap;

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

/// Counts of the broadcast's rows per channel, status and reason, as a report, and the total:
/// one index-only count per channel of the policy (the only channels a broadcast has rows on:
/// the e-mail fallback exists only under `telegram_then_email`, which includes e-mail), and the
/// rows that are not pending grouped by channel, status and reason; queued = the channel's count
/// minus its skipped rows.
async fn report(
    txn: &DatabaseTransaction,
    broadcast: BroadcastId,
    policy: ChannelPolicy,
) -> Result<(MaterialiseReport, u64)> {
    let mut report = MaterialiseReport::default();
    let mut total = 0;
    for channel in policy.channels() {
        let row = txn
            .query_one(&compile::channel_count_query(broadcast, *channel))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("a count returned no row".into()))?;
        let n = get_u64(&row, "n")?;
        total += n;
        report.queued.insert(*channel, n);
    }
    for row in txn
        .query_all(&compile::not_pending_query(broadcast))
        .await
        .map_err(db_error)?
    {
        let text = |column: &str| -> Result<Option<String>> {
            row.try_get::<Option<String>>("", column).map_err(db_error)
        };
        let bad = |what: &str, e: broadcast_domain::ParseError| {
            Error::Internal(format!(
                "broadcast {broadcast} has a recipient row with {what}: {e}"
            ))
        };
        let n = get_u64(&row, "n")?;
        let channel: ChannelKind = text("channel")?
            .unwrap_or_default()
            .parse()
            .map_err(|e| bad("an unknown channel", e))?;
        let status: DeliveryStatus = text("status")?
            .unwrap_or_default()
            .parse()
            .map_err(|e| bad("an unknown status", e))?;
        if status == DeliveryStatus::Skipped {
            let reason: SkipReason = text("skip_reason")?
                .unwrap_or_default()
                .parse()
                .map_err(|e| bad("a skipped status and no known reason", e))?;
            *report.skipped.entry(reason).or_default() += n;
            let queued = report.queued.entry(channel).or_default();
            *queued = queued.saturating_sub(n);
        }
    }
    Ok((report, total))
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

        let mut inserted = 0;
        for (channel, rows) in plan(policy) {
            let insert = compile::insert_recipients(broadcast, filter, *channel, *rows, now);
            inserted += txn
                .execute(&insert)
                .await
                .map_err(db_error)?
                .rows_affected();
        }

        let (mut report, total) = report(&txn, broadcast, policy).await?;
        report.inserted = inserted;
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
