//! The pages: templates, broadcasts (filter builder, launch, live progress, statistics,
//! recipients, export, lifecycle, schedule, test send), audience and import, audit log.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};

use crate::helpers::{Options, Session, TestApp, fixtures, spawn_app, spawn_app_with};

fn id_from_location(location: &str, prefix: &str) -> i64 {
    location
        .strip_prefix(prefix)
        .and_then(|rest| rest.split(['?', '/']).next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {location}"))
}

#[tokio::test]
async fn templates_are_created_with_errors_shown_at_their_line_then_edited_previewed_deleted() {
    let app = spawn_app().await;
    let s = app.login().await;
    let form = app.get("/templates/new", &s).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("first_name"), "variable catalogue shown");

    // A syntax error on line 2 is reported at its line, with the source around it.
    let broken = "Hello {{ first_name }}!\nSee you at {{ competition_name }\nBye";
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[
                ("name", "Reminder"),
                ("telegram_text", broken),
                ("parse_mode", "html"),
            ],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("Telegram text</strong>, line 2"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("class=\"marked\""), "{}", reply.body);
    assert!(reply.body.contains("aria-invalid=\"true\""));
    // The form keeps what was typed (escaped).
    assert!(reply.body.contains("See you at {{ competition_name }"));
    // An unknown variable is named.
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[
                ("name", "Reminder"),
                ("telegram_text", "Hi {{ frist_name }}"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("frist_name"), "{}", reply.body);
    // A bad name.
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[("name", "a/b"), ("telegram_text", "Hi")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("contains `/`"), "{}", reply.body);

    // Fixed: saved.
    let fixed = "Hello <b>{{ first_name }}</b>!\nSee you at {{ competition_name }}.";
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[
                ("name", "Reminder"),
                ("description", "<script>alert('description')</script>"),
                ("telegram_text", fixed),
                ("parse_mode", "html"),
                ("email_subject", "Reminder for {{ first_name }}"),
                ("email_html", "<p>Dear {{ full_name }}</p>"),
                ("email_text", "Dear {{ full_name }}"),
            ],
        )
        .await;
    reply.assert_redirect("/templates/");
    let id = id_from_location(reply.location(), "/templates/");
    let edit = app.get(reply.location(), &s).await;
    assert!(edit.body.contains("Template created."));
    assert!(edit.body.contains("Edit template"));
    assert!(edit.body.contains("v1"));

    // Markup in the description is shown escaped, never run.
    let list = app.get("/templates", &s).await;
    assert!(
        list.body
            .contains("&lt;script&gt;alert(&#39;description&#39;)&lt;/script&gt;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<script>alert("));

    // A taken name is refused on the form.
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[("name", "Reminder"), ("telegram_text", "Hi")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Update: the version goes up.
    let reply = app
        .post_form(
            &format!("/templates/{id}"),
            &s,
            &[
                ("name", "Reminder"),
                (
                    "telegram_text",
                    "Hi <b>{{ first_name }}</b> from {{ city }}",
                ),
                ("parse_mode", "html"),
                ("email_subject", "Reminder"),
                ("email_text", "Dear {{ full_name }}"),
            ],
        )
        .await;
    reply.assert_redirect(&format!("/templates/{id}"));
    assert!(app.get(reply.location(), &s).await.body.contains("v2"));
    // An update with an error is refused at its line.
    let reply = app
        .post_form(
            &format!("/templates/{id}"),
            &s,
            &[("name", "Reminder"), ("telegram_text", "{% if %}")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("line 1"), "{}", reply.body);

    // The live preview beside the editor: the unsaved form, rendered for the sample recipient.
    let live = app
        .post_form(
            "/templates/live-preview",
            &s,
            &[
                ("name", "Unsaved"),
                ("telegram_text", "Hi <b>{{ first_name }}</b>"),
                ("parse_mode", "html"),
                ("email_subject", "For {{ first_name }}"),
                ("email_html", "<p style=\"color:red\">{{ first_name }}</p>"),
            ],
        )
        .await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    let live = live.json();
    assert_eq!(live["telegram"]["html"], "Hi <b>Anna</b>", "{live}");
    assert_eq!(live["email"]["subject"], "For Anna");
    let frame = live["email"]["frame"].as_str().unwrap();
    let frame = app.get(frame, &s).await;
    assert_eq!(frame.body, "<p style=\"color:red\">Anna</p>");
    assert!(
        frame.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(
        app.get("/templates/live-preview/forged", &s).await.status,
        StatusCode::NOT_FOUND
    );
    let live = app
        .post_form(
            "/templates/live-preview",
            &s,
            &[
                ("name", "Broken"),
                ("telegram_text", "Hi {{ first_name }"),
                ("parse_mode", "html"),
            ],
        )
        .await
        .json();
    let problems = live["problems"].to_string();
    assert!(problems.contains("line 1"), "{problems}");
    assert!(live["telegram"].is_null());

    // Preview for the sample recipient: Telegram as Telegram shows it, the e-mail parts.
    let preview = app.get(&format!("/templates/{id}/preview"), &s).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(
        preview.body.contains("Hi <b>Anna</b> from Berlin"),
        "{}",
        preview.body
    );
    assert!(
        preview
            .body
            .contains("data-testid=\"email-subject\">Reminder<")
    );
    // For a real user.
    let jonas = app.user_matching("Becker").await;
    let preview = app
        .get(&format!("/templates/{id}/preview?user_id={}", jonas.id), &s)
        .await;
    assert!(
        preview.body.contains("Hi <b>Jonas</b> from München"),
        "{}",
        preview.body
    );
    // With the competition of the user's registration, and the page says which one.
    let with_competition = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Competition",
                "content": {
                    "telegram_text": "{{ competition_name }} as {{ role }} ({{ registration_status }})",
                    "parse_mode": "plain",
                },
            })),
        )
        .await;
    assert_eq!(
        with_competition.status,
        StatusCode::CREATED,
        "{}",
        with_competition.body
    );
    let competition_id = with_competition.json()["id"].as_i64().unwrap();
    let preview = app
        .get(
            &format!("/templates/{competition_id}/preview?user_id={}", jonas.id),
            &s,
        )
        .await;
    let picked = preview
        .body
        .split("data-testid=\"preview-registration\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no registration named: {}", preview.body));
    assert!(picked.starts_with("With Jonas"), "{picked}");
    let competition = picked
        .split("registration for ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .unwrap();
    assert!(
        preview.body.contains(&format!("{competition} as ")),
        "the message uses the registration named: {}",
        preview.body
    );
    // An unknown user: one message, and nothing that contradicts it.
    let preview = app
        .get(&format!("/templates/{id}/preview?user_id=999999"), &s)
        .await;
    assert!(preview.body.contains("There is no user with id 999999"));
    assert_eq!(
        preview.body.matches("role=\"alert\"").count(),
        1,
        "{}",
        preview.body
    );
    for contradiction in [
        "sample recipient (",
        "no part to preview",
        "data-testid=\"telegram-preview\"",
    ] {
        assert!(
            !preview.body.contains(contradiction),
            "{contradiction}: {}",
            preview.body
        );
    }
    // The e-mail's HTML has a frame of its own, under a policy that lets its styles in and
    // nothing that runs.
    let frame = app.get(&format!("/templates/{id}/preview/email"), &s).await;
    assert_eq!(
        frame.status,
        StatusCode::BAD_REQUEST,
        "no HTML part: {}",
        frame.body
    );
    let html = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Html mail",
                "content": { "email_subject": "S", "email_html": "<p style=\"color:red\">Hi {{ first_name }}</p>" },
            })),
        )
        .await;
    let html_id = html.json()["id"].as_i64().unwrap();
    let page = app.get(&format!("/templates/{html_id}/preview"), &s).await;
    assert!(
        page.body
            .contains(&format!("src=\"/templates/{html_id}/preview/email\"")),
        "{}",
        page.body
    );
    let frame = app
        .get(&format!("/templates/{html_id}/preview/email"), &s)
        .await;
    assert_eq!(frame.status, StatusCode::OK);
    assert_eq!(frame.body, "<p style=\"color:red\">Hi Anna</p>");
    let policy = frame.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("style-src 'unsafe-inline'")
            && policy.contains("sandbox")
            && !policy.contains("script-src"),
        "{policy}"
    );
    let preview = app
        .get(&format!("/templates/{id}/preview?user_id=abc"), &s)
        .await;
    assert_eq!(preview.status, StatusCode::BAD_REQUEST);

    // Delete.
    let reply = app
        .post_form(&format!("/templates/{id}/delete"), &s, &[])
        .await;
    reply.assert_redirect("/templates?done=template_deleted");
    assert_eq!(
        app.get(&format!("/templates/{id}"), &s).await.status,
        StatusCode::NOT_FOUND
    );
    // Markup in a template's text is shown as text on the edit page and in the preview.
    let evil = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Evil",
                "content": {
                    "telegram_text": "<script>alert('t')</script> {{ first_name }}",
                    "parse_mode": "plain",
                },
            })),
        )
        .await;
    assert_eq!(evil.status, StatusCode::CREATED, "{}", evil.body);
    let evil_id = evil.json()["id"].as_i64().unwrap();
    for path in [
        format!("/templates/{evil_id}"),
        format!("/templates/{evil_id}/preview"),
    ] {
        let page = app.get(&path, &s).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body
                .contains("&lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt;"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<script>alert("), "{path}");
    }

    let audit = app.get("/audit", &s).await.body;
    for action in ["template.create", "template.update", "template.delete"] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit log"
        );
    }
    app.stop().await;
}

