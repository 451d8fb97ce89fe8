//! [`DeliveryStore`] for [`Store`]: writing delivery results back in batches, counting and
//! listing the ledger. Claiming lives in `claim.rs`, the e-mail fallback and requeuing in
//! `retry.rs`.

use std::collections::HashSet;

use async_trait::async_trait;
use broadcast_domain::{
    BroadcastId, ClaimRequest, DeliveryResult, DeliveryStats, DeliveryStatus, DeliveryStore, Error,
    ErrorKind, Outcome, Page, Recipient, RecipientQuery, RegistrationId, Result, StatusCount,
    UserId,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::Store;
use crate::convert;
use crate::entity::broadcast_recipients::{Column, Entity};
use crate::entity::broadcasts;
use crate::error::db_err;
use crate::store::paged;

/// Longest `last_error` stored, in characters.
pub const MAX_ERROR_CHARS: usize = 1000;

/// Results written by one `UPDATE`: each costs about 25 bound parameters.
const RESULTS_PER_STATEMENT: usize = 200;

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

fn garbage(column: &str, broadcast: BroadcastId, why: impl std::fmt::Display) -> Error {
    Error::Internal(format!(
        "the database holds an invalid value in broadcast_recipients.{column} of broadcast \
         {broadcast}: {why}"
    ))
}

fn parse_opt<T>(column: &str, broadcast: BroadcastId, raw: Option<String>) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    raw.map(|raw| raw.parse().map_err(|e| garbage(column, broadcast, e)))
        .transpose()
}

/// Builds the per-column `CASE` expressions of one bulk result update.
struct Bulk {
    status: CaseStatement,
    attempts: CaseStatement,
    error_kind: CaseStatement,
    last_error: CaseStatement,
    next_attempt_at: Option<CaseStatement>,
    sent_at: Option<CaseStatement>,
    provider_message_id: Option<CaseStatement>,
    keys: Condition,
}

impl Bulk {
    /// `None` for an empty batch.
    fn new(results: &[&DeliveryResult]) -> Option<Self> {
        let key = |r: &DeliveryResult| {
            Expr::col(Column::Id)
                .eq(r.recipient_id)
                .and(Expr::col(Column::LeaseOwner).eq(r.worker_id.as_str()))
        };
        let add = |case: Option<CaseStatement>, r: &DeliveryResult, then: Expr| match case {
            None => Some(Expr::case(key(r), then)),
            Some(case) => Some(case.case(key(r), then)),
        };
        let mut status = None;
        let mut attempts = None;
        let mut error_kind = None;
        let mut last_error = None;
        let mut next_attempt_at = None;
        let mut sent_at = None;
        let mut provider_message_id = None;
        let mut keys = Condition::any();
        for r in results {
            keys = keys.add(key(r));
            let (new_status, counted, kind, error): (_, _, Option<ErrorKind>, Option<String>) =
                match &r.outcome {
                    Outcome::Sent {
                        at,
                        provider_message_id: id,
                    } => {
                        sent_at = add(sent_at, r, Expr::val(*at));
                        provider_message_id = add(provider_message_id, r, Expr::val(id.clone()));
                        (DeliveryStatus::Sent, true, None, None)
                    }
                    Outcome::Failed { kind, error, .. } => (
                        DeliveryStatus::Failed,
                        true,
                        Some(*kind),
                        Some(truncate(error)),
                    ),
                    Outcome::Retry {
                        next_attempt_at: next,
                        kind,
                        error,
                        count_attempt,
                    } => {
                        next_attempt_at = add(next_attempt_at, r, Expr::val(*next));
                        (
                            DeliveryStatus::Pending,
                            *count_attempt,
                            Some(*kind),
                            Some(truncate(error)),
                        )
                    }
                };
            status = add(status, r, Expr::val(new_status.as_str()));
            attempts = add(attempts, r, Expr::val(i32::from(counted)));
            error_kind = add(error_kind, r, Expr::val(kind.map(|k| k.as_str())));
            last_error = add(last_error, r, Expr::val(error));
        }
        let finish =
            |case: Option<CaseStatement>, otherwise: Expr| case.map(|c| c.finally(otherwise));
        Some(Bulk {
            status: finish(status, Expr::col(Column::Status))?,
            attempts: finish(attempts, Expr::val(0))?,
            error_kind: finish(error_kind, Expr::col(Column::ErrorKind))?,
            last_error: finish(last_error, Expr::col(Column::LastError))?,
            next_attempt_at: finish(next_attempt_at, Expr::col(Column::NextAttemptAt)),
            sent_at: finish(sent_at, Expr::col(Column::SentAt)),
            provider_message_id: finish(provider_message_id, Expr::col(Column::ProviderMessageId)),
            keys,
        })
    }

