//! `engine`: the engine ceiling. The driver side launches a broadcast and runs `bench engine`,
//! which delivers it in-process with the orchestrator, the real store and a channel that
//! accepts every message at once.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broadcast_domain::{
    Channel, ChannelKind, Delivered, DeliveryError, DeliveryStatus, OutgoingMessage, SystemClock,
};
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;
use serde_json::{Value, json};

use crate::measure::{Usage, clock_ticks, measure, own_ticks, peak_rss_kb};
use crate::naive::naive;
use crate::report::{Row, fmt_opt, group, median_usage, ratio};
use crate::setup::{Backend, Env, backends, links};
use crate::timed::Timed;
use crate::{Plan, Res, err, number, options, required, runtime};

pub(crate) fn scenario_engine(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    for backend in backends(env) {
        let base = env.make_base(backend, plan.engine_n, false)?;
        let mut phases = Vec::new();
        let mut delivered = 0;
        let runs = match backend {
            Backend::Sqlite => plan.runs,
            Backend::Postgres => plan.pg_runs,
        };
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            env.launch(&db, id)?;
            let mut cmd = Command::new(std::env::current_exe().map_err(err)?);
            cmd.args([
                "engine",
                "--database-url",
                &db.url,
                "--broadcast",
                &id.to_string(),
            ]);
            for (k, v) in &env.passthrough {
                cmd.env(k, v);
            }
            let u = measure(cmd, env.ticks)?;
            if !u.ok {
                return Err(format!("engine run failed: {}", u.stderr));
            }
            let v: Value =
                serde_json::from_str(u.stdout.trim()).map_err(|e| format!("{e}: {}", u.stdout))?;
            delivered = v["delivered"].as_u64().unwrap_or(0);
            let phase = Usage {
                wall: Duration::from_secs_f64(v["seconds"].as_f64().unwrap_or(f64::NAN)),
                cpu: v["cpu_s"].as_f64().unwrap_or(f64::NAN),
                rss_kb: v["rss_kb"].as_u64().unwrap_or(0),
                ok: true,
                ..Usage::default()
            };
            eprintln!(
                "  engine {run} on {}: {delivered} in {:.2} s (process {:.2} s)",
                backend.name(),
                phase.wall.as_secs_f64(),
                u.wall.as_secs_f64()
            );
            eprintln!("  store calls: {}", v["store_calls"]);
            phases.push(phase);
            env.drop_db(&db);
        }
        let u = median_usage(&phases);
        let rate = delivered as f64 / u.wall.as_secs_f64();
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "email")?;
        env.launch(&db, id)?;
        let naive_rate = naive(env, "deliver", &db, id, plan.naive_deliver_n, &[])
            .map(|(r, _)| r)
            .unwrap_or(f64::NAN);
        env.drop_db(&db);
        env.drop_base(&base);
        let target = if backend == Backend::Sqlite {
            50_000.0
        } else {
            30_000.0
        };
        let mut row = Row::new(
            format!(
                "engine ceiling: instant channel, ledger written ({})",
                backend.name()
            ),
            delivered,
        )
        .usage(&u);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = format!("≥ {} msg/s", group(target as u64));
        row.met = Some(rate >= target);
        row.ratio = ratio(rate, naive_rate);
        row.note = format!(
            "median of {runs}; delivery phase of `run_until_done`; {:.1} µs CPU/msg; naive {} msg/s",
            u.cpu / delivered.max(1) as f64 * 1e6,
            fmt_opt(Some(naive_rate), 0)
        );
        rows.push(row);
    }
    Ok(rows)
}

/// A channel that accepts every message at once.
#[derive(Debug)]
pub(crate) struct InstantChannel(pub(crate) ChannelKind);

#[async_trait::async_trait]
impl Channel for InstantChannel {
    fn kind(&self) -> ChannelKind {
        self.0
    }

    fn describe(&self) -> String {
        "instant (benchmark)".into()
    }

    /// No limit of its own: `WORKER_CONCURRENCY` decides.
    fn max_concurrency(&self) -> usize {
        usize::MAX
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        std::hint::black_box(message);
        Ok(Delivered {
            provider_message_id: None,
            migrated_to: None,
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `bench engine`: delivers a launched broadcast with the orchestrator and the real store,
/// through instant channels; prints `{"delivered", "seconds", "cpu_s", "rss_kb"}` of the
/// delivery phase.
pub(crate) fn child_engine(args: &[String]) -> Res<()> {
    let opts = options(args)?;
    let url = required(&opts, "database-url")?.to_owned();
    let id: i64 = number(required(&opts, "broadcast")?, "--broadcast")?;
    let ticks = clock_ticks();
    runtime()?.block_on(async move {
        let store = Store::connect(&url).await.map_err(err)?;
        let shared = Arc::new(store.clone());
        let timed = Arc::new(Timed {
            store: store.clone(),
            calls: std::sync::Mutex::new(BTreeMap::new()),
        });
        let defaults = Settings::default();
        let settings = Settings {
            worker_id: "bench-engine".into(),
            batch_size: env_or("BATCH_SIZE", defaults.batch_size),
            concurrency: std::env::var("WORKER_CONCURRENCY")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            ..defaults
        };
        let ports = Ports {
            templates: shared.clone(),
            broadcasts: shared.clone(),
            deliveries: timed.clone(),
            audience: timed.clone(),
            source: shared.clone(),
            renderer: Arc::new(TeraRenderer::new()),
            channels: Channels::new()
                .with(Arc::new(InstantChannel(ChannelKind::TELEGRAM)))
                .with(Arc::new(InstantChannel(ChannelKind::EMAIL))),
            clock: Arc::new(SystemClock),
            links: Some(links()?),
            budget: Some(shared),
            audit: None,
            admins: None,
            media: None,
        };
        let orch = Orchestrator::new(ports, settings);
        // The delivery phase alone: reset the peak RSS, note the CPU so far.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let cpu0 = own_ticks();
        let t0 = Instant::now();
        let stats = orch.run_until_done(id).await.map_err(err)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = (own_ticks() - cpu0) as f64 / ticks;
        let delivered = stats
            .by_status
            .get(&DeliveryStatus::Sent)
            .copied()
            .unwrap_or(0);
        println!(
            "{}",
            json!({
                "delivered": delivered, "seconds": seconds, "cpu_s": cpu,
                "rss_kb": peak_rss_kb("self").unwrap_or(0),
                "store_calls": timed.report(delivered),
            })
        );
        Ok(())
    })
}
