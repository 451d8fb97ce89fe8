//! [`SendBudget`] for [`Store`]: send rates shared by every worker process through the
//! `send_budgets` table, one row per key, by the rules of [`BudgetState`].
//!
//! A key's row holds `next_free_at`, the first slot nobody has reserved yet; `moved_us`, the
//! total of moves made; `owed_us` and `owed_by`, a move owed (the total to reach before a slot
//! at or after that time is handed out); and `held_until`, the end of the latest hold. Every
//! call changes the row in one transaction: the row is created when missing (`INSERT ... ON
//! CONFLICT DO NOTHING`), read under its lock (`SELECT ... FOR UPDATE` on PostgreSQL, where any
//! number of worker processes queue up on the row; on SQLite the insert, a write, takes the
//! database's write lock for the whole transaction, under the store's own write lock), changed
//! by [`BudgetState`] and written back. So reservations of all workers are consecutive and
//! never overlap, and a key left idle starts again at `now`.
//!
//! Times are whole microseconds, which is what PostgreSQL stores: `now`, `by`, `interval` and
//! moves are rounded **up** to the microsecond, so the first slot is never before `now` and
//! slots are never closer together than `interval`.

use std::time::Duration;

use async_trait::async_trait;
use broadcast_domain::{BudgetState, Error, Moves, Owed, Result, SendBudget, Slots};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use crate::Store;
use crate::entity::send_budgets::{Column, Entity};
use crate::error::db_err;

/// `t` rounded up to a whole microsecond.
fn ceil_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    match t.timestamp_subsec_nanos() % 1_000 {
        0 => t,
        extra => t + TimeDelta::nanoseconds(i64::from(1_000 - extra)),
    }
}

/// What a reservation asks for, checked: the span of `n` slots in whole microseconds.
#[derive(Debug)]
struct Request<'a> {
    key: &'a str,
    now: DateTime<Utc>,
    span: TimeDelta,
}

impl<'a> Request<'a> {
    fn new(key: &'a str, interval: Duration, n: u32, now: DateTime<Utc>) -> Result<Self> {
        Slots::check_key(key)?;
        if n == 0 {
            return Err(Error::Invalid(format!(
                "a reservation of send budget `{key}` must be for at least 1 slot, got 0"
            )));
        }
        let too_long = || {
            Error::Invalid(format!(
                "a reservation of {n} slots of {interval:?} on send budget `{key}` is too long"
            ))
        };
        let interval_micros =
            i64::try_from(interval.as_nanos().div_ceil(1_000)).map_err(|_| too_long())?;
        let span_micros = interval_micros
            .checked_mul(i64::from(n))
            .ok_or_else(too_long)?;
        let span = TimeDelta::microseconds(span_micros);
        let now = ceil_micros(now);
        // The end must be a representable time.
        now.checked_add_signed(span).ok_or_else(too_long)?;
        Ok(Request { key, now, span })
    }

    fn end_from(&self, first: DateTime<Utc>) -> Result<DateTime<Utc>> {
        first.checked_add_signed(self.span).ok_or_else(|| {
            Error::Invalid(format!(
                "send budget `{}` is reserved up to {first}; {} more is out of range",
                self.key, self.span
            ))
        })
    }
}

impl Store {
    /// Applies `change` to the key's state in one transaction (see the module documentation)
    /// and answers what it answers.
    async fn change_budget<T>(
        &self,
        key: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut BudgetState) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let create = Query::insert()
            .into_table(Entity)
            .columns([Column::Key, Column::NextFreeAt, Column::UpdatedAt])
            .values_panic([key.into(), now.into(), now.into()])
            .on_conflict(OnConflict::column(Column::Key).do_nothing().to_owned())
            .to_owned();
        txn.execute(&create).await.map_err(db_err)?;
        let row = Entity::find_by_id(key.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| {
                Error::Internal(format!("send budget `{key}` vanished while changed"))
            })?;
        let mut state = BudgetState {
            next: row.next_free_at,
            moves: Moves {
                moved: micros(row.moved_us),
                owed: row.owed_us.zip(row.owed_by).map(|(total, by)| Owed {
                    total: micros(total),
                    by,
                }),
            },
            held: row.held_until,
        };
        // On an error the transaction is dropped: nothing is written.
        let out = change(&mut state)?;
        let owed = state.moves.owed;
        Entity::update_many()
            .col_expr(Column::NextFreeAt, Expr::val(state.next))
            .col_expr(Column::MovedUs, Expr::val(as_micros(state.moves.moved)))
            .col_expr(Column::OwedUs, Expr::val(owed.map(|o| as_micros(o.total))))
            .col_expr(Column::OwedBy, Expr::val(owed.map(|o| o.by)))
            .col_expr(Column::HeldUntil, Expr::val(state.held))
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::Key.eq(key))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(out)
    }
}

