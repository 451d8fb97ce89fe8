//! Authentication: sessions, CSRF tokens, login throttling, bearer tokens.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::helpers::{
    ADMIN, API_TOKEN, PASSWORD, Session, hidden_value, set_cookie, set_cookie_line, spawn_app,
};

/// Every page route, with a method.
const PAGES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/events"),
    ("GET", "/templates"),
    ("POST", "/templates"),
    ("GET", "/templates/new"),
    ("GET", "/templates/1"),
    ("POST", "/templates/1"),
    ("POST", "/templates/1/delete"),
    ("GET", "/templates/1/preview"),
    ("GET", "/broadcasts"),
    ("POST", "/broadcasts"),
    ("GET", "/broadcasts/new"),
    ("GET", "/broadcasts/audience-count"),
    ("GET", "/broadcasts/1"),
    ("GET", "/broadcasts/1/launch"),
    ("POST", "/broadcasts/1/launch"),
    ("POST", "/broadcasts/1/pause"),
    ("POST", "/broadcasts/1/resume"),
    ("POST", "/broadcasts/1/cancel"),
    ("POST", "/broadcasts/1/schedule"),
    ("GET", "/broadcasts/1/test"),
    ("POST", "/broadcasts/1/test"),
    ("GET", "/broadcasts/1/recipients"),
    ("GET", "/broadcasts/1/recipients.csv"),
    ("GET", "/broadcasts/1/progress"),
    ("GET", "/broadcasts/1/events"),
    ("GET", "/audience"),
    ("GET", "/audience/users/1"),
    ("GET", "/audience/import"),
    ("POST", "/audience/import"),
    ("GET", "/audit"),
    ("POST", "/logout"),
    ("GET", "/no/such/page"),
];

/// Every API route, with a method.
const API: &[(&str, &str)] = &[
    ("GET", "/api/v1/templates"),
    ("POST", "/api/v1/templates"),
    ("GET", "/api/v1/templates/1"),
    ("PUT", "/api/v1/templates/1"),
    ("DELETE", "/api/v1/templates/1"),
    ("GET", "/api/v1/broadcasts"),
    ("POST", "/api/v1/broadcasts"),
    ("GET", "/api/v1/broadcasts/1"),
    ("POST", "/api/v1/broadcasts/1/launch"),
    ("POST", "/api/v1/broadcasts/1/pause"),
    ("POST", "/api/v1/broadcasts/1/resume"),
    ("POST", "/api/v1/broadcasts/1/cancel"),
    ("POST", "/api/v1/broadcasts/1/schedule"),
    ("GET", "/api/v1/broadcasts/1/stats"),
    ("GET", "/api/v1/broadcasts/1/progress"),
    ("GET", "/api/v1/broadcasts/1/recipients"),
    ("POST", "/api/v1/audience/count"),
    ("GET", "/api/v1/nothing-here"),
];

