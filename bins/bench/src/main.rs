//! `bench`: the benchmark driver behind `just bench` (see `docs/performance.md`).
//!
//! It runs every scenario of the performance issue on this machine and prints one table:
//! scenario, N, wall time, rate, CPU seconds, peak RSS, target, and the ratio to a naive sender
//! measured in the same run.
//!
//! - **Whole-process scenarios** run the release `broadcast-cli` (launch, `worker --once`)
//!   against the fakes started as separate processes (`fake-smtp`, `fake-telegram`).
//! - **In-process scenarios** run this binary again as a child: `bench engine` (the
//!   orchestrator with the real store and a channel that accepts instantly) and `bench naive`
//!   (one message at a time, no batching, no concurrency, 50 ms between Telegram messages).
//! - **Render** runs the criterion bench of `broadcast-render` and reads its medians.
//!
//! Measuring a child: wall time from spawn to exit; CPU seconds from this process's
//! `cutime + cstime` (`/proc/self/stat`, fields 16-17: the CPU of reaped children) read before
//! the spawn and after the child is reaped, so it is exact and includes the child's own
//! children; peak RSS from `VmHWM` in `/proc/<pid>/status`, sampled every 10 ms while the
//! child runs (the kernel's high-water mark, so a peak between samples is still seen at the
//! next sample; only growth in the last 10 ms before exit could be missed). The in-process
//! children also report their delivery phase alone (reset of `VmHWM` through
//! `/proc/self/clear_refs`, CPU from `/proc/self/stat`), which the table shows.
//!
//! Usage: `bench [quick|full] [--only NAME,...] [--runs N] [--json FILE]`; `NAME` is one of
//! `launch`, `engine`, `email`, `telegram`, `telegram-paid` (its 1000/s rows alone), `latency`,
//! `memory`, `render`, `admin`. Environment:
//! `TEST_DATABASE_URL` (PostgreSQL server, default `postgres://postgres@127.0.0.1:5432/test`;
//! unreachable: PostgreSQL rows say so), `BATCH_SIZE` / `WORKER_CONCURRENCY` / `SMTP_POOL_SIZE` /
//! `TELEGRAM_PACING_MARGIN_MS` (passed to the workers and the engine when set), `LOG` (the workers' log filter, `warn` by
//! default; their log is then kept in `target/bench-logs/`), `BENCH_TELEGRAM_DELAY_MS` (the
//! fake Bot API's one-way delay in the `telegram` scenarios, as far away as Telegram is).
//!
//! Modules: one per scenario (`render`, `launch` with `memory`, `engine`, `email`, `telegram`,
//! `latency`, `admin`) and the baseline (`naive`); `engine` and `naive` hold both the driver's
//! side and the child's. Shared: `setup` (databases, `broadcast-cli`, secrets), `measure`
//! (`/proc`, helper processes), `http` (a small client), `report` (rows and the table), `timed`
//! (the store of `bench engine`, timing each call).

mod admin;
mod email;
mod engine;
mod http;
mod latency;
mod launch;
mod measure;
mod naive;
mod render;
mod report;
mod setup;
mod telegram;
mod timed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use serde_json::json;

use crate::admin::scenario_admin;
use crate::email::scenario_email;
use crate::engine::{child_engine, scenario_engine};
use crate::latency::scenario_latency;
use crate::launch::{compare_memory, scenario_launch_and_memory};
use crate::measure::clock_ticks;
use crate::naive::child_naive;
use crate::render::scenario_render;
use crate::report::{Row, table};
use crate::setup::Env;
use crate::telegram::scenario_telegram;

const USAGE: &str = "usage: bench [quick|full] [--only NAME,...] [--runs N] [--json FILE] [--check]
       bench engine --database-url URL --broadcast ID
       bench naive launch|deliver --database-url URL --broadcast ID --n N [--telegram URL | --smtp-port P]
NAME: launch engine email telegram telegram-paid latency memory render admin
(`telegram-paid`: only the 1000/s rows of `telegram`)
--check: exit 1 when a measured row misses its target (e.g. `--only telegram --check`)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("engine") => child_engine(&args[1..]),
        Some("naive") => child_naive(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => driver(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn runtime() -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)
}

/// `--name value` pairs.
fn options(args: &[String]) -> Res<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument `{a}`\n{USAGE}"));
        };
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(out)
}

fn required<'a>(opts: &'a BTreeMap<String, String>, name: &str) -> Res<&'a str> {
    opts.get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
}

fn number<T: std::str::FromStr>(raw: &str, what: &str) -> Res<T> {
    raw.parse()
        .map_err(|_| format!("{what}: `{raw}` is not a number"))
}

#[derive(Debug, Clone)]
struct Plan {
    mode: &'static str,
    /// Runs of each SQLite scenario (the median is reported).
    runs: usize,
    /// Runs of the slow PostgreSQL launch and engine scenarios.
    pg_runs: usize,
    launch_n: u64,
    engine_n: u64,
    email_n: u64,
    tg_free_n: u64,
    tg_paid_n: u64,
    latency_runs: usize,
    latency_n: u64,
    naive_launch_n: u64,
    naive_deliver_n: u64,
    naive_email_n: u64,
    naive_tg_n: u64,
    admin_seconds: u64,
}

