//! The ledger's maintained counters (`broadcast_counts`): what statistics, `open_count` and
//! listing totals read instead of counting `broadcast_recipients`.
//!
//! A counter row holds, for one (broadcast, channel, status, error kind, skip reason), how many
//! ledger rows are in that state (`n`), how many uncertain sends those rows had in all
//! (`duplicates`, the sum of their `uncertain_sends`: sends whose outcome was unknown, or whose
//! lease expired after they started), and the first and last `sent_at` among them. `error_kind` is keyed only for
//! `failed` and `pending` rows (the statistics report error kinds of those two, see
//! `DeliveryStats::from_counts`); other statuses count under `''`, so a result never needs to
//! know the error kind a `sending` row had before. Missing values are `''`.
//!
//! **Every write of ledger rows changes the counters in the same statement or transaction:**
//!
//! - PostgreSQL, single statements (claims, results, cancel, requeue): the write becomes the
//!   `changed` CTE of one statement whose `counted` CTE adds its `RETURNING` rows to the counters
//!   ([`pg_with_counts`]): one round trip, atomic with the write.
//! - Both backends, transactions (SQLite claims and results, the e-mail fallback, results above
//!   one statement): the write returns its rows, [`CountChanges`] adds them up in Rust, and one
//!   upsert ([`CountChanges::statement`]) writes them before the commit.
//! - SQLite, large updates (cancel, requeue): the rows about to change are grouped first, under
//!   the write lock the transaction takes with its first statement, then updated.
//! - Launch (`broadcast-filter`): counts of the inserted rows, from the statement results.
//! - Deletes (cascades from `users` and `broadcasts`, manual SQL): a trigger (migration 6).
//!
//! **Contention and deadlocks (PostgreSQL).** Every key has up to [`SHARDS`] counter rows; a
//! statement writes to the shard of its server process (`pg_backend_pid() % 16`), so workers on
//! other connections do not wait for each other's counter rows, and readers add the shards up (a
//! shard's `n` may be negative; the sum is not). Each transaction writes the counters last,
//! after every ledger row it touches, in one statement, in key order (`COLLATE "C"`, the byte
//! order of Rust's `String`): a transaction that holds counter rows waits only for other counter
//! rows, taken in the same order, so no cycle of waits can form.

use std::collections::BTreeMap;

use broadcast_domain::{
    BroadcastId, ChannelKind, DeliveryStatus, Error, Result, SkipReason, StatusCount,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Func, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryResult, Statement, TransactionTrait, Value,
};

use crate::Store;
use crate::entity::broadcast_recipients::{Column, Entity};
use crate::entity::{broadcast_counts, broadcast_recipients};
use crate::error::db_err;

/// Counter rows per key on PostgreSQL (SQLite, with one writer, uses shard 0 only).
pub(crate) const SHARDS: i32 = 16;

/// The statuses whose error kind is part of the key.
const KEYED_ERROR_STATUSES: [DeliveryStatus; 2] = [DeliveryStatus::Failed, DeliveryStatus::Pending];

/// The key's error kind of a row in `status` with `error_kind`.
fn keyed_error_kind(status: &str, error_kind: Option<&str>) -> String {
    if KEYED_ERROR_STATUSES.iter().any(|s| s.as_str() == status) {
        error_kind.unwrap_or_default().to_owned()
    } else {
        String::new()
    }
}

/// SQL of [`keyed_error_kind`] over the columns `status` and `error_kind`.
fn keyed_error_kind_sql() -> String {
    let [a, b] = KEYED_ERROR_STATUSES.map(|s| s.as_str());
    format!("CASE WHEN status IN ('{a}', '{b}') THEN COALESCE(error_kind, '') ELSE '' END")
}

/// The counter columns an insert names, in order.
const COLUMNS: &str = "broadcast_id, shard, channel, status, error_kind, skip_reason, n, \
                       duplicates, first_sent_at, last_sent_at";

/// `ON CONFLICT` of every counter upsert (the target table is aliased `c`).
const MERGE: &str = "ON CONFLICT (broadcast_id, channel, status, error_kind, skip_reason, shard) \
    DO UPDATE SET n = c.n + excluded.n, duplicates = c.duplicates + excluded.duplicates, \
    first_sent_at = CASE WHEN c.first_sent_at IS NULL OR excluded.first_sent_at < c.first_sent_at \
    THEN excluded.first_sent_at ELSE c.first_sent_at END, \
    last_sent_at = CASE WHEN c.last_sent_at IS NULL OR excluded.last_sent_at > c.last_sent_at \
    THEN excluded.last_sent_at ELSE c.last_sent_at END";

