//! Second chances for recipients: the fallback row of a `first_reachable` policy (such as
//! `telegram_then_email`), and failed rows put back in the queue.
//!
//! **Fallback** (`add_fallback`), in one transaction: nothing when the user already has a row on
//! a channel of the chain; otherwise, per channel of the chain in order, until one inserts a
//! row, a statement that builds the row from the user the same way `broadcast-filter`
//! materialises rows (here for e-mail), restricted to users the channel reaches; then, when none
//! did, the same statement unrestricted on the first channel (a skipped row with its reason);
//! then a counter bump:
//!
//! ```sql
//! INSERT INTO broadcast_recipients (broadcast_id, user_id, registration_id, channel, address,
//!     status, skip_reason, attempts, next_attempt_at, uncertain_sends, created_at, updated_at)
//! SELECT ?, users.id, ?, 'email', COALESCE(users.email, ''),
//!        CASE WHEN users.email IS NULL THEN 'skipped'
//!             WHEN users.email_unsubscribed_at IS NOT NULL THEN 'skipped'
//!             WHEN users.email_bounced_at IS NOT NULL THEN 'skipped' ELSE 'pending' END,
//!        CASE WHEN users.email IS NULL THEN 'no_email'
//!             WHEN users.email_unsubscribed_at IS NOT NULL THEN 'email_unsubscribed'
//!             WHEN users.email_bounced_at IS NOT NULL THEN 'email_bounced' END,
//!        0, ?now, 0, ?now, ?now
//! FROM users WHERE users.id = ?
//!   [AND users.email IS NOT NULL AND users.email_unsubscribed_at IS NULL
//!    AND users.email_bounced_at IS NULL]                  -- "restricted to users it reaches"
//! ON CONFLICT (broadcast_id, user_id, channel) DO NOTHING
//! RETURNING broadcast_id, channel, status, ...;   -- the row, for the counters
//! UPDATE broadcasts SET total_recipients = total_recipients + <rows inserted> WHERE id = ?;
//! INSERT INTO broadcast_counts ... ON CONFLICT ... DO UPDATE ...;   -- see `counts.rs`
//! ```
//!
//! **Requeue** (`requeue_failed`), one `UPDATE` (that moves the rows' counts from `failed` to
//! `pending`, see `Store::update_counted`):
//!
//! ```sql
//! UPDATE broadcast_recipients
//! SET status = 'pending', attempts = 0, next_attempt_at = ?now, lease_owner = NULL,
//!     lease_expires_at = NULL, updated_at = ?now          -- error_kind, last_error kept
//! WHERE broadcast_id = ? AND status = 'failed'
//!   AND (error_kind IS NULL OR error_kind <> 'blocked') [AND error_kind IN (...)]
//!   AND NOT ((channel = 'telegram' AND EXISTS (SELECT 1 FROM users
//!            WHERE users.id = broadcast_recipients.user_id AND telegram_blocked_at IS NOT NULL))
//!        OR (channel = 'email' AND EXISTS (SELECT 1 FROM users
//!            WHERE users.id = broadcast_recipients.user_id
//!              AND (email_unsubscribed_at IS NOT NULL OR email_bounced_at IS NOT NULL))))
//!                                         -- one term per channel whose users can refuse it
//! ```

use broadcast_domain::{
    BroadcastId, ChannelKind, DeliveryStatus, Error, ErrorKind, Reach, RegistrationId, Result,
    UserId,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Statement};

use crate::Store;
use crate::counts::{self, CountChanges, Counted, Transition};
use crate::entity::broadcast_recipients::{self, Column, Entity};
use crate::entity::{broadcasts, users};
use crate::error::db_err;

impl Store {
    /// See the module documentation.
    #[tracing::instrument(skip(self))]
    pub(crate) async fn fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        chain: &[ChannelKind],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(first) = chain.first() else {
            return Ok(false);
        };
        let reaches = chain
            .iter()
            .map(|k| Ok((*k, self.reaches().get(*k)?)))
            .collect::<Result<Vec<_>>>()?;
        // Pending on the first channel that reaches the user; when none does, a skipped row on
        // the first channel, with its reason.
        let mut inserts = reaches
            .iter()
            .map(|(kind, reach)| {
                self.fallback_insert(broadcast, user, registration, *kind, reach, true, now)
            })
            .collect::<Result<Vec<_>>>()?;
        inserts.push(self.fallback_insert(
            broadcast,
            user,
            registration,
            *first,
            reaches[0].1,
            false,
            now,
        )?);

