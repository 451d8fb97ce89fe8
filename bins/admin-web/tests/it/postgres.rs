//! The same panel on PostgreSQL: login, the filter form, launch, delivery, statistics, API.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::helpers::{Options, spawn_app_with};

#[tokio::test]
async fn the_panel_works_on_postgres() {
    let Some(db) = broadcast_testkit::TestDb::postgres().await else {
        return;
    };
    let app = spawn_app_with(db, Options::default()).await;
    let s = app.login().await;
    let template = app.create_template("Postgres news").await;
    let count = app
        .get(
            "/broadcasts/audience-count?countries=Germany&channel_policy=telegram",
            &s,
        )
        .await
        .json();
    assert!(count["users"].as_u64().unwrap() > 0, "{count}");
    assert_eq!(count["channels"][0]["channel"], "telegram", "{count}");
    let telegram_messages = count["channels"][0]["messages"].as_u64().unwrap();
    let reply = app
        .post_form(
            "/broadcasts",
            &s,
            &[
                ("name", "Germany on Telegram"),
                ("template_id", &template.to_string()),
                ("channel_policy", "telegram"),
                ("countries", "Germany"),
            ],
        )
        .await;
    reply.assert_redirect("/broadcasts/");
    let id: i64 = reply
        .location()
        .trim_start_matches("/broadcasts/")
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    app.post_form(&format!("/broadcasts/{id}/launch"), &s, &[])
        .await
        .assert_redirect(&format!("/broadcasts/{id}"));
    app.wait_for_status(&s, id, "completed").await;
    let stats = app
        .api(Method::GET, &format!("/broadcasts/{id}/stats"), None)
        .await
        .json();
    assert_eq!(
        stats["by_status"]["sent"].as_u64().unwrap(),
        telegram_messages,
        "{stats}"
    );
    assert_eq!(app.telegram_outbox().len() as u64, telegram_messages);
    let page = app.get(&format!("/broadcasts/{id}"), &s).await;
    assert!(page.body.contains("data-testid=\"status\">completed<"));
    let csv = app
        .get(&format!("/broadcasts/{id}/recipients.csv"), &s)
        .await;
    assert_eq!(
        csv.body.lines().count() as u64,
        stats["total"].as_u64().unwrap() + 1
    );
    let audience = app.get("/audience?q=becker", &s).await;
    assert!(audience.body.contains("Jonas Becker"));
    let audit = app.get("/audit", &s).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("broadcast.launch"));
    // The server stops cleanly with its worker.
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("stops");
}