/// The shard a statement writes to.
fn shard_sql(backend: DatabaseBackend) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("pg_backend_pid() % {SHARDS}"),
        _ => "0".to_owned(),
    }
}

/// `RETURNING` list of the ledger writes whose rows are counted, qualified so that it stays
/// unambiguous in `UPDATE ... FROM`.
pub(crate) const RETURNING: &str = "broadcast_recipients.broadcast_id AS broadcast_id, \
    broadcast_recipients.channel AS channel, broadcast_recipients.status AS status, \
    broadcast_recipients.error_kind AS error_kind, \
    broadcast_recipients.skip_reason AS skip_reason, \
    broadcast_recipients.uncertain_sends AS uncertain_sends, \
    broadcast_recipients.sent_at AS sent_at";

/// A ledger row as far as the counters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) broadcast: BroadcastId,
    pub(crate) channel: String,
    pub(crate) status: String,
    pub(crate) error_kind: Option<String>,
    pub(crate) skip_reason: Option<String>,
    pub(crate) uncertain_sends: i32,
    pub(crate) sent_at: Option<DateTime<Utc>>,
    /// What the write added to this row's `uncertain_sends` beyond the transition's own
    /// [`Transition::uncertain_bump`] (a result whose outcome is unknown adds 1).
    pub(crate) bump: i32,
}

impl Counted {
    pub(crate) fn of(m: &broadcast_recipients::Model) -> Counted {
        Counted {
            broadcast: m.broadcast_id,
            channel: m.channel.clone(),
            status: m.status.clone(),
            error_kind: m.error_kind.clone(),
            skip_reason: m.skip_reason.clone(),
            uncertain_sends: m.uncertain_sends,
            sent_at: m.sent_at,
            bump: 0,
        }
    }

    /// A row returned with [`RETURNING`].
    pub(crate) fn from_row(row: &QueryResult) -> Result<Counted> {
        Ok(Counted {
            sent_at: row.try_get("", "sent_at").map_err(db_err)?,
            ..Counted::key_from_row(row)?
        })
    }

    /// The columns that choose a row's counter, without `sent_at` (a grouped read has none).
    pub(crate) fn key_from_row(row: &QueryResult) -> Result<Counted> {
        Ok(Counted {
            broadcast: row.try_get("", "broadcast_id").map_err(db_err)?,
            channel: row.try_get("", "channel").map_err(db_err)?,
            status: row.try_get("", "status").map_err(db_err)?,
            error_kind: row.try_get("", "error_kind").map_err(db_err)?,
            skip_reason: row.try_get("", "skip_reason").map_err(db_err)?,
            uncertain_sends: row.try_get("", "uncertain_sends").map_err(db_err)?,
            sent_at: None,
            bump: 0,
        })
    }
}

/// How a write changed the rows it returns: what they were before, given what they are now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transition {
    /// The status the rows had; `None` for rows the write inserted.
    pub(crate) from: Option<DeliveryStatus>,
    /// What the write added to `uncertain_sends` of every row (1 when a claim took over an
    /// expired lease whose send had started).
    pub(crate) uncertain_bump: i32,
    /// The write added a different amount to each row, returned as the column `bump` of the
    /// changed rows (PostgreSQL) or set as [`Counted::bump`] (SQLite): results.
    pub(crate) row_bump: bool,
}

impl Transition {
    /// An update of rows that were in `from`.
    pub(crate) fn from(from: DeliveryStatus) -> Transition {
        Transition {
            from: Some(from),
            uncertain_bump: 0,
            row_bump: false,
        }
    }

    /// Rows inserted.
    pub(crate) const INSERT: Transition = Transition {
        from: None,
        uncertain_bump: 0,
        row_bump: false,
    };

    /// The row before the write (only the counted columns; the error kind and skip reason of
    /// the rows these writes change are not changed, or not keyed in the old status).
    fn before(&self, after: &Counted) -> Option<Counted> {
        let from = self.from?;
        Some(Counted {
            status: from.as_str().to_owned(),
            uncertain_sends: after.uncertain_sends - self.uncertain_bump - after.bump,
            sent_at: None,
            bump: 0,
            ..after.clone()
        })
    }