/// Reads server-sent events until one `progress` event arrives; returns its data.
async fn first_progress_event(app: &TestApp, path: &str, s: &Session) -> serde_json::Value {
    let response = app
        .client
        .get(app.url(path))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if let Some(start) = buffer.find("event: progress\ndata: ") {
                let rest = &buffer[start + "event: progress\ndata: ".len()..];
                if let Some(end) = rest.find('\n') {
                    return serde_json::from_str(&rest[..end]).unwrap();
                }
            }
        }
        panic!("the event stream ended: {buffer}");
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a progress event within 10 s")
}

#[tokio::test]
async fn a_broadcast_is_built_with_the_filter_form_launched_and_delivered_to_the_end() {
    let app = spawn_app().await;
    let s = app.login().await;
    let template = app.create_template("Judges news").await;

    let form = app.get("/broadcasts/new", &s).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("European Robotics Challenge 2027"));
    assert!(form.body.contains("value=\"judge\""));
    assert!(form.body.contains("Berlin"), "cities pick list");

    // The live count of the filter builder equals the API's count of the same filter.
    let count = app
        .get(
            "/broadcasts/audience-count?roles=judge&roles=mentor&has_email=yes&channel_policy=both",
            &s,
        )
        .await;
    assert_eq!(count.status, StatusCode::OK, "{}", count.body);
    let count = count.json();
    let api = app
        .api(
            Method::POST,
            "/audience/count",
            Some(serde_json::json!({
                "filter": { "roles": ["judge", "mentor"], "has_email": true },
                "channel_policy": "both",
            })),
        )
        .await
        .json();
    assert!(count["users"].as_u64().unwrap() > 0, "{count}");
    assert_eq!(count["users"], api["users"], "{count} vs {api}");
    let channels: Vec<&str> = count["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["telegram", "email"], "{count}");
    for c in ["telegram", "email"] {
        assert_eq!(
            messages(&count, c),
            api["messages"][c],
            "{c}: {count} vs {api}"
        );
    }
    // Everyone has an address; unsubscribed or bounced ones get no e-mail.
    assert!(messages(&count, "email").as_u64() <= count["users"].as_u64());
    assert_eq!(api["messages"]["email"], api["reachable"]["email"]);
    // A bad field is named.
    let bad = app.get("/broadcasts/audience-count?roles=jduge", &s).await;
    bad.assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(bad.body.contains("jduge"));

    // Create from the form.
    let reply = app
        .post_form(
            "/broadcasts",
            &s,
            &[
                ("name", "Judges and mentors"),
                ("template_id", &template.to_string()),
                ("channel_policy", "both"),
                ("roles", "judge"),
                ("roles", "mentor"),
                ("has_email", "yes"),
                ("has_telegram", ""),
                ("scheduled_at", ""),
            ],
        )
        .await;
    reply.assert_redirect("/broadcasts/");
    let id = id_from_location(reply.location(), "/broadcasts/");
    let b = app.broadcast(id).await;
    assert_eq!(b.status.as_str(), "draft");
    assert_eq!(b.created_by.as_deref(), Some("admin"));
    assert_eq!(b.filter.roles.len(), 2);
    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert!(page.body.contains("Launch…"));

    // A missing template and a past start time are refused on the form.
    let reply = app
        .post_form("/broadcasts", &s, &[("name", "x"), ("template_id", "")])
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("choose a template"));
    let reply = app
        .post_form(
            "/broadcasts",
            &s,
            &[
                ("name", "late"),
                ("template_id", &template.to_string()),
                ("scheduled_at", "2001-01-01T10:00"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("in the past"));

    // The confirmation page shows the audience per channel and the duration.
    let confirm = app.get(&format!("/broadcasts/{id}/launch"), &s).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    let users = format!("data-testid=\"launch-users\">{}<", count["users"]);
    assert!(confirm.body.contains(&users), "{}", confirm.body);
    let emails = format!(
        "data-testid=\"launch-email\">{}<",
        messages(&count, "email")
    );
    assert!(confirm.body.contains(&emails));
    assert!(
        confirm.body.contains("outbox"),
        "estimate names the channels"
    );

    let reply = app
        .post_form(&format!("/broadcasts/{id}/launch"), &s, &[])
        .await;
    reply.assert_redirect(&format!("/broadcasts/{id}?done=launched"));
    // A second launch is refused.
    let again = app
        .post_form(&format!("/broadcasts/{id}/launch"), &s, &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    app.wait_for_status(&s, id, "completed").await;
    let progress = app
        .get(&format!("/broadcasts/{id}/progress"), &s)
        .await
        .json();
    assert_eq!(progress["percent"], 100, "{progress}");
    assert_eq!(progress["open"], 0);

    // The statistics agree with what the outbox received.
    let stats = app
        .api(Method::GET, &format!("/broadcasts/{id}/stats"), None)
        .await
        .json();
    let sent_tg = stats["by_channel"]["telegram"]["sent"]
        .as_u64()
        .unwrap_or(0);
    let sent_mail = stats["by_channel"]["email"]["sent"].as_u64().unwrap_or(0);
    assert_eq!(sent_mail, messages(&count, "email").as_u64().unwrap());
    assert_eq!(sent_tg, messages(&count, "telegram").as_u64().unwrap());
    let tg = app.telegram_outbox();
    assert_eq!(tg.len() as u64, sent_tg);
    assert!(tg.iter().all(|l| l["broadcast_id"] == id));
    let mails = app.email_outbox();
    assert_eq!(mails.len() as u64, sent_mail);
    // Every e-mail carries a working one-click unsubscribe link to this panel.
    assert!(
        mails
            .iter()
            .all(|m| m.contains(&format!("List-Unsubscribe: <{}/unsubscribe/", app.base))),
        "{}",
        mails[0]
    );

    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert!(page.body.contains("data-testid=\"status\">completed<"));
    assert!(page.body.contains("Recipients per status"), "the chart");
    assert!(page.body.contains("class=\"fill s-sent\""));

    // The recipient table filters and pages.
    let rows = app
        .get(
            &format!("/broadcasts/{id}/recipients?channel=email&status=sent"),
            &s,
        )
        .await;
    assert_eq!(rows.status, StatusCode::OK);
    assert!(
        rows.body.contains(&format!("{sent_mail} in total")),
        "{}",
        rows.body
    );
    assert!(rows.body.contains("<td>email</td>"));
    assert!(!rows.body.contains("<td>telegram</td>"));
    let bad = app
        .get(&format!("/broadcasts/{id}/recipients?status=lost"), &s)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // CSV export of every row.
    let csv = app
        .get(&format!("/broadcasts/{id}/recipients.csv"), &s)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("broadcast-{id}-recipients.csv"))
    );
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, broadcast_app::export::COLUMNS, "the CLI's columns");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, stats["total"].as_u64().unwrap());
    assert!(
        records.iter().all(|r| !r[3].is_empty()),
        "every row names its user"
    );
    // The recipients page too, beside the id.
    let page = app.get(&format!("/broadcasts/{id}/recipients"), &s).await;
    let first = &records[0];
    assert!(
        page.body
            .contains(&format!("<span class=\"muted\">#{}</span>", &first[2])),
        "{}",
        page.body
    );
    if first[3].chars().all(|c| c.is_alphanumeric() || c == ' ') {
        assert!(
            page.body.contains(&first[3]),
            "{}: {}",
            &first[3],
            page.body
        );
    }

    // The dashboard lists it; the audit log has the story.
    let dash = app.get("/", &s).await;
    assert!(dash.body.contains("Judges and mentors"));
    let audit = app.get("/audit", &s).await.body;
    for action in ["broadcast.create", "broadcast.launch", "broadcast.export"] {
        assert!(audit.contains(action), "{action}");
    }
    // Duplicating prefills the form.
    let copy = app.get(&format!("/broadcasts/new?from={id}"), &s).await;
    assert!(copy.body.contains("Copy of Judges and mentors"));
    app.stop().await;
}

