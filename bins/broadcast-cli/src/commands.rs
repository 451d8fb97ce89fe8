//! The commands: each turns parsed arguments into orchestrator and store calls and prints the
//! result as a table or as JSON.

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
use tokio::sync::broadcast;

use crate::activity::{Activity, CountingReader, Unit};
use crate::app::{App, CliError, CliResult, Config, invalid};
use crate::cli::*;
use crate::confirm::{Action, confirm, heading};
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
        config.worker.concurrency = n;
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
        Command::Worker { once, .. } => worker(&app, once).await,
        Command::Completions { .. } => unreachable!("handled above"),
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
            let t = app.orchestrator.create_template(&app.actor, new).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::Update { template, args } => {
            let base = find_template(app, &template).await?;
            let new = template_file(args)?.into_new(Some(&base))?;
            validate(app, &new.content)?;
            let t = app
                .orchestrator
                .update_template(&app.actor, base.id, new)
                .await?;
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
            app.orchestrator.delete_template(&app.actor, t.id).await?;
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
        // `{"error": "..."}` instead of a message, so scripts need no Rust `Result` shape.
        fn part<T: Serialize>(p: &Option<Result<T, String>>) -> serde_json::Value {
            match p {
                None => serde_json::Value::Null,
                Some(Ok(m)) => serde_json::to_value(m).unwrap_or_default(),
                Some(Err(e)) => serde_json::json!({ "error": e }),
            }
        }
        let doc: Vec<_> = previews
            .iter()
            .map(|p| {
                serde_json::json!({
                    "user_id": p.user_id,
                    "full_name": p.full_name,
                    "telegram": part(&p.telegram),
                    "email": part(&p.email),
                })
            })
            .collect();
        return Ok(json(&doc)?);
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
                .create_broadcast(
                    &app.actor,
                    NewBroadcast {
                        name,
                        template_id: t.id,
                        channel_policy: policy(channels),
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
        BroadcastCmd::Launch { id, yes } => {
            let b = app.store.get_broadcast(id).await?;
            Transition::Launch.check(id, b.status)?;
            orch.check_template(&template_of(app, &b).await?, b.channel_policy)?;
            if yes {
                // No count for a question nobody is asked: the launch report gives the
                // numbers, and counting a large audience first costs a second pass over it.
                eprint!("{}", heading(&b, crate::term::Paint::stderr()));
            } else {
                confirm(app, &b, Action::Launch, false).await?;
            }
            app.announce_channels();
            let report = launch_with_spinner(app, id).await?;
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
            print_stats(app, id, j).await?;
        }
        BroadcastCmd::Stats { id } => print_stats(app, id, j).await?,
        BroadcastCmd::Recount { id } => {
            let b = app.store.get_broadcast(id).await?;
            if b.status == BroadcastStatus::Running {
                // A worker's write during the recount could be counted twice or not at all.
                return Err(anyhow::anyhow!(
                    "broadcast {id} is running; pause it (`broadcast pause {id}`) before \
                     recounting, and resume it after"
                )
                .into());
            }
            app.store.recount(id).await?;
            app.orchestrator
                .audit(
                    &app.actor,
                    "broadcast.recount",
                    ("broadcast", Some(id)),
                    serde_json::json!({}),
                )
                .await;
            print_stats(app, id, j).await?;
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

/// The batch size of `broadcast run`: results are recorded and progress is published once per
/// batch, so on a rate-limited channel a batch holds at most about 2 s of sending (Telegram at
/// 30/s: 60 rows), and the progress moves every 2 s instead of every `BATCH_SIZE / rate`.
fn paced_batch_size(config: &Config) -> u64 {
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
async fn template_of(app: &App, b: &Broadcast) -> CliResult<TemplateContent> {
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
async fn launch_with_spinner(app: &App, id: i64) -> CliResult<LaunchReport> {
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
fn progress_message(p: &Progress) -> String {
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
async fn watch(mut events: broadcast::Receiver<Progress>, id: i64, activity: Activity) {
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
    // Launch to the end, or to now while it is not finished.
    let duration = match (b.started_at, b.finished_at) {
        (Some(s), Some(f)) => Some(f - s),
        (Some(s), None) => Some(Utc::now() - s),
        _ => None,
    }
    .map(|d| d.num_milliseconds() as f64 / 1000.0);
    if j {
        json(&serde_json::json!({
            "broadcast_id": id,
            "name": b.name,
            "status": b.status,
            "status_reason": b.status_reason,
            "stats": stats,
            "send_rate": stats.send_rate(),
            "started_at": b.started_at,
            "finished_at": b.finished_at,
            "duration_seconds": duration,
        }))?;
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
            let (orch, me) = (&app.orchestrator, &app.actor);
            // Competitions and users first: registrations refer to them.
            if let Some(p) = competitions {
                let rows = parse_csv(&p, csv_import::parse_competitions).await?;
                let file = p.display().to_string();
                let r =
                    write_rows(&p, rows.len(), orch.import_competitions(me, &file, rows)).await?;
                report.insert(
                    "competitions".into(),
                    serde_json::to_value(r).context("report")?,
                );
            }
            if let Some(p) = users {
                let rows = parse_csv(&p, csv_import::parse_users).await?;
                let file = p.display().to_string();
                let r = write_rows(&p, rows.len(), orch.import_users(me, &file, rows)).await?;
                report.insert("users".into(), serde_json::to_value(r).context("report")?);
            }
            if let Some(p) = registrations {
                let rows = parse_csv(&p, csv_import::parse_registrations).await?;
                let file = p.display().to_string();
                let r =
                    write_rows(&p, rows.len(), orch.import_registrations(me, &file, rows)).await?;
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
        AudienceCmd::Show { id } => show_user(app, id, j).await?,
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

/// Parses a CSV file off the async threads, with a progress bar over the bytes read.
async fn parse_csv<T: Send + 'static>(
    p: &Path,
    parse: fn(CountingReader<std::fs::File>) -> Result<Vec<T>, broadcast_app::csv_import::CsvError>,
) -> CliResult<Vec<T>> {
    let file = open(p)?;
    let len = file.metadata().ok().map(|m| m.len());
    let name = p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let activity = Activity::start(Unit::Bytes, 0, len, format!("reading {name}"));
    let reader = CountingReader::new(file, activity.clone());
    let parsed = tokio::task::spawn_blocking(move || parse(reader))
        .await
        .context("the CSV parser stopped")?;
    activity.finish(None);
    parsed.map_err(|e| invalid(format!("{}: {e}", p.display())))
}

/// Stores parsed rows (one all-or-nothing transaction per file) with a spinner.
async fn write_rows<T>(
    p: &Path,
    rows: usize,
    write: impl std::future::Future<Output = broadcast_domain::Result<T>>,
) -> CliResult<T> {
    let activity = Activity::start(
        Unit::Spinner,
        0,
        None,
        format!("writing {rows} rows of {}", p.display()),
    );
    let written = write.await;
    activity.finish(None);
    written.map_err(|e| prefix(p, e))
}

/// `audience show`: one user with flags and registrations.
async fn show_user(app: &App, id: i64, j: bool) -> CliResult<()> {
    let user = app.store.get_user(id).await?;
    let registrations = app.store.registrations_of(id).await?;
    if j {
        let registrations: Vec<_> = registrations
            .iter()
            .map(|(r, c)| serde_json::json!({ "registration": r, "competition": c }))
            .collect();
        json(&serde_json::json!({
            "user": user,
            "flags": {
                "telegram_blocked": user.telegram_blocked_at.is_some(),
                "email_unsubscribed": user.email_unsubscribed_at.is_some(),
                "email_bounced": user.email_bounced_at.is_some(),
            },
            "registrations": registrations,
        }))?;
        return Ok(());
    }
    let paint = crate::term::Paint::stdout();
    println!(
        "{}",
        paint.bold(&format!("user {} {}", user.id, user.full_name()))
    );
    let line = |label: &str, value: String| println!("{label:<13}{value}");
    line("external id:", opt(user.external_id.as_ref()));
    line("telegram:", opt(user.telegram_chat_id));
    line(
        "username:",
        opt(user.username.as_ref().map(|u| format!("@{u}"))),
    );
    line("e-mail:", opt(user.email.as_ref()));
    line("language:", opt(user.language.as_ref()));
    line(
        "place:",
        match (&user.city, &user.country) {
            (Some(c), Some(k)) => format!("{c}, {k}"),
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (None, None) => "-".to_owned(),
        },
    );
    let mut flags = Vec::new();
    for (what, at) in [
        ("blocked the bot", user.telegram_blocked_at),
        ("unsubscribed from e-mail", user.email_unsubscribed_at),
        ("e-mail bounced", user.email_bounced_at),
    ] {
        if let Some(at) = at {
            flags.push(paint.warn(&format!("{what} {}", at.format("%Y-%m-%d %H:%M"))));
        }
    }
    line(
        "flags:",
        if flags.is_empty() {
            "none".to_owned()
        } else {
            flags.join("; ")
        },
    );
    if !user.attributes.is_empty() {
        line(
            "attributes:",
            serde_json::Value::Object(user.attributes.clone()).to_string(),
        );
    }
    line(
        "created:",
        user.created_at.format("%Y-%m-%d %H:%M").to_string(),
    );
    if registrations.is_empty() {
        println!("no registrations");
        return Ok(());
    }
    let mut t =
        Table::new(&["competition", "slug", "starts", "role", "status"]).status_column("status");
    for (r, c) in &registrations {
        t.row(vec![
            c.name.clone(),
            c.slug.clone(),
            opt(c.starts_on),
            r.role.to_string(),
            r.status.to_string(),
        ]);
    }
    t.print();
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
