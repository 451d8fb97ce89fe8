//! The commands: each turns parsed arguments into orchestrator and store calls and prints the
//! result as a table or as JSON.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use broadcast_domain::{
    AudienceFilter, AudienceStore as _, BroadcastStatus, BroadcastStore as _, ChannelKind,
    ChannelPolicy, DeliveryStatus, DeliveryStore as _, MessageTemplate, NewBroadcast, NewTemplate,
    ParseMode, RecipientQuery, RegistrationStatus, Role, TemplateContent, TemplateName,
    TemplateStore as _, UserQuery,
};
use broadcast_domain::{EmailAddress, ErrorKind, TelegramChatId};
use broadcast_orchestrator::{Preview, TestTarget};

use crate::app::{App, CliError, CliResult, Config, invalid};
use crate::cli::*;
use crate::output::{Table, json, opt};

pub(crate) async fn run(cli: Cli) -> CliResult<()> {
    let mut config = Config::from_env(cli.database_url.clone())?;
    if let Command::Worker {
        concurrency: Some(n),
        ..
    } = cli.command
    {
        if n == 0 {
            return Err(invalid("--concurrency must be at least 1"));
        }
        config.worker.concurrency = n;
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
        Command::Worker { once, .. } => worker(&app, once).await,
    }
}

/// The JSON form of a template file (see fixtures/README.md).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateFile {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) telegram_text: Option<String>,
    pub(crate) parse_mode: Option<String>,
    pub(crate) link_preview: Option<bool>,
    pub(crate) email_subject: Option<String>,
    pub(crate) email_html: Option<String>,
    pub(crate) email_text: Option<String>,
}

impl TemplateFile {
    pub(crate) fn parse(text: &str, origin: &str) -> CliResult<Self> {
        serde_json::from_str(text).map_err(|e| invalid(format!("{origin}: {e}")))
    }

    pub(crate) fn into_new(self, base: Option<&MessageTemplate>) -> CliResult<NewTemplate> {
        let name = match (self.name, base) {
            (Some(n), _) => TemplateName::parse(&n).map_err(|e| invalid(e.0))?,
            (None, Some(b)) => b.name.clone(),
            (None, None) => return Err(invalid("a template needs a name (--name)")),
        };
        let old = base.map(|b| b.content.clone());
        let keep = |new: Option<String>, old: Option<String>| match new {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
            None => old,
        };
        let parse_mode = match self.parse_mode {
            Some(p) => p.parse::<ParseMode>().map_err(|e| invalid(e.0))?,
            None => old.as_ref().map_or(ParseMode::Html, |o| o.parse_mode),
        };
        let content = TemplateContent {
            telegram_text: keep(
                self.telegram_text,
                old.as_ref().and_then(|o| o.telegram_text.clone()),
            ),
            parse_mode,
            link_preview: self
                .link_preview
                .unwrap_or_else(|| old.as_ref().is_some_and(|o| o.link_preview)),
            email_subject: keep(
                self.email_subject,
                old.as_ref().and_then(|o| o.email_subject.clone()),
            ),
            email_html: keep(
                self.email_html,
                old.as_ref().and_then(|o| o.email_html.clone()),
            ),
            email_text: keep(
                self.email_text,
                old.as_ref().and_then(|o| o.email_text.clone()),
            ),
        };
        if sends_nothing(&content) {
            return Err(invalid(
                "a template needs at least a Telegram text or an e-mail subject and body",
            ));
        }
        Ok(NewTemplate {
            name,
            description: self
                .description
                .or_else(|| base.map(|b| b.description.clone()))
                .unwrap_or_default(),
            content,
        })
    }
}

fn sends_nothing(c: &TemplateContent) -> bool {
    !c.supports(ChannelKind::Telegram) && !c.supports(ChannelKind::Email)
}

fn read_file(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
}

