//! Claiming due recipient rows under a lease: atomic `UPDATE ... RETURNING` statements that each
//! walk an index in order and stop at the limit, and keep the ledger counters (`counts.rs`).
//!
//! A claim takes, in this order and up to the limit:
//!
//! 1. rows whose lease expired (the previous worker died or stalled mid-send), earliest expiry
//!    first, over the partial index `(lease_expires_at) WHERE status = 'sending'` (the status is
//!    written into the statement as a literal: a bound parameter would keep PostgreSQL's generic
//!    plans off a partial index): first those whose send had started (`send_started_at` set by
//!    [`DeliveryStore::mark_started`]), each of which adds one to `uncertain_sends` (a possible
//!    duplicate), then those claimed ahead and never started, which are simply due again;
//! 2. due pending rows, fairly: each running broadcast first takes its share of the limit
//!    (`ClaimRequest::fair_share`, the limit over the number of running broadcasts), then the
//!    broadcasts that filled their share take what is left, oldest broadcast first, so a small
//!    broadcast launched during a large one is not queued behind it. Each statement walks the
//!    index `(broadcast_id, status, next_attempt_at)`, earliest `next_attempt_at` first:
//!
//! ```sql
//! UPDATE broadcast_recipients
//! SET status = 'sending', lease_owner = ?, lease_expires_at = ?, send_started_at = NULL,
//!     updated_at = ?
//!     [, uncertain_sends = uncertain_sends + 1]          -- step 1, started rows
//! WHERE id IN (
//!     SELECT id FROM broadcast_recipients
//!     WHERE broadcast_id = ?
//!       AND EXISTS (SELECT 1 FROM broadcasts WHERE id = ? AND status = 'running')
//!       AND status = 'pending' AND next_attempt_at <= ?
//!       [AND channel IN (...)]
//!     ORDER BY next_attempt_at [, id]   -- the id tie-break on SQLite only (see `due_rows`)
//!     LIMIT ?
//!     [FOR UPDATE SKIP LOCKED]   -- PostgreSQL only
//! )
//! RETURNING *
//! ```
//!
//! One statement with `(pending AND due) OR (sending AND expired)` and `broadcast_id IN (running
//! broadcasts)` would be shorter, but no index serves that order: SQLite and PostgreSQL collect
//! and sort every due row before applying the limit, about a second per claim with a million
//! queued rows. Each statement here reads only the rows it returns (plus, for step 1, nothing
//! when no lease expired). The running-broadcast test stays inside each statement, so a
//! broadcast paused between the statements is never claimed from.
//!
//! - **PostgreSQL**: `FOR UPDATE SKIP LOCKED` makes concurrent claimers (any number of worker
//!   processes) take disjoint rows without waiting for each other. The running-broadcast test is
//!   a subquery, not a join, so only recipient rows are locked, never the broadcast row. Each
//!   `UPDATE` is the `changed` CTE of one statement that also moves the claimed rows' counts.
//! - **SQLite**: the lock clause does not exist; the claim's statements and its counter upsert
//!   run in one transaction, which takes the database's write lock with its first `UPDATE` and
//!   is atomic across processes. Within one process claims are also serialised by [`Store`]'s
//!   SQLite write lock (see there), held for the whole claim.
//!
//! An expired lease (`status = 'sending'` past `lease_expires_at`) on a row whose send had
//! started means the message may have gone out, so `uncertain_sends` counts it as a possible
//! duplicate; the engine marks rows only just before their sends, at most its in-flight bound
//! per channel at a time, so the count after a crash stays within that bound. Timestamps are always bound
//! as `DateTime<Utc>` values: on SQLite they are RFC 3339 text in UTC, whose text order is their
//! time order.

#[cfg(doc)]
use broadcast_domain::DeliveryStore;
use broadcast_domain::{
    BroadcastId, BroadcastStatus, ClaimRequest, DeliveryStatus, Recipient, Result,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use crate::Store;
use crate::convert;
use crate::counts::{self, CountChanges, Counted, Transition};
use crate::entity::broadcast_recipients::{Column, Entity};
use crate::entity::broadcasts;
use crate::error::db_err;

/// Which rows a claim statement takes.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// Due pending rows of one running broadcast.
    Pending(BroadcastId),
    /// Rows whose lease expired, of any running broadcast in the request's scope: those whose
    /// send had started (`send_started_at` set), or those claimed and never started.
    Expired { started: bool },
    /// Pending rows of one **paused** broadcast, due or not: a breaker probe.
    Probe(BroadcastId),
}