    /// PostgreSQL: the `counted` CTE, which adds the rows of the CTE `changed` (with the columns
    /// of [`RETURNING`]) to the counters and takes them out of their old keys.
    fn pg_counted(&self) -> String {
        let keyed = keyed_error_kind_sql();
        let shard = shard_sql(DatabaseBackend::Postgres);
        let mut rows = format!(
            "SELECT broadcast_id, channel, status, {keyed} AS error_kind, \
             COALESCE(skip_reason, '') AS skip_reason, 1 AS n, \
             uncertain_sends AS duplicates, sent_at \
             FROM changed"
        );
        if let Some(from) = self.from {
            let from = from.as_str();
            let from_keyed = if KEYED_ERROR_STATUSES.iter().any(|s| s.as_str() == from) {
                "COALESCE(error_kind, '')"
            } else {
                "''"
            };
            rows.push_str(&format!(
                " UNION ALL SELECT broadcast_id, channel, '{from}', {from_keyed}, \
                 COALESCE(skip_reason, ''), -1, \
                 -(uncertain_sends - {bump} - {row_bump}), NULL \
                 FROM changed",
                bump = self.uncertain_bump,
                row_bump = if self.row_bump { "bump" } else { "0" },
            ));
        }
        format!(
            "INSERT INTO broadcast_counts AS c ({COLUMNS}) \
             SELECT broadcast_id, {shard}, channel, status, error_kind, skip_reason, SUM(n), \
             SUM(duplicates), MIN(sent_at), MAX(sent_at) FROM ({rows}) AS d \
             GROUP BY broadcast_id, channel, status, error_kind, skip_reason \
             HAVING SUM(n) <> 0 OR SUM(duplicates) <> 0 OR MAX(sent_at) IS NOT NULL \
             ORDER BY broadcast_id, channel COLLATE \"C\", status COLLATE \"C\", \
             error_kind COLLATE \"C\", skip_reason COLLATE \"C\" {MERGE}"
        )
    }
}

/// PostgreSQL: one statement that runs `write` (an `INSERT` or `UPDATE` of ledger rows, without
/// `RETURNING`; `ctes` are `name AS (...)` definitions it uses), keeps the counters, and answers
/// `select` over the changed rows, the CTE `changed` with the columns `returning` (which must
/// include those of [`RETURNING`]), e.g. `SELECT COUNT(*) AS n FROM changed`.
pub(crate) fn pg_with_counts(
    ctes: &[String],
    write: &str,
    returning: &str,
    transition: Transition,
    select: &str,
) -> String {
    let mut with: String = ctes.iter().map(|c| format!("{c}, ")).collect();
    with.push_str(&format!(
        "changed AS ({write} RETURNING {returning}), counted AS ({counted})",
        counted = transition.pg_counted()
    ));
    format!("WITH {with} {select}")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    broadcast: BroadcastId,
    channel: String,
    status: String,
    error_kind: String,
    skip_reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Change {
    n: i64,
    duplicates: i64,
    first_sent_at: Option<DateTime<Utc>>,
    last_sent_at: Option<DateTime<Utc>>,
}

impl Change {
    fn is_noop(&self) -> bool {
        self.n == 0 && self.duplicates == 0 && self.last_sent_at.is_none()
    }
}

/// Changes to the counters, added up per key, written by one upsert in key order.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountChanges {
    by_key: BTreeMap<Key, Change>,
}

impl CountChanges {
    /// No changes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `rows` new ledger rows of `broadcast` in this state, without an error kind and with no
    /// expired lease (negative: that many fewer). What a launch writes.
    pub(crate) fn add(
        &mut self,
        broadcast: BroadcastId,
        channel: ChannelKind,
        status: DeliveryStatus,
        skip_reason: Option<SkipReason>,
        rows: i64,
    ) {
        let row = Counted {
            broadcast,
            channel: channel.as_str().to_owned(),
            status: status.as_str().to_owned(),
            error_kind: None,
            skip_reason: skip_reason.map(|r| r.as_str().to_owned()),
            uncertain_sends: 0,
            sent_at: None,
            bump: 0,
        };
        self.add_counted(&row, rows);
    }