fn template_file(args: TemplateArgs) -> CliResult<TemplateFile> {
    let mut file = match &args.from_json {
        Some(p) => TemplateFile::parse(&read_file(p)?, &p.display().to_string())?,
        None => TemplateFile::default(),
    };
    let pick = |inline: Option<String>, path: Option<&Path>| -> CliResult<Option<String>> {
        match (inline, path) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(p)) => read_file(p).map(Some),
            (None, None) => Ok(None),
        }
    };
    if args.name.is_some() {
        file.name = args.name;
    }
    if args.description.is_some() {
        file.description = args.description;
    }
    if let Some(t) = pick(args.telegram_text, args.telegram_file.as_deref())? {
        file.telegram_text = Some(t);
    }
    if args.parse_mode.is_some() {
        file.parse_mode = args.parse_mode;
    }
    if args.link_preview.is_some() {
        file.link_preview = args.link_preview;
    }
    if args.subject.is_some() {
        file.email_subject = args.subject;
    }
    if let Some(h) = pick(args.html, args.html_file.as_deref())? {
        file.email_html = Some(h);
    }
    if let Some(t) = pick(args.text, args.text_file.as_deref())? {
        file.email_text = Some(t);
    }
    Ok(file)
}

/// Finds a template by id or by name.
pub(crate) async fn find_template(app: &App, key: &str) -> CliResult<MessageTemplate> {
    if let Ok(id) = key.parse::<i64>() {
        return Ok(app.store.get_template(id).await?);
    }
    let name = TemplateName::parse(key).map_err(|e| invalid(e.0))?;
    app.store.find_template(&name).await?.ok_or_else(|| {
        invalid(format!(
            "template `{key}` not found; `template list` shows them"
        ))
    })
}

fn validate(app: &App, content: &TemplateContent) -> CliResult<()> {
    let errors = app.orchestrator.ports().renderer.validate(content);
    if errors.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(invalid(format!(
        "the template is not valid: {}",
        all.join("; ")
    )))
}