impl Store {
    /// See the module documentation.
    #[tracing::instrument(skip(self, request), fields(worker = %request.worker_id, limit = request.limit))]
    pub(crate) async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Recipient>> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        request.check()?;

        let guard = self.sqlite_write_lock().await;
        // With a scope, the statements themselves check that it is running: no list needed.
        let running = match request.broadcast_id {
            Some(id) => vec![id],
            None => self.running_broadcasts().await?,
        };
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let mut sqlite = self.claim_transaction().await?;
        let mut claimed = Vec::new();
        // Expired leases: rows whose send had started may have gone out (one more uncertain
        // send); rows claimed ahead and never started are simply due again.
        for started in [true, false] {
            let left = request.limit.saturating_sub(claimed.len() as u64);
            if left == 0 {
                break;
            }
            let takeover = Transition {
                from: Some(DeliveryStatus::Sending),
                uncertain_bump: i32::from(started),
                row_bump: false,
            };
            let expired = self.due_rows(request, Due::Expired { started }, left);
            claimed.extend(self.lease(request, expired, takeover, &mut sqlite).await?);
        }
        // Fair: each running broadcast first gets its share of what is left, then the rest
        // goes to those that had more, oldest first.
        let share = request.fair_share(running.len());
        let mut more = Vec::new();
        for pass in [Some(share), None] {
            let broadcasts = match pass {
                Some(_) => running.clone(),
                None => std::mem::take(&mut more),
            };
            for broadcast in broadcasts {
                let left = request.limit.saturating_sub(claimed.len() as u64);
                if left == 0 {
                    break;
                }
                let want = pass.map_or(left, |share| Ord::min(share, left));
                let due = self.due_rows(request, Due::Pending(broadcast), want);
                let fresh = Transition::from(DeliveryStatus::Pending);
                let got = self.lease(request, due, fresh, &mut sqlite).await?;
                if pass.is_some() && got.len() as u64 == want {
                    more.push(broadcast);
                }
                claimed.extend(got);
            }
        }
        Self::commit_claim(sqlite).await?;
        drop(guard);

        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|r| (r.next_attempt_at, r.id));
        tracing::debug!(claimed = claimed.len(), "claimed due recipient rows");
        Ok(claimed)
    }

    /// SQLite: one transaction for every statement of a claim and its counter changes (its
    /// first statement is a write, so it holds the write lock from the start); PostgreSQL:
    /// none, each statement counts its own changes.
    async fn claim_transaction(&self) -> Result<Option<(DatabaseTransaction, CountChanges)>> {
        Ok(match self.is_sqlite() {
            true => Some((self.begin().await?, CountChanges::new())),
            false => None,
        })
    }

    /// Writes a SQLite claim's counter changes and commits it (nothing on PostgreSQL).
    async fn commit_claim(sqlite: Option<(DatabaseTransaction, CountChanges)>) -> Result<()> {
        if let Some((txn, changes)) = sqlite {
            changes.apply(&txn).await?;
            txn.commit().await.map_err(db_err)?;
        }
        Ok(())
    }

    /// See [`DeliveryStore::claim_probe`]: one statement like a claim's (`Due::Probe`), with
    /// the send marked as started.
    pub(crate) async fn claim_probe_row(
        &self,
        request: &ClaimRequest,
        broadcast: BroadcastId,
    ) -> Result<Option<Recipient>> {
        request.check()?;
        let guard = self.sqlite_write_lock().await;
        let mut sqlite = self.claim_transaction().await?;
        let due = self.due_rows(request, Due::Probe(broadcast), 1);
        let fresh = Transition::from(DeliveryStatus::Pending);
        let mut claimed = self
            .lease_marked(request, due, fresh, true, &mut sqlite)
            .await?;
        Self::commit_claim(sqlite).await?;
        drop(guard);
        Ok(claimed.pop())
    }

    /// See [`DeliveryStore::release_expired`]: per status of the broadcast (paused, cancelled)
    /// and per started or not, one counted update of the `sending` rows whose lease expired
    /// (the partial lease index finds them).
    #[tracing::instrument(skip(self))]
    pub(crate) async fn release_expired_rows(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut freed = 0;
        for (of, to) in [
            (BroadcastStatus::Paused, DeliveryStatus::Pending),
            (BroadcastStatus::Cancelled, DeliveryStatus::Cancelled),
        ] {
            let stopped = Query::select()
                .column(broadcasts::Column::Id)
                .from(broadcasts::Entity)
                .and_where(broadcasts::Column::Status.eq(of.as_str()))
                .to_owned();
            for started in [true, false] {
                // A started send of a paused broadcast goes out again after the resume: one
                // more uncertain send. A cancelled one is never sent again.
                let bump = i32::from(started && to == DeliveryStatus::Pending);
                let rows = Condition::all()
                    .add(
                        Expr::col(Column::Status)
                            .eq(Expr::Constant(DeliveryStatus::Sending.as_str().into())),
                    )
                    .add(Column::LeaseExpiresAt.lt(now))
                    .add(Column::BroadcastId.in_subquery(stopped.clone()))
                    .add(match started {
                        true => Column::SendStartedAt.is_not_null(),
                        false => Column::SendStartedAt.is_null(),
                    });
                let none = Option::<DateTime<Utc>>::None;
                let mut set = vec![
                    (Column::LeaseOwner, Expr::val(Option::<String>::None)),
                    (Column::LeaseExpiresAt, Expr::val(none)),
                    (Column::SendStartedAt, Expr::val(none)),
                    (Column::UpdatedAt, Expr::val(now)),
                ];
                if bump > 0 {
                    set.push((
                        Column::UncertainSends,
                        Expr::col(Column::UncertainSends).add(bump),
                    ));
                }
                let transition = Transition {
                    from: Some(DeliveryStatus::Sending),
                    uncertain_bump: bump,
                    row_bump: false,
                };
                freed += self.update_counted(rows, transition, to, set).await?;
            }
        }
        if freed > 0 {
            tracing::info!(
                freed,
                "freed rows of paused or cancelled broadcasts whose lease expired"
            );
        }
        Ok(freed)
    }

    /// Ids of the running broadcasts, oldest first.
    async fn running_broadcasts(&self) -> Result<Vec<BroadcastId>> {
        broadcasts::Entity::find()
            .select_only()
            .column(broadcasts::Column::Id)
            .filter(broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()))
            .order_by_asc(broadcasts::Column::Id)
            .into_tuple::<i64>()
            .all(self.conn())
            .await
            .map_err(db_err)
    }

    /// The ids of up to `limit` claimable rows of one kind (see [`Due`]).
    fn due_rows(&self, request: &ClaimRequest, which: Due, limit: u64) -> SelectStatement {
        let now = request.now;
        let mut due = Query::select();
        due.column(Column::Id).from(Entity);
        let order = match which {
            Due::Probe(id) => {
                let paused = Query::select()
                    .expr(Expr::val(1))
                    .from(broadcasts::Entity)
                    .and_where(broadcasts::Column::Id.eq(id))
                    .and_where(broadcasts::Column::Status.eq(BroadcastStatus::Paused.as_str()))
                    .to_owned();
                due.and_where(Column::BroadcastId.eq(id))
                    .and_where(Expr::exists(paused))
                    .and_where(Column::Status.eq(DeliveryStatus::Pending.as_str()));
                Column::NextAttemptAt
            }
            Due::Pending(id) => {
                let running = Query::select()
                    .expr(Expr::val(1))
                    .from(broadcasts::Entity)
                    .and_where(broadcasts::Column::Id.eq(id))
                    .and_where(broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()))
                    .to_owned();
                due.and_where(Column::BroadcastId.eq(id))
                    .and_where(Expr::exists(running))
                    .and_where(Column::Status.eq(DeliveryStatus::Pending.as_str()))
                    .and_where(Column::NextAttemptAt.lte(now));
                Column::NextAttemptAt
            }
            Due::Expired { started } => {
                let running = Query::select()
                    .column(broadcasts::Column::Id)
                    .from(broadcasts::Entity)
                    .and_where(broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()))
                    .to_owned();
                // `'sending'` written into the SQL, not bound: only then can PostgreSQL's
                // generic plans (and SQLite's) use the partial index `WHERE status = 'sending'`.
                let sending = Expr::Constant(DeliveryStatus::Sending.as_str().into());
                due.and_where(Expr::col(Column::Status).eq(sending))
                    .and_where(Column::LeaseExpiresAt.lt(now))
                    .and_where(Column::BroadcastId.in_subquery(running))
                    .and_where(match started {
                        true => Column::SendStartedAt.is_not_null(),
                        false => Column::SendStartedAt.is_null(),
                    });
                if let Some(scope) = request.broadcast_id {
                    due.and_where(Column::BroadcastId.eq(scope));
                }
                Column::LeaseExpiresAt
            }
        };
        if !request.channels.is_empty() {
            due.and_where(Column::Channel.is_in(request.channels.iter().map(|c| c.as_str())));
        }
        due.order_by(order, sea_orm::Order::Asc);
        if self.backend() == DatabaseBackend::Postgres {
            // No `id` tie-break here: the indexes do not hold it, so PostgreSQL would sort every
            // due row (all the rows of a launch share one `next_attempt_at`) before the limit:
            // 150 ms per claim at 200,000 rows instead of 0.4 ms. Rows due at the same time come
            // in index order. SQLite's indexes end with the rowid (= id), so there the tie-break
            // is free.
            due.limit(limit)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        } else {
            due.order_by(Column::Id, sea_orm::Order::Asc).limit(limit);
        }
        due
    }

    /// Leases the rows `due` selects to the request's worker and counts the change; returns the
    /// rows as updated. PostgreSQL: one statement (see `counts::pg_with_counts`); SQLite: in the
    /// claim's transaction, the changes added to the claim's [`CountChanges`].
    async fn lease(
        &self,
        request: &ClaimRequest,
        due: SelectStatement,
        transition: Transition,
        sqlite: &mut Option<(DatabaseTransaction, CountChanges)>,
    ) -> Result<Vec<Recipient>> {
        self.lease_marked(request, due, transition, false, sqlite)
            .await
    }

    /// [`lease`](Self::lease), with the send marked as started at once when `started`.
    async fn lease_marked(
        &self,
        request: &ClaimRequest,
        due: SelectStatement,
        transition: Transition,
        started: bool,
        sqlite: &mut Option<(DatabaseTransaction, CountChanges)>,
    ) -> Result<Vec<Recipient>> {
        let now = request.now;
        let mut update = Query::update();
        update
            .table(Entity)
            .value(Column::Status, DeliveryStatus::Sending.as_str())
            .value(Column::LeaseOwner, request.worker_id.as_str())
            .value(Column::LeaseExpiresAt, now + request.lease_for)
            .value(Column::SendStartedAt, started.then_some(now))
            .value(Column::UpdatedAt, now)
            .and_where(Column::Id.in_subquery(due));
        if transition.uncertain_bump > 0 {
            update.value(
                Column::UncertainSends,
                Expr::col(Column::UncertainSends).add(transition.uncertain_bump),
            );
        }
        let backend = self.backend();
        let stmt = backend.build(&update);
        let values = stmt.values.map(|v| v.0).unwrap_or_default();
        let models = match sqlite {
            None => {
                let sql = counts::pg_with_counts(
                    &[],
                    &stmt.sql,
                    "broadcast_recipients.*",
                    transition,
                    "SELECT * FROM changed",
                );
                Entity::find()
                    .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
                    .all(self.conn())
                    .await
                    .map_err(db_err)?
            }
            Some((txn, changes)) => {
                let sql = format!("{} RETURNING *", stmt.sql);
                let models = Entity::find()
                    .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
                    .all(&*txn)
                    .await
                    .map_err(db_err)?;
                for m in &models {
                    changes.changed(transition, &Counted::of(m));
                }
                models
            }
        };
        convert::all(models, convert::recipient)
    }
}
