//! [`DeliveryStore`] for [`Store`]: writing delivery results back in batches, counting and
//! listing the ledger. Claiming lives in `claim.rs`, the e-mail fallback and requeuing in
//! `retry.rs`.

use std::collections::HashSet;

use async_trait::async_trait;
use broadcast_domain::{
    BroadcastId, BroadcastStatus, ChannelKind, ClaimRequest, DeliveryResult, DeliveryStats,
    DeliveryStatus, DeliveryStore, Error, ErrorKind, Outcome, Page, Recipient, RecipientId,
    RecipientQuery, RegistrationId, Result, StatusCount, UserId,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};

use crate::Store;
use crate::convert;
use crate::counts::{self, CountChanges, Counted, LedgerCounts, Transition};
use crate::entity::broadcast_recipients::{Column, Entity};
use crate::entity::broadcasts;
use crate::error::db_err;
use crate::store::paged;

/// Longest `last_error` stored, in characters.
pub const MAX_ERROR_CHARS: usize = 1000;

/// Results written by one `UPDATE`: each binds 10 parameters (SQLite allows 32,766).
const RESULTS_PER_STATEMENT: usize = 500;

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// Numbered placeholders (`$n` with a cast on PostgreSQL, whose `VALUES` rows have no types of
/// their own; `?` on SQLite).
struct Params {
    postgres: bool,
    values: Vec<Value>,
}

impl Params {
    fn push(&mut self, value: impl Into<Value>, sql_type: &str) -> String {
        self.values.push(value.into());
        if self.postgres {
            format!("CAST(${} AS {sql_type})", self.values.len())
        } else {
            "?".to_owned()
        }
    }
}