async fn template(app: &App, cmd: TemplateCmd, j: bool) -> CliResult<()> {
    match cmd {
        TemplateCmd::Create(args) => {
            let new = template_file(args)?.into_new(None)?;
            validate(app, &new.content)?;
            let t = app.store.create_template(new).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::Update { template, args } => {
            let base = find_template(app, &template).await?;
            let new = template_file(args)?.into_new(Some(&base))?;
            validate(app, &new.content)?;
            let t = app.store.update_template(base.id, new).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::List => {
            let list = app.store.list_templates().await?;
            if j {
                json(&list)?;
            } else {
                let mut t = Table::new(&["id", "name", "version", "channels", "description"]);
                for tpl in &list {
                    t.row(vec![
                        tpl.id.to_string(),
                        tpl.name.to_string(),
                        tpl.version.to_string(),
                        channels_of(&tpl.content),
                        tpl.description.clone(),
                    ]);
                }
                t.print();
            }
        }
        TemplateCmd::Show { template } => {
            let t = find_template(app, &template).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::Validate { template, file } => {
            let content = match (template, file) {
                (Some(key), _) => find_template(app, &key).await?.content,
                (None, Some(path)) => {
                    let f = TemplateFile::parse(&read_file(&path)?, &path.display().to_string())?;
                    f.into_new(None)?.content
                }
                (None, None) => return Err(invalid("give a template id or name, or --file")),
            };
            validate(app, &content)?;
            if j {
                json(&serde_json::json!({ "valid": true }))?;
            } else {
                println!("template is valid ({})", channels_of(&content));
            }
        }
        TemplateCmd::Preview {
            template,
            filter,
            limit,
        } => {
            let t = find_template(app, &template).await?;
            let filter = build_filter(app, &filter).await?;
            let previews = app
                .orchestrator
                .preview_content(
                    &t.content,
                    &format!("Preview of {}", t.name),
                    &filter,
                    limit,
                )
                .await?;
            print_previews(&previews, j)?;
        }
        TemplateCmd::Delete { template } => {
            let t = find_template(app, &template).await?;
            app.store.delete_template(t.id).await?;
            if j {
                json(&serde_json::json!({ "deleted": t.id }))?;
            } else {
                println!("deleted template {} ({})", t.id, t.name);
            }
        }
    }
    Ok(())
}

fn channels_of(c: &TemplateContent) -> String {
    let mut v = Vec::new();
    if c.supports(ChannelKind::Telegram) {
        v.push(format!("telegram ({})", c.parse_mode));
    }
    if c.supports(ChannelKind::Email) {
        v.push("email".to_owned());
    }
    v.join(", ")
}

fn print_template(t: &MessageTemplate, j: bool) -> CliResult<()> {
    if j {
        return Ok(json(t)?);
    }
    println!("template {} `{}` (version {})", t.id, t.name, t.version);
    if !t.description.is_empty() {
        println!("description: {}", t.description);
    }
    let c = &t.content;
    println!("parse mode:  {}", c.parse_mode);
    for (label, part) in [
        ("telegram text", &c.telegram_text),
        ("e-mail subject", &c.email_subject),
        ("e-mail html", &c.email_html),
        ("e-mail text", &c.email_text),
    ] {
        if let Some(p) = part {
            println!("--- {label} ---\n{p}");
        }
    }
    Ok(())
}

fn print_previews(previews: &[Preview], j: bool) -> CliResult<()> {
    if j {
        return Ok(json(&previews)?);
    }
    if previews.is_empty() {
        println!("the audience is empty: nothing to preview");
    }
    for p in previews {
        println!("=== user {} ({}) ===", p.user_id, p.full_name);
        match &p.telegram {
            Some(Ok(m)) => println!("--- telegram ({}) ---\n{}", m.parse_mode, m.text),
            Some(Err(e)) => println!("--- telegram: ERROR {e}"),
            None => {}
        }
        match &p.email {
            Some(Ok(m)) => {
                println!("--- e-mail subject ---\n{}", m.subject);
                if let Some(t) = &m.text {
                    println!("--- e-mail text ---\n{t}");
                }
                if let Some(h) = &m.html {
                    println!("--- e-mail html ---\n{h}");
                }
            }
            Some(Err(e)) => println!("--- e-mail: ERROR {e}"),
            None => {}
        }
    }
    Ok(())
}

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

fn policy(p: PolicyArg) -> ChannelPolicy {
    match p {
        PolicyArg::Telegram => ChannelPolicy::Telegram,
        PolicyArg::Email => ChannelPolicy::Email,
        PolicyArg::Both => ChannelPolicy::Both,
        PolicyArg::TelegramThenEmail => ChannelPolicy::TelegramThenEmail,
    }
}

async fn broadcast(app: &App, cmd: BroadcastCmd, j: bool) -> CliResult<()> {
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
                .create_broadcast(NewBroadcast {
                    name,
                    template_id: t.id,
                    channel_policy: policy(channels),
                    filter,
                    scheduled_at,
                    created_by: std::env::var("USER").ok().map(|u| format!("cli:{u}")),
                })
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
                json(&list)?;
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
                for b in &list {
                    t.row(vec![
                        b.id.to_string(),
                        b.name.clone(),
                        b.status.to_string(),
                        b.channel_policy.to_string(),
                        b.total_recipients.to_string(),
                        b.filter.describe(),
                        b.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]);
                }
                t.print();
            }
        }
        BroadcastCmd::Show { id } => print_broadcast(app, id, j).await?,
        BroadcastCmd::Count { id } => {
            let b = app.store.get_broadcast(id).await?;
            let count = orch.count_audience(&b.filter).await?;
            let (tg, mail) = count.messages(b.channel_policy);
            if j {
                json(&serde_json::json!({
                    "broadcast_id": id, "users": count.users, "telegram_reachable": count.telegram,
                    "email_reachable": count.email, "both_reachable": count.both,
                    "messages": { "telegram": tg, "email": mail },
                }))?;
            } else {
                println!(
                    "audience of broadcast {id}: {} users ({})",
                    count.users,
                    b.filter.describe()
                );
                println!(
                    "reachable: telegram {}, email {}, both {}",
                    count.telegram, count.email, count.both
                );
                println!(
                    "messages with policy {}: telegram {tg}, email {mail}",
                    b.channel_policy
                );
            }
        }
        BroadcastCmd::Preview { id, limit } => {
            let previews = orch.preview(id, limit).await?;
            print_previews(&previews, j)?;
        }
        BroadcastCmd::Launch { id } => {
            app.announce_channels();
            let report = orch.launch(id).await?;
            if j {
                json(&report)?;
            } else {
                println!(
                    "launched broadcast {id}: queued {}, skipped {}",
                    fmt_map(&report.materialised.queued),
                    fmt_map(&report.materialised.skipped)
                );
                println!("run `broadcast-cli broadcast run {id}` (or a worker) to deliver it");
            }
        }
        BroadcastCmd::Run { id } => {
            app.announce_channels();
            let b = app.store.get_broadcast(id).await?;
            if matches!(
                b.status,
                BroadcastStatus::Draft | BroadcastStatus::Scheduled
            ) {
                orch.launch(id).await?;
            } else if b.status != BroadcastStatus::Running {
                return Err(invalid(format!(
                    "broadcast {id} is {}; only a draft, scheduled or running broadcast can be run",
                    b.status
                )));
            }
            let mut progress = orch.subscribe();
            let quiet = j;
            let watcher = tokio::spawn(async move {
                let mut last = std::time::Instant::now() - std::time::Duration::from_secs(10);
                while let Ok(p) = progress.recv().await {
                    if p.broadcast_id == id && !quiet && last.elapsed().as_millis() >= 1000 {
                        last = std::time::Instant::now();
                        eprintln!(
                            "progress: {}/{} done, {} sent, {} failed",
                            p.done, p.total, p.sent, p.failed
                        );
                    }
                }
            });
            orch.run_until_done(id).await?;
            watcher.abort();
            print_stats(app, id, j).await?;
        }
        BroadcastCmd::Stats { id } => print_stats(app, id, j).await?,
        BroadcastCmd::Schedule { id, at, clear } => {
            let at = if clear {
                None
            } else {
                at.map(|s| parse_time(&s)).transpose()?
            };
            app.store.set_schedule(id, at, Utc::now()).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Pause { id } => {
            orch.pause(id, None).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Resume { id } => {
            orch.resume(id).await?;
            print_broadcast(app, id, j).await?;
        }
        BroadcastCmd::Cancel { id } => {
            let (_, cancelled) = orch.cancel(id).await?;
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
            let queued = orch.retry(id, &kinds).await?;
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
            let results = orch.test_send(id, target).await?;
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
                json(&page)?;
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

fn parse_time(s: &str) -> CliResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            invalid(format!(
                "`{s}` is not an RFC 3339 time such as 2027-03-01T09:00:00Z: {e}"
            ))
        })
}

/// `worker`: delivers until SIGINT/SIGTERM (or, with `--once`, until nothing is due).
async fn worker(app: &App, once: bool) -> CliResult<()> {
    app.announce_channels();
    let orch = &app.orchestrator;
    eprintln!("worker {} started", orch.settings().worker_id);
    if once {
        while orch.work_once().await? {}
        eprintln!("worker {}: nothing left to do", orch.settings().worker_id);
        return Ok(());
    }
    orch.run_worker(shutdown_signal()).await?;
    eprintln!("worker {} stopped", orch.settings().worker_id);
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => eprintln!("interrupted: finishing the batch in flight"),
        () = term => eprintln!("terminated: finishing the batch in flight"),
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

async fn print_broadcast(app: &App, id: i64, j: bool) -> CliResult<()> {
    let b = app.store.get_broadcast(id).await?;
    if j {
        return Ok(json(&b)?);
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
    println!("audience:   {}", b.filter.describe());
    println!("template:   {}", opt(b.template_id));
    println!("scheduled:  {}", opt(b.scheduled_at));
    println!("started:    {}", opt(b.started_at));
    println!("finished:   {}", opt(b.finished_at));
    println!("recipients: {}", b.total_recipients);
    Ok(())
}

pub(crate) async fn print_stats(app: &App, id: i64, j: bool) -> CliResult<()> {
    let b = app.store.get_broadcast(id).await?;
    let stats = app.orchestrator.stats(id).await?;
    if j {
        json(
            &serde_json::json!({ "broadcast_id": id, "status": b.status, "stats": stats,
            "send_rate": stats.send_rate(),
            "duration_seconds": match (b.started_at, b.finished_at) {
                (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
                _ => None,
            } }),
        )?;
        return Ok(());
    }
    println!("broadcast {id} `{}`: {}", b.name, b.status);
    let mut t = Table::new(&[
        "channel",
        "pending",
        "sending",
        "sent",
        "failed",
        "skipped",
        "cancelled",
    ]);
    for (channel, counts) in &stats.by_channel {
        let mut row = vec![channel.to_string()];
        for s in DeliveryStatus::ALL {
            row.push(counts.get(s).copied().unwrap_or(0).to_string());
        }
        t.row(row);
    }
    t.print();
    println!("total rows: {}", stats.total);
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
    if let (Some(s), Some(f)) = (b.started_at, b.finished_at) {
        println!(
            "duration: {:.1} s",
            (f - s).num_milliseconds() as f64 / 1000.0
        );
    }
    Ok(())
}

async fn audience(app: &App, cmd: AudienceCmd, j: bool) -> CliResult<()> {
    match cmd {
        AudienceCmd::Import {
            users,
            competitions,
            registrations,
        } => {
            if users.is_none() && competitions.is_none() && registrations.is_none() {
                return Err(invalid(
                    "give at least one of --users, --competitions, --registrations",
                ));
            }
            let mut report = serde_json::Map::new();
            let now = Utc::now();
            // Competitions and users first: registrations refer to them.
            if let Some(p) = competitions {
                let rows = broadcast_store::csv_import::parse_competitions(open(&p)?)
                    .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
                let r = app
                    .store
                    .import_competitions(rows, now)
                    .await
                    .map_err(|e| prefix(&p, e))?;
                report.insert(
                    "competitions".into(),
                    serde_json::to_value(r).context("report")?,
                );
            }
            if let Some(p) = users {
                let rows = broadcast_store::csv_import::parse_users(open(&p)?)
                    .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
                let r = app
                    .store
                    .import_users(rows, now)
                    .await
                    .map_err(|e| prefix(&p, e))?;
                report.insert("users".into(), serde_json::to_value(r).context("report")?);
            }
            if let Some(p) = registrations {
                let rows = broadcast_store::csv_import::parse_registrations(open(&p)?)
                    .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
                let r = app
                    .store
                    .import_registrations(rows, now)
                    .await
                    .map_err(|e| prefix(&p, e))?;
                report.insert(
                    "registrations".into(),
                    serde_json::to_value(r).context("report")?,
                );
            }
            if j {
                json(&report)?;
            } else {
                for (k, v) in &report {
                    println!("{k}: {} inserted, {} updated", v["inserted"], v["updated"]);
                }
            }
        }
        AudienceCmd::List {
            search,
            limit,
            offset,
        } => {
            let page = app
                .store
                .list_users(&UserQuery {
                    search,
                    offset,
                    limit,
                })
                .await?;
            if j {
                json(&page)?;
            } else {
                let mut t = Table::new(&[
                    "id", "name", "email", "telegram", "country", "city", "flags",
                ]);
                for u in &page.items {
                    let mut flags = Vec::new();
                    if u.telegram_blocked_at.is_some() {
                        flags.push("blocked");
                    }
                    if u.email_unsubscribed_at.is_some() {
                        flags.push("unsubscribed");
                    }
                    if u.email_bounced_at.is_some() {
                        flags.push("bounced");
                    }
                    t.row(vec![
                        u.id.to_string(),
                        u.full_name(),
                        opt(u.email.as_ref()),
                        opt(u.telegram_chat_id),
                        opt(u.country.as_ref()),
                        opt(u.city.as_ref()),
                        flags.join(","),
                    ]);
                }
                t.print();
                println!("{} of {} users", page.items.len(), page.total);
            }
        }
        AudienceCmd::Count { filter } => {
            let filter = build_filter(app, &filter).await?;
            let c = app.orchestrator.ports().source.count(&filter).await?;
            if j {
                json(&c)?;
            } else {
                println!("{} users match ({})", c.users, filter.describe());
                println!(
                    "reachable: telegram {}, email {}, both {}",
                    c.telegram, c.email, c.both
                );
            }
        }
    }
    Ok(())
}

fn open(p: &Path) -> CliResult<std::fs::File> {
    std::fs::File::open(p).map_err(|e| invalid(format!("cannot open {}: {e}", p.display())))
}

fn prefix(p: &Path, e: broadcast_domain::Error) -> crate::app::CliError {
    if e.is_invalid_input() {
        invalid(format!("{}: {e}", p.display()))
    } else {
        e.into()
    }
}