/// A `move_back`'s late, checked and rounded up to the microsecond.
fn checked_late(key: &str, late: Duration) -> Result<Duration> {
    match as_micros(late) {
        us if us <= DAY_MICROS => Ok(micros(us)),
        _ => Err(Error::Invalid(format!(
            "send budget `{key}` cannot be moved back by {late:?}: at most a day"
        ))),
    }
}

/// A day in microseconds: the longest single move accepted.
const DAY_MICROS: i64 = 86_400_000_000;

/// Microseconds as a duration (negative ones, which no write produces, as zero).
fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// A duration in whole microseconds, rounded up (moves are at most a day each, so a total
/// stays far inside `i64`).
fn as_micros(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(i64::MAX)
}

#[async_trait]
impl SendBudget for Store {
    #[tracing::instrument(skip(self))]
    async fn reserve(
        &self,
        key: &str,
        interval: Duration,
        n: u32,
        now: DateTime<Utc>,
    ) -> Result<Slots> {
        let req = Request::new(key, interval, n, now)?;
        let slots = self
            .change_budget(key, req.now, |state| {
                req.end_from(state.next.max(req.now))?;
                let first = state.reserve(req.span, req.now);
                Ok(Slots {
                    first,
                    moves: state.moves,
                })
            })
            .await?;
        tracing::trace!(first = %slots.first, "reserved send budget slots");
        Ok(slots)
    }

    #[tracing::instrument(skip(self))]
    async fn move_back(
        &self,
        key: &str,
        late: Duration,
        moved_then: Duration,
        by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Moves> {
        Slots::check_key(key)?;
        let late = checked_late(key, late)?;
        let moved_then = micros(as_micros(moved_then));
        let (by, now) = (ceil_micros(by), ceil_micros(now));
        let moves = self
            .change_budget(key, now, |state| {
                state.move_back(late, moved_then, by, now);
                Ok(state.moves)
            })
            .await?;
        tracing::debug!(
            ?moves,
            "a late answer moved the send budget's slots or owes a move"
        );
        Ok(moves)
    }

    #[tracing::instrument(skip(self))]
    async fn hold(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        Slots::check_key(key)?;
        let until = ceil_micros(until);
        self.change_budget(key, ceil_micros(now), |state| {
            state.hold(until);
            Ok(())
        })
        .await
    }

    async fn held_until(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        let held = Entity::find_by_id(key.to_owned())
            .select_only()
            .column(Column::HeldUntil)
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(self.conn())
            .await
            .map_err(db_err)?;
        Ok(held.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rounds_up_to_microseconds() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(ceil_micros(t), t);
        assert_eq!(
            ceil_micros(t + TimeDelta::nanoseconds(1)),
            t + TimeDelta::microseconds(1)
        );
        assert_eq!(
            ceil_micros(t + TimeDelta::nanoseconds(7_000)),
            t + TimeDelta::microseconds(7)
        );
        assert_eq!(
            ceil_micros(t + TimeDelta::nanoseconds(999_999_999)),
            t + TimeDelta::seconds(1)
        );
    }

    #[test]
    fn checks_the_request() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let ms = Duration::from_millis(1);
        let err = |r: Result<Request<'_>>| match r {
            Err(Error::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(err(Request::new(" ", ms, 1, t)).contains("key"));
        assert!(err(Request::new("telegram", ms, 0, t)).contains("at least 1 slot"));
        assert!(err(Request::new("telegram", Duration::MAX, 1, t)).contains("too long"));
        assert!(
            err(Request::new(
                "telegram",
                Duration::from_secs(u64::from(u32::MAX)),
                u32::MAX,
                t
            ))
            .contains("too long")
        );
        // 1/30 s is 33,333,333.3 ns: rounded up to 33,334 µs per slot.
        let req = Request::new("telegram", Duration::from_nanos(33_333_333), 3, t).unwrap();
        assert_eq!(req.span, TimeDelta::microseconds(100_002));
    }
}