        let guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let existing = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::BroadcastId.eq(broadcast))
            .filter(Column::UserId.eq(user))
            .filter(Column::Channel.is_in(chain.iter().map(|k| k.as_str())))
            .into_tuple::<i64>()
            .one(&txn)
            .await
            .map_err(db_err)?;
        let mut rows = Vec::new();
        if existing.is_none() {
            for insert in inserts {
                match txn.query_all_raw(insert).await {
                    Ok(inserted) if inserted.is_empty() => continue,
                    Ok(inserted) => {
                        rows = inserted;
                        break;
                    }
                    Err(e) => {
                        drop(txn);
                        drop(guard);
                        return Err(self.fallback_error(e, broadcast, registration).await);
                    }
                }
            }
        }
        let mut pending = false;
        let mut changes = CountChanges::new();
        for row in &rows {
            let row = Counted::from_row(row)?;
            pending |= row.status == DeliveryStatus::Pending.as_str();
            changes.changed(Transition::INSERT, &row);
        }
        if !rows.is_empty() {
            broadcasts::Entity::update_many()
                .col_expr(
                    broadcasts::Column::TotalRecipients,
                    Expr::col(broadcasts::Column::TotalRecipients).add(rows.len() as i64),
                )
                .filter(broadcasts::Column::Id.eq(broadcast))
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        // Last: the counter rows are locked for the shortest time (see `counts.rs`).
        changes.apply(&txn).await?;
        txn.commit().await.map_err(db_err)?;
        drop(guard);

        if existing.is_none() && rows.is_empty() && !self.user_exists(user).await? {
            return Err(Error::not_found("user", user));
        }
        tracing::debug!(inserted = rows.len(), pending, "fallback");
        Ok(pending)
    }

    /// The `INSERT ... SELECT ... FROM users WHERE users.id = ? ... RETURNING` of a fallback
    /// row on `kind`; with `only_reachable`, it inserts nothing unless the channel reaches the
    /// user.
    #[allow(clippy::too_many_arguments)]
    fn fallback_insert(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        kind: ChannelKind,
        reach: &Reach,
        only_reachable: bool,
        now: DateTime<Utc>,
    ) -> Result<Statement> {
        let [address, status, skip_reason] = broadcast_filter::channel_columns(reach);
        let mut select = Query::select()
            .expr(Expr::val(broadcast))
            .expr(Expr::col((users::Entity, users::Column::Id)))
            .expr(Expr::val(registration))
            .expr(Expr::val(kind.as_str()))
            .expr(address)
            .expr(status)
            .expr(skip_reason)
            .expr(Expr::val(0i32))
            .expr(Expr::val(now))
            .expr(Expr::val(0i32))
            .expr(Expr::val(now))
            .expr(Expr::val(now))
            .from(users::Entity)
            .and_where(Expr::col((users::Entity, users::Column::Id)).eq(user))
            .to_owned();
        if only_reachable {
            select.cond_where(broadcast_filter::reachable(reach));
        }
        let insert = Query::insert()
            .into_table(Entity)
            .columns([
                Column::BroadcastId,
                Column::UserId,
                Column::RegistrationId,
                Column::Channel,
                Column::Address,
                Column::Status,
                Column::SkipReason,
                Column::Attempts,
                Column::NextAttemptAt,
                Column::UncertainSends,
                Column::CreatedAt,
                Column::UpdatedAt,
            ])
            .select_from(select)
            .map_err(|e| Error::Internal(format!("cannot build the fallback row: {e}")))?
            .on_conflict(
                OnConflict::columns([Column::BroadcastId, Column::UserId, Column::Channel])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        let backend = self.backend();
        let insert = backend.build(&insert);
        Ok(Statement::from_sql_and_values(
            backend,
            format!("{} RETURNING {}", insert.sql, counts::RETURNING),
            insert.values.map(|v| v.0).unwrap_or_default(),
        ))
    }

    /// Names the missing record when the fallback insert broke a foreign key.
    async fn fallback_error(
        &self,
        e: sea_orm::DbErr,
        broadcast: BroadcastId,
        registration: Option<RegistrationId>,
    ) -> Error {
        if !matches!(
            e.sql_err(),
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
        ) {
            return db_err(e);
        }
        if let Err(missing) = self.ensure_broadcast(broadcast).await {
            return missing;
        }
        match registration {
            Some(id) => Error::not_found("registration", id),
            None => db_err(e),
        }
    }

    async fn user_exists(&self, user: UserId) -> Result<bool> {
        let found = users::Entity::find_by_id(user)
            .select_only()
            .column(users::Column::Id)
            .into_tuple::<i64>()
            .one(self.conn())
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    /// See the module documentation.
    #[tracing::instrument(skip(self))]
    pub(crate) async fn requeue(
        &self,
        broadcast: BroadcastId,
        kinds: &[ErrorKind],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let user_where = |cond: Condition| {
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1i32))
                    .from(users::Entity)
                    .and_where(
                        Expr::col((users::Entity, users::Column::Id))
                            .equals((broadcast_recipients::Entity, Column::UserId)),
                    )
                    .cond_where(cond)
                    .to_owned(),
            )
        };
        // Never the rows of users who refused the channel since (blocked the bot,
        // unsubscribed, bounced).
        let refused = self
            .reaches()
            .iter()
            .filter(|(_, reach)| !reach.refusals.is_empty())
            .map(|(kind, reach)| {
                Condition::all()
                    .add(Column::Channel.eq(kind.as_str()))
                    .add(user_where(broadcast_filter::refused(reach)))
            })
            .fold(Condition::any(), Condition::add);
        let mut rows = Condition::all()
            .add(Column::BroadcastId.eq(broadcast))
            .add(Column::Status.eq(DeliveryStatus::Failed.as_str()))
            .add(
                Condition::any()
                    .add(Column::ErrorKind.is_null())
                    .add(Column::ErrorKind.ne(ErrorKind::Blocked.as_str())),
            )
            .add(refused.not());
        if !kinds.is_empty() {
            rows = rows.add(Column::ErrorKind.is_in(kinds.iter().map(|k| k.as_str())));
        }
        let set = vec![
            (Column::Attempts, Expr::val(0i32)),
            (Column::NextAttemptAt, Expr::val(now)),
            (Column::LeaseOwner, Expr::val(Option::<String>::None)),
            (
                Column::LeaseExpiresAt,
                Expr::val(Option::<DateTime<Utc>>::None),
            ),
            (Column::UpdatedAt, Expr::val(now)),
        ];
        let requeued = self
            .update_counted(
                rows,
                Transition::from(DeliveryStatus::Failed),
                DeliveryStatus::Pending,
                set,
            )
            .await?;
        if requeued == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        tracing::info!(requeued, "requeued failed rows");
        Ok(requeued)
    }
}
