//! `telegram`: workers delivering to `fake-telegram`, which enforces the Bot API's limits, on
//! the free (30/s) and paid (1000/s) limits.

use std::process::Command;

use serde_json::Value;

use crate::http::http_get;
use crate::measure::{Service, measure_all};
use crate::naive::naive;
use crate::report::{Row, fmt_opt, ratio};
use crate::setup::{BOT_TOKEN, Backend, Env};
use crate::{Plan, Res, err};

pub(crate) fn telegram_env(api: &str, paid: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("TELEGRAM_API_URL", api.to_owned()),
    ];
    if paid {
        v.push(("TELEGRAM_PAID_BROADCAST", "true".to_owned()));
    }
    v
}

pub(crate) fn fake_stats(addr: &str) -> Res<Value> {
    let (status, body) = http_get(addr, "/_fake/stats", &[])?;
    if status != 200 {
        return Err(format!("fake-telegram stats: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(err)
}

/// The Telegram rows: the free limit (30/s) when `free`, and the paid limit (1000/s).
pub(crate) fn scenario_telegram(env: &Env, plan: &Plan, free: bool) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    let mut configs = vec![
        (Backend::Sqlite, 1usize, false, plan.tg_free_n, 30.0),
        (Backend::Sqlite, 1, true, plan.tg_paid_n, 1000.0),
    ];
    if env.postgres {
        configs.push((Backend::Postgres, 3, false, plan.tg_free_n, 30.0));
        configs.push((Backend::Postgres, 3, true, plan.tg_paid_n, 1000.0));
    }
    configs.retain(|(_, _, paid, _, _)| free || *paid);
    let mut naive_rate = None;
    for (backend, workers, paid, n, limit) in configs {
        let base = env.make_base(backend, n, false)?;
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "telegram")?;
        env.launch(&db, id)?;
        let mut server = Command::new(env.exe("fake-telegram"));
        if let Ok(ms) = std::env::var("BENCH_TELEGRAM_DELAY_MS") {
            server.args(["--delay", &ms]);
        }
        let (fake, addr) = Service::start(server, "fake-telegram")?;
        let api = format!("http://{addr}");
        let cmds = (0..workers)
            .map(|w| {
                let mut extra = telegram_env(&api, paid);
                extra.push(("WORKER_ID", format!("bench-tg-{w}")));
                let mut c = env.cli(&db.url, &extra);
                c.args(["worker", "--once"]);
                c
            })
            .collect();
        let usages = measure_all(cmds, env.ticks)?;
        let stats = fake_stats(&addr)?;
        drop(fake);
        if let Some(bad) = usages.iter().find(|u| !u.ok) {
            return Err(format!("telegram worker failed: {}", bad.stderr));
        }
        if env.passthrough.iter().any(|(k, _)| k == "LOG") {
            let dir = env.root.join("target/bench-logs");
            std::fs::create_dir_all(&dir).map_err(err)?;
            for (w, usage) in usages.iter().enumerate() {
                let name = format!("telegram-{limit:.0}-{}-{w}.log", backend.name());
                std::fs::write(dir.join(name), &usage.stderr).map_err(err)?;
            }
        }
        let accepted = stats["accepted"].as_u64().unwrap_or(0);
        let span_ms =
            stats["last_ms"].as_f64().unwrap_or(0.0) - stats["first_ms"].as_f64().unwrap_or(0.0);
        // n messages span n - 1 intervals.
        let rate = (accepted.saturating_sub(1)) as f64 / (span_ms / 1000.0);
        let throttled = stats["throttled"].as_u64().unwrap_or(0);
        let wall = usages.iter().map(|u| u.wall).max().unwrap_or_default();
        let cpu: f64 = usages.iter().map(|u| u.cpu).sum();
        let rss = usages.iter().map(|u| u.rss_kb).max().unwrap_or(0);
        if naive_rate.is_none() && backend == Backend::Sqlite {
            // Naive: one message at a time, 50 ms pause between messages.
            let db2 = env.run_db(&base)?;
            let id2 = env.create_broadcast(&db2, "telegram")?;
            env.launch(&db2, id2)?;
            let (fake2, addr2) =
                Service::start(Command::new(env.exe("fake-telegram")), "fake-telegram")?;
            naive_rate = Some(
                naive(
                    env,
                    "deliver",
                    &db2,
                    id2,
                    plan.naive_tg_n,
                    &["--telegram", &format!("http://{addr2}")],
                )
                .map(|(r, _)| r)
                .unwrap_or(f64::NAN),
            );
            drop(fake2);
            env.drop_db(&db2);
        }
        env.drop_db(&db);
        env.drop_base(&base);
        let mut row = Row::new(
            format!(
                "Telegram {} limit {limit:.0}/s, {workers} worker{} ({})",
                if paid { "paid" } else { "free" },
                if workers > 1 { "s" } else { "" },
                backend.name()
            ),
            accepted,
        );
        row.wall = Some(wall.as_secs_f64());
        row.cpu = Some(cpu);
        row.rss_mb = Some(rss as f64 / 1024.0);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = format!("≥ 98 % of {limit:.0}/s, 0 × 429");
        row.met = Some(rate >= 0.98 * limit && throttled == 0 && accepted == n);
        row.ratio = naive_rate.and_then(|nr| ratio(rate, nr));
        row.note = format!(
            "{:.1} % of the limit; {throttled} × 429; max {} in any 1 s; naive {} msg/s",
            rate / limit * 100.0,
            stats["max_per_second"].as_u64().unwrap_or(0),
            fmt_opt(naive_rate, 1)
        );
        rows.push(row);
    }
    Ok(rows)
}
