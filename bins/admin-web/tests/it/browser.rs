//! The panel in headless Chromium: log in, write a template with a deliberate error and see it
//! reported, fix it, build a broadcast with the filter form and its live count, launch it,
//! watch the progress reach 100 % (delivered by another worker, seen through the live stream),
//! open the statistics and the recipients. Screenshots of each page go to
//! `target/browser-artifacts/`.
//!
//! Needs `/usr/bin/chromium` (`scripts/install-browser.sh` installs it from Debian packages;
//! `CHROMIUM` points elsewhere). Without it the test is skipped with a loud message, unless
//! `REQUIRE_BROWSER=1`, which turns the skip into a failure.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use reqwest::{Method, StatusCode};

use crate::helpers::{ADMIN, Options, PASSWORD, TestApp, spawn_app_with};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "Chromium not found at {}: run scripts/install-browser.sh (or set CHROMIUM)",
        path.display()
    );
    if std::env::var("REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{message} (REQUIRE_BROWSER=1)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "!!! SKIPPING browser test: {message}. Set REQUIRE_BROWSER=1 to make this a failure."
    );
    None
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        )
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

async fn screenshot(page: &Page, name: &str) {
    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    let path = artifacts().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    let _ = writeln!(std::io::stderr(), "screenshot: {}", path.display());
}

/// Evaluates a JavaScript expression.
async fn js<T: serde::de::DeserializeOwned>(page: &Page, expression: &str) -> T {
    page.evaluate(expression)
        .await
        .unwrap_or_else(|e| panic!("evaluate `{expression}`: {e}"))
        .into_value()
        .unwrap_or_else(|e| panic!("value of `{expression}`: {e}"))
}