impl Plan {
    fn full() -> Self {
        Plan {
            mode: "full",
            runs: 3,
            pg_runs: 1,
            launch_n: 1_000_000,
            engine_n: 200_000,
            email_n: 100_000,
            tg_free_n: 3_000,
            tg_paid_n: 30_000,
            latency_runs: 5,
            latency_n: 1_000,
            naive_launch_n: 20_000,
            naive_deliver_n: 1_000,
            naive_email_n: 2_000,
            naive_tg_n: 100,
            admin_seconds: 10,
        }
    }

    fn quick() -> Self {
        Plan {
            mode: "quick",
            runs: 1,
            pg_runs: 1,
            launch_n: 100_000,
            engine_n: 20_000,
            email_n: 10_000,
            tg_free_n: 300,
            tg_paid_n: 3_000,
            latency_runs: 3,
            latency_n: 1_000,
            naive_launch_n: 2_000,
            naive_deliver_n: 300,
            naive_email_n: 500,
            naive_tg_n: 40,
            admin_seconds: 3,
        }
    }
}

const ALL: [&str; 9] = [
    "render",
    "launch",
    "engine",
    "email",
    "memory",
    "telegram",
    "telegram-paid",
    "latency",
    "admin",
];

fn driver(args: &[String]) -> Res<()> {
    let mut plan = Plan::full();
    let mut only: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
    let mut json_out = None;
    let mut check = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "full" => plan = Plan::full(),
            "quick" => plan = Plan::quick(),
            "--only" => {
                let v = it.next().ok_or("--only needs a value")?;
                only = v.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = only.iter().find(|s| !ALL.contains(&s.as_str())) {
                    return Err(format!("unknown scenario `{bad}`\n{USAGE}"));
                }
            }
            "--runs" => {
                plan.runs = number(it.next().ok_or("--runs needs a value")?, "--runs")?;
                plan.pg_runs = plan.runs;
            }
            "--json" => json_out = Some(PathBuf::from(it.next().ok_or("--json needs a file")?)),
            "--check" => check = true,
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let exe = std::env::current_exe().map_err(err)?;
    let exe_dir = exe.parent().ok_or("no executable directory")?.to_path_buf();
    for bin in ["broadcast-cli", "fake-smtp", "fake-telegram"] {
        if !exe_dir.join(bin).exists() {
            return Err(format!(
                "{} is missing: run `cargo build --release -p broadcast-cli -p broadcast-testkit \
                 -p broadcast-bench --bins` (or `just bench`)",
                exe_dir.join(bin).display()
            ));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .map_err(err)?;
    let server_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| broadcast_testkit::db::DEFAULT_TEST_DATABASE_URL.to_owned());
    let rt = runtime()?;
    let postgres = rt.block_on(async {
        sea_orm::Database::connect(server_url.as_str())
            .await
            .is_ok()
    });
    if !postgres {
        eprintln!(
            "!!! PostgreSQL at {} is unreachable: its scenarios are not measured",
            broadcast_migration::redact_url(&server_url)
        );
    }
    let passthrough = [
        "BATCH_SIZE",
        "WORKER_CONCURRENCY",
        "SMTP_POOL_SIZE",
        "TELEGRAM_PACING_MARGIN_MS",
        "LOG",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
    .collect();
    let env = Env {
        exe_dir,
        root,
        work: tempfile::Builder::new()
            .prefix("broadcast-bench-")
            .tempdir()
            .map_err(err)?,
        server_url,
        postgres,
        ticks: clock_ticks(),
        rt,
        passthrough,
    };

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let wants = |s: &str| only.iter().any(|o| o == s);
    type Section<'a> = Box<dyn Fn(&Env, &Plan) -> Res<Vec<Row>> + 'a>;
    let mut sections: Vec<(&str, Section<'_>)> = Vec::new();
    if wants("render") {
        sections.push(("render", Box::new(scenario_render)));
    }
    if wants("launch") || wants("memory") {
        let (launch, memory) = (wants("launch"), wants("memory"));
        sections.push((
            "launch",
            Box::new(move |e, p| scenario_launch_and_memory(e, p, launch, memory)),
        ));
    }
    if wants("engine") {
        sections.push(("engine", Box::new(scenario_engine)));
    }
    if wants("email") || wants("memory") {
        sections.push(("email", Box::new(scenario_email)));
    }
    if wants("telegram") || wants("telegram-paid") {
        let free = wants("telegram");
        sections.push((
            "telegram",
            Box::new(move |e, p| scenario_telegram(e, p, free)),
        ));
    }
    if wants("latency") {
        sections.push(("latency", Box::new(scenario_latency)));
    }
    if wants("admin") {
        sections.push(("admin", Box::new(scenario_admin)));
    }
    for (name, run) in sections {
        eprintln!(
            "== {name} ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        match run(&env, &plan) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("   {name} failed: {e}");
                rows.push(Row::not_measured(name, 0, format!("failed: {e}")));
            }
        }
    }
    compare_memory(&mut rows);

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&env.root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(&env.root)
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "\nbench {} · commit {commit}{} · {cores} cores · {cpu} · {:.0} s\n",
        plan.mode,
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows));
    if let Some(path) = json_out {
        let doc = json!({
            "mode": plan.mode, "commit": commit, "dirty": dirty, "cores": cores, "cpu": cpu,
            "seconds": started.elapsed().as_secs_f64(),
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).map_err(err)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.met == Some(false) || r.note.starts_with("failed:"))
        .map(|r| r.scenario.as_str())
        .collect();
    if check && !missed.is_empty() {
        return Err(format!("targets missed: {}", missed.join("; ")));
    }
    Ok(())
}
