//! [`SendBudget`] for [`Store`]: send rates shared by every worker process through the
//! `send_budgets` table.
//!
//! A key's row holds `next_free_at`, the first slot nobody has reserved yet. Reserving `n` slots
//! `interval` apart hands out `first = max(next_free_at, now)` and moves `next_free_at` to
//! `first + n * interval`, atomically, so reservations of all workers are consecutive and never
//! overlap, and a key left idle starts again at `now`.
//!
//! - **PostgreSQL**: one upsert; the server does the arithmetic under the row lock, so any
//!   number of worker processes queue up on the row:
//!   ```sql
//!   INSERT INTO send_budgets (key, next_free_at, updated_at) VALUES ($1, $2, $3)  -- now + span, now
//!   ON CONFLICT (key) DO UPDATE
//!   SET next_free_at = GREATEST(send_budgets.next_free_at, EXCLUDED.updated_at)
//!                      + CAST($4 AS INTERVAL),                                  -- 'span microseconds'
//!       updated_at = EXCLUDED.updated_at
//!   RETURNING next_free_at
//!   ```
//!   and `first = next_free_at - span`.
//! - **SQLite**: timestamps are RFC 3339 text, so the arithmetic is done here, in one transaction
//!   under the store's SQLite write lock: `INSERT ... ON CONFLICT (key) DO NOTHING` first (a write,
//!   so the transaction holds SQLite's write lock from its first statement and no other process
//!   can change the row before the commit), then `SELECT` and `UPDATE`.
//!
//! Moving the slots back (`move_back`) adds to `next_free_at` (from `now`, if that is later)
//! what the moves since the late message's reservation have not covered, and the same to
//! `moved_us`, the total moved, which reservations hand out: one upsert on PostgreSQL, a read
//! and an update under the write lock on SQLite, as above.
//!
//! A hold (`hold`, a service's 429 `retry_after`) moves `next_free_at` to the hold's end if
//! that is later, and keeps the latest end in `held_until` for workers that reserved slots
//! before it to check (`held_until`): one upsert on PostgreSQL, a read and an upsert under
//! the write lock on SQLite.
//!
//! Times are whole microseconds, which is what PostgreSQL stores: `now` and `interval` are
//! rounded **up** to the microsecond, so the first slot is never before `now` and slots are never
//! closer together than `interval`.

use std::time::Duration;

