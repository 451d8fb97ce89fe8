//! Claiming due recipient rows under a lease: one atomic `UPDATE ... RETURNING` per claim.
//!
//! ```sql
//! UPDATE broadcast_recipients
//! SET status = 'sending', lease_owner = ?, lease_expires_at = ?, updated_at = ?,
//!     lease_expirations = lease_expirations + CASE WHEN status = 'sending' THEN 1 ELSE 0 END
//! WHERE id IN (
//!     SELECT id FROM broadcast_recipients
//!     WHERE broadcast_id IN (SELECT id FROM broadcasts WHERE status = 'running')
//!       [AND broadcast_id = ?] [AND channel IN (...)]
//!       AND ((status = 'pending' AND next_attempt_at <= ?)
//!            OR (status = 'sending' AND lease_expires_at < ?))
//!     ORDER BY next_attempt_at, id
//!     LIMIT ?
//!     [FOR UPDATE SKIP LOCKED]   -- PostgreSQL only
//! )
//! RETURNING *
//! ```
//!
//! - **PostgreSQL**: `FOR UPDATE SKIP LOCKED` makes concurrent claimers (any number of worker
//!   processes) take disjoint rows without waiting for each other. The running-broadcast test is
//!   a subquery, not a join, so only recipient rows are locked, never the broadcast row.
//! - **SQLite**: the lock clause does not exist; the single `UPDATE` statement runs under the
//!   database's write lock and is atomic across processes. Within one process claims are also
//!   serialised by [`Store`]'s SQLite write lock (see there).
//!
//! An expired lease (`status = 'sending'` past `lease_expires_at`) means the previous worker
//! died or stalled mid-send: the message may have gone out, so `lease_expirations` counts it as a
//! possible duplicate. Timestamps are always bound as `DateTime<Utc>` values: on SQLite they are
//! RFC 3339 text in UTC, whose text order is their time order.

use broadcast_domain::{BroadcastStatus, ClaimRequest, DeliveryStatus, Error, Recipient, Result};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{ColumnTrait, Condition, DatabaseBackend, EntityTrait, QueryFilter};

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
        let now = request.now;
        let pending = DeliveryStatus::Pending.as_str();
        let sending = DeliveryStatus::Sending.as_str();

        let running = Query::select()
            .column(broadcasts::Column::Id)
            .from(broadcasts::Entity)
            .and_where(broadcasts::Column::Status.eq(BroadcastStatus::Running.as_str()))
            .to_owned();
        let mut due = Query::select();
        due.column(Column::Id)
            .from(Entity)
            .and_where(Column::BroadcastId.in_subquery(running))
            .cond_where(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(Column::Status.eq(pending))
                            .add(Column::NextAttemptAt.lte(now)),
                    )
                    .add(
                        Condition::all()
                            .add(Column::Status.eq(sending))
                            .add(Column::LeaseExpiresAt.lt(now)),
                    ),
            )
            .order_by(Column::NextAttemptAt, sea_orm::Order::Asc)
            .order_by(Column::Id, sea_orm::Order::Asc)
            .limit(request.limit);
        if let Some(broadcast) = request.broadcast_id {
            due.and_where(Column::BroadcastId.eq(broadcast));
        }
        if !request.channels.is_empty() {
            due.and_where(Column::Channel.is_in(request.channels.iter().map(|c| c.as_str())));
        }
        if self.backend() == DatabaseBackend::Postgres {
            due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }

        let expired_lease = Expr::case(Expr::col(Column::Status).eq(sending), 1).finally(0);
        let update = Entity::update_many()
            .col_expr(Column::Status, Expr::val(sending))
            .col_expr(Column::LeaseOwner, Expr::val(request.worker_id.as_str()))
            .col_expr(Column::LeaseExpiresAt, Expr::val(now + request.lease_for))
            .col_expr(
                Column::LeaseExpirations,
                Expr::col(Column::LeaseExpirations).add(expired_lease),
            )
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::Id.in_subquery(due));

        let guard = self.sqlite_write_lock().await;
        let models = update
            .exec_with_returning(self.conn())
            .await
            .map_err(db_err)?;
        drop(guard);

        let mut claimed = convert::all(models, convert::recipient)?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|r| (r.next_attempt_at, r.id));
        tracing::debug!(claimed = claimed.len(), "claimed due recipient rows");
        Ok(claimed)
    }
}