    async fn exec(self, db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64> {
        let mut update = Entity::update_many()
            .col_expr(Column::Status, self.status.into())
            .col_expr(
                Column::Attempts,
                Expr::col(Column::Attempts).add(self.attempts),
            )
            .col_expr(Column::ErrorKind, self.error_kind.into())
            .col_expr(Column::LastError, self.last_error.into())
            .col_expr(Column::LeaseOwner, Expr::val(Option::<String>::None))
            .col_expr(
                Column::LeaseExpiresAt,
                Expr::val(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::val(now));
        if let Some(case) = self.next_attempt_at {
            update = update.col_expr(Column::NextAttemptAt, case.into());
        }
        if let Some(case) = self.sent_at {
            update = update.col_expr(Column::SentAt, case.into());
        }
        if let Some(case) = self.provider_message_id {
            update = update.col_expr(Column::ProviderMessageId, case.into());
        }
        let result = update
            .filter(Column::Status.eq(DeliveryStatus::Sending.as_str()))
            .filter(self.keys)
            .exec(db)
            .await
            .map_err(db_err)?;
        Ok(result.rows_affected)
    }
}

impl Store {
    /// NotFound unless the broadcast exists.
    pub(crate) async fn ensure_broadcast(&self, id: BroadcastId) -> Result<()> {
        let found = broadcasts::Entity::find_by_id(id)
            .select_only()
            .column(broadcasts::Column::Id)
            .into_tuple::<i64>()
            .one(self.conn())
            .await
            .map_err(db_err)?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found("broadcast", id)),
        }
    }

    fn recipient_filter(broadcast: BroadcastId, query: &RecipientQuery) -> Condition {
        let mut cond = Condition::all().add(Column::BroadcastId.eq(broadcast));
        if let Some(status) = query.status {
            cond = cond.add(Column::Status.eq(status.as_str()));
        }
        if let Some(channel) = query.channel {
            cond = cond.add(Column::Channel.eq(channel.as_str()));
        }
        if let Some(kind) = query.error_kind {
            cond = cond.add(Column::ErrorKind.eq(kind.as_str()));
        }
        cond
    }
}

#[async_trait]
impl DeliveryStore for Store {
    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<Recipient>> {
        self.claim(request).await
    }

    /// One transaction per call; each result updates its row only while the row is `sending`
    /// under the result's worker (`WHERE id = ? AND lease_owner = ? AND status = 'sending'`), in
    /// bulk `UPDATE`s of up to 200 results with a `CASE` per column.
    #[tracing::instrument(skip(self, results), fields(results = results.len()))]
    async fn record_results(&self, results: &[DeliveryResult]) -> Result<u64> {
        if results.is_empty() {
            return Ok(0);
        }
        // A repeated (row, worker) pair keeps its last result.
        let mut seen = HashSet::new();
        let mut unique: Vec<&DeliveryResult> = results
            .iter()
            .rev()
            .filter(|r| seen.insert((r.recipient_id, r.worker_id.as_str())))
            .collect();
        unique.reverse();

        let now = Utc::now();
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let mut updated = 0;
        for chunk in unique.chunks(RESULTS_PER_STATEMENT) {
            if let Some(bulk) = Bulk::new(chunk) {
                updated += bulk.exec(&txn, now).await?;
            }
        }
        txn.commit().await.map_err(db_err)?;
        if updated < unique.len() as u64 {
            tracing::info!(
                ignored = unique.len() as u64 - updated,
                "ignored results of rows whose lease was lost"
            );
        }
        Ok(updated)
    }

