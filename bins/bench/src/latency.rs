//! `latency`: from `broadcast launch` to the first message at `fake-telegram`, with a worker
//! already running and idle.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::measure::Service;
use crate::report::{Row, median};
use crate::setup::{Backend, Env};
use crate::telegram::{fake_stats, telegram_env};
use crate::{Plan, Res, err};

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

pub(crate) fn scenario_latency(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let base = env.make_base(Backend::Sqlite, plan.latency_n, false)?;
    let mut latencies = Vec::new();
    for run in 0..plan.latency_runs {
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "telegram")?;
        let (fake, addr) = Service::start(Command::new(env.exe("fake-telegram")), "fake-telegram")?;
        let mut worker = env.cli(&db.url, &telegram_env(&format!("http://{addr}"), false));
        worker
            .arg("worker")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        let mut worker = worker.spawn().map_err(err)?;
        // Wait until the worker is up (it announces itself on stderr), then a little longer so
        // that it sits in its idle wait, as a worker normally does.
        let mut lines = BufReader::new(worker.stderr.take().ok_or("no stderr")?);
        let mut line = String::new();
        while lines.read_line(&mut line).map_err(err)? > 0 && !line.contains("started") {
            line.clear();
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        std::thread::sleep(Duration::from_millis(700 + 137 * run as u64));
        let t0 = SystemTime::now();
        env.launch(&db, id)?;
        let launched = SystemTime::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut first = None;
        while Instant::now() < deadline {
            let before = SystemTime::now();
            let stats = fake_stats(&addr)?;
            if let Some(first_ms) = stats["first_ms"].as_f64() {
                let after = SystemTime::now();
                // The fake's clock started at (request time - uptime); take the midpoint.
                let mid = (unix_ms(before) + unix_ms(after)) / 2.0;
                let started = mid - stats["uptime_ms"].as_f64().unwrap_or(0.0);
                first = Some(started + first_ms - unix_ms(t0));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = worker.kill();
        let _ = worker.wait();
        drop(fake);
        env.drop_db(&db);
        let latency = first.ok_or("no message arrived within 10 s")?;
        eprintln!(
            "  latency {run}: {latency:.0} ms (launch command {:.0} ms)",
            unix_ms(launched) - unix_ms(t0)
        );
        latencies.push(latency);
    }
    env.drop_base(&base);
    let ms = median(latencies.clone());
    let mut row = Row::new(
        "latency: `broadcast launch` to first Telegram message",
        plan.latency_n,
    );
    row.wall = Some(ms / 1000.0);
    row.unit = "ms";
    row.target = "≤ 100 ms".into();
    row.met = Some(ms <= 100.0);
    row.note = format!(
        "median of {} ({}); a `worker` already running, idle",
        latencies.len(),
        latencies
            .iter()
            .map(|l| format!("{l:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(vec![row])
}
