//! The JSON API: templates, broadcasts, audience count, media, errors in the stable shape.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::helpers::{API_TOKEN, TestApp, fixtures, spawn_app};

async fn wait_api_status(app: &TestApp, id: i64, status: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let p = app
            .api(Method::GET, &format!("/broadcasts/{id}/progress"), None)
            .await
            .json();
        if p["status"] == status {
            return p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not {status}: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn templates_through_the_api() {
    let app = spawn_app().await;
    let list = app.api(Method::GET, "/templates", None).await;
    assert_eq!(list.json()["items"], serde_json::json!([]));

    // A template error names the part, line and column.
    let bad = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Broken",
                "content": { "telegram_text": "Hi {{ first_name }}\n{{ city " },
            })),
        )
        .await;
    bad.assert_api_error(StatusCode::BAD_REQUEST, "invalid_template");
    let details = &bad.json()["error"]["details"];
    assert_eq!(details[0]["part"], "telegram_text", "{details}");
    assert_eq!(details[0]["line"], 2, "{details}");

    let unknown = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({ "name": "X", "content": { "telegram_text": "{{ nope }}" } })),
        )
        .await;
    unknown.assert_api_error(StatusCode::BAD_REQUEST, "invalid_template");
    assert!(unknown.body.contains("nope"));
    let extra = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({ "name": "X", "content": {}, "colour": "red" })),
        )
        .await;
    extra.assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(extra.body.contains("colour"), "{}", extra.body);
    let malformed = app
        .client
        .post(app.url("/api/v1/templates"))
        .bearer_auth(crate::helpers::API_TOKEN)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(json["error"]["code"], "invalid_input");
    let no_type = app
        .client
        .post(app.url("/api/v1/templates"))
        .bearer_auth(crate::helpers::API_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let id = app.create_template("Api template").await;
    let dup = app
        .api(
            Method::POST,
            "/templates",
            Some(
                serde_json::json!({ "name": "Api template", "content": { "telegram_text": "Hi" } }),
            ),
        )
        .await;
    dup.assert_api_error(StatusCode::CONFLICT, "conflict");
    let got = app
        .api(Method::GET, &format!("/templates/{id}"), None)
        .await;
    assert_eq!(got.json()["version"], 1);
    assert_eq!(got.json()["content"]["parse_mode"], "html");
    let put = app
        .api(
            Method::PUT,
            &format!("/templates/{id}"),
            Some(serde_json::json!({
                "name": "Api template", "description": "v2",
                "content": { "telegram_text": "Bye {{ first_name }}", "parse_mode": "plain" },
            })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.json()["version"], 2);
    let deleted = app
        .api(Method::DELETE, &format!("/templates/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.api(Method::GET, &format!("/templates/{id}"), None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    app.api(Method::GET, "/templates/abc", None)
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");
    app.api(Method::GET, "/nothing/here", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    app.api(Method::PATCH, "/templates", None)
        .await
        .assert_api_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn broadcasts_through_the_api_from_creation_to_statistics() {
    let app = spawn_app().await;
    let template = app.create_template("Api news").await;

    let bad = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({
                "name": "x", "template_id": template, "filter": { "rolez": ["judge"] },
            })),
        )
        .await;
    bad.assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(bad.body.contains("rolez"), "{}", bad.body);
    app.api(
        Method::POST,
        "/broadcasts",
        Some(serde_json::json!({ "name": "x", "template_id": 9999 })),
    )
    .await
    .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    // An e-mail-only policy needs e-mail parts: this template has them; a Telegram-only one
    // would be refused with the missing part named.
    let created = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({
                "name": "Volunteers", "template_id": template, "channel_policy": "telegram_then_email",
                "filter": { "roles": ["volunteer"] },
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let b = created.json();
    let id = b["id"].as_i64().unwrap();
    assert_eq!(b["status"], "draft");
    assert_eq!(b["created_by"].as_str().unwrap().len(), "api:".len() + 8);

    let list = app
        .api(Method::GET, "/broadcasts?status=draft,scheduled", None)
        .await;
    assert_eq!(list.json()["items"][0]["id"], id);
    app.api(Method::GET, "/broadcasts?status=bogus", None)
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");

    let count = app
        .api(
            Method::POST,
            "/audience/count",
            Some(serde_json::json!({ "filter": { "roles": ["volunteer"] }, "channel_policy": "telegram_then_email" })),
        )
        .await
        .json();
    let launched = app
        .api(Method::POST, &format!("/broadcasts/{id}/launch"), None)
        .await;
    assert_eq!(launched.status, StatusCode::OK, "{}", launched.body);
    assert_eq!(launched.json()["broadcast"]["status"], "running");
    app.api(Method::POST, &format!("/broadcasts/{id}/launch"), None)
        .await
        .assert_api_error(StatusCode::CONFLICT, "conflict");

    let progress = wait_api_status(&app, id, "completed").await;
    assert_eq!(progress["percent"], 100);
    let stats = app
        .api(Method::GET, &format!("/broadcasts/{id}/stats"), None)
        .await
        .json();
    let sent = stats["by_status"]["sent"].as_u64().unwrap();
    assert_eq!(
        sent,
        count["messages"]["telegram"].as_u64().unwrap()
            + count["messages"]["email"].as_u64().unwrap(),
        "{stats} vs {count}"
    );
    let rows = app
        .api(
            Method::GET,
            &format!("/broadcasts/{id}/recipients?limit=5&status=sent"),
            None,
        )
        .await
        .json();
    assert_eq!(rows["items"].as_array().unwrap().len(), 5);
    assert_eq!(rows["total"].as_u64().unwrap(), sent);
    // Keyset pages walk every sent row once, by id.
    let mut after = 0;
    let mut seen: Vec<i64> = Vec::new();
    loop {
        let page = app
            .api(
                Method::GET,
                &format!("/broadcasts/{id}/recipients?status=sent&limit=4&after_id={after}"),
                None,
            )
            .await
            .json();
        let ids: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert!(ids.iter().all(|i| *i > after), "{page}");
        seen.extend(&ids);
        match page["next_after_id"].as_i64() {
            Some(next) => {
                assert_eq!(Some(&next), ids.last(), "{page}");
                after = next;
            }
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, sent);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    app.api(
        Method::GET,
        &format!("/broadcasts/{id}/recipients?offset=5&after_id=1"),
        None,
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");
    app.api(
        Method::GET,
        &format!("/broadcasts/{id}/recipients?channel=fax"),
        None,
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_input");

    // Transitions that are not allowed are conflicts.
    for action in ["pause", "resume", "cancel"] {
        app.api(Method::POST, &format!("/broadcasts/{id}/{action}"), None)
            .await
            .assert_api_error(StatusCode::CONFLICT, "conflict");
    }
    app.api(
        Method::POST,
        &format!("/broadcasts/{id}/schedule"),
        Some(serde_json::json!({ "scheduled_at": "2099-01-01T00:00:00Z" })),
    )
    .await
    .assert_api_error(StatusCode::CONFLICT, "conflict");

    // Schedule and pause on another broadcast.
    let other = app
        .api(
            Method::POST,
            "/broadcasts",
            Some(serde_json::json!({ "name": "Later", "template_id": template })),
        )
        .await
        .json();
    let other_id = other["id"].as_i64().unwrap();
    let scheduled = app
        .api(
            Method::POST,
            &format!("/broadcasts/{other_id}/schedule"),
            Some(serde_json::json!({ "scheduled_at": "2099-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(
        scheduled.json()["status"],
        "scheduled",
        "{}",
        scheduled.body
    );
    let cancelled = app
        .api(
            Method::POST,
            &format!("/broadcasts/{other_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(cancelled.json()["broadcast"]["status"], "cancelled");

    app.api(Method::GET, "/broadcasts/77777/stats", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");

    // The API's actions are in the audit log under the token's name.
    let s = app.login().await;
    let audit = app.get("/audit", &s).await.body;
    assert!(audit.contains("api:"), "{audit}");
    assert!(audit.contains("broadcast.launch"));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_the_routes() {
    let app = spawn_app().await;
    let reply = app.get_anon("/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/templates",
        "/templates/{id}",
        "/broadcasts",
        "/broadcasts/{id}/launch",
        "/broadcasts/{id}/stats",
        "/broadcasts/{id}/recipients",
        "/audience/count",
        "/media",
        "/media/{id}",
        "/media/{id}/file",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    app.stop().await;
}

/// The media API: upload as the request body (name in the query), the same checks as the
/// panel and the CLI, the document without the bytes, the bytes apart, removal.
#[tokio::test]
async fn media_are_uploaded_listed_served_and_removed_through_the_api() {
    let app = spawn_app().await;
    let poster = std::fs::read(fixtures().join("poster.png")).unwrap();
    let upload = |path: &str, bytes: Vec<u8>| {
        app.client
            .post(app.url(&format!("/api/v1{path}")))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let reply = upload("/media?name=poster.png", poster.clone())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    let created: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(created["name"], "poster.png");
    assert_eq!(created["kind"], "photo");
    assert_eq!(created["content_type"], "image/png");
    assert_eq!(created["size"], poster.len());
    assert!(created.get("bytes").is_none());
    let id = created["id"].as_i64().unwrap();

    // Lying bytes, a taken name, a missing name: refused with what is wrong.
    let reply = upload("/media?name=rules.pdf", b"plain words".to_vec())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_input");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/pdf"),
        "{body}"
    );
    let reply = upload("/media?name=poster.png", poster.clone())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CONFLICT);
    let reply = upload("/media", poster.clone()).await.unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    // Replacing keeps the id.
    let reply = upload(
        "/media?name=poster.png&replace=true",
        [poster.as_slice(), b"v2"].concat(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let replaced: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(replaced["id"], id);

    let list = app.api(Method::GET, "/media", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["items"].as_array().map(Vec::len), Some(1));
    let one = app.api(Method::GET, &format!("/media/{id}"), None).await;
    assert_eq!(one.json(), replaced);
    let bytes = app
        .client
        .get(app.url(&format!("/api/v1/media/{id}/file")))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.headers()["content-type"], "image/png");
    assert_eq!(bytes.bytes().await.unwrap().len(), poster.len() + 2);

    // A template names it; what the API answers can be sent back as it is.
    let body = serde_json::json!({
        "name": "Poster",
        "content": {"telegram_text": "Hi {{ first_name }}", "telegram_media": ["poster.png"]},
    });
    let created = app.api(Method::POST, "/templates", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let template = created.json();
    let media = &template["content"]["telegram_media"];
    assert_eq!(media[0]["id"], id, "{template}");
    assert_eq!(media[0]["sha256"], replaced["sha256"], "{template}");
    let again = serde_json::json!({"name": "Poster", "content": template["content"]});
    let path = format!("/templates/{}", template["id"]);
    let updated = app.api(Method::PUT, &path, Some(again)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json()["content"]["telegram_media"], *media);
    let in_use = app.api(Method::DELETE, &format!("/media/{id}"), None).await;
    in_use.assert_api_error(StatusCode::CONFLICT, "conflict");
    let bare = serde_json::json!({"name": "Poster", "content": {"telegram_text": "Hi"}});
    let updated = app.api(Method::PUT, &path, Some(bare)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);

    let gone = app.api(Method::DELETE, &format!("/media/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    app.api(Method::GET, &format!("/media/{id}"), None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    // Without a token: 401.
    let anon = app.request_anon(Method::GET, "/api/v1/media").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
