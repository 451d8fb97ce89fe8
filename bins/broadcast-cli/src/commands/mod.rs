//! The commands: each turns parsed arguments into orchestrator and store calls and prints the
//! result as a table or as JSON. One module per subcommand family; `worker` is here.

mod audience;
mod broadcasts;
mod template;

pub(crate) use audience::*;
pub(crate) use broadcasts::*;
pub(crate) use template::*;

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use broadcast_app::compose::Stop;
use broadcast_app::csv_import;
use broadcast_domain::Broadcast;
use broadcast_domain::{
    AudienceFilter, AudienceStore as _, BroadcastStatus, BroadcastStore as _, ChannelKind,
    ChannelPolicy, DeliveryStatus, DeliveryStore as _, MessageTemplate, NewBroadcast, NewTemplate,
    ParseMode, RecipientQuery, RegistrationStatus, Role, TemplateContent, TemplateName,
    TemplateStore as _, UserQuery,
};
use broadcast_domain::{EmailAddress, ErrorKind, TelegramChatId, Transition};
use broadcast_orchestrator::{LaunchReport, Preview, Progress, TestTarget};

use crate::activity::{Activity, CountingReader, Unit};
use crate::app::{App, CliError, CliResult, Config, invalid};
use crate::cli::*;
use crate::confirm::{Action, confirm, heading};
use crate::documents::{
    self, BroadcastDoc, CompetitionDoc, CountDoc, ImportDoc, LaunchDoc, PageDoc, RecipientDoc,
    RegistrationDoc, TemplateDoc, UserDoc,
};
use crate::outcome::Outcome;
use crate::output::{Table, json, opt};

pub(crate) async fn run(cli: Cli) -> CliResult<()> {
    if let Command::Completions { shell } = cli.command {
        // Needs no settings and no database.
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "broadcast-cli", &mut std::io::stdout());
        return Ok(());
    }
    let mut config = Config::from_env(cli.database_url.clone())?;
    if let Command::Worker {
        concurrency: Some(n),
        ..
    } = cli.command
    {
        if n == 0 {
            return Err(invalid("--concurrency must be at least 1"));
        }
        config.worker.concurrency = Some(n);
    }
    if let Command::Broadcast(BroadcastCmd::Run { .. }) = cli.command {
        config.worker.batch_size = paced_batch_size(&config);
    }
    if let Command::Demo { reset } = cli.command {
        return crate::demo::run(config, reset, cli.json).await;
    }
    let app = App::build(config).await?;
    let j = cli.json;
    match cli.command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Template(cmd) => template(&app, cmd, j).await,
        Command::Broadcast(cmd) => broadcast(&app, cmd, j).await,
        Command::Audience(cmd) => audience(&app, cmd, j).await,
        Command::Admin(cmd) => crate::admin::admin(&app, cmd, j).await,
        Command::Media(cmd) => crate::media::media(&app, cmd, j).await,
        Command::Worker { once, .. } => worker(&app, once, j).await,
        Command::Completions { .. } => unreachable!("handled above"),
    }
}

/// `worker`: delivers until SIGINT/SIGTERM (or, with `--once`, until nothing is due, then tells
/// how each broadcast it drove ended: exit code 3 when one of them delivered nothing).
async fn worker(app: &App, once: bool, j: bool) -> CliResult<()> {
    app.announce_channels();
    let orch = &app.orchestrator;
    eprintln!("worker {} started", orch.settings().worker_id);
    if once {
        // What this run drives: the running broadcasts, and the scheduled ones due now.
        let now = Utc::now();
        let mut driven: Vec<i64> = app
            .store
            .list_broadcasts(
                &[BroadcastStatus::Running, BroadcastStatus::Scheduled],
                10_000,
            )
            .await?
            .into_iter()
            .filter(|b| {
                b.status == BroadcastStatus::Running || b.scheduled_at.is_some_and(|at| at <= now)
            })
            .map(|b| b.id)
            .collect();
        driven.sort_unstable();
        while orch.work_once().await? {}
        eprintln!("worker {}: nothing left to do", orch.settings().worker_id);
        let mut report = Vec::new();
        let mut problems = Vec::new();
        for id in driven {
            let b = app.store.get_broadcast(id).await?;
            let ended = Outcome::of(&b, &orch.stats(id).await?);
            report.push(serde_json::json!({
                "broadcast_id": id, "status": b.status, "outcome": ended.name,
            }));
            problems.extend(ended.problem);
        }
        if j {
            json(&report)?;
        }
        if !problems.is_empty() {
            return Err(CliError::Undelivered(problems.join("; ")));
        }
        return Ok(());
    }
    orch.run_worker(shutdown_signal()).await?;
    eprintln!("worker {} stopped", orch.settings().worker_id);
    Ok(())
}

/// Completes on SIGINT or SIGTERM, telling the operator that the batch in flight finishes.
pub(crate) async fn shutdown_signal() {
    match broadcast_app::compose::shutdown_signal().await {
        Stop::Interrupted => eprintln!("interrupted: finishing the batch in flight"),
        Stop::Terminated => eprintln!("terminated: finishing the batch in flight"),
    }
}

fn fmt_map<K: std::fmt::Display, V: std::fmt::Display>(
    m: &std::collections::BTreeMap<K, V>,
) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of an audience count: per channel of the policy, the users it reaches and the
/// messages a launch would queue.
fn print_count(c: &broadcast_domain::AudienceCount, policy: ChannelPolicy) {
    println!("reachable: {}", fmt_map(&c.reachable));
    println!(
        "messages with policy {policy}: {}; reached by no channel: {}",
        fmt_map(&c.messages),
        c.unreachable
    );
}