    /// `rows` rows like `row` appeared (negative: disappeared).
    pub(crate) fn add_counted(&mut self, row: &Counted, rows: i64) {
        let key = Key {
            broadcast: row.broadcast,
            channel: row.channel.clone(),
            status: row.status.clone(),
            error_kind: keyed_error_kind(&row.status, row.error_kind.as_deref()),
            skip_reason: row.skip_reason.clone().unwrap_or_default(),
        };
        let change = self.by_key.entry(key).or_default();
        change.n += rows;
        change.duplicates += rows * i64::from(row.uncertain_sends);
        if rows > 0
            && let Some(at) = row.sent_at
        {
            change.first_sent_at = Some(change.first_sent_at.map_or(at, |f| f.min(at)));
            change.last_sent_at = Some(change.last_sent_at.map_or(at, |l| l.max(at)));
        }
    }

    /// A write changed a row to `after`, by `transition`.
    pub(crate) fn changed(&mut self, transition: Transition, after: &Counted) {
        if let Some(before) = transition.before(after) {
            self.add_counted(&before, -1);
        }
        self.add_counted(after, 1);
    }

    /// The upsert that applies the changes, in key order; `None` when nothing changes.
    pub(crate) fn statement(&self, backend: DatabaseBackend) -> Option<Statement> {
        let postgres = backend == DatabaseBackend::Postgres;
        let shard = shard_sql(backend);
        let mut values: Vec<Value> = Vec::new();
        let mut rows = Vec::new();
        for (key, change) in self.by_key.iter().filter(|(_, c)| !c.is_noop()) {
            let mut cells = vec![];
            let mut push = |v: Value, sql_type: &str| {
                values.push(v);
                cells.push(if postgres {
                    format!("CAST(${} AS {sql_type})", values.len())
                } else {
                    "?".to_owned()
                });
            };
            push(key.broadcast.into(), "BIGINT");
            push(key.channel.clone().into(), "TEXT");
            push(key.status.clone().into(), "TEXT");
            push(key.error_kind.clone().into(), "TEXT");
            push(key.skip_reason.clone().into(), "TEXT");
            push(change.n.into(), "BIGINT");
            push(change.duplicates.into(), "BIGINT");
            push(change.first_sent_at.into(), "TIMESTAMPTZ");
            push(change.last_sent_at.into(), "TIMESTAMPTZ");
            let [b, rest @ ..] = cells.as_slice() else {
                unreachable!("nine cells were pushed")
            };
            rows.push(format!("({b}, {shard}, {})", rest.join(", ")));
        }
        if rows.is_empty() {
            return None;
        }
        let sql = format!(
            "INSERT INTO broadcast_counts AS c ({COLUMNS}) VALUES {} {MERGE}",
            rows.join(", ")
        );
        Some(Statement::from_sql_and_values(backend, sql, values))
    }

    /// Applies the changes on `conn` (a transaction, normally).
    pub(crate) async fn apply<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        if let Some(stmt) = self.statement(conn.get_database_backend()) {
            conn.execute_raw(stmt).await.map_err(db_err)?;
        }
        Ok(())
    }
}

/// What the counters of one broadcast say, shards added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LedgerCounts {
    /// Rows per channel, status, error kind (failed and pending rows only) and skip reason;
    /// only keys with rows, ordered by channel, status, error kind and skip reason.
    pub counts: Vec<StatusCount>,
    /// Uncertain sends of the rows (the sum of their `uncertain_sends`).
    pub possible_duplicates: u64,
    /// The first delivery.
    pub first_sent_at: Option<DateTime<Utc>>,
    /// The last delivery.
    pub last_sent_at: Option<DateTime<Utc>>,
}

impl LedgerCounts {
    /// Rows in total.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.count).sum()
    }
}

fn garbage(column: &str, broadcast: BroadcastId, why: impl std::fmt::Display) -> Error {
    Error::Internal(format!(
        "the database holds an invalid value in broadcast_counts.{column} of broadcast \
         {broadcast}: {why}"
    ))
}

fn parse_key<T>(column: &str, broadcast: BroadcastId, raw: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|e| garbage(column, broadcast, e))
}

