//! `email`: one `broadcast-cli worker --once` delivering to `fake-smtp`, with the default
//! settings and tuned ones.

use std::process::Command;

use broadcast_domain::DeliveryStatus;

use crate::measure::{Service, Usage, measure};
use crate::naive::naive;
use crate::report::{Row, fmt_opt, median_usage, ratio};
use crate::setup::{Backend, Env, PUBLIC_URL, RunDb, SECRET};
use crate::{Plan, Res};

const EMAIL_ROW: &str = "e-mail to fake-smtp, 1 worker, defaults (SQLite)";
pub(crate) const EMAIL_TUNED_ROW: &str = "e-mail to fake-smtp, 1 worker, tuned (SQLite)";

/// Settings of the "tuned" e-mail runs: more SMTP connections and larger claims than the
/// defaults (4 connections, 200 rows per claim).
const TUNED: [(&str, &str); 3] = [
    ("SMTP_POOL_SIZE", "32"),
    ("WORKER_CONCURRENCY", "32"),
    ("BATCH_SIZE", "1000"),
];

pub(crate) fn tuned_text() -> String {
    TUNED
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn smtp_env(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", port.to_owned()),
        ("SMTP_TLS", "none".to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_URL.to_owned()),
        ("ADMIN_SECRET_KEY", SECRET.to_owned()),
    ]
}

/// Delivers a launched e-mail broadcast with one `worker --once` to a fresh fake-smtp; returns
/// the worker's usage and the number of messages the sink accepted.
pub(crate) fn deliver_email(env: &Env, db: &RunDb, id: i64, tuned: bool) -> Res<(Usage, u64)> {
    let (sink, addr) = Service::start(Command::new(env.exe("fake-smtp")), "fake-smtp")?;
    let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
    let mut extra = smtp_env(&port);
    if tuned {
        extra.extend(TUNED.iter().map(|(k, v)| (*k, (*v).to_owned())));
    }
    let mut cmd = env.cli(&db.url, &extra);
    cmd.args(["worker", "--once"]);
    let u = measure(cmd, env.ticks)?;
    drop(sink);
    if !u.ok {
        return Err(format!("worker failed: {}", u.stderr));
    }
    let sent = env.count_status(db, id, DeliveryStatus::Sent)?;
    Ok((u, sent))
}

pub(crate) fn scenario_email(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let base = env.make_base(Backend::Sqlite, plan.email_n, true)?;
    let mut rows = Vec::new();
    // Naive: one message at a time over one SMTP connection.
    let naive_rate = {
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "email")?;
        env.launch(&db, id)?;
        let (sink, addr) = Service::start(Command::new(env.exe("fake-smtp")), "fake-smtp")?;
        let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
        let rate = naive(
            env,
            "deliver",
            &db,
            id,
            plan.naive_email_n,
            &["--smtp-port", &port],
        )
        .map(|(r, _)| r)
        .unwrap_or(f64::NAN);
        drop(sink);
        env.drop_db(&db);
        rate
    };
    for (tuned, runs) in [(false, plan.runs), (true, 1)] {
        let mut usages = Vec::new();
        let mut delivered = 0;
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            env.launch(&db, id)?;
            let (u, sent) = deliver_email(env, &db, id, tuned)?;
            eprintln!(
                "  e-mail {run}{}: {sent} in {:.2} s",
                if tuned { " tuned" } else { "" },
                u.wall.as_secs_f64()
            );
            delivered = sent;
            usages.push(u);
            env.drop_db(&db);
        }
        let u = median_usage(&usages);
        let rate = delivered as f64 / u.wall.as_secs_f64();
        let cpu_us = u.cpu / delivered.max(1) as f64 * 1e6;
        let mut row =
            Row::new(if tuned { EMAIL_TUNED_ROW } else { EMAIL_ROW }, delivered).usage(&u);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = "≥ 20,000 msg/s; ≤ 40 µs CPU/msg; ≤ 5 s".into();
        row.met = Some(rate >= 20_000.0 && cpu_us <= 40.0 && u.wall.as_secs_f64() <= 5.0);
        row.ratio = ratio(rate, naive_rate);
        row.note = format!(
            "{}`worker --once` start to exit; {cpu_us:.0} µs CPU/msg; naive {} msg/s",
            if tuned {
                format!("{}; ", tuned_text())
            } else {
                format!("median of {runs}; ")
            },
            fmt_opt(Some(naive_rate), 0)
        );
        rows.push(row);
    }
    env.drop_base(&base);
    Ok(rows)
}