use async_trait::async_trait;
use broadcast_domain::{Error, Result, SendBudget, Slots};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect,
    Statement, Value, sea_query::Expr,
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
    span_micros: i64,
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
        Ok(Request {
            key,
            now,
            span,
            span_micros,
        })
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
    /// Runs one PostgreSQL upsert of `send_budgets` that returns its row.
    async fn upsert_postgres(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<sea_orm::QueryResult> {
        self.conn()
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::Internal("the send budget upsert returned no row".into()))
    }

    /// PostgreSQL: one upsert (see the module documentation).
    async fn reserve_postgres(&self, req: &Request<'_>) -> Result<Slots> {
        let sql = "INSERT INTO send_budgets (key, next_free_at, updated_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (key) DO UPDATE \
                   SET next_free_at = GREATEST(send_budgets.next_free_at, EXCLUDED.updated_at) \
                                      + CAST($4 AS INTERVAL), \
                       updated_at = EXCLUDED.updated_at \
                   RETURNING next_free_at, moved_us";
        let values: [Value; 4] = [
            req.key.into(),
            req.end_from(req.now)?.into(),
            req.now.into(),
            format!("{} microseconds", req.span_micros).into(),
        ];
        let row = self.upsert_postgres(sql, values).await?;
        let end: DateTime<Utc> = row.try_get("", "next_free_at").map_err(db_err)?;
        let moved: i64 = row.try_get("", "moved_us").map_err(db_err)?;
        let first = end.checked_sub_signed(req.span).ok_or_else(|| {
            Error::Internal(format!(
                "send budget `{}` returned an out-of-range time {end}",
                req.key
            ))
        })?;
        Ok(Slots {
            first,
            moved: micros(moved),
        })
    }

    /// SQLite: write first, then read and update, in one transaction (see the module docs).
    async fn reserve_sqlite(&self, req: &Request<'_>) -> Result<Slots> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let create = Query::insert()
            .into_table(Entity)
            .columns([Column::Key, Column::NextFreeAt, Column::UpdatedAt])
            .values_panic([req.key.into(), req.now.into(), req.now.into()])
            .on_conflict(OnConflict::column(Column::Key).do_nothing().to_owned())
            .to_owned();
        txn.execute(&create).await.map_err(db_err)?;
        let row = Entity::find_by_id(req.key.to_owned())
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| {
                Error::Internal(format!("send budget `{}` vanished while reserved", req.key))
            })?;
        let first = row.next_free_at.max(req.now);
        let end = req.end_from(first)?;
        Entity::update_many()
            .col_expr(Column::NextFreeAt, Expr::val(end))
            .col_expr(Column::UpdatedAt, Expr::val(req.now))
            .filter(Column::Key.eq(req.key))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(Slots {
            first,
            moved: micros(row.moved_us),
        })
    }

    /// PostgreSQL: one upsert (see the module documentation).
    async fn move_back_postgres(&self, mv: &Move<'_>) -> Result<i64> {
        let sql = "INSERT INTO send_budgets (key, next_free_at, updated_at, moved_us) \
                   VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (key) DO UPDATE \
                   SET next_free_at = GREATEST(send_budgets.next_free_at, EXCLUDED.updated_at) \
                           + GREATEST(0, $4 - (send_budgets.moved_us - $5)) \
                             * INTERVAL '1 microsecond', \
                       moved_us = send_budgets.moved_us \
                           + GREATEST(0, $4 - (send_budgets.moved_us - $5)), \
                       updated_at = EXCLUDED.updated_at \
                   RETURNING moved_us";
        let values: [Value; 5] = [
            mv.key.into(),
            (mv.now + TimeDelta::microseconds(mv.late)).into(),
            mv.now.into(),
            mv.late.into(),
            mv.then.into(),
        ];
        let row = self.upsert_postgres(sql, values).await?;
        row.try_get("", "moved_us").map_err(db_err)
    }

    /// SQLite: read and update in one transaction under the write lock.
    async fn move_back_sqlite(&self, mv: &Move<'_>) -> Result<i64> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let row = Entity::find_by_id(mv.key.to_owned())
            .one(&txn)
            .await
            .map_err(db_err)?;
        let (next, moved) = row.map_or((mv.now, 0), |r| (r.next_free_at, r.moved_us));
        let missing = Slots::still_to_move(micros(mv.late), micros(mv.then), micros(moved));
        // At most `late`, which is at most a day.
        let missing = i64::try_from(missing.as_micros()).unwrap_or(DAY_MICROS);
        if missing == 0 {
            return Ok(moved);
        }
        let next = next.max(mv.now) + TimeDelta::microseconds(missing);
        let upsert = Query::insert()
            .into_table(Entity)
            .columns([
                Column::Key,
                Column::NextFreeAt,
                Column::UpdatedAt,
                Column::MovedUs,
            ])
            .values_panic([
                mv.key.into(),
                next.into(),
                mv.now.into(),
                (moved + missing).into(),
            ])
            .on_conflict(
                OnConflict::column(Column::Key)
                    .update_columns([Column::NextFreeAt, Column::UpdatedAt, Column::MovedUs])
                    .to_owned(),
            )
            .to_owned();
        txn.execute(&upsert).await.map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(moved + missing)
    }
}

