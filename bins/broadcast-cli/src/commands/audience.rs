//! `audience`: import the CSV files, list and show users, list competitions.

use super::*;

pub(crate) async fn audience(app: &App, cmd: AudienceCmd, j: bool) -> CliResult<()> {
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
                    serde_json::to_value(ImportDoc::from(&r)).context("report")?,
                );
            }
            if let Some(p) = users {
                let rows = parse_csv(&p, csv_import::parse_users).await?;
                let file = p.display().to_string();
                let r = write_rows(&p, rows.len(), orch.import_users(me, &file, rows)).await?;
                report.insert(
                    "users".into(),
                    serde_json::to_value(ImportDoc::from(&r)).context("report")?,
                );
            }
            if let Some(p) = registrations {
                let rows = parse_csv(&p, csv_import::parse_registrations).await?;
                let file = p.display().to_string();
                let r =
                    write_rows(&p, rows.len(), orch.import_registrations(me, &file, rows)).await?;
                report.insert(
                    "registrations".into(),
                    serde_json::to_value(ImportDoc::from(&r)).context("report")?,
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
                json(&PageDoc::<UserDoc>::of(&page))?;
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
        AudienceCmd::Count { filter, channels } => {
            let filter = build_filter(app, &filter).await?;
            let c = app.orchestrator.count_audience(&filter, channels).await?;
            if j {
                json(&CountDoc::new(&c, channels, None))?;
            } else {
                println!(
                    "{} users match ({})",
                    c.users,
                    crate::confirm::audience(app, &filter).await?
                );
                print_count(&c, channels);
            }
        }
    }
    Ok(())
}

/// Parses a CSV file off the async threads, with a progress bar over the bytes read.
pub(crate) async fn parse_csv<T: Send + 'static>(
    p: &Path,
    parse: fn(
        CountingReader<std::fs::File>,
    ) -> Result<Vec<T>, broadcast_app::csv_import::CsvErrors>,
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
    parsed.map_err(|e| invalid(e.in_file(p.display().to_string()).to_string()))
}

/// Stores parsed rows (one all-or-nothing transaction per file) with a spinner.
pub(crate) async fn write_rows<T>(
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
pub(crate) async fn show_user(app: &App, id: i64, j: bool) -> CliResult<()> {
    let user = app.store.get_user(id).await?;
    let registrations = app.store.registrations_of(id).await?;
    if j {
        let registrations: Vec<_> = registrations
            .iter()
            .map(|(r, c)| {
                serde_json::json!({
                    "registration": RegistrationDoc::from(r),
                    "competition": CompetitionDoc::from(c),
                })
            })
            .collect();
        json(&serde_json::json!({
            "user": UserDoc::from(&user),
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

pub(crate) fn open(p: &Path) -> CliResult<std::fs::File> {
    std::fs::File::open(p).map_err(|e| invalid(format!("cannot open {}: {e}", p.display())))
}

pub(crate) fn prefix(p: &Path, e: broadcast_domain::Error) -> crate::app::CliError {
    if e.is_invalid_input() {
        invalid(format!("{}: {e}", p.display()))
    } else {
        e.into()
    }
}
