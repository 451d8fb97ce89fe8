//! `launch` and `memory`: materialising the recipients of a large audience with `broadcast
//! launch`, then delivering that broadcast with one e-mail worker and watching its peak RSS.

use serde_json::Value;

use crate::email::{EMAIL_TUNED_ROW, deliver_email, tuned_text};
use crate::measure::measure;
use crate::naive::naive;
use crate::report::{Row, fmt_opt, group, median, median_usage, ratio};
use crate::setup::{Backend, Env, backends};
use crate::{Plan, Res};

pub(crate) fn scenario_launch_and_memory(
    env: &Env,
    plan: &Plan,
    launch: bool,
    memory: bool,
) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    // The memory scenario delivers the broadcast of the last SQLite launch.
    let mut for_memory = None;
    for backend in backends(env) {
        if !launch && backend == Backend::Postgres {
            continue;
        }
        let n = plan.launch_n;
        let base = env.make_base(backend, n, true)?;
        let runs = match (launch, backend) {
            (false, _) => 1,
            (true, Backend::Sqlite) => plan.runs,
            (true, Backend::Postgres) => plan.pg_runs,
        };
        let mut usages = Vec::new();
        let mut rates = Vec::new();
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            let u = measure(env.launch_cmd(&db, id), env.ticks)?;
            if !u.ok {
                return Err(format!("launch failed: {}", u.stderr));
            }
            let v: Value = serde_json::from_str(u.stdout.trim()).unwrap_or(Value::Null);
            let written = v["materialised"]["inserted"].as_u64().unwrap_or(0);
            eprintln!(
                "  launch {run} on {}: {written} rows in {:.2} s",
                backend.name(),
                u.wall.as_secs_f64()
            );
            rates.push(written as f64 / u.wall.as_secs_f64());
            usages.push(u);
            if backend == Backend::Sqlite && memory {
                if let Some((old, _)) = for_memory.replace((db, id)) {
                    env.drop_db(&old);
                }
            } else {
                env.drop_db(&db);
            }
        }
        if launch {
            let u = median_usage(&usages);
            // Naive: one INSERT per recipient, each its own transaction.
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            let naive_rate = naive(env, "launch", &db, id, plan.naive_launch_n, &[])
                .map(|(r, _)| r)
                .unwrap_or(f64::NAN);
            env.drop_db(&db);
            let target = if backend == Backend::Sqlite { 5.0 } else { 8.0 };
            let mut row = Row::new(
                format!("launch: materialise recipients ({})", backend.name()),
                n,
            )
            .usage(&u);
            row.rate = Some(median(rates));
            row.unit = "rows/s";
            row.target = format!("≤ {target:.0} s");
            row.met = Some(u.wall.as_secs_f64() <= target);
            row.ratio = ratio(row.rate.unwrap_or(f64::NAN), naive_rate);
            row.note = format!(
                "median of {runs}; whole `broadcast launch --yes` process (no confirmation \
                 count); naive {} rows/s",
                fmt_opt(Some(naive_rate), 0)
            );
            rows.push(row);
        }
        env.drop_base(&base);
    }
    if let Some((db, id)) = for_memory {
        let (u, delivered) = deliver_email(env, &db, id, true)?;
        env.drop_db(&db);
        let mut row = Row::new(MEMORY_BIG, delivered).usage(&u);
        row.rate = Some(delivered as f64 / u.wall.as_secs_f64());
        row.unit = "msg/s";
        row.target = "peak RSS ≤ 64 MB, ≤ 1.2 × the smaller run".into();
        row.note = format!(
            "the broadcast of the launch scenario; `worker --once` with {}; {:.0} µs CPU/msg",
            tuned_text(),
            u.cpu / delivered.max(1) as f64 * 1e6
        );
        rows.push(row);
    }
    Ok(rows)
}

const MEMORY_BIG: &str = "memory: e-mail worker, large broadcast, tuned (SQLite)";

/// Sets the memory row's verdict from the two e-mail runs' peak RSS.
pub(crate) fn compare_memory(rows: &mut [Row]) {
    let small = rows
        .iter()
        .find(|r| r.scenario == EMAIL_TUNED_ROW)
        .and_then(|r| Some((r.rss_mb?, r.n)));
    if let Some(big) = rows.iter_mut().find(|r| r.scenario == MEMORY_BIG)
        && let Some(rss) = big.rss_mb
    {
        match small {
            Some((small_rss, small_n)) => {
                big.met = Some(rss <= 64.0 && rss <= 1.2 * small_rss);
                big.ratio = Some(format!(
                    "{:.2}x RSS of N={}",
                    rss / small_rss,
                    group(small_n)
                ));
            }
            None => big.met = Some(rss <= 64.0),
        }
    }
}
