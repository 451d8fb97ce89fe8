//! Claiming due recipient rows under a lease: atomic `UPDATE ... RETURNING` statements that each
//! walk an index in order and stop at the limit.
//!
//! A claim takes, in this order and up to the limit:
//!
//! 1. rows whose lease expired (the previous worker died or stalled mid-send), over the index
//!    `(status, lease_expires_at)`;
//! 2. due pending rows, one running broadcast after the other (oldest broadcast first), each over
//!    the index `(broadcast_id, status, next_attempt_at)`, earliest `next_attempt_at` first:
//!
//! ```sql
//! UPDATE broadcast_recipients
//! SET status = 'sending', lease_owner = ?, lease_expires_at = ?, updated_at = ?,
//!     lease_expirations = lease_expirations + CASE WHEN status = 'sending' THEN 1 ELSE 0 END
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
//!   a subquery, not a join, so only recipient rows are locked, never the broadcast row.
//! - **SQLite**: the lock clause does not exist; each `UPDATE` runs under the database's write
//!   lock and is atomic across processes. Within one process claims are also serialised by
//!   [`Store`]'s SQLite write lock (see there), held for the whole claim.
//!
//! An expired lease (`status = 'sending'` past `lease_expires_at`) means the message may have
//! gone out, so `lease_expirations` counts it as a possible duplicate. Timestamps are always bound
//! as `DateTime<Utc>` values: on SQLite they are RFC 3339 text in UTC, whose text order is their
//! time order.

use broadcast_domain::{
    BroadcastId, BroadcastStatus, ClaimRequest, DeliveryStatus, Error, Recipient, Result,
};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query, SelectStatement};
use sea_orm::{ColumnTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::Store;
use crate::convert;
use crate::entity::broadcast_recipients::{Column, Entity};
use crate::entity::broadcasts;
use crate::error::db_err;

impl Store {
    /// See the module documentation.
    #[tracing::instrument(skip(self, request), fields(worker = %request.worker_id, limit = request.limit))]
    pub(crate) async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Recipient>> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        if request.lease_for <= chrono::Duration::zero() {
            return Err(Error::Invalid(format!(
                "a lease must last longer than 0 seconds, got {}",
                request.lease_for
            )));
        }
        if request.worker_id.trim().is_empty() {
            return Err(Error::Invalid("a worker id must not be empty".into()));
        }

        let guard = self.sqlite_write_lock().await;
        // With a scope, the statements themselves check that it is running: no list needed.
        let running = match request.broadcast_id {
            Some(id) => vec![id],
            None => self.running_broadcasts().await?,
        };
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::new();
        let expired = self.due_rows(request, None, request.limit);
        claimed.extend(self.lease(request, expired).await?);
        for broadcast in running {
            let left = request.limit.saturating_sub(claimed.len() as u64);
            if left == 0 {
                break;
            }
            let due = self.due_rows(request, Some(broadcast), left);
            claimed.extend(self.lease(request, due).await?);
        }
        drop(guard);

        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|r| (r.next_attempt_at, r.id));
        tracing::debug!(claimed = claimed.len(), "claimed due recipient rows");
        Ok(claimed)
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

    /// The ids of up to `limit` claimable rows: due pending rows of `broadcast`, or (with
    /// `None`) rows whose lease expired, of any running broadcast in the request's scope.
    fn due_rows(
        &self,
        request: &ClaimRequest,
        broadcast: Option<BroadcastId>,
        limit: u64,
    ) -> SelectStatement {
        let now = request.now;
        let mut due = Query::select();
        due.column(Column::Id).from(Entity);
        match broadcast {
            Some(id) => {
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
            }
            None => {
                let running = Query::select()
                    .column(broadcasts::Column::Id)
                    .from(broadcasts::Entity)
                    .and_where(broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()))
                    .to_owned();
                due.and_where(Column::Status.eq(DeliveryStatus::Sending.as_str()))
                    .and_where(Column::LeaseExpiresAt.lt(now))
                    .and_where(Column::BroadcastId.in_subquery(running));
                if let Some(scope) = request.broadcast_id {
                    due.and_where(Column::BroadcastId.eq(scope));
                }
            }
        }
        if !request.channels.is_empty() {
            due.and_where(Column::Channel.is_in(request.channels.iter().map(|c| c.as_str())));
        }
        due.order_by(Column::NextAttemptAt, sea_orm::Order::Asc);
        if self.backend() == DatabaseBackend::Postgres {
            // No `id` tie-break here: the index `(broadcast_id, status, next_attempt_at)` does
            // not hold it, so PostgreSQL would sort every due row (all the rows of a launch share
            // one `next_attempt_at`) before the limit: 150 ms per claim at 200,000 rows instead
            // of 0.4 ms. Rows due at the same time come in index order. SQLite's indexes end
            // with the rowid (= id), so there the tie-break is free.
            due.limit(limit)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        } else {
            due.order_by(Column::Id, sea_orm::Order::Asc).limit(limit);
        }
        due
    }

    /// Leases the rows `due` selects to the request's worker; returns them as updated.
    async fn lease(&self, request: &ClaimRequest, due: SelectStatement) -> Result<Vec<Recipient>> {
        let now = request.now;
        let sending = DeliveryStatus::Sending.as_str();
        let expired_lease = Expr::case(Expr::col(Column::Status).eq(sending), 1).finally(0);
        let models = Entity::update_many()
            .col_expr(Column::Status, Expr::val(sending))
            .col_expr(Column::LeaseOwner, Expr::val(request.worker_id.as_str()))
            .col_expr(Column::LeaseExpiresAt, Expr::val(now + request.lease_for))
            .col_expr(
                Column::LeaseExpirations,
                Expr::col(Column::LeaseExpirations).add(expired_lease),
            )
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::Id.in_subquery(due))
            .exec_with_returning(self.conn())
            .await
            .map_err(db_err)?;
        convert::all(models, convert::recipient)
    }
}
