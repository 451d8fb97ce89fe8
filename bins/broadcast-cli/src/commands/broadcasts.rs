//! `broadcast`: create, list, show, count, preview, launch, run, stats, recount, export,
//! schedule, pause, resume, cancel, retry, recipients and test sends.

use tokio::sync::broadcast;

use super::*;

/// Builds an audience filter from `--filter` JSON and the filter flags.
pub(crate) async fn build_filter(app: &App, args: &FilterArgs) -> CliResult<AudienceFilter> {
    let mut f = match &args.filter {
        Some(text) => AudienceFilter::from_json(text).map_err(|e| invalid(e.to_string()))?,
        None => AudienceFilter::default(),
    };
    if !args.competitions.is_empty() {
        let all = app.store.list_competitions().await?;
        for c in &args.competitions {
            let found = all
                .iter()
                .find(|x| x.slug == *c || c.parse::<i64>().ok() == Some(x.id))
                .ok_or_else(|| {
                    invalid(format!(
                        "unknown competition `{c}`; known: {}",
                        all.iter()
                            .map(|x| format!("{} ({})", x.slug, x.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            f.competition_ids.push(found.id);
        }
    }
    for r in &args.roles {
        f.roles.push(
            r.parse::<Role>()
                .map_err(|e| invalid(format!("--role: {}", e.0)))?,
        );
    }
    for s in &args.statuses {
        f.registration_statuses.push(
            s.parse::<RegistrationStatus>()
                .map_err(|e| invalid(format!("--status: {}", e.0)))?,
        );
    }
    f.countries.extend(args.countries.iter().cloned());
    f.cities.extend(args.cities.iter().cloned());
    if args.has_email.is_some() {
        f.has_email = args.has_email;
    }
    if args.has_telegram.is_some() {
        f.has_telegram = args.has_telegram;
    }
    f.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(f.normalised())
}

pub(crate) async fn broadcast(app: &App, cmd: BroadcastCmd, j: bool) -> CliResult<()> {
    let orch = &app.orchestrator;
    match cmd {
        BroadcastCmd::Create {
            name,
            template,
            channels,
            filter,
            schedule_at,
        } => {
            let t = find_template(app, &template).await?;
            let filter = build_filter(app, &filter).await?;
            let scheduled_at = schedule_at
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|d| d.with_timezone(&Utc))
                        .map_err(|e| {
                            invalid(format!("--schedule-at `{s}` is not an RFC 3339 time: {e}"))
                        })
                })
                .transpose()?;
            let b = orch
                .create_broadcast(
                    &app.actor,
                    NewBroadcast {
                        name,
                        template_id: t.id,
                        channel_policy: channels,
                        filter,
                        scheduled_at,
                        created_by: Some(app.actor.to_string()),
                    },
                )
                .await?;
            print_broadcast(app, b.id, j).await?;
        }
        BroadcastCmd::List { status, limit } => {
            let statuses = match status {
                Some(s) => vec![s.parse::<BroadcastStatus>().map_err(|e| invalid(e.0))?],
                None => vec![],
            };
            let list = app.store.list_broadcasts(&statuses, limit).await?;
            if j {
                json(&documents::all::<_, BroadcastDoc>(&list))?;
            } else {
                let mut t = Table::new(&[
                    "id",
                    "name",
                    "status",
                    "channels",
                    "recipients",
                    "audience",
                    "created",
                ]);
                let names =
                    broadcast_app::names::competition_names(&*app.orchestrator.ports().audience)
                        .await?;
                for b in &list {
                    t.row(vec![
                        b.id.to_string(),
                        b.name.clone(),
                        b.status.to_string(),
                        b.channel_policy.to_string(),
                        b.total_recipients.to_string(),
                        b.filter.describe_with(&names),
                        b.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]);
                }
                t.print();
            }
        }
        BroadcastCmd::Show { id } => print_broadcast(app, id, j).await?,
        BroadcastCmd::Count { id } => {
            let b = app.store.get_broadcast(id).await?;
            let count = orch.count_audience(&b.filter, b.channel_policy).await?;
            if j {
                json(&CountDoc::new(&count, b.channel_policy, Some(id)))?;
            } else {
                println!(
                    "audience of broadcast {id}: {} users ({})",
                    count.users,
                    crate::confirm::audience(app, &b.filter).await?
                );
                print_count(&count, b.channel_policy);
            }
        }
        BroadcastCmd::Preview { id, limit } => {
            let previews = orch.preview(id, limit).await?;
            print_previews(&previews, j)?;
        }
        BroadcastCmd::Launch { id, yes } => {
            let b = app.store.get_broadcast(id).await?;
            Transition::Launch.check(id, b.status)?;
            orch.check_template(&template_of(app, &b).await?, b.channel_policy)?;
            if yes {
                // No count for a question nobody is asked: the launch report gives the
                // numbers, and counting a large audience first costs a second pass over it.
                let audience = crate::confirm::audience(app, &b.filter).await?;
                eprint!("{}", heading(&b, &audience, crate::term::Paint::stderr()));
            } else {
                confirm(app, &b, Action::Launch, false).await?;
            }
            app.announce_channels();
            let report = launch_with_spinner(app, id).await?;
            if j {
                json(&LaunchDoc::from(&report))?;
            } else {
                println!(
                    "launched broadcast {id}: queued {}, skipped {}",
                    fmt_map(&report.materialised.queued),
                    fmt_map(&report.materialised.skipped)
                );
                println!("run `broadcast-cli broadcast run {id}` (or a worker) to deliver it");
            }
        }
        BroadcastCmd::Run { id, yes } => {
            let b = app.store.get_broadcast(id).await?;
            let launch = Transition::Launch.allowed(b.status);
            if !launch && b.status != BroadcastStatus::Running {
                return Err(invalid(format!(
                    "broadcast {id} is {}; only a draft, scheduled or running broadcast can be run",
                    b.status
                )));
            }
            if launch {
                orch.check_template(&template_of(app, &b).await?, b.channel_policy)?;
            }
            confirm(app, &b, Action::Run, yes).await?;
            app.announce_channels();
            // Subscribe before launching, so that the first snapshot is seen too.
            let events = orch.subscribe();
            if launch {
                launch_with_spinner(app, id).await?;
            }
            let start = orch.progress(id).await?;
            let activity = Activity::start(
                Unit::Items,
                start.done,
                Some(start.total),
                progress_message(&start),
            );
            let watcher = tokio::spawn(watch(events, id, activity.clone()));
            let outcome = orch.run_until_done(id).await;
            watcher.abort();
            let end = orch.progress(id).await?;
            activity.update(end.done, Some(end.total), progress_message(&end));
            activity.finish(None);
            outcome?;
            let b = app.store.get_broadcast(id).await?;
            let ended = Outcome::of(&b, &orch.stats(id).await?);
            print_stats(app, id, j, Some(&ended)).await?;
            if let Some(problem) = ended.problem {
                return Err(CliError::Undelivered(problem));
            }
        }
        BroadcastCmd::Stats { id } => print_stats(app, id, j, None).await?,
        BroadcastCmd::Recount { id } => {
            app.orchestrator.recount(&app.actor, id).await?;
            print_stats(app, id, j, None).await?;
        }
        BroadcastCmd::Export {
            id,
            format,
            output,
            status,
            channel,
        } => {
            let e = crate::export::Export {
                id,
                format,
                output,
                status,
                channel,
            };
            crate::export::export(app, e, j).await?;
        }
        BroadcastCmd::Schedule { id, at, clear } => {
            let at = if clear {
                None
            } else {
                at.map(|s| parse_time(&s)).transpose()?
            };
            orch.schedule(&app.actor, id, at).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Pause { id } => {
            orch.pause(&app.actor, id, None).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Resume { id } => {
            orch.resume(&app.actor, id).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Cancel { id } => {
            let (_, cancelled) = orch.cancel(&app.actor, id).await?;
            if j {
                json(&serde_json::json!({ "broadcast_id": id, "cancelled_rows": cancelled }))?;
            } else {
                println!("cancelled broadcast {id}: {cancelled} pending rows will not be sent");
            }
        }
        BroadcastCmd::Retry { id, error_kinds } => {
            let kinds = error_kinds
                .iter()
                .map(|k| {
                    k.parse::<ErrorKind>()
                        .map_err(|e| invalid(format!("--error-kind: {}", e.0)))
                })
                .collect::<CliResult<Vec<_>>>()?;
            let queued = orch.retry(&app.actor, id, &kinds).await?;
            if j {
                json(&serde_json::json!({ "broadcast_id": id, "requeued_rows": queued }))?;
            } else {
                println!("broadcast {id}: {queued} failed rows are queued again");
            }
        }
        BroadcastCmd::Test {
            id,
            user,
            chat_id,
            email,
        } => {
            app.announce_channels();
            let target = match (user, chat_id, email) {
                (Some(u), _, _) => TestTarget::User(u),
                (_, Some(c), _) => {
                    TestTarget::Chat(TelegramChatId::parse(&c).map_err(|e| invalid(e.0))?)
                }
                (_, _, Some(e)) => {
                    TestTarget::Email(EmailAddress::parse(&e).map_err(|e| invalid(e.0))?)
                }
                _ => return Err(invalid("give --user, --chat-id or --email")),
            };
            let results = orch.test_send(&app.actor, id, target).await?;
            let mut failed = Vec::new();
            let mut out = Vec::new();
            for (channel, r) in results {
                match r {
                    Ok(d) => out.push(serde_json::json!({ "channel": channel, "ok": true, "provider_message_id": d.provider_message_id })),
                    Err(e) => {
                        failed.push(format!("{channel}: {e}"));
                        out.push(serde_json::json!({ "channel": channel, "ok": false, "error": e.to_string() }));
                    }
                }
            }
            if j {
                json(&out)?;
            } else {
                for o in &out {
                    match o["ok"].as_bool() {
                        Some(true) => println!(
                            "{}: sent ({})",
                            o["channel"].as_str().unwrap_or("?"),
                            o["provider_message_id"]
                        ),
                        _ => println!(
                            "{}: FAILED {}",
                            o["channel"].as_str().unwrap_or("?"),
                            o["error"].as_str().unwrap_or("")
                        ),
                    }
                }
            }
            if !failed.is_empty() {
                return Err(CliError::Failed(anyhow::anyhow!(
                    "test send failed: {}",
                    failed.join("; ")
                )));
            }
        }
        BroadcastCmd::Recipients {
            id,
            status,
            channel,
            limit,
        } => {
            app.store.get_broadcast(id).await?;
            let query = RecipientQuery {
                status: status
                    .map(|s| s.parse::<DeliveryStatus>().map_err(|e| invalid(e.0)))
                    .transpose()?,
                channel: channel
                    .map(|s| s.parse::<ChannelKind>().map_err(|e| invalid(e.0)))
                    .transpose()?,
                error_kind: None,
                offset: 0,
                limit,
            };
            let page = app.store.list_recipients(id, &query).await?;
            if j {
                json(&PageDoc::<RecipientDoc>::of(&page))?;
            } else {
                let mut t = Table::new(&[
                    "id", "user", "channel", "address", "status", "attempts", "error", "sent at",
                ]);
                for r in &page.items {
                    let error = match (r.skip_reason, r.error_kind, &r.last_error) {
                        (Some(s), _, _) => format!("skipped: {s}"),
                        (None, Some(k), Some(e)) => format!("{k}: {e}"),
                        _ => String::new(),
                    };
                    t.row(vec![
                        r.id.to_string(),
                        r.user_id.to_string(),
                        r.channel.to_string(),
                        r.address.clone(),
                        r.status.to_string(),
                        r.attempts.to_string(),
                        error,
                        opt(r.sent_at.map(|t| t.format("%H:%M:%S"))),
                    ]);
                }
                t.print();
                println!("{} of {} rows", page.items.len(), page.total);
            }
        }
    }
    Ok(())
}

/// The batch size of `broadcast run`: results are recorded and progress is published once per
/// batch, so on a rate-limited channel a batch holds at most about 2 s of sending (Telegram at
/// 30/s: 60 rows), and the progress moves every 2 s instead of every `BATCH_SIZE / rate`.
pub(crate) fn paced_batch_size(config: &Config) -> u64 {
    let rates = [
        config.channels.telegram.as_ref().map(|t| t.rate_per_sec),
        config.channels.smtp.as_ref().and_then(|s| s.rate_per_sec),
    ];
    rates
        .into_iter()
        .flatten()
        .filter(|r| *r > 0)
        .map(|r| (u64::from(r) * 2).max(10))
        .fold(config.worker.batch_size, u64::min)
}

/// The template a launch would freeze: the frozen copy, or the current template.
pub(crate) async fn template_of(app: &App, b: &Broadcast) -> CliResult<TemplateContent> {
    if let Some(frozen) = &b.frozen_template {
        return Ok(frozen.clone());
    }
    match b.template_id {
        Some(t) => Ok(app.store.get_template(t).await?.content),
        None => Err(invalid(format!(
            "broadcast {} has no template (it was deleted before launch); create a new broadcast",
            b.id
        ))),
    }
}

/// Launches with a spinner: materialising a large audience takes a few seconds.
pub(crate) async fn launch_with_spinner(app: &App, id: i64) -> CliResult<LaunchReport> {
    let activity = Activity::start(
        Unit::Spinner,
        0,
        None,
        format!("launching broadcast {id}: writing the recipient rows"),
    );
    let report = app.orchestrator.launch(&app.actor, id).await;
    activity.finish(None);
    Ok(report?)
}

/// `done, 1180 sent, 20 failed, 3800 open, 31.2/s, eta 2m`
pub(crate) fn progress_message(p: &Progress) -> String {
    let mut msg = format!(
        "done, {} sent, {} failed, {} open",
        p.sent, p.failed, p.open
    );
    if let Some(rate) = p.rate {
        msg.push_str(&format!(", {rate:.1}/s"));
    }
    if let Some(eta) = p.eta_seconds
        && p.open > 0
    {
        msg.push_str(&format!(", eta {}", crate::output::duration(eta)));
    }
    msg
}

/// Shows the orchestrator's progress snapshots of one broadcast until the stream ends.
pub(crate) async fn watch(mut events: broadcast::Receiver<Progress>, id: i64, activity: Activity) {
    loop {
        match events.recv().await {
            Ok(p) if p.broadcast_id == id => {
                activity.update(p.done, Some(p.total), progress_message(&p));
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

pub(crate) fn parse_time(s: &str) -> CliResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            invalid(format!(
                "`{s}` is not an RFC 3339 time such as 2027-03-01T09:00:00Z: {e}"
            ))
        })
}

pub(crate) async fn print_broadcast(app: &App, id: i64, j: bool) -> CliResult<()> {
    let b = app.store.get_broadcast(id).await?;
    if j {
        return Ok(json(&BroadcastDoc::from(&b))?);
    }
    println!("broadcast {} `{}`", b.id, b.name);
    println!(
        "status:     {}{}",
        b.status,
        b.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    println!("channels:   {}", b.channel_policy);
    println!(
        "audience:   {}",
        crate::confirm::audience(app, &b.filter).await?
    );
    println!("template:   {}", opt(b.template_id));
    println!("scheduled:  {}", opt(b.scheduled_at));
    println!("started:    {}", opt(b.started_at));
    println!("finished:   {}", opt(b.finished_at));
    println!("recipients: {}", b.total_recipients);
    if let Some(p) = b.probe {
        println!(
            "probe:      one {} message at {} (cool-down {} s); if it goes through, the \
             broadcast resumes by itself",
            p.channel,
            p.at,
            p.cooldown.as_secs_f64()
        );
    }
    Ok(())
}

/// Prints a broadcast's statistics; after a run, with its outcome (`"outcome"` in JSON).
pub(crate) async fn print_stats(
    app: &App,
    id: i64,
    j: bool,
    outcome: Option<&Outcome>,
) -> CliResult<()> {
    let b = app.store.get_broadcast(id).await?;
    let stats = app.orchestrator.stats(id).await?;
    // Launch to the end, or to now while it is not finished.
    let duration = match (b.started_at, b.finished_at) {
        (Some(s), Some(f)) => Some(f - s),
        (Some(s), None) => Some(Utc::now() - s),
        _ => None,
    }
    .map(|d| d.num_milliseconds() as f64 / 1000.0);
    if j {
        let mut doc = serde_json::json!({
            "broadcast_id": id,
            "name": b.name,
            "status": b.status,
            "status_reason": b.status_reason,
            "stats": stats,
            "send_rate": stats.send_rate(),
            "started_at": b.started_at,
            "finished_at": b.finished_at,
            "duration_seconds": duration,
        });
        if let Some(o) = outcome {
            doc["outcome"] = o.name.into();
        }
        json(&doc)?;
        return Ok(());
    }
    let paint = crate::term::Paint::stdout();
    println!(
        "broadcast {id} `{}`: {}{}",
        b.name,
        paint.status(b.status.as_str()),
        b.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let mut header = vec!["channel"];
    header.extend(DeliveryStatus::ALL.iter().map(|s| s.as_str()));
    header.push("total");
    let mut t = Table::new(&header);
    let mut add = |name: String, count: &dyn Fn(DeliveryStatus) -> u64| {
        let mut row = vec![name];
        let mut total = 0;
        for s in DeliveryStatus::ALL {
            total += count(*s);
            row.push(count(*s).to_string());
        }
        row.push(total.to_string());
        t.row(row);
    };
    for channel in stats.by_channel.keys() {
        add(channel.to_string(), &|s| stats.channel_count(*channel, s));
    }
    if stats.by_channel.len() > 1 {
        add("all".to_owned(), &|s| stats.count(s));
    }
    t.print();
    if !stats.by_error_kind.is_empty() {
        println!("errors: {}", fmt_map(&stats.by_error_kind));
    }
    if !stats.by_skip_reason.is_empty() {
        println!("skipped: {}", fmt_map(&stats.by_skip_reason));
    }
    if stats.possible_duplicates > 0 {
        println!(
            "possibly delivered twice (lease expired while sending): {}",
            stats.possible_duplicates
        );
    }
    if let Some(rate) = stats.send_rate() {
        println!("send rate: {rate:.1} messages/s");
    }
    if let Some(d) = duration {
        let running = if b.finished_at.is_none() {
            " so far"
        } else {
            ""
        };
        println!("duration: {d:.1} s{running}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config {
            database_url: String::new(),
            channels: broadcast_channels::ChannelSettings::from_lookup(|k| {
                vars.get(k).map(|v| (*v).to_owned())
            })
            .unwrap(),
            worker: broadcast_orchestrator::Settings::default(),
        }
    }

    #[test]
    fn run_batches_hold_about_two_seconds_of_a_paced_channel() {
        assert_eq!(
            paced_batch_size(&config(&[])),
            200,
            "outboxes: as configured"
        );
        let telegram = [("TELEGRAM_BOT_TOKEN", "1:x")];
        assert_eq!(paced_batch_size(&config(&telegram)), 60, "30/s");
        let both = [
            ("TELEGRAM_BOT_TOKEN", "1:x"),
            ("TELEGRAM_PAID_BROADCAST", "true"),
            ("SMTP_HOST", "127.0.0.1"),
            ("EMAIL_RATE_LIMIT", "2"),
        ];
        assert_eq!(
            paced_batch_size(&config(&both)),
            10,
            "the slowest, at least 10"
        );
    }
}