#[tokio::test]
async fn lifecycle_actions_progress_stream_schedule_and_test_send() {
    // No worker: the broadcast stays running until the test acts.
    let app = spawn_app_with(
        broadcast_testkit::TestDb::sqlite().await,
        Options {
            run_worker: false,
            ..Options::default()
        },
    )
    .await;
    let s = app.login().await;
    let template = app.create_template("Lifecycle").await;
    let created = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({
                "name": "Lifecycle", "template_id": template, "channel_policy": "telegram",
                "filter": { "countries": ["germany"] },
            })),
        )
        .await;
    let id = created.json()["id"].as_i64().unwrap();

    // Schedule, reschedule, clear.
    let reply = app
        .post_form(
            &format!("/broadcasts/{id}/schedule"),
            &s,
            &[("scheduled_at", "2099-05-01T08:30")],
        )
        .await;
    reply.assert_redirect(&format!("/broadcasts/{id}?done=broadcast_scheduled"));
    let b = app.broadcast(id).await;
    assert_eq!(b.status.as_str(), "scheduled");
    assert_eq!(
        b.scheduled_at.unwrap().to_rfc3339(),
        "2099-05-01T08:30:00+00:00"
    );
    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert!(page.body.contains("value=\"2099-05-01T08:30\""));
    let past = app
        .post_form(
            &format!("/broadcasts/{id}/schedule"),
            &s,
            &[("scheduled_at", "2000-01-01T00:00")],
        )
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
    app.post_form(
        &format!("/broadcasts/{id}/schedule"),
        &s,
        &[("clear", "true")],
    )
    .await
    .assert_redirect(&format!("/broadcasts/{id}?done=schedule_cleared"));
    assert_eq!(app.broadcast(id).await.status.as_str(), "draft");

    // Test send to an address and to a user, without touching the statistics.
    let test_page = app.get(&format!("/broadcasts/{id}/test"), &s).await;
    assert_eq!(test_page.status, StatusCode::OK);
    let jonas = app.user_matching("Becker").await;
    let reply = app
        .post_form(
            &format!("/broadcasts/{id}/test"),
            &s,
            &[("target", "user"), ("value", &jonas.id.to_string())],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("<strong>telegram</strong>: <span class=\"ok\">sent"),
        "{}",
        reply.body
    );
    let tg = app.telegram_outbox();
    assert_eq!(tg.len(), 1);
    assert!(tg[0]["text"].as_str().unwrap().contains("Jonas"));
    assert!(tg[0]["broadcast_id"].is_null());
    let reply = app
        .post_form(
            &format!("/broadcasts/{id}/test"),
            &s,
            &[("target", "email"), ("value", "not-an-address")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("not a valid e-mail address"));

    // Launch; no worker runs, so it stays running.
    app.post_form(&format!("/broadcasts/{id}/launch"), &s, &[])
        .await
        .assert_redirect(&format!("/broadcasts/{id}"));
    assert_eq!(app.broadcast(id).await.status.as_str(), "running");
    // The live stream sends the current progress first.
    let event = first_progress_event(&app, &format!("/broadcasts/{id}/events"), &s).await;
    assert_eq!(event["broadcast_id"], id);
    assert_eq!(event["status"], "running");
    assert!(event["open"].as_u64().unwrap() > 0, "{event}");
    let event = first_progress_event(&app, "/events", &s).await;
    assert_eq!(event["broadcast_id"], id);
    assert_eq!(
        app.get("/broadcasts/424242/events", &s).await.status,
        StatusCode::NOT_FOUND
    );

    // Pause, refused second pause, resume, cancel, refused resume.
    app.post_form(&format!("/broadcasts/{id}/pause"), &s, &[])
        .await
        .assert_redirect(&format!("/broadcasts/{id}?done=paused"));
    let b = app.broadcast(id).await;
    assert_eq!(b.status.as_str(), "paused");
    assert_eq!(b.status_reason.as_deref(), Some("paused by admin"));
    let again = app
        .post_form(&format!("/broadcasts/{id}/pause"), &s, &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("paused"), "{}", again.body);
    app.post_form(&format!("/broadcasts/{id}/resume"), &s, &[])
        .await
        .assert_redirect(&format!("/broadcasts/{id}?done=resumed"));
    assert_eq!(app.broadcast(id).await.status.as_str(), "running");
    app.post_form(&format!("/broadcasts/{id}/cancel"), &s, &[])
        .await
        .assert_redirect(&format!("/broadcasts/{id}?done=cancelled"));
    assert_eq!(app.broadcast(id).await.status.as_str(), "cancelled");
    let resume = app
        .post_form(&format!("/broadcasts/{id}/resume"), &s, &[])
        .await;
    assert_eq!(resume.status, StatusCode::CONFLICT);
    let launch = app.get(&format!("/broadcasts/{id}/launch"), &s).await;
    assert_eq!(launch.status, StatusCode::CONFLICT);
    let stats = app
        .api(Method::GET, &format!("/broadcasts/{id}/stats"), None)
        .await
        .json();
    assert!(
        stats["by_status"]["cancelled"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert!(
        stats["by_status"].get("sent").is_none(),
        "test sends are not counted: {stats}"
    );
    let list = app.get("/broadcasts?status=cancelled", &s).await;
    assert!(list.body.contains("Lifecycle"));
    let list = app.get("/broadcasts?status=running", &s).await;
    assert!(!list.body.contains(">Lifecycle<"));
    assert_eq!(
        app.get("/broadcasts?status=nonsense", &s).await.status,
        StatusCode::BAD_REQUEST
    );
    let audit = app.get("/audit", &s).await.body;
    for action in [
        "broadcast.schedule",
        "broadcast.test_send",
        "broadcast.pause",
        "broadcast.resume",
        "broadcast.cancel",
    ] {
        assert!(audit.contains(action), "{action}");
    }
    // An open live stream does not keep the server from shutting down.
    let open = app
        .client
        .get(app.url("/events"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    app.stop().await;
    drop(open);
}

fn upload(kind: &str, name: &str, body: &str, csrf: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("kind", kind.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(body.as_bytes().to_vec()).file_name(name.to_owned()),
        )
}

#[tokio::test]
async fn audience_pages_import_with_row_errors_and_markup_is_escaped() {
    let app = spawn_app().await;
    let s = app.login().await;
    let list = app.get("/audience", &s).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("Page 1 of 4 · 200 in total"),
        "{}",
        list.body
    );
    let page2 = app.get("/audience?page=2", &s).await;
    assert!(page2.body.contains("Page 2 of 4"));
    let found = app.get("/audience?q=becker", &s).await;
    assert!(found.body.contains("Jonas Becker"));
    assert!(!found.body.contains("Maximilian"));

    let jonas = app.user_matching("Becker").await;
    let user = app.get(&format!("/audience/users/{}", jonas.id), &s).await;
    assert!(
        user.body.contains("Kraków Code Cup 2027"),
        "registrations shown"
    );
    assert!(user.body.contains("organizer"));
    let missing = app.get("/audience/users/999999", &s).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Error pages keep the menu.
    for link in [
        "href=\"/broadcasts\"",
        "href=\"/audit\"",
        "class=\"menu-button\"",
    ] {
        assert!(missing.body.contains(link), "{link}: {}", missing.body);
    }

    // A bad row is reported with its line and column; nothing is imported.
    let bad = "external_id,first_name,email\nx-1,Ann,ann@example.org\nx-2,Bob,not-an-email\n";
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(upload("users", "people.csv", bad, &s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.text().await.unwrap();
    assert!(body.contains("people.csv line 3, column `email`"), "{body}");
    assert!(body.contains("Line <strong>3</strong>"), "{body}");

    // Three bad rows: all three are named, and still nothing is imported.
    let bad = "external_id,first_name,email,telegram_chat_id\n\
               x-1,Ann,ann@example.org,11\n\
               x-2,Bob,not-an-email,12\n\
               x-3,Cy,cy@example.org,twelve\n\
               x-1,Dee,dee@example.org,14\n";
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(upload("users", "people.csv", bad, &s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.text().await.unwrap();
    assert!(body.contains("3 problems in people.csv"), "{body}");
    assert_eq!(
        body.matches("data-testid=\"import-problem\"").count(),
        3,
        "{body}"
    );
    for place in [
        "people.csv line 3, column `email`",
        "people.csv line 4, column `telegram_chat_id`",
        "people.csv line 5, column `external_id`: `x-1` is also on line 2",
    ] {
        assert!(body.contains(place), "{place}: {body}");
    }
    assert!(
        app.get("/audience?q=x-1", &s)
            .await
            .body
            .contains("No user matches")
    );

    // A user with markup in the name, imported through the page.
    let evil = "external_id,first_name,last_name,email\n\
                x-evil,<script>alert(1)</script>,<img src=x onerror=alert(2)>,evil@example.org\n";
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(upload("users", "evil.csv", evil, &s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let body = reply.text().await.unwrap();
    assert!(body.contains("Imported users: 1 new, 0 updated."), "{body}");
    let list = app.get("/audience?q=x-evil", &s).await;
    assert!(
        list.body.contains("&lt;script&gt;alert(1)&lt;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<script>alert(1)"));
    assert!(!list.body.contains("<img src=x"));
    let evil_user = app.user_matching("x-evil").await;
    let user = app
        .get(&format!("/audience/users/{}", evil_user.id), &s)
        .await;
    assert!(!user.body.contains("<script>alert(1)"));
    assert!(user.body.contains("&lt;img src=x onerror=alert(2)&gt;"));

    // The user's markup stays text in a template preview, too.
    let template = app.create_template("Escaping").await;
    let preview = app
        .get(
            &format!("/templates/{template}/preview?user_id={}", evil_user.id),
            &s,
        )
        .await;
    assert!(
        !preview.body.contains("<script>alert(1)"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("&lt;script&gt;"), "{}", preview.body);

    // An unknown kind and a missing file.
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(upload("pets", "p.csv", "x", &s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(upload("users", "empty.csv", "", &s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let audit = app.get("/audit", &s).await.body;
    assert!(audit.contains("audience.import"));
    assert_eq!(app.get("/audience/import", &s).await.status, StatusCode::OK);
    app.stop().await;
}

/// A broadcast paused by its circuit breaker: the page says when the probe goes and that the
/// broadcast resumes by itself, the API shows the probe, and `/metrics` counts the open breaker.
#[tokio::test]
async fn an_open_circuit_breaker_is_shown_on_the_page_in_the_api_and_in_the_metrics() {
    use broadcast_domain::{BreakerProbe, BroadcastStore, ChannelKind, Transition};
    let app = spawn_app_with(
        broadcast_testkit::TestDb::sqlite().await,
        Options {
            run_worker: false,
            ..Options::default()
        },
    )
    .await;
    let s = app.login().await;
    let template = app.create_template("Breaker").await;
    let created = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({
                "name": "Breaker", "template_id": template, "channel_policy": "email",
                "filter": {},
            })),
        )
        .await;
    let id = created.json()["id"].as_i64().unwrap();
    let launched = app
        .api(Method::POST, &format!("/broadcasts/{id}/launch"), None)
        .await;
    assert_eq!(launched.status, StatusCode::OK, "{}", launched.body);
    let metric = "broadcast_breakers_open{channel=\"email\"}";
    let scrape = || async {
        app.get("/metrics", &s)
            .await
            .body
            .lines()
            .find(|l| l.starts_with(metric))
            .map(str::to_owned)
    };
    assert_eq!(scrape().await.as_deref(), Some(&*format!("{metric} 0")));

    // What the worker writes when the breaker trips.
    let at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let mut pause = Transition::Pause.change(
        chrono::Utc::now(),
        Some("50 consecutive email failures".into()),
        None,
    );
    pause.probe = Some(BreakerProbe {
        channel: ChannelKind::EMAIL,
        cooldown: Duration::from_secs(30),
        at,
    });
    app.store.change_status(id, pause).await.unwrap();

    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert_eq!(page.status, StatusCode::OK);
    let when = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(
        page.body.contains("data-testid=\"probe\"")
            && page.body.contains(&when)
            && page.body.contains("resumes by itself"),
        "the page tells about the probe at {when}:\n{}",
        page.body
    );
    // Paused: nothing is on its way, so no time left is estimated.
    assert!(
        !page.body.contains("estimating"),
        "a paused broadcast has no time left: {}",
        page.body
    );
    let shown = app
        .api(Method::GET, &format!("/broadcasts/{id}"), None)
        .await
        .json();
    assert_eq!(shown["probe"]["channel"], "email", "{shown}");
    assert_eq!(scrape().await.as_deref(), Some(&*format!("{metric} 1")));

    // An operator's resume ends the probing: nothing is shown any more.
    let resumed = app
        .api(Method::POST, &format!("/broadcasts/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.json()["probe"], serde_json::Value::Null);
    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert!(!page.body.contains("data-testid=\"probe\""));
    assert_eq!(scrape().await.as_deref(), Some(&*format!("{metric} 0")));
    app.stop().await;
}

/// The messages on `channel` in the panel's audience count.
fn messages(count: &serde_json::Value, channel: &str) -> serde_json::Value {
    count["channels"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["channel"] == channel))
        .map(|c| c["messages"].clone())
        .unwrap_or_else(|| panic!("no {channel} in {count}"))
}

/// The media page: an upload is checked like the CLI's (a file whose bytes are not what its
/// name says is refused with both, and nothing is saved), a good one is listed with its kind
/// and served back as it came, and removal takes it away; a forged form changes nothing.
#[tokio::test]
async fn the_media_page_uploads_checks_serves_and_removes_files() {
    let app = spawn_app().await;
    let s = app.login().await;
    let poster = std::fs::read(fixtures().join("poster.png")).unwrap();
    let send = |name: &str, bytes: Vec<u8>, csrf: &str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .text("name", String::new())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        app.client
            .post(app.url("/media"))
            .header("cookie", &s.cookie)
            .multipart(form)
            .send()
    };
    let empty = app.get("/media", &s).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(
        empty.body.contains("data-testid=\"media-empty\""),
        "{}",
        empty.body
    );

    // Lying bytes: refused, named, nothing saved.
    let reply = send("poster.jpg", b"%PDF-1.7\n".to_vec(), &s.csrf)
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.text().await.unwrap();
    assert!(
        body.contains("poster.jpg: the name says image/jpeg, but the bytes are application/pdf"),
        "{body}"
    );
    // A forged form: refused, nothing saved.
    let reply = send("poster.png", poster.clone(), "forged").await.unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    use broadcast_domain::MediaStore as _;
    assert!(app.store.list_media().await.unwrap().is_empty());

    // A good one is listed and served back byte for byte, as an image.
    let reply = send("poster.png", poster.clone(), &s.csrf).await.unwrap();
    assert_eq!(reply.status(), StatusCode::SEE_OTHER);
    let list = app.get("/media?done=medium_saved", &s).await;
    assert!(list.body.contains("File saved."), "{}", list.body);
    assert!(
        list.body.contains("poster.png") && list.body.contains("photo"),
        "{}",
        list.body
    );
    let medium = app.store.find_medium("poster.png").await.unwrap().unwrap();
    let file = app
        .client
        .get(app.url(&format!("/media/{}/file", medium.id)))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    assert_eq!(file.bytes().await.unwrap().as_ref(), poster.as_slice());
    // Not without a session.
    let anon = app.get_anon(&format!("/media/{}/file", medium.id)).await;
    assert_ne!(anon.status, StatusCode::OK);

    // Removing it.
    let reply = app
        .post_form(&format!("/media/{}/delete", medium.id), &s, &[])
        .await;
    reply.assert_redirect("/media?done=medium_removed");
    assert!(app.store.list_media().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_template_form_offers_the_library_and_a_medium_in_use_stays() {
    use broadcast_domain::{MediaStore as _, NewMedium, TemplateStore as _};
    let app = spawn_app().await;
    let s = app.login().await;
    let poster = std::fs::read(fixtures().join("poster.png")).unwrap();
    let medium = app
        .store
        .add_medium(
            NewMedium::check("poster.png", poster, "ann").unwrap(),
            false,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let form = app.get("/templates/new", &s).await;
    assert!(
        form.body
            .contains("<option value=\"poster.png\">poster.png (photo,"),
        "{}",
        form.body
    );
    // The text is the caption: over 1024 characters it is refused, and nothing is saved.
    let long = format!("{} {{{{ first_name }}}}", "a".repeat(1020));
    fn fields(text: &str) -> [(&'static str, &str); 4] {
        [
            ("name", "Poster"),
            ("telegram_text", text),
            ("parse_mode", "html"),
            ("telegram_medium", "poster.png"),
        ]
    }
    let reply = app.post_form("/templates", &s, &fields(&long)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("rendered caption is 1025 characters long"),
        "{}",
        reply.body
    );
    // A medium not in the library is named on the form.
    let reply = app
        .post_form(
            "/templates",
            &s,
            &[
                ("name", "Poster"),
                ("telegram_text", "Hi"),
                ("telegram_medium", "gone.png"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("medium `gone.png` is not in the media library"),
        "{}",
        reply.body
    );
    assert!(app.store.list_templates().await.unwrap().is_empty());

    let reply = app
        .post_form("/templates", &s, &fields("Hi {{ first_name }}"))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let saved = app.store.list_templates().await.unwrap();
    assert_eq!(saved[0].content.telegram_media[0].medium, medium.id);
    let edit = app.get(&format!("/templates/{}", saved[0].id), &s).await;
    assert!(
        edit.body.contains("<option value=\"poster.png\" selected>"),
        "{}",
        edit.body
    );
    // The preview shows the poster above the caption, with its limit.
    let preview = app
        .get(&format!("/templates/{}/preview", saved[0].id), &s)
        .await;
    assert!(
        preview.body.contains(&format!(
            "<img class=\"tg-photo\" src=\"/media/{}/file\" alt=\"poster.png\"",
            medium.id
        )) && preview
            .body
            .contains("characters of 1024 (the caption of poster.png)"),
        "{}",
        preview.body
    );
    // In use: the library keeps it and says by what.
    let reply = app
        .post_form(&format!("/media/{}/delete", medium.id), &s, &[])
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply
            .body
            .contains("medium `poster.png` is in use by template `Poster`"),
        "{}",
        reply.body
    );
    app.stop().await;
}

#[tokio::test]
async fn the_template_form_writes_buttons_one_per_line_and_refuses_bad_urls() {
    use broadcast_domain::{TemplateStore as _, UrlButton};
    let app = spawn_app().await;
    let s = app.login().await;
    let post = |buttons: &'static str| {
        let s = &s;
        let app = &app;
        async move {
            app.post_form(
                "/templates",
                s,
                &[
                    ("name", "Buttons"),
                    ("telegram_text", "Hi"),
                    ("parse_mode", "html"),
                    ("telegram_buttons", buttons),
                ],
            )
            .await
        }
    };
    let reply = post("Open -> javascript:alert(1)").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("a button opens only http, https or tg URLs"),
        "{}",
        reply.body
    );
    let reply = post("no arrow here").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("line 1: write a button as `Label -&gt; URL`"),
        "{}",
        reply.body
    );
    assert!(app.store.list_templates().await.unwrap().is_empty());

    let lines = "Register -> https://example.org/r\n+ Schedule -> https://example.org/s\n\nChat -> tg://resolve?domain=x";
    let reply = post(lines).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let saved = app.store.list_templates().await.unwrap();
    let b = |text: &str, url: &str| UrlButton {
        text: text.into(),
        url: url.into(),
    };
    assert_eq!(
        saved[0].content.telegram_buttons,
        vec![
            vec![
                b("Register", "https://example.org/r"),
                b("Schedule", "https://example.org/s")
            ],
            vec![b("Chat", "tg://resolve?domain=x")],
        ]
    );
    let preview = app
        .get(&format!("/templates/{}/preview", saved[0].id), &s)
        .await;
    assert!(
        preview.body.contains(
            "<div class=\"tg-row\"><a class=\"tg-button\" href=\"https://example.org/r\" rel=\"noopener noreferrer\" target=\"_blank\">Register</a><a class=\"tg-button\" href=\"https://example.org/s\""
        ),
        "{}",
        preview.body
    );
    let edit = app.get(&format!("/templates/{}", saved[0].id), &s).await;
    assert!(
        edit.body.contains(
            "Register -&gt; https://example.org/r\n+ Schedule -&gt; https://example.org/s\nChat -&gt; tg://resolve?domain=x"
        ),
        "{}",
        edit.body
    );
    app.stop().await;
}