#[tokio::test]
async fn every_page_redirects_to_login_without_a_session() {
    let app = spawn_app().await;
    for (method, path) in PAGES {
        let reply = app
            .request_anon(Method::from_bytes(method.as_bytes()).unwrap(), path)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{method} {path} answered {} without a session",
            reply.status
        );
        assert!(
            reply.location().starts_with("/login?next="),
            "{method} {path} redirected to {}",
            reply.location()
        );
    }
    // GET pages come back to where they were.
    let reply = app.get_anon("/broadcasts/1/recipients?status=failed").await;
    assert_eq!(
        reply.location(),
        "/login?next=%2Fbroadcasts%2F1%2Frecipients%3Fstatus%3Dfailed"
    );
    // A forged or tampered cookie is no session.
    for cookie in [
        "bc_session=eyJ1IjoiYWRtaW4ifQ",
        "bc_session=",
        "bc_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let forged = Session {
            cookie: cookie.to_owned(),
            csrf: "x".to_owned(),
        };
        app.get("/", &forged).await.assert_redirect("/login");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_api_route_answers_401_without_a_valid_token() {
    let app = spawn_app().await;
    for (method, path) in API {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app.request_anon(method.clone(), path).await;
        reply.assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(
            reply.headers.get("www-authenticate").is_some(),
            "{method} {path}"
        );
        let wrong = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth("not-the-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // A session cookie is not an API credential.
    let session = app.login().await;
    let reply = app.get("/api/v1/templates", &session).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // The token works, the second configured one too.
    let ok = app.api(Method::GET, "/templates", None).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let second = app
        .client
        .get(app.url("/api/v1/templates"))
        .bearer_auth("another-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_ne!(API_TOKEN, "another-token-0123456789abcdef");
    app.stop().await;
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_it() {
    let app = spawn_app().await;
    let reply = app.try_login(ADMIN, PASSWORD).await;
    reply.assert_redirect("/");
    let line = set_cookie_line(&reply.headers, "bc_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(!line.contains("Secure"), "plain http here: {line}");
    // The cookie is encrypted: the user name is not readable in it.
    assert!(!line.to_lowercase().contains(ADMIN), "{line}");

    let session = app.login().await;
    let page = app.get("/", &session).await;
    assert!(page.body.contains("Dashboard") && page.body.contains(ADMIN));

    let out = app.post_form("/logout", &session, &[]).await;
    out.assert_redirect("/login");
    let removal = set_cookie_line(&out.headers, "bc_session").unwrap();
    assert!(
        removal.contains("Max-Age=0")
            || removal.to_lowercase().contains("expires=thu, 01 jan 1970"),
        "{removal}"
    );
    // Already logged in: /login sends you on.
    app.get("/login?next=/audit", &session)
        .await
        .assert_redirect("/audit");
    // Only local paths are followed after login.
    let form = app.get_anon("/login?next=https://evil.example/").await;
    assert_eq!(hidden_value(&form.body, "next").as_deref(), Some("/"));
    let form = app.get_anon("/login?next=//evil.example/").await;
    assert_eq!(hidden_value(&form.body, "next").as_deref(), Some("/"));

    // The login event is audited.
    let audit = app.get("/audit", &session).await;
    assert!(audit.body.contains("admin.login"), "{}", audit.body);
    app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_slowed_and_then_locked() {
    let app = spawn_app().await;
    // Test settings: 150 ms doubling per failure, lock after 4 failures of a name.
    let started = Instant::now();
    let first = app.try_login(ADMIN, "wrong password 1").await;
    let first_took = started.elapsed();
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert!(first.body.contains("Wrong user name or password"));
    assert!(set_cookie(&first.headers, "bc_session").is_none());
    assert!(first_took >= Duration::from_millis(150), "{first_took:?}");

    let started = Instant::now();
    let second = app.try_login(ADMIN, "wrong password 2").await;
    let second_took = started.elapsed();
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert!(second_took >= Duration::from_millis(300), "{second_took:?}");

    // An unknown user gets the same answer, as slowly.
    let started = Instant::now();
    let unknown = app.try_login("nobody-here", "whatever-password").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Wrong user name or password"));
    assert!(started.elapsed() >= Duration::from_millis(150));

    app.try_login(ADMIN, "wrong password 3").await;
    app.try_login(ADMIN, "wrong password 4").await;
    // Locked now: even the right password is refused, without a session.
    let locked = app.try_login(ADMIN, PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert!(locked.body.contains("Too many failed logins"));
    assert!(locked.headers.get("retry-after").is_some());
    assert!(set_cookie(&locked.headers, "bc_session").is_none());

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("admin_logins_total{outcome=\"failure\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("admin_logins_total{outcome=\"locked\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn forms_without_the_session_csrf_token_are_refused() {
    let app = spawn_app().await;
    let session = app.login().await;
    let before = app.get("/templates", &session).await.body;
    for csrf in ["", "wrong-token", &session.csrf[..10]] {
        let reply = app
            .post_form(
                "/templates",
                &session,
                &[
                    ("csrf", csrf),
                    ("name", "csrf probe"),
                    ("telegram_text", "Hi"),
                    ("parse_mode", "plain"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "csrf `{csrf}`");
        assert!(reply.body.contains("security token"), "{}", reply.body);
    }
    // A form with no csrf field at all.
    let reply = app
        .client
        .post(app.url("/broadcasts/1/cancel"))
        .header("cookie", &session.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    // Logout needs it too.
    let reply = app
        .post_form("/logout", &session, &[("csrf", "nope")])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // The CSV upload (multipart) too.
    let form = reqwest::multipart::Form::new().text("kind", "users").part(
        "file",
        reqwest::multipart::Part::bytes(b"external_id\nx1\n".to_vec()).file_name("u.csv"),
    );
    let reply = app
        .client
        .post(app.url("/audience/import"))
        .header("cookie", &session.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    // Nothing was created.
    assert_eq!(app.get("/templates", &session).await.body, before);
    // The login form has its own token.
    let reply = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={ADMIN}&password=correct+horse+battery&csrf=forged"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}