/// One `UPDATE ... FROM (VALUES ...)` for a batch of results: the values of each result are
/// one row of a `VALUES` list joined to its recipient row by id and lease owner, so the
/// statement does one primary-key lookup per result. (A `CASE` per column with one `WHEN` per
/// result, the obvious alternative, evaluates every `WHEN` for every row: quadratic in the batch
/// size, and twice as slow already at 16 results.)
///
/// Returns the `VALUES` CTE, the `UPDATE` that uses it, and the bound values:
///
/// ```sql
/// WITH v(id, owner, status, counted, error_kind, last_error, next_attempt_at, sent_at,
///        provider_message_id, uncertain) AS (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ...)
/// UPDATE broadcast_recipients SET status = v.status, attempts = attempts + v.counted,
///     uncertain_sends = uncertain_sends + v.uncertain,
///     error_kind = v.error_kind, last_error = v.last_error,
///     next_attempt_at = CASE WHEN v.status = 'pending' THEN v.next_attempt_at ELSE next_attempt_at END,
///     sent_at = CASE WHEN v.status = 'sent' THEN v.sent_at ELSE sent_at END,
///     provider_message_id = CASE WHEN v.status = 'sent' THEN v.provider_message_id ELSE ... END,
///     lease_owner = NULL, lease_expires_at = NULL, send_started_at = NULL, updated_at = ?
/// FROM v
/// WHERE broadcast_recipients.id = v.id AND broadcast_recipients.lease_owner = v.owner
///   AND broadcast_recipients.status = 'sending'
/// ```
fn bulk_update(
    backend: DatabaseBackend,
    results: &[&DeliveryResult],
    now: DateTime<Utc>,
) -> (String, String, Vec<Value>) {
    let mut p = Params {
        postgres: backend == DatabaseBackend::Postgres,
        values: Vec::with_capacity(results.len() * 10 + 1),
    };
    let pending = DeliveryStatus::Pending.as_str();
    let sent = DeliveryStatus::Sent.as_str();
    let sending = DeliveryStatus::Sending.as_str();
    let cancelled = DeliveryStatus::Cancelled.as_str();
    let broadcast_cancelled = BroadcastStatus::Cancelled.as_str();
    let mut rows = Vec::with_capacity(results.len());
    for r in results {
        let none = Option::<DateTime<Utc>>::None;
        let (status, counted, kind, error, next, sent_at, provider_id) = match &r.outcome {
            Outcome::Sent {
                at,
                provider_message_id,
            } => (
                DeliveryStatus::Sent,
                true,
                None,
                None,
                none,
                Some(*at),
                provider_message_id.clone(),
            ),
            Outcome::Failed { kind, error, .. } => (
                DeliveryStatus::Failed,
                true,
                Some(*kind),
                Some(truncate(error)),
                none,
                none,
                None,
            ),
            Outcome::Retry {
                next_attempt_at,
                kind,
                error,
                count_attempt,
            } => (
                DeliveryStatus::Pending,
                *count_attempt,
                Some(*kind),
                Some(truncate(error)),
                Some(*next_attempt_at),
                none,
                None,
            ),
            Outcome::Released {
                next_attempt_at,
                note,
            } => (
                DeliveryStatus::Pending,
                false,
                None,
                Some(truncate(note)),
                Some(*next_attempt_at),
                none,
                None,
            ),
        };
        let cells = [
            p.push(r.recipient_id, "BIGINT"),
            p.push(r.worker_id.as_str(), "TEXT"),
            p.push(status.as_str(), "TEXT"),
            p.push(i32::from(counted), "INTEGER"),
            p.push(kind.map(|k| k.as_str()), "TEXT"),
            p.push(error, "TEXT"),
            p.push(next, "TIMESTAMPTZ"),
            p.push(sent_at, "TIMESTAMPTZ"),
            p.push(provider_id, "TEXT"),
            p.push(i32::from(r.uncertain), "INTEGER"),
        ];
        rows.push(format!("({})", cells.join(", ")));
    }
    let updated_at = p.push(now, "TIMESTAMPTZ");
    let values = format!(
        "v(id, owner, status, counted, error_kind, last_error, next_attempt_at, sent_at, \
         provider_message_id, uncertain) AS (VALUES {rows})",
        rows = rows.join(", "),
    );
    let update = format!(
        "UPDATE broadcast_recipients SET status = CASE WHEN v.status = '{pending}' AND EXISTS \
         (SELECT 1 FROM broadcasts b WHERE b.id = broadcast_recipients.broadcast_id \
         AND b.status = '{broadcast_cancelled}') THEN '{cancelled}' ELSE v.status END, \
         attempts = broadcast_recipients.attempts + v.counted, \
         uncertain_sends = broadcast_recipients.uncertain_sends + v.uncertain, \
         error_kind = v.error_kind, last_error = v.last_error, \
         next_attempt_at = CASE WHEN v.status = '{pending}' THEN v.next_attempt_at \
         ELSE broadcast_recipients.next_attempt_at END, \
         sent_at = CASE WHEN v.status = '{sent}' THEN v.sent_at \
         ELSE broadcast_recipients.sent_at END, \
         provider_message_id = CASE WHEN v.status = '{sent}' THEN v.provider_message_id \
         ELSE broadcast_recipients.provider_message_id END, \
         lease_owner = NULL, lease_expires_at = NULL, send_started_at = NULL, \
         updated_at = {updated_at} FROM v WHERE broadcast_recipients.id = v.id \
         AND broadcast_recipients.lease_owner = v.owner \
         AND broadcast_recipients.status = '{sending}'"
    );
    (values, update, p.values)
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

    /// The counters of a broadcast; NotFound unless it exists.
    async fn ledger_counts(&self, broadcast: BroadcastId) -> Result<LedgerCounts> {
        let counts = counts::read(self.conn(), broadcast).await?;
        if counts.counts.is_empty() {
            self.ensure_broadcast(broadcast).await?;
        }
        Ok(counts)
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

    async fn release_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        self.release_expired_rows(now).await
    }

    async fn claim_probe(
        &self,
        broadcast: BroadcastId,
        channel: ChannelKind,
        worker_id: &str,
        now: DateTime<Utc>,
        lease_for: chrono::Duration,
    ) -> Result<Option<Recipient>> {
        let request = ClaimRequest {
            worker_id: worker_id.to_owned(),
            now,
            lease_for,
            limit: 1,
            broadcast_id: Some(broadcast),
            channels: vec![channel],
        };
        self.claim_probe_row(&request, broadcast).await
    }

    /// All or nothing per call; each result updates its row only while the row is `sending`
    /// under the result's worker (`WHERE id = ? AND lease_owner = ? AND status = 'sending'`),
    /// and a row handed back (`pending`) of a cancelled broadcast becomes `cancelled`, in
    /// bulk `UPDATE ... FROM (VALUES ...)` statements of up to 500 results (see `bulk_update`),
    /// and the counters move only the rows updated (`RETURNING`). PostgreSQL, up to 500
    /// results: one statement that also writes the counters (`counts::pg_with_counts`);
    /// otherwise one transaction of the updates and one counter upsert.
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
        let backend = self.backend();
        // A result with an unknown outcome adds one to its row's `uncertain_sends`.
        let done = Transition {
            row_bump: true,
            ..Transition::from(DeliveryStatus::Sending)
        };
        let _guard = self.sqlite_write_lock().await;
        let updated =
            if backend == DatabaseBackend::Postgres && unique.len() <= RESULTS_PER_STATEMENT {
                // One statement: atomic on its own, no BEGIN and COMMIT round trips.
                let (values, update, params) = bulk_update(backend, &unique, now);
                let sql = counts::pg_with_counts(
                    &[values],
                    &update,
                    &format!("{}, v.uncertain AS bump", counts::RETURNING),
                    done,
                    "SELECT COUNT(*) AS n FROM changed",
                );
                let row = self
                    .conn()
                    .query_one_raw(Statement::from_sql_and_values(backend, sql, params))
                    .await
                    .map_err(db_err)?
                    .ok_or_else(|| Error::Internal("a count returned no row".into()))?;
                let n: i64 = row.try_get("", "n").map_err(db_err)?;
                u64::try_from(n).unwrap_or(0)
            } else {
                let uncertain: HashSet<RecipientId> = unique
                    .iter()
                    .filter(|r| r.uncertain)
                    .map(|r| r.recipient_id)
                    .collect();
                let txn = self.begin().await?;
                let mut changes = CountChanges::new();
                let mut updated = 0;
                for chunk in unique.chunks(RESULTS_PER_STATEMENT) {
                    let (values, update, params) = bulk_update(backend, chunk, now);
                    // SQLite's RETURNING cannot name `v`: the bump comes from the results.
                    let sql = format!(
                        "WITH {values} {update} RETURNING {}, broadcast_recipients.id AS id",
                        counts::RETURNING
                    );
                    let rows = txn
                        .query_all_raw(Statement::from_sql_and_values(backend, sql, params))
                        .await
                        .map_err(db_err)?;
                    for row in &rows {
                        let id: RecipientId = row.try_get("", "id").map_err(db_err)?;
                        let mut counted = Counted::from_row(row)?;
                        counted.bump = i32::from(uncertain.contains(&id));
                        changes.changed(done, &counted);
                    }
                    updated += rows.len() as u64;
                }
                changes.apply(&txn).await?;
                txn.commit().await.map_err(db_err)?;
                updated
            };
        if updated < unique.len() as u64 {
            tracing::info!(
                ignored = unique.len() as u64 - updated,
                "ignored results of rows whose lease was lost"
            );
        }
        Ok(updated)
    }

    /// One `UPDATE ... WHERE id IN (...) AND lease_owner = ? AND status = 'sending' AND
    /// broadcast_id IN (running broadcasts)` per 500 rows; `send_started_at` is in no index and
    /// no counter, so this touches neither.
    #[tracing::instrument(skip(self, rows), fields(rows = rows.len()))]
    async fn mark_started(
        &self,
        worker_id: &str,
        rows: &[RecipientId],
        at: DateTime<Utc>,
    ) -> Result<Vec<RecipientId>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.sqlite_write_lock().await;
        let backend = self.backend();
        let mut marked = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(RESULTS_PER_STATEMENT) {
            let update = Query::update()
                .table(Entity)
                .value(Column::SendStartedAt, at)
                .and_where(Column::Id.is_in(chunk.iter().copied()))
                .and_where(Column::LeaseOwner.eq(worker_id))
                .and_where(Column::Status.eq(DeliveryStatus::Sending.as_str()))
                .and_where(
                    Column::BroadcastId.in_subquery(
                        Query::select()
                            .column(broadcasts::Column::Id)
                            .from(broadcasts::Entity)
                            .and_where(
                                broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()),
                            )
                            .to_owned(),
                    ),
                )
                .to_owned();
            let stmt = backend.build(&update);
            let sql = format!("{} RETURNING id", stmt.sql);
            let values = stmt.values.map(|v| v.0).unwrap_or_default();
            for row in self
                .conn()
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .map_err(db_err)?
            {
                marked.push(row.try_get::<RecipientId>("", "id").map_err(db_err)?);
            }
        }
        Ok(marked)
    }

    /// From the counters (tens of rows), not the ledger.
    async fn status_counts(&self, broadcast: BroadcastId) -> Result<Vec<StatusCount>> {
        Ok(self.ledger_counts(broadcast).await?.counts)
    }

    /// From the counters (tens of rows), not the ledger.
    async fn stats(&self, broadcast: BroadcastId) -> Result<DeliveryStats> {
        let counts = self.ledger_counts(broadcast).await?;
        let mut stats = DeliveryStats::from_counts(&counts.counts);
        stats.possible_duplicates = counts.possible_duplicates;
        stats.first_sent_at = counts.first_sent_at;
        stats.last_sent_at = counts.last_sent_at;
        Ok(stats)
    }

    /// From the counters, checked against one index probe of the ledger (whether any row is
    /// open): the engine completes a broadcast when this is 0, so counters that are wrong
    /// (rows changed outside the store) must not end a broadcast early or keep it running; then
    /// the rows are counted.
    async fn open_count(&self, broadcast: BroadcastId) -> Result<u64> {
        let open = [DeliveryStatus::Pending, DeliveryStatus::Sending];
        let counted: u64 = counts::read(self.conn(), broadcast)
            .await?
            .counts
            .iter()
            .filter(|c| open.contains(&c.status))
            .map(|c| c.count)
            .sum();
        let open = open.map(|s| s.as_str());
        let any = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::BroadcastId.eq(broadcast))
            .filter(Column::Status.is_in(open))
            .limit(1)
            .into_tuple::<i64>()
            .one(self.conn())
            .await
            .map_err(db_err)?
            .is_some();
        let n = if (counted > 0) == any {
            counted
        } else {
            // Also when a worker's write commits between the two reads (PostgreSQL).
            tracing::debug!(broadcast, counted, any, "open rows counted in the ledger");
            Entity::find()
                .filter(Column::BroadcastId.eq(broadcast))
                .filter(Column::Status.is_in(open))
                .count(self.conn())
                .await
                .map_err(db_err)?
        };
        if n == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        Ok(n)
    }

    /// Cancels `pending` rows that no worker holds; rows being sent finish normally.
    #[tracing::instrument(skip(self))]
    async fn cancel_pending(&self, broadcast: BroadcastId, now: DateTime<Utc>) -> Result<u64> {
        let rows = Condition::all()
            .add(Column::BroadcastId.eq(broadcast))
            .add(Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .add(Column::LeaseOwner.is_null());
        let n = self
            .update_counted(
                rows,
                Transition::from(DeliveryStatus::Pending),
                DeliveryStatus::Cancelled,
                vec![(Column::UpdatedAt, Expr::val(now))],
            )
            .await?;
        if n == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        Ok(n)
    }

    /// Rows matching the query by id; `limit` 0 returns every match after `offset`.
    async fn list_recipients(
        &self,
        broadcast: BroadcastId,
        query: &RecipientQuery,
    ) -> Result<Page<Recipient>> {
        let filter = Self::recipient_filter(broadcast, query);
        // The counters key error kinds of failed and pending rows only.
        let counted = query.error_kind.is_none()
            || matches!(
                query.status,
                Some(DeliveryStatus::Failed | DeliveryStatus::Pending)
            );
        let total = if counted {
            counts::read(self.conn(), broadcast)
                .await?
                .counts
                .iter()
                .filter(|c| query.status.is_none_or(|s| s == c.status))
                .filter(|c| query.channel.is_none_or(|ch| ch == c.channel))
                .filter(|c| query.error_kind.is_none_or(|k| Some(k) == c.error_kind))
                .map(|c| c.count)
                .sum()
        } else {
            Entity::find()
                .filter(filter.clone())
                .count(self.conn())
                .await
                .map_err(db_err)?
        };
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

    /// `WHERE id > after ... ORDER BY id LIMIT n`: a range of the primary key.
    async fn list_recipients_after(
        &self,
        broadcast: BroadcastId,
        query: &RecipientQuery,
        after: RecipientId,
    ) -> Result<Vec<Recipient>> {
        let select = Entity::find()
            .filter(Self::recipient_filter(broadcast, query))
            .filter(Column::Id.gt(after))
            .order_by_asc(Column::Id);
        let models = paged(select, 0, query.limit)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        if models.is_empty() {
            self.ensure_broadcast(broadcast).await?;
        }
        convert::all(models, convert::recipient)
    }

    /// Up to one `INSERT ... SELECT ... FROM users ... ON CONFLICT DO NOTHING RETURNING status`
    /// per channel of the chain and a bump of `broadcasts.total_recipients`, in one transaction (see `retry.rs`). A missing user,
    /// broadcast or registration is [`Error::NotFound`].
    async fn add_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        chain: &[ChannelKind],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.fallback(broadcast, user, registration, chain, now)
            .await
    }

    /// See [`Store::recount`].
    async fn recount(&self, broadcast: BroadcastId) -> Result<()> {
        Store::recount(self, broadcast).await
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