/// Waits until a JavaScript condition holds on the current page.
async fn wait_until(page: &Page, condition: &str, what: &str) {
    let started = Instant::now();
    loop {
        let ok = match page.evaluate(format!("Boolean({condition})")).await {
            Ok(v) => v.into_value::<bool>().unwrap_or(false),
            // The page is navigating: its context is gone for a moment.
            Err(_) => false,
        };
        if ok {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let url = page.url().await.ok().flatten().unwrap_or_default();
            let body: String = js(page, "document.body ? document.body.innerText : ''").await;
            panic!("timed out waiting for {what} on {url}:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets a form field's value (and fires `change`, as a user would).
async fn set_field(page: &Page, selector: &str, value: &str) {
    let script = format!(
        "(() => {{ const el = document.querySelector({sel}); el.value = {val}; \
         el.dispatchEvent(new Event('input', {{bubbles: true}})); \
         el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
        sel = serde_json::to_string(selector).unwrap(),
        val = serde_json::to_string(value).unwrap(),
    );
    let _: bool = js(page, &script).await;
}

async fn text_of(page: &Page, selector: &str) -> String {
    js(
        page,
        &format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            serde_json::to_string(selector).unwrap()
        ),
    )
    .await
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_in_a_real_browser() {
    let Some(executable) = chromium() else {
        return;
    };
    // The test delivers with a worker of its own, as another process would.
    let app = spawn_app_with(
        broadcast_testkit::TestDb::sqlite().await,
        Options {
            run_worker: false,
            ..Options::default()
        },
    )
    .await;
    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(executable)
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 1024)
        .viewport(Viewport {
            width: 1280,
            height: 1024,
            ..Viewport::default()
        })
        .request_timeout(Duration::from_secs(30))
        .args([
            "disable-gpu",
            "disable-dev-shm-usage",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
        ])
        .build()
        .expect("browser config");
    let (mut browser, mut handler) = Browser::launch(config).await.expect("Chromium starts");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    run_flow(&app, &browser).await;

    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
    app.stop().await;
}

async fn run_flow(app: &TestApp, browser: &Browser) {
    // 1. Log in (the dashboard redirects to the login page).
    let page = browser.new_page(app.url("/")).await.expect("page");
    wait_until(
        &page,
        "document.querySelector('input[name=username]')",
        "the login form",
    )
    .await;
    screenshot(&page, "01-login.png").await;
    page.find_element("input[name=username]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(ADMIN)
        .await
        .unwrap();
    page.find_element("input[name=password]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(PASSWORD)
        .await
        .unwrap();
    click(&page, "button[type=submit]").await;
    wait_until(
        &page,
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'Dashboard'",
        "the dashboard",
    )
    .await;
    screenshot(&page, "02-dashboard.png").await;

    // 2. A template with a deliberate error: reported at its line.
    page.goto(app.url("/templates/new")).await.unwrap();
    wait_until(
        &page,
        "document.querySelector('#template-form')",
        "the template form",
    )
    .await;
    set_field(&page, "input[name=name]", "Browser reminder").await;
    set_field(
        &page,
        "textarea[name=telegram_text]",
        "Hello <b>{{ first_name }}</b>!\nYour role: {{ role }\nSee you.",
    )
    .await;
    set_field(
        &page,
        "input[name=email_subject]",
        "Reminder for {{ first_name }}",
    )
    .await;
    set_field(
        &page,
        "textarea[name=email_text]",
        "Dear {{ full_name }}, see you at {{ competition_name }}.",
    )
    .await;
    click(&page, "#template-form button[type=submit]").await;
    wait_until(
        &page,
        "document.querySelector('.errors .problem')",
        "the problem list",
    )
    .await;
    let problem = text_of(&page, ".errors .problem").await;
    assert!(problem.contains("Telegram text, line 2"), "{problem}");
    let marked = text_of(&page, ".errors .marked").await;
    assert!(marked.contains("Your role: {{ role }"), "{marked}");
    screenshot(&page, "03-template-error.png").await;

    // 3. Fixed: the live preview beside the editor follows, then saved.
    set_field(
        &page,
        "textarea[name=telegram_text]",
        "Hello <b>{{ first_name }}</b>!\nYour role: {{ role }}\nSee you.",
    )
    .await;
    wait_until(
        &page,
        "document.querySelector('[data-testid=live-telegram] b') && \
         document.querySelector('[data-testid=live-telegram] b').textContent === 'Anna'",
        "the live preview",
    )
    .await;
    let subject = text_of(&page, "[data-testid=live-email-subject]").await;
    assert_eq!(subject, "Reminder for Anna");
    screenshot(&page, "04a-live-preview.png").await;
    click(&page, "#template-form button[type=submit]").await;
    wait_until(&page, "document.querySelector('.notice') && document.querySelector('.notice').textContent.includes('Template created')", "the saved template").await;
    screenshot(&page, "04-template-saved.png").await;
    let template_url: String = js(&page, "location.pathname").await;
    page.goto(app.url(&format!("{template_url}/preview")))
        .await
        .unwrap();
    wait_until(
        &page,
        "document.querySelector('[data-testid=telegram-preview] b')",
        "the preview",
    )
    .await;
    assert_eq!(
        text_of(&page, "[data-testid=telegram-preview] b").await,
        "Anna"
    );
    screenshot(&page, "05-template-preview.png").await;
    email_preview_keeps_styles_and_runs_nothing(app, &page).await;
    a_poster_and_buttons_are_previewed_as_telegram_shows_them(app, &page).await;

    // 4. The filter form: judges with an e-mail address; the live count follows.
    let expected = app
        .api(
            Method::POST,
            "/audience/count",
            Some(serde_json::json!({ "filter": { "roles": ["judge"], "has_email": true }, "channel_policy": "both" })),
        )
        .await
        .json();
    let everyone = app
        .api(Method::POST, "/audience/count", Some(serde_json::json!({})))
        .await
        .json();
    page.goto(app.url("/broadcasts/new")).await.unwrap();
    wait_until(
        &page,
        "document.querySelector('#broadcast-form')",
        "the broadcast form",
    )
    .await;
    wait_until(
        &page,
        &format!(
            "document.querySelector('[data-count=users]').textContent === '{}'",
            everyone["users"]
        ),
        "the initial count",
    )
    .await;
    set_field(&page, "input[name=name]", "Judges briefing").await;
    click(&page, "input[name=roles][value=judge]").await;
    // The competition picker: a search narrows the list, ignoring case and accents.
    set_field(&page, "[data-picker] .picker-search", "KRAKOW").await;
    wait_until(
        &page,
        "[...document.querySelector('[data-picker]').querySelectorAll('.picker-options label')]\
         .filter(l => !l.hidden).map(l => l.textContent.trim()).join('|') === 'Kraków Code Cup 2027'",
        "the narrowed competition list",
    )
    .await;
    let chosen = text_of(&page, "[data-picker] [data-picker-count]").await;
    assert_eq!(chosen, "any");
    set_field(&page, "[data-picker] .picker-search", "").await;
    set_field(&page, "select[name=has_email]", "yes").await;
    wait_until(
        &page,
        &format!(
            "document.querySelector('[data-count=users]').textContent === '{}' && \
             document.querySelector('[data-count=messages-email]').textContent === '{}'",
            expected["users"], expected["messages"]["email"]
        ),
        "the live audience count",
    )
    .await;
    // Another policy, other channels: the list follows.
    set_field(&page, "select[name=channel_policy]", "email").await;
    wait_until(
        &page,
        "!document.querySelector('[data-count=messages-telegram]') && \
         document.querySelector('[data-count=messages-email]')",
        "the count for e-mail only",
    )
    .await;
    set_field(&page, "select[name=channel_policy]", "both").await;
    wait_until(
        &page,
        "document.querySelector('[data-count=messages-telegram]')",
        "the count for both channels again",
    )
    .await;
    let described = text_of(&page, "[data-count=describe]").await;
    assert!(described.contains("role in [judge]"), "{described}");
    screenshot(&page, "06-filter-builder.png").await;
    click(&page, "#broadcast-form button[type=submit]").await;
    wait_until(&page, "document.querySelector('[data-testid=status]') && document.querySelector('[data-testid=status]').textContent === 'draft'", "the draft broadcast").await;
    let path: String = js(&page, "location.pathname").await;
    let id: i64 = path.trim_start_matches("/broadcasts/").parse().unwrap();

    // 5. The confirmation page, then launch.
    click(&page, "a[href$='/launch']").await;
    wait_until(
        &page,
        "document.querySelector('[data-testid=launch-users]')",
        "the confirmation",
    )
    .await;
    assert_eq!(
        text_of(&page, "[data-testid=launch-users]").await,
        expected["users"].to_string()
    );
    assert_eq!(
        text_of(&page, "[data-testid=launch-telegram]").await,
        expected["messages"]["telegram"].to_string()
    );
    screenshot(&page, "07-launch-confirmation.png").await;
    click(&page, "form[action$='/launch'] button[type=submit]").await;
    wait_until(&page, "document.querySelector('[data-testid=status]') && document.querySelector('[data-testid=status]').textContent === 'running'", "the running broadcast").await;
    // Skipped rows (no address, blocked) are done at launch; the rest waits for a worker.
    let percent: u32 = text_of(&page, "[data-p=percent-text]")
        .await
        .parse()
        .unwrap();
    assert!(percent < 100, "{percent} % before any worker ran");
    screenshot(&page, "08-running.png").await;

    // 6. Another worker delivers it in small batches; the page follows live and reaches 100 %.
    app.drain(id, 5, Duration::from_millis(250)).await;
    wait_until(
        &page,
        "document.querySelector('[data-testid=status]').textContent === 'completed' && \
         document.querySelector('[data-p=percent-text]').textContent === '100'",
        "progress to reach 100 %",
    )
    .await;
    screenshot(&page, "09-completed.png").await;

    // 7. The statistics and the recipients.
    let sent: String = text_of(&page, "#statistics .bar-row:nth-child(3) .bar-value").await;
    let stats = app
        .api(Method::GET, &format!("/broadcasts/{id}/stats"), None)
        .await
        .json();
    assert_eq!(
        sent.trim(),
        stats["by_status"]["sent"].to_string(),
        "the sent bar"
    );
    let _: bool = js(
        &page,
        "(() => { document.querySelector('#statistics').scrollIntoView(); return true; })()",
    )
    .await;
    screenshot(&page, "10-statistics.png").await;
    click(&page, "a[href$='/recipients']").await;
    wait_until(
        &page,
        "document.querySelector('table.data tbody tr')",
        "the recipient table",
    )
    .await;
    screenshot(&page, "11-recipients.png").await;
    pages_fit_a_phone(app, &page, id).await;
}

/// The editor with a poster and two rows of buttons: the live preview beside it shows the picture
/// above the text and the buttons under it, as does the saved template's preview.
async fn a_poster_and_buttons_are_previewed_as_telegram_shows_them(app: &TestApp, page: &Page) {
    let poster = std::fs::read(crate::helpers::fixtures().join("poster.png")).unwrap();
    let uploaded = app
        .client
        .post(app.url("/api/v1/media?name=poster.png"))
        .bearer_auth(crate::helpers::API_TOKEN)
        .body(poster)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    page.goto(app.url("/templates/new")).await.unwrap();
    wait_until(page, "document.readyState === 'complete'", "the editor").await;
    set_field(page, "input[name=name]", "Poster").await;
    set_field(page, "select[name=telegram_medium]", "poster.png").await;
    set_field(
        page,
        "textarea[name=telegram_buttons]",
        "Register, {{ first_name }} -> https://example.org/r?name={{ first_name | urlencode }}\n\
         + Schedule -> https://example.org/schedule\nOpen the chat -> tg://resolve?domain=example",
    )
    .await;
    set_field(
        page,
        "textarea[name=telegram_text]",
        "<b>{{ competition_name }}</b> is coming, {{ first_name }}!",
    )
    .await;
    let loaded = "(() => { const img = document.querySelector('[data-live=photo]'); \
                  return img && !img.hidden && img.complete && img.naturalWidth === 640 \
                  && document.querySelectorAll('[data-live=buttons] .tg-button').length === 3; })()";
    wait_until(page, loaded, "the live preview with the poster and buttons").await;
    let first: String = text_of(page, "[data-live=buttons] .tg-row .tg-button").await;
    assert_eq!(first, "Register, Anna");
    screenshot(page, "04b-live-preview-poster.png").await;
    click(page, "#template-form button[type=submit]").await;
    wait_until(page, "document.querySelector('.notice') && document.querySelector('.notice').textContent.includes('Template created')", "the saved poster template").await;
    let template_url: String = js(page, "location.pathname").await;
    page.goto(app.url(&format!("{template_url}/preview")))
        .await
        .unwrap();
    let shown = "(() => { const img = document.querySelector('[data-testid=telegram-photo]'); \
                 return img && img.complete && img.naturalWidth === 640 \
                 && document.querySelectorAll('[data-testid=telegram-buttons] .tg-row').length === 2; })()";
    wait_until(page, shown, "the preview with the poster and buttons").await;
    let href: String = js(
        page,
        "document.querySelector('[data-testid=telegram-buttons] .tg-button').getAttribute('href')",
    )
    .await;
    assert_eq!(href, "https://example.org/r?name=Anna");
    screenshot(page, "05c-preview-poster.png").await;
}

/// At 390 px no page scrolls sideways (tables scroll inside their box), and the menu is one
/// button that opens it.
async fn pages_fit_a_phone(app: &TestApp, page: &Page, broadcast: i64) {
    // The media page has the poster in its table (uploaded by the poster step).
    // Set again before every page: a full-page screenshot clears the override.
    let phone = async || {
        page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true))
            .await
            .expect("phone metrics");
    };
    for (name, path) in [
        ("broadcasts", "/broadcasts".to_owned()),
        ("recipients", format!("/broadcasts/{broadcast}/recipients")),
        ("broadcast", format!("/broadcasts/{broadcast}")),
        ("templates", "/templates".to_owned()),
        ("audience", "/audience".to_owned()),
        ("audit", "/audit".to_owned()),
        ("media", "/media".to_owned()),
        ("dashboard", "/".to_owned()),
    ] {
        phone().await;
        page.goto(app.url(&path)).await.unwrap();
        wait_until(page, "document.readyState === 'complete'", name).await;
        let (page_width, viewport): (i64, i64) = js(
            page,
            "[document.documentElement.scrollWidth, window.innerWidth]",
        )
        .await;
        let wide: String = js(page, "JSON.stringify([...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 392).slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width)))").await;
        assert_eq!(viewport, 390, "{name}: a phone's screen: {wide}");
        assert!(
            page_width <= viewport,
            "{name}: the page is {page_width} px wide in a {viewport} px screen"
        );
        screenshot(page, &format!("12-phone-{name}.png")).await;
    }
    phone().await;
    // The menu: one line until opened.
    let closed: f64 = js(
        page,
        "document.querySelector('header.top').getBoundingClientRect().height",
    )
    .await;
    assert!(closed < 70.0, "the closed menu takes {closed} px");
    let hidden: bool = js(page, "getComputedStyle(document.querySelector('header.top nav')).display === 'none' || document.querySelector('header.top nav').offsetParent === null").await;
    assert!(hidden, "the links are behind the menu button");
    click(page, "label.menu-button").await;
    wait_until(
        page,
        "document.querySelector('header.top nav').offsetParent !== null",
        "the opened menu",
    )
    .await;
    screenshot(page, "12-phone-menu.png").await;
}

/// The e-mail preview frame shows the template's inline styles, and a script in the template
/// does not run: neither in the frame nor when the frame's address is opened on its own.
async fn email_preview_keeps_styles_and_runs_nothing(app: &TestApp, page: &Page) {
    let reply = app
        .api(
            Method::POST,
            "/templates",
            Some(serde_json::json!({
                "name": "Styled mail",
                "content": {
                    "email_subject": "Styled",
                    "email_html": "<h1 id=\"greeting\" style=\"color: rgb(200, 0, 0)\">Hi {{ first_name }}</h1>\
                                   <script>document.body.dataset.ran = 'yes'; parent.document.body.dataset.ran = 'yes';</script>",
                },
            })),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
    let id = reply.json()["id"].as_i64().unwrap();
    page.goto(app.url(&format!("/templates/{id}/preview")))
        .await
        .unwrap();
    wait_until(
        page,
        "document.querySelector('[data-testid=email-frame]')",
        "the e-mail frame",
    )
    .await;
    let src: String = js(
        page,
        "document.querySelector('[data-testid=email-frame]').getAttribute('src')",
    )
    .await;
    let sandbox: String = js(
        page,
        "document.querySelector('[data-testid=email-frame]').getAttribute('sandbox')",
    )
    .await;
    assert_eq!(sandbox, "", "a sandbox without scripts");
    // Give a script in the frame the time to run, if it could.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran: bool = js(page, "document.body.dataset.ran === 'yes'").await;
    assert!(!ran, "the frame's script reached the page");
    screenshot(page, "05b-email-preview.png").await;

    page.goto(app.url(&src)).await.unwrap();
    wait_until(
        page,
        "document.querySelector('#greeting')",
        "the e-mail body",
    )
    .await;
    let color: String = js(
        page,
        "getComputedStyle(document.querySelector('#greeting')).color",
    )
    .await;
    assert_eq!(color, "rgb(200, 0, 0)", "the inline style applies");
    let ran: bool = js(page, "document.body.dataset.ran === 'yes'").await;
    assert!(!ran, "the e-mail's script ran");
}