/// Reads the counters of `broadcast` (tens of rows). An unknown broadcast has none; callers
/// that must tell it from an empty one check that it exists.
pub(crate) async fn read<C: ConnectionTrait>(
    conn: &C,
    broadcast: BroadcastId,
) -> Result<LedgerCounts> {
    let models = broadcast_counts::Entity::find()
        .filter(broadcast_counts::Column::BroadcastId.eq(broadcast))
        .all(conn)
        .await
        .map_err(db_err)?;
    let mut out = LedgerCounts::default();
    let mut sums: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
    let mut duplicates = 0i64;
    for m in models {
        duplicates += m.duplicates;
        if let Some(at) = m.first_sent_at {
            out.first_sent_at = Some(out.first_sent_at.map_or(at, |f| f.min(at)));
        }
        if let Some(at) = m.last_sent_at {
            out.last_sent_at = Some(out.last_sent_at.map_or(at, |l| l.max(at)));
        }
        *sums
            .entry((m.channel, m.status, m.error_kind, m.skip_reason))
            .or_default() += m.n;
    }
    out.possible_duplicates = u64::try_from(duplicates).unwrap_or(0);
    for ((channel, status, error_kind, skip_reason), n) in sums {
        if n < 0 {
            // Only a write outside the store can do this; `Store::recount` repairs it.
            tracing::warn!(
                broadcast,
                channel,
                status,
                n,
                "negative ledger counter: rows were changed outside the store"
            );
        }
        if n <= 0 {
            continue;
        }
        out.counts.push(StatusCount {
            channel: ChannelKind::from_stored(&channel)
                .map_err(|e| garbage("channel", broadcast, e))?,
            status: status
                .parse()
                .map_err(|e| garbage("status", broadcast, e))?,
            error_kind: parse_key("error_kind", broadcast, &error_kind)?,
            skip_reason: parse_key("skip_reason", broadcast, &skip_reason)?,
            count: n.unsigned_abs(),
        });
    }
    Ok(out)
}

/// `DELETE` then `INSERT ... SELECT ... GROUP BY` of a broadcast's counters from its ledger
/// rows (shard 0).
pub(crate) fn recount_statements(
    backend: DatabaseBackend,
    broadcast: BroadcastId,
) -> [Statement; 2] {
    let keyed = keyed_error_kind_sql();
    let delete = Statement::from_sql_and_values(
        backend,
        match backend {
            DatabaseBackend::Postgres => "DELETE FROM broadcast_counts WHERE broadcast_id = $1",
            _ => "DELETE FROM broadcast_counts WHERE broadcast_id = ?",
        },
        [broadcast.into()],
    );
    let param = if backend == DatabaseBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let insert = Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO broadcast_counts ({COLUMNS}) \
             SELECT broadcast_id, 0, channel, status, {keyed}, COALESCE(skip_reason, ''), \
             COUNT(*), SUM(uncertain_sends), MIN(sent_at), \
             MAX(sent_at) FROM broadcast_recipients WHERE broadcast_id = {param} \
             GROUP BY broadcast_id, channel, status, {keyed}, COALESCE(skip_reason, '')"
        ),
        [broadcast.into()],
    );
    [delete, insert]
}

