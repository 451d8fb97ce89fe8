//! Every change made through the pages or the JSON API writes exactly one audit entry, naming
//! the logged-in admin or the API token; a refused change writes none.

use broadcast_domain::{AuditLog as _, TemplateStore as _};
use reqwest::{Method, StatusCode};

use crate::helpers::{ADMIN, Options, TestApp, spawn_app_with};

/// The audit log's entries after the first `skip` (oldest first): actor, action, target id.
async fn entries_after(app: &TestApp, skip: usize) -> Vec<(String, String, Option<i64>)> {
    let mut all = app.store.recent(10_000, 0).await.unwrap();
    all.reverse();
    all.into_iter()
        .skip(skip)
        .map(|e| (e.actor, e.action, e.target_id))
        .collect()
}

/// Checks that exactly one entry came since the last check, and moves on.
struct Audit<'a> {
    app: &'a TestApp,
    seen: usize,
    actor: String,
}

impl<'a> Audit<'a> {
    async fn new(app: &'a TestApp, actor: &str) -> Self {
        let seen = entries_after(app, 0).await.len();
        Self {
            app,
            seen,
            actor: actor.to_owned(),
        }
    }

    async fn one(&mut self, action: &str, target: Option<i64>) {
        let new = entries_after(self.app, self.seen).await;
        assert_eq!(
            new,
            vec![(self.actor.clone(), action.to_owned(), target)],
            "after {action}"
        );
        self.seen += 1;
    }

    async fn none(&self) {
        assert_eq!(entries_after(self.app, self.seen).await, vec![]);
    }
}

async fn app_without_worker() -> TestApp {
    // No worker: it would write its own entries (as `worker:<id>`) while the test counts.
    let options = Options {
        run_worker: false,
        ..Options::default()
    };
    spawn_app_with(broadcast_testkit::TestDb::sqlite().await, options).await
}

