//! `broadcast-cli demo`: a real broadcast end to end with nothing configured. The demo audience
//! and templates are compiled into the binary, so it works from any directory.

use broadcast_app::csv_import;
use broadcast_domain::{
    AudienceFilter, AudienceStore as _, ChannelPolicy, NewBroadcast, RegistrationStatus,
    TemplateName, TemplateStore as _, UserQuery,
};

use crate::app::{App, CliError, CliResult, Config};
use crate::commands::{TemplateFile, print_stats};

const USERS: &str = include_str!("../../../fixtures/users.csv");
const COMPETITIONS: &str = include_str!("../../../fixtures/competitions.csv");
const REGISTRATIONS: &str = include_str!("../../../fixtures/registrations.csv");
/// The poster the demo broadcast shows above its Telegram text.
const POSTER: &[u8] = include_bytes!("../../../fixtures/poster.png");
const POSTER_NAME: &str = "poster.png";
/// The template the demo broadcast sends: the reminder with the poster and a button.
const DEMO_TEMPLATE: &str = "competition-poster";
const TEMPLATES: &[(&str, &str)] = &[
    (
        "competition-poster.json",
        include_str!("../../../fixtures/templates/competition-poster.json"),
    ),
    (
        "registration-reminder.json",
        include_str!("../../../fixtures/templates/registration-reminder.json"),
    ),
    (
        "schedule-published.json",
        include_str!("../../../fixtures/templates/schedule-published.json"),
    ),
    (
        "volunteer-briefing.json",
        include_str!("../../../fixtures/templates/volunteer-briefing.json"),
    ),
];
const DEMO_COMPETITION: &str = "euro-robotics-2027";

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow::anyhow!("{what}: {e}"))
}

pub(crate) async fn run(config: Config, reset: bool, json: bool) -> CliResult<()> {
    if reset {
        let store = broadcast_store::Store::connect(&config.database_url)
            .await
            .map_err(|e| failed("cannot open the database", e))?;
        store
            .reset()
            .await
            .map_err(|e| failed("cannot reset the database", e))?;
        for path in [
            config.channels.outbox_dir.join("telegram.jsonl"),
            config.channels.outbox_dir.join("email"),
        ] {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed(&format!("cannot remove {}", path.display()), e)),
            }
        }
    }
    let app = App::build(config).await?;
    app.announce_channels();
    let users = app
        .store
        .list_users(&UserQuery {
            limit: 1,
            ..Default::default()
        })
        .await?;
    if users.total == 0 {
        let bad =
            |file: &str, e: &dyn std::fmt::Display| failed(&format!("demo fixture {file}"), e);
        let comps = csv_import::parse_competitions(COMPETITIONS.as_bytes())
            .map_err(|e| bad("competitions.csv", &e))?;
        let users = csv_import::parse_users(USERS.as_bytes()).map_err(|e| bad("users.csv", &e))?;
        let regs = csv_import::parse_registrations(REGISTRATIONS.as_bytes())
            .map_err(|e| bad("registrations.csv", &e))?;
        let (orch, me) = (&app.orchestrator, &app.actor);
        orch.import_competitions(me, "demo competitions.csv", comps)
            .await?;
        let report = orch.import_users(me, "demo users.csv", users).await?;
        orch.import_registrations(me, "demo registrations.csv", regs)
            .await?;
        eprintln!("loaded the demo audience: {} users", report.inserted);
    }
    if app.orchestrator.medium(POSTER_NAME).await.is_err() {
        app.orchestrator
            .add_medium(&app.actor, POSTER_NAME, POSTER.to_vec(), false)
            .await?;
    }
    for (file, text) in TEMPLATES {
        let new = TemplateFile::parse(text, file)?.into_new(None)?;
        if app.store.find_template(&new.name).await?.is_none() {
            app.orchestrator.create_template(&app.actor, new).await?;
        }
    }
    let template = app
        .store
        .find_template(&TemplateName::parse(DEMO_TEMPLATE).map_err(|e| failed("template", e.0))?)
        .await?
        .ok_or_else(|| failed("demo", format!("the {DEMO_TEMPLATE} template is missing")))?;
    let competition = app
        .store
        .list_competitions()
        .await?
        .into_iter()
        .find(|c| c.slug == DEMO_COMPETITION)
        .ok_or_else(|| {
            failed(
                "demo",
                "the demo competition is missing; run `demo --reset`",
            )
        })?;
    let filter = AudienceFilter {
        competition_ids: vec![competition.id],
        registration_statuses: vec![RegistrationStatus::Confirmed],
        ..AudienceFilter::default()
    };
    let broadcast = app
        .orchestrator
        .create_broadcast(
            &app.actor,
            NewBroadcast {
                name: format!("Reminder: {}", competition.name),
                template_id: template.id,
                channel_policy: ChannelPolicy::BOTH,
                filter,
                scheduled_at: None,
                created_by: Some("demo".into()),
            },
        )
        .await?;
    eprintln!(
        "broadcast {} `{}` to confirmed participants of {} over Telegram and e-mail",
        broadcast.id, broadcast.name, competition.name
    );
    app.orchestrator.launch(&app.actor, broadcast.id).await?;
    app.orchestrator.run_until_done(broadcast.id).await?;
    print_stats(&app, broadcast.id, json, None).await?;
    let outbox = app.config.channels.outbox_dir.clone();
    let shown = std::fs::canonicalize(&outbox).unwrap_or(outbox);
    if !json && app.config.channels.telegram.is_none() {
        println!(
            "telegram outbox: {}",
            shown.join("telegram.jsonl").display()
        );
    }
    if !json && app.config.channels.smtp.is_none() {
        println!("e-mail outbox:   {}", shown.join("email").display());
    }
    Ok(())
}
