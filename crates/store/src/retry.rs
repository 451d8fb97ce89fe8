//! Second chances for recipients: the e-mail fallback row of `telegram_then_email`, and failed
//! rows put back in the queue.
//!
//! **Fallback** (`add_email_fallback`), one statement that builds the row from the user the
//! same way `broadcast-filter` materialises e-mail rows, then a counter bump:
//!
//! ```sql
//! INSERT INTO broadcast_recipients (broadcast_id, user_id, registration_id, channel, address,
//!     status, skip_reason, attempts, next_attempt_at, lease_expirations, created_at, updated_at)
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
//! RETURNING status;
//! UPDATE broadcasts SET total_recipients = total_recipients + <rows inserted> WHERE id = ?;
//! ```
//!
//! **Requeue** (`requeue_failed`), one `UPDATE`:
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
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::Store;
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
                Column::LeaseExpirations,
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
            .returning_col(Column::Status)
            .to_owned();

        let guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let rows = match txn.query_all(&insert).await {
            Ok(rows) => rows,
            Err(e) => {
                drop(txn);
                drop(guard);
                return Err(self.fallback_error(e, broadcast, registration).await);
            }
        };
        let mut pending = false;
        for row in &rows {
            let status: String = row.try_get("", "status").map_err(db_err)?;
            pending |= status == DeliveryStatus::Pending.as_str();
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

        let mut update = Entity::update_many()
            .col_expr(Column::Status, Expr::val(DeliveryStatus::Pending.as_str()))
            .col_expr(Column::Attempts, Expr::val(0i32))
            .col_expr(Column::NextAttemptAt, Expr::val(now))
            .col_expr(Column::LeaseOwner, Expr::val(Option::<String>::None))
            .col_expr(
                Column::LeaseExpiresAt,
                Expr::val(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::BroadcastId.eq(broadcast))
            .filter(Column::Status.eq(DeliveryStatus::Failed.as_str()))
            .filter(
                Condition::any()
                    .add(Column::ErrorKind.is_null())
                    .add(Column::ErrorKind.ne(ErrorKind::Blocked.as_str())),
            )
            .filter(telegram_blocked.not())
            .filter(email_unreachable.not());
        if !kinds.is_empty() {
            update = update.filter(Column::ErrorKind.is_in(kinds.iter().map(|k| k.as_str())));
        }

        let guard = self.sqlite_write_lock().await;
        let result = update.exec(self.conn()).await.map_err(db_err)?;
        drop(guard);
        if result.rows_affected == 0 {
            self.ensure_broadcast(broadcast).await?;
        }
        tracing::info!(requeued = result.rows_affected, "requeued failed rows");
        Ok(result.rows_affected)
    }
}