#[tokio::test]
async fn every_change_from_the_pages_writes_one_audit_entry_naming_the_admin() {
    let app = app_without_worker().await;
    let s = app.login().await;
    let mut audit = Audit::new(&app, ADMIN).await;

    let reply = app
        .post_form(
            "/templates",
            &s,
            &[
                ("name", "Audited"),
                ("telegram_text", "Hi {{ first_name }}"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let template = app
        .store
        .list_templates()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name.as_ref() == "Audited")
        .unwrap()
        .id;
    audit.one("template.create", Some(template)).await;
    app.post_form(
        &format!("/templates/{template}"),
        &s,
        &[
            ("name", "Audited"),
            ("telegram_text", "Hello {{ first_name }}"),
        ],
    )
    .await
    .assert_redirect("/templates");
    audit.one("template.update", Some(template)).await;

    let csv = "external_id,first_name,email\naudit-1,Ann,audit-1@example.org\n";
    let form = reqwest::multipart::Form::new()
        .text("csrf", s.csrf.clone())
        .text("kind", "users")
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("more.csv"),
        );
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &s.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    audit.one("audience.import", None).await;

    let reply = app
        .post_form(
            "/broadcasts",
            &s,
            &[
                ("name", "Audited"),
                ("template_id", &template.to_string()),
                ("channel_policy", "telegram"),
                ("roles", "judge"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let id: i64 = reply
        .location()
        .trim_start_matches("/broadcasts/")
        .split(['?', '/'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    audit.one("broadcast.create", Some(id)).await;
    for (path, fields, action) in [
        (
            "schedule",
            vec![("scheduled_at", "2099-05-01T08:30")],
            "broadcast.schedule",
        ),
        ("schedule", vec![("clear", "true")], "broadcast.schedule"),
        ("launch", vec![], "broadcast.launch"),
        ("pause", vec![], "broadcast.pause"),
        ("resume", vec![], "broadcast.resume"),
        ("cancel", vec![], "broadcast.cancel"),
    ] {
        let reply = app
            .post_form(&format!("/broadcasts/{id}/{path}"), &s, &fields)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{path}: {}",
            reply.body
        );
        audit.one(action, Some(id)).await;
    }
    assert_eq!(app.broadcast(id).await.status.as_str(), "cancelled");

    // Refused: a cancelled broadcast cannot be resumed.
    let reply = app
        .post_form(&format!("/broadcasts/{id}/resume"), &s, &[])
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    audit.none().await;

    // The calls that change no status: a test send and an export, one entry each.
    let reply = app
        .post_form(
            &format!("/broadcasts/{id}/test"),
            &s,
            &[("target", "chat"), ("value", "4242")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    audit.one("broadcast.test_send", Some(id)).await;
    let csv = app
        .get(&format!("/broadcasts/{id}/recipients.csv"), &s)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    audit.one("broadcast.export", Some(id)).await;

    app.post_form(
        "/templates",
        &s,
        &[("name", "Unused"), ("telegram_text", "Hi")],
    )
    .await;
    let unused = app
        .store
        .list_templates()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name.as_ref() == "Unused")
        .unwrap()
        .id;
    audit.one("template.create", Some(unused)).await;
    app.post_form(&format!("/templates/{unused}/delete"), &s, &[])
        .await
        .assert_redirect("/templates?done=template_deleted");
    audit.one("template.delete", Some(unused)).await;
    app.stop().await;
}

#[tokio::test]
async fn every_change_from_the_api_writes_one_audit_entry_naming_the_token() {
    let app = app_without_worker().await;
    // The token's name: `api:` and the first 8 hex digits of its SHA-256.
    let probe = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Probe", "content": { "telegram_text": "Hi" },
            })),
        )
        .await;
    assert_eq!(probe.status, StatusCode::CREATED, "{}", probe.body);
    let actor = entries_after(&app, 0).await.last().unwrap().0.clone();
    assert!(actor.starts_with("api:") && actor.len() == 12, "{actor}");
    let mut audit = Audit::new(&app, &actor).await;

    let t = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Audited", "content": { "telegram_text": "Hi {{ first_name }}" },
            })),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let template = t.json()["id"].as_i64().unwrap();
    audit.one("template.create", Some(template)).await;
    let reply = app
        .api(
            Method::PUT,
            &format!("/templates/{template}"),
            Some(serde_json::json!({
                "name": "Audited", "content": { "telegram_text": "Hello {{ first_name }}" },
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    audit.one("template.update", Some(template)).await;

    let b = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({
                "name": "Audited", "template_id": template, "channel_policy": "telegram",
                "filter": { "roles": ["judge"] },
            })),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    let id = b.json()["id"].as_i64().unwrap();
    audit.one("broadcast.create", Some(id)).await;
    for (path, body, action) in [
        (
            "schedule",
            Some(serde_json::json!({ "scheduled_at": "2099-01-01T00:00:00Z" })),
            "broadcast.schedule",
        ),
        (
            "schedule",
            Some(serde_json::json!({ "scheduled_at": null })),
            "broadcast.schedule",
        ),
        ("launch", None, "broadcast.launch"),
        ("pause", Some(serde_json::json!({})), "broadcast.pause"),
        ("resume", None, "broadcast.resume"),
        ("cancel", None, "broadcast.cancel"),
    ] {
        let reply = app
            .api(Method::POST, &format!("/broadcasts/{id}/{path}"), body)
            .await;
        assert!(reply.status.is_success(), "{path}: {}", reply.body);
        audit.one(action, Some(id)).await;
    }
    app.api(Method::POST, &format!("/broadcasts/{id}/resume"), None)
        .await
        .assert_api_error(StatusCode::CONFLICT, "conflict");
    audit.none().await;

    let probe_id = probe.json()["id"].as_i64().unwrap();
    let reply = app
        .api(Method::DELETE, &format!("/templates/{probe_id}"), None)
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    audit.one("template.delete", Some(probe_id)).await;
    app.stop().await;
}

#[tokio::test]
async fn the_audit_page_searches_by_actor_action_target_and_time() {
    let app = app_without_worker().await;
    let s = app.login().await;
    let template = app.create_template("Searched").await;
    // A failed login by someone else, for the actor search.
    app.try_login("mallory", "guess").await;

    let everything = app.get("/audit", &s).await;
    assert!(
        everything.body.contains("template.create"),
        "{}",
        everything.body
    );
    assert!(everything.body.contains("admin.login_failed"));

    let page = app
        .get(
            &format!("/audit?action=template.&target=template&target_id={template}"),
            &s,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("template.create"), "{}", page.body);
    assert!(!page.body.contains("admin.login_failed"), "{}", page.body);
    assert!(page.body.contains("Show everything"));

    let page = app.get("/audit?actor=ANONYMOUS", &s).await;
    assert!(page.body.contains("admin.login_failed"), "{}", page.body);
    assert!(!page.body.contains("template.create"), "{}", page.body);

    let today = chrono::Utc::now().date_naive();
    let page = app
        .get(
            &format!("/audit?from={today}&to={today}&action=template."),
            &s,
        )
        .await;
    assert!(page.body.contains("template.create"), "{}", page.body);
    let page = app
        .get(
            &format!("/audit?to={}", today - chrono::Duration::days(1)),
            &s,
        )
        .await;
    assert!(
        page.body.contains("No entry matches this search"),
        "{}",
        page.body
    );

    // A bad field is named, never a 500.
    let page = app.get("/audit?from=yesterday", &s).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("`yesterday` is not a date"),
        "{}",
        page.body
    );
    let page = app.get("/audit?target_id=x1", &s).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}