    async fn status_counts(&self, broadcast: BroadcastId) -> Result<Vec<StatusCount>> {
        let rows: Vec<(String, String, Option<String>, Option<String>, i64)> = Entity::find()
            .select_only()
            .column(Column::Channel)
            .column(Column::Status)
            .column(Column::ErrorKind)
            .column(Column::SkipReason)
            .column_as(Expr::col(Column::Id).count(), "n")
            .filter(Column::BroadcastId.eq(broadcast))
            .group_by(Column::Channel)
            .group_by(Column::Status)
            .group_by(Column::ErrorKind)
            .group_by(Column::SkipReason)
            .order_by_asc(Column::Channel)
            .order_by_asc(Column::Status)
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            self.ensure_broadcast(broadcast).await?;
        }
        rows.into_iter()
            .map(|(channel, status, error_kind, skip_reason, n)| {
                Ok(StatusCount {
                    channel: channel
                        .parse()
                        .map_err(|e| garbage("channel", broadcast, e))?,
                    status: status
                        .parse()
                        .map_err(|e| garbage("status", broadcast, e))?,
                    error_kind: parse_opt("error_kind", broadcast, error_kind)?,
                    skip_reason: parse_opt("skip_reason", broadcast, skip_reason)?,
                    count: u64::try_from(n).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn stats(&self, broadcast: BroadcastId) -> Result<DeliveryStats> {
        let counts = self.status_counts(broadcast).await?;
        let mut stats = DeliveryStats::from_counts(&counts);
        let extra: Option<(i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> = Entity::find()
            .select_only()
            .column_as(
                Expr::expr(Expr::case(Expr::col(Column::LeaseExpirations).gt(0), 1)).count(),
                "duplicates",
            )
            .column_as(Expr::col(Column::SentAt).min(), "first_sent_at")
            .column_as(Expr::col(Column::SentAt).max(), "last_sent_at")
            .filter(Column::BroadcastId.eq(broadcast))
            .into_tuple()
            .one(self.conn())
            .await
            .map_err(db_err)?;
        if let Some((duplicates, first, last)) = extra {
            stats.possible_duplicates = u64::try_from(duplicates).unwrap_or(0);
            stats.first_sent_at = first;
            stats.last_sent_at = last;
        }
        Ok(stats)
    }

    async fn open_count(&self, broadcast: BroadcastId) -> Result<u64> {
        let open = [DeliveryStatus::Pending, DeliveryStatus::Sending].map(|s| s.as_str());
        let n = Entity::find()
            .filter(Column::BroadcastId.eq(broadcast))
            .filter(Column::Status.is_in(open))
            .count(self.conn())
            .await
            .map_err(db_err)?;
        if n == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        Ok(n)
    }

    /// Cancels `pending` rows that no worker holds; rows being sent finish normally.
    #[tracing::instrument(skip(self))]
    async fn cancel_pending(&self, broadcast: BroadcastId, now: DateTime<Utc>) -> Result<u64> {
        let result = Entity::update_many()
            .col_expr(
                Column::Status,
                Expr::val(DeliveryStatus::Cancelled.as_str()),
            )
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::BroadcastId.eq(broadcast))
            .filter(Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(Column::LeaseOwner.is_null())
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        if result.rows_affected == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        Ok(result.rows_affected)
    }

    /// Rows matching the query by id; `limit` 0 returns every match after `offset`.
    async fn list_recipients(
        &self,
        broadcast: BroadcastId,
        query: &RecipientQuery,
    ) -> Result<Page<Recipient>> {
        let filter = Self::recipient_filter(broadcast, query);
        let total = Entity::find()
            .filter(filter.clone())
            .count(self.conn())
            .await
            .map_err(db_err)?;
        if total == 0 {
            self.ensure_broadcast(broadcast).await?;
            return Ok(Page {
                items: Vec::new(),
                total,
            });
        }
        let select = Entity::find().filter(filter).order_by_asc(Column::Id);
        let models = paged(select, query.offset, query.limit)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        Ok(Page {
            items: convert::all(models, convert::recipient)?,
            total,
        })
    }

    /// One `INSERT ... SELECT ... FROM users ... ON CONFLICT DO NOTHING RETURNING status` and a
    /// bump of `broadcasts.total_recipients`, in one transaction (see `retry.rs`). A missing user,
    /// broadcast or registration is [`Error::NotFound`].
    async fn add_email_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.email_fallback(broadcast, user, registration, now)
            .await
    }

    /// One `UPDATE` with correlated `EXISTS` subqueries over `users` (see `retry.rs`); `error_kind` and
    /// `last_error` are kept as history. A missing broadcast is [`Error::NotFound`].
    async fn requeue_failed(
        &self,
        broadcast: BroadcastId,
        kinds: &[ErrorKind],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.requeue(broadcast, kinds, now).await
    }
}