impl Store {
    /// PostgreSQL: one upsert (see the module documentation).
    async fn hold_postgres(
        &self,
        key: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO send_budgets (key, next_free_at, updated_at, held_until) \
                   VALUES ($1, $2, $3, $2) \
                   ON CONFLICT (key) DO UPDATE \
                   SET next_free_at = GREATEST(send_budgets.next_free_at, EXCLUDED.next_free_at), \
                       held_until = GREATEST(send_budgets.held_until, EXCLUDED.held_until), \
                       updated_at = EXCLUDED.updated_at \
                   RETURNING held_until";
        let values: [Value; 3] = [key.into(), until.into(), now.into()];
        self.upsert_postgres(sql, values).await.map(drop)
    }

    /// SQLite: read and upsert in one transaction under the write lock.
    async fn hold_sqlite(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let row = Entity::find_by_id(key.to_owned())
            .one(&txn)
            .await
            .map_err(db_err)?;
        let (next, held, moved) = row.map_or((until, until, 0), |r| {
            (
                r.next_free_at.max(until),
                r.held_until.map_or(until, |h| h.max(until)),
                r.moved_us,
            )
        });
        let upsert = Query::insert()
            .into_table(Entity)
            .columns([
                Column::Key,
                Column::NextFreeAt,
                Column::UpdatedAt,
                Column::MovedUs,
                Column::HeldUntil,
            ])
            .values_panic([
                key.into(),
                next.into(),
                now.into(),
                moved.into(),
                held.into(),
            ])
            .on_conflict(
                OnConflict::column(Column::Key)
                    .update_columns([Column::NextFreeAt, Column::UpdatedAt, Column::HeldUntil])
                    .to_owned(),
            )
            .to_owned();
        txn.execute(&upsert).await.map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }
}

/// A `move_back`, checked and in whole microseconds.
#[derive(Debug)]
struct Move<'a> {
    key: &'a str,
    now: DateTime<Utc>,
    late: i64,
    then: i64,
}

impl<'a> Move<'a> {
    fn new(key: &'a str, late: Duration, then: Duration, now: DateTime<Utc>) -> Result<Self> {
        Slots::check_key(key)?;
        let late = i64::try_from(late.as_nanos().div_ceil(1_000))
            .ok()
            .filter(|us| *us <= DAY_MICROS)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "send budget `{key}` cannot be moved back by {late:?}: at most a day"
                ))
            })?;
        Ok(Move {
            key,
            now: ceil_micros(now),
            late,
            then: i64::try_from(then.as_micros()).map_err(|_| {
                Error::Invalid(format!(
                    "send budget `{key}`: moved {then:?} is out of range"
                ))
            })?,
        })
    }
}

/// A day in microseconds: the longest single move accepted.
const DAY_MICROS: i64 = 86_400_000_000;

/// Microseconds as a duration (negative ones, which no write produces, as zero).
fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
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
        let slots = if self.is_sqlite() {
            self.reserve_sqlite(&req).await?
        } else {
            self.reserve_postgres(&req).await?
        };
        tracing::trace!(first = %slots.first, "reserved send budget slots");
        Ok(slots)
    }

    #[tracing::instrument(skip(self))]
    async fn move_back(
        &self,
        key: &str,
        late: Duration,
        moved_then: Duration,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        let mv = Move::new(key, late, moved_then, now)?;
        let moved = if self.is_sqlite() {
            self.move_back_sqlite(&mv).await?
        } else {
            self.move_back_postgres(&mv).await?
        };
        tracing::debug!(
            ?moved,
            "moved the send budget's slots back after a late answer"
        );
        Ok(micros(moved))
    }

    #[tracing::instrument(skip(self))]
    async fn hold(&self, key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        Slots::check_key(key)?;
        let until = ceil_micros(until);
        let now = ceil_micros(now);
        if self.is_sqlite() {
            self.hold_sqlite(key, until, now).await
        } else {
            self.hold_postgres(key, until, now).await
        }
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
        assert_eq!(req.span_micros, 3 * 33_334);
        assert_eq!(req.span, TimeDelta::microseconds(100_002));
    }
}
