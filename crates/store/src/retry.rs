//! Second chances for recipients: the e-mail fallback row of `telegram_then_email`, and failed
//! rows put back in the queue.
//!
//! **Fallback** (`add_email_fallback`), one statement that builds the row from the user the
//! same way `broadcast-filter` materialises e-mail rows, then a counter bump:
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
//!   AND NOT (channel = 'telegram' AND EXISTS (SELECT 1 FROM users
//!            WHERE users.id = broadcast_recipients.user_id AND telegram_blocked_at IS NOT NULL))
//!   AND NOT (channel = 'email' AND EXISTS (SELECT 1 FROM users
//!            WHERE users.id = broadcast_recipients.user_id
//!              AND (email_unsubscribed_at IS NOT NULL OR email_bounced_at IS NOT NULL)))
//! ```

use broadcast_domain::{
    BroadcastId, ChannelKind, DeliveryStatus, Error, ErrorKind, RegistrationId, Result, SkipReason,
    UserId,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Condition, Expr, ExprTrait, Func, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Statement};

use crate::Store;
use crate::counts::{self, CountChanges, Counted, Transition};
use crate::entity::broadcast_recipients::{self, Column, Entity};
use crate::entity::{broadcasts, users};
use crate::error::db_err;

impl Store {
    /// See the module documentation.
    #[tracing::instrument(skip(self))]
    pub(crate) async fn email_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let u = |c: users::Column| Expr::col((users::Entity, c));
        let (email, unsubscribed, bounced) = (
            u(users::Column::Email),
            u(users::Column::EmailUnsubscribedAt),
            u(users::Column::EmailBouncedAt),
        );
        let skipped = || Expr::val(DeliveryStatus::Skipped.as_str());
        let reason = |r: SkipReason| Expr::val(r.as_str());
        let status = CaseStatement::new()
            .case(email.clone().is_null(), skipped())
            .case(unsubscribed.clone().is_not_null(), skipped())
            .case(bounced.clone().is_not_null(), skipped())
            .finally(Expr::val(DeliveryStatus::Pending.as_str()));
        let skip_reason = CaseStatement::new()
            .case(email.clone().is_null(), reason(SkipReason::NoEmail))
            .case(
                unsubscribed.is_not_null(),
                reason(SkipReason::EmailUnsubscribed),
            )
            .case(bounced.is_not_null(), reason(SkipReason::EmailBounced));
        let select = Query::select()
            .expr(Expr::val(broadcast))
            .expr(u(users::Column::Id))
            .expr(Expr::val(registration))
            .expr(Expr::val(ChannelKind::Email.as_str()))
            .expr(Func::coalesce([email.clone(), Expr::val("")]))
            .expr(status)
            .expr(skip_reason)
            .expr(Expr::val(0i32))
            .expr(Expr::val(now))
            .expr(Expr::val(0i32))
            .expr(Expr::val(now))
            .expr(Expr::val(now))
            .from(users::Entity)
            .and_where(u(users::Column::Id).eq(user))
            .to_owned();
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
            .map_err(|e| Error::Internal(format!("cannot build the e-mail fallback row: {e}")))?
            .on_conflict(
                OnConflict::columns([Column::BroadcastId, Column::UserId, Column::Channel])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        let backend = self.backend();
        let insert = backend.build(&insert);
        let insert = Statement::from_sql_and_values(
            backend,
            format!("{} RETURNING {}", insert.sql, counts::RETURNING),
            insert.values.map(|v| v.0).unwrap_or_default(),
        );

        let guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let rows = match txn.query_all_raw(insert).await {
            Ok(rows) => rows,
            Err(e) => {
                drop(txn);
                drop(guard);
                return Err(self.fallback_error(e, broadcast, registration).await);
            }
        };
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

        if rows.is_empty() && !self.user_exists(user).await? {
            return Err(Error::not_found("user", user));
        }
        tracing::debug!(inserted = rows.len(), pending, "e-mail fallback");
        Ok(pending)
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
        let telegram_blocked = Condition::all()
            .add(Column::Channel.eq(ChannelKind::Telegram.as_str()))
            .add(user_where(
                Condition::all().add(users::Column::TelegramBlockedAt.is_not_null()),
            ));
        let email_unreachable = Condition::all()
            .add(Column::Channel.eq(ChannelKind::Email.as_str()))
            .add(user_where(
                Condition::any()
                    .add(users::Column::EmailUnsubscribedAt.is_not_null())
                    .add(users::Column::EmailBouncedAt.is_not_null()),
            ));

        let mut rows = Condition::all()
            .add(Column::BroadcastId.eq(broadcast))
            .add(Column::Status.eq(DeliveryStatus::Failed.as_str()))
            .add(
                Condition::any()
                    .add(Column::ErrorKind.is_null())
                    .add(Column::ErrorKind.ne(ErrorKind::Blocked.as_str())),
            )
            .add(telegram_blocked.not())
            .add(email_unreachable.not());
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
