//! Public endpoints: unsubscribe, health, metrics, assets; security headers.

use broadcast_channels::SignedUnsubscribeLinks;
use broadcast_domain::AudienceStore;
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::helpers::{API_TOKEN, SECRET, spawn_app};

#[tokio::test]
async fn unsubscribe_links_confirm_then_unsubscribe_and_refuse_forged_tokens() {
    let app = spawn_app().await;
    let user = app.user_matching("maximilian.brandt@web.de").await;
    assert!(user.email_unsubscribed_at.is_none());
    let links = SignedUnsubscribeLinks::new(None, SecretString::from(SECRET.to_owned())).unwrap();
    let token = links.token_for(user.id);

    // GET only asks (link scanners must not unsubscribe anyone).
    let page = app.get_anon(&format!("/unsubscribe/{token}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("ma•••@web.de"), "{}", page.body);
    assert!(!page.body.contains("maximilian.brandt@web.de"));
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert!(
        app.store
            .get_user(user.id)
            .await
            .unwrap()
            .email_unsubscribed_at
            .is_none()
    );

    // One-click POST (RFC 8058), as a mail provider sends it.
    let reply = app
        .client
        .post(app.url(&format!("/unsubscribe/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.text().await.unwrap().contains("You are unsubscribed"));
    let after = app.store.get_user(user.id).await.unwrap();
    assert!(after.email_unsubscribed_at.is_some());
    // Twice is fine.
    let again = app
        .client
        .post(app.url(&format!("/unsubscribe/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        app.store
            .get_user(user.id)
            .await
            .unwrap()
            .email_unsubscribed_at,
        after.email_unsubscribed_at
    );

    // Another user's id with this MAC, another secret, garbage: not found, nothing changes.
    let other = app.user_matching("Becker").await;
    let foreign = SignedUnsubscribeLinks::new(
        None,
        SecretString::from("a-different-secret-0123456789abcdef".to_owned()),
    )
    .unwrap()
    .token_for(other.id);
    for bad in [
        foreign.as_str(),
        "garbage",
        &token[..31],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let reply = app.get_anon(&format!("/unsubscribe/{bad}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{bad}");
        // The public never sees the panel's menu.
        assert!(
            !reply.body.contains("menu-button") && !reply.body.contains("href=\"/audit\""),
            "{}",
            reply.body
        );
        let reply = app
            .client
            .post(app.url(&format!("/unsubscribe/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    assert!(
        app.store
            .get_user(other.id)
            .await
            .unwrap()
            .email_unsubscribed_at
            .is_none()
    );
    let s = app.login().await;
    assert!(
        app.get("/audit", &s)
            .await
            .body
            .contains("audience.unsubscribe")
    );
    app.stop().await;
}

#[tokio::test]
async fn health_metrics_assets_and_security_headers() {
    let app = spawn_app().await;
    let health = app.get_anon("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["worker"], true);

    let anonymous = app.get_anon("/metrics").await;
    anonymous.assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    for name in [
        "broadcast_messages_sent_total{channel=\"telegram\"}",
        "broadcast_messages_failed_total{channel=\"email\",kind=\"transient\"}",
        "broadcast_send_duration_seconds_bucket{channel=\"email\",le=\"+Inf\"}",
        "broadcast_queue_depth{status=\"pending\"} 0",
        "broadcast_worker_running 1",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // With a session it works too.
    let s = app.login().await;
    assert_eq!(app.get("/metrics", &s).await.status, StatusCode::OK);

    let css = app.get_anon("/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains("--accent"));
    let js = app.get_anon("/static/app.js").await;
    assert!(js.body.contains("EventSource"));

    let page = app.get("/", &s).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["cache-control"], "no-store");
    // No inline script in any page: everything is in /static/app.js.
    assert!(!page.body.contains("<script>"));
    // Large pages are compressed when the client asks.
    let compressed = app
        .client
        .get(app.url("/static/app.css"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    let not_found = app.get("/no/such/page", &s).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    app.stop().await;
}
