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
    ("POST", "/logout/everywhere"),
    ("GET", "/account"),
    ("POST", "/account/password"),
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
    // The session ended on the server: a copy of its cookie opens nothing any more.
    app.get("/", &session).await.assert_redirect("/login");
    assert_eq!(
        app.post_form("/logout", &session, &[]).await.status,
        StatusCode::SEE_OTHER
    );
    // Already logged in: /login sends you on.
    let session = app.login().await;
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
    // Each refusal is in the audit log with the name tried and the address, never a password.
    use broadcast_domain::AuditLog;
    let audit = app.store.recent(50, 0).await.unwrap();
    let count = |action: &str| audit.iter().filter(|e| e.action == action).count();
    assert_eq!(count("admin.login_failed"), 5, "{audit:#?}");
    assert_eq!(count("admin.login_locked"), 1, "{audit:#?}");
    for e in audit
        .iter()
        .filter(|e| e.action.starts_with("admin.login_"))
    {
        assert_eq!(e.actor, "anonymous");
        assert!(
            e.details["ip"].is_string() && e.details["username"].is_string(),
            "{e:?}"
        );
        assert!(!e.details.to_string().contains("wrong password"), "{e:?}");
    }
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

/// `next` after login: encoded tabs, newlines and CRs, backslashes, `//`, `/%2F`, schemes and
/// doubled encodings all land on this site, for a logged-in admin (a redirect) and on the login
/// form (its hidden field); none is answered with a 500.
#[tokio::test]
async fn next_never_leads_off_the_site_and_never_fails() {
    let app = spawn_app().await;
    let session = app.login().await;
    for next in [
        "/%09/evil.example/",
        "/%09%09/evil.example",
        "/%0a/evil.example",
        "/%0d/evil.example",
        "/%0d%0a/evil.example",
        "%09//evil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "//evil.example/",
        "/%2F/evil.example",
        "/%252F/evil.example",
        "/%25%30%39/evil.example",
        "https://evil.example/",
        "https:%2F%2Fevil.example",
        "javascript:alert(1)",
        "/%00/evil.example",
    ] {
        let path = format!("/login?next={next}");
        let reply = app.get(&path, &session).await;
        assert!(
            reply.status.is_redirection(),
            "{next}: {} {}",
            reply.status,
            reply.body
        );
        let to = reply.location();
        assert!(
            to.starts_with('/') && !to.starts_with("//") && !to.contains('\\'),
            "{next} led to {to:?}"
        );
        assert!(
            !to.chars().any(|c| c.is_ascii_control()),
            "{next} led to {to:?}"
        );
        assert_eq!(to, "/", "{next}");
        let form = app.get_anon(&path).await;
        assert_eq!(form.status, StatusCode::OK, "{next}");
        assert_eq!(
            hidden_value(&form.body, "next").as_deref(),
            Some("/"),
            "{next}"
        );
    }
    // A path of the site is kept, query and all.
    app.get("/login?next=%2Fbroadcasts%3Fstatus%3Dpaused", &session)
        .await
        .assert_redirect("/broadcasts?status=paused");
    app.stop().await;
}

/// Sessions end on the server: "log out everywhere" ends every session of the admin, and a
/// password change (what `admin set-password` does) ends them too; another admin's session
/// is untouched.
#[tokio::test]
async fn log_out_everywhere_and_a_password_change_end_every_session() {
    use broadcast_domain::{AdminStore, AuditLog};
    let app = spawn_app().await;
    let (first, second) = (app.login().await, app.login().await);
    for s in [&first, &second] {
        assert_eq!(app.get("/", s).await.status, StatusCode::OK);
    }
    let out = app.post_form("/logout/everywhere", &first, &[]).await;
    out.assert_redirect("/login?done=logged_out_everywhere");
    for s in [&first, &second] {
        app.get("/", s).await.assert_redirect("/login");
    }
    let audit = app.store.recent(20, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "admin.logout_everywhere" && e.details["sessions"] == 2),
        "{audit:#?}"
    );

    let session = app.login().await;
    assert_eq!(app.get("/", &session).await.status, StatusCode::OK);
    let hash = broadcast_app::password::hash_password(PASSWORD).unwrap();
    app.store.set_admin_password(ADMIN, &hash).await.unwrap();
    app.get("/", &session).await.assert_redirect("/login");
    // A fresh login works with the (same) new password.
    let again = app.login().await;
    assert_eq!(app.get("/", &again).await.status, StatusCode::OK);
    app.stop().await;
}

/// The panel's own password change: refused with the current password wrong, the new ones
/// different or too short (nothing changes); when it works, every other session ends, this
/// browser gets a new one, the new password logs in, and the change is audited.
#[tokio::test]
async fn a_password_change_in_the_panel_ends_the_other_sessions() {
    use broadcast_domain::AuditLog;
    let app = spawn_app().await;
    let (mine, other) = (app.login().await, app.login().await);
    let page = app.get("/account", &mine).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Change your password"), "{}", page.body);
    const NEW: &str = "a much better passphrase";
    for (current, new, again, why) in [
        ("wrong password", NEW, NEW, "current password is wrong"),
        (PASSWORD, NEW, "something else entirely", "differ"),
        (PASSWORD, "short", "short", "the password is too short"),
    ] {
        let reply = app
            .post_form(
                "/account/password",
                &mine,
                &[
                    ("current_password", current),
                    ("new_password", new),
                    ("new_password_again", again),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(reply.body.contains(why), "{why}: {}", reply.body);
        assert!(!reply.body.contains(current) || current == PASSWORD);
        assert_eq!(app.get("/", &other).await.status, StatusCode::OK, "{why}");
    }
    let changed = app
        .post_form(
            "/account/password",
            &mine,
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW),
                ("new_password_again", NEW),
            ],
        )
        .await;
    changed.assert_redirect("/account?done=password_changed");
    let cookie = set_cookie(&changed.headers, "bc_session").expect("a new session cookie");
    for old in [&mine, &other] {
        app.get("/", old).await.assert_redirect("/login");
    }
    let fresh = Session {
        cookie,
        csrf: String::new(),
    };
    let page = app.get("/account?done=password_changed", &fresh).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Password changed"), "{}", page.body);
    assert_eq!(
        app.try_login(ADMIN, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.try_login(ADMIN, NEW).await.assert_redirect("/");
    let audit = app.store.recent(20, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "admin.set_password" && e.actor == ADMIN),
        "{audit:#?}"
    );
    assert!(
        !audit.iter().any(|e| e.details.to_string().contains(NEW)),
        "no password in the audit log"
    );
    app.stop().await;
}