impl Store {
    /// Sets `status = to` and the `set` columns on the ledger rows matching `rows` (all in
    /// status `transition.from`, none sent, `set` adding `transition.uncertain_bump` to
    /// `uncertain_sends`) and moves their counts, atomically. Returns how many rows changed.
    ///
    /// PostgreSQL: one statement (`pg_with_counts`). SQLite: one transaction that takes the write
    /// lock with its first statement, groups the rows that `rows` matches, updates them and
    /// writes the counters; nothing else can write in between.
    pub(crate) async fn update_counted(
        &self,
        rows: Condition,
        transition: Transition,
        to: DeliveryStatus,
        set: Vec<(Column, Expr)>,
    ) -> Result<u64> {
        let mut update = Query::update();
        update.table(Entity).value(Column::Status, to.as_str());
        for (column, value) in set {
            update.value(column, value);
        }
        update.cond_where(rows.clone());
        let backend = self.backend();
        let stmt = backend.build(&update);
        let values = stmt.values.map(|v| v.0).unwrap_or_default();
        if backend == DatabaseBackend::Postgres {
            let sql = pg_with_counts(
                &[],
                &stmt.sql,
                RETURNING,
                transition,
                "SELECT COUNT(*) AS n FROM changed",
            );
            let row = self
                .conn()
                .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .map_err(db_err)?
                .ok_or_else(|| Error::Internal("a count returned no row".into()))?;
            let n: i64 = row.try_get("", "n").map_err(db_err)?;
            return Ok(u64::try_from(n).unwrap_or(0));
        }

        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        // A write that changes nothing: it takes the write lock before anything is read.
        txn.execute_unprepared("UPDATE broadcast_counts SET n = n WHERE 1 = 0")
            .await
            .map_err(db_err)?;
        let columns = [
            Column::BroadcastId,
            Column::Channel,
            Column::Status,
            Column::ErrorKind,
            Column::SkipReason,
            Column::UncertainSends,
        ];
        let group = Query::select()
            .columns(columns)
            .expr_as(Func::count(Expr::col(Column::Id)), Alias::new("rows"))
            .from(Entity)
            .cond_where(rows)
            .group_by_columns(columns)
            .to_owned();
        let mut changes = CountChanges::new();
        for row in txn.query_all(&group).await.map_err(db_err)? {
            let mut counted = Counted::key_from_row(&row)?;
            let n: i64 = row.try_get("", "rows").map_err(db_err)?;
            changes.add_counted(&counted, -n);
            counted.status = to.as_str().to_owned();
            counted.uncertain_sends += transition.uncertain_bump;
            changes.add_counted(&counted, n);
        }
        let n = txn
            .execute_raw(Statement::from_sql_and_values(backend, stmt.sql, values))
            .await
            .map_err(db_err)?
            .rows_affected();
        changes.apply(&txn).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(n)
    }

    /// Rebuilds the counters of `broadcast` from its ledger rows (a full read of them): a repair
    /// for rows written outside the store (manual SQL), never needed otherwise. Run it while no
    /// worker delivers the broadcast: on PostgreSQL a worker's write that commits during the
    /// recount may be counted twice or not at all.
    #[tracing::instrument(skip(self))]
    pub async fn recount(&self, broadcast: BroadcastId) -> Result<()> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.conn().begin().await.map_err(db_err)?;
        for stmt in recount_statements(self.backend(), broadcast) {
            txn.execute_raw(stmt).await.map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        self.ensure_broadcast(broadcast).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, error_kind: Option<&str>, uncertain_sends: i32) -> Counted {
        Counted {
            broadcast: 1,
            channel: "email".into(),
            status: status.into(),
            error_kind: error_kind.map(Into::into),
            skip_reason: None,
            uncertain_sends,
            sent_at: None,
            bump: 0,
        }
    }

    #[test]
    fn transitions_move_rows_between_keys() {
        let mut c = CountChanges::new();
        // A pending row retried before, claimed: out of (pending, transient), into (sending, '').
        c.changed(
            Transition::from(DeliveryStatus::Pending),
            &row("sending", Some("transient"), 0),
        );
        // A takeover of an expired lease: same key, one more possible duplicate.
        c.changed(
            Transition {
                from: Some(DeliveryStatus::Sending),
                uncertain_bump: 1,
                row_bump: false,
            },
            &row("sending", None, 1),
        );
        // A second takeover of the same row is one more uncertain send.
        c.changed(
            Transition {
                from: Some(DeliveryStatus::Sending),
                uncertain_bump: 1,
                row_bump: false,
            },
            &row("sending", None, 2),
        );
        let got: Vec<_> = c
            .by_key
            .iter()
            .filter(|(_, v)| !v.is_noop())
            .map(|(k, v)| (k.status.as_str(), k.error_kind.as_str(), v.n, v.duplicates))
            .collect();
        assert_eq!(
            got,
            [("pending", "transient", -1, 0), ("sending", "", 1, 2)]
        );
        let stmt = c.statement(DatabaseBackend::Sqlite).expect("a statement");
        assert_eq!(stmt.values.map(|v| v.0.len()), Some(18), "two rows of nine");
        assert!(
            CountChanges::new()
                .statement(DatabaseBackend::Postgres)
                .is_none()
        );
    }

    #[test]
    fn error_kinds_are_keyed_for_failed_and_pending_rows_only() {
        assert_eq!(keyed_error_kind("failed", Some("blocked")), "blocked");
        assert_eq!(keyed_error_kind("pending", None), "");
        assert_eq!(keyed_error_kind("cancelled", Some("transient")), "");
        assert_eq!(keyed_error_kind("sending", Some("transient")), "");
    }
}
