//! `spawn_app()`: a fresh database with migrations and the demo fixtures, an administrator, the
//! panel on 127.0.0.1:0 with outbox channels in a temporary directory, and a `TestApp` with
//! typed helpers for sessions, forms and the API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broadcast_admin_web::{Settings, ThrottleSettings};
use broadcast_app::csv_import::{parse_competitions, parse_registrations, parse_users};
use broadcast_domain::{AdminStore, AudienceStore, Broadcast, BroadcastStore, User, UserQuery};
use broadcast_store::Store;
use broadcast_testkit::TestDb;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const ADMIN: &str = "admin";
pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const SECRET: &str = "test-secret-key-0123456789abcdef-0123456789";
pub(crate) const API_TOKEN: &str = "test-api-token-0123456789abcdef";

/// How the app under test is set up.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Run the delivery worker in the server process.
    pub(crate) run_worker: bool,
    /// Login throttling.
    pub(crate) throttle: ThrottleSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            run_worker: true,
            throttle: ThrottleSettings {
                base_delay: Duration::from_millis(150),
                max_delay: Duration::from_millis(600),
                user_lock_after: 4,
                ip_lock_after: 50,
                lock_for: Duration::from_secs(30),
                ..ThrottleSettings::default()
            },
        }
    }
}

/// The fixtures directory of the repository.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Loads the demo audience through the store's CSV import.
pub(crate) async fn load_fixtures(store: &Store) {
    let now = chrono::Utc::now();
    let read = |name: &str| std::fs::read(fixtures().join(name)).expect("fixture file");
    let users = parse_users(read("users.csv").as_slice()).expect("users.csv parses");
    store.import_users(users, now).await.expect("users import");
    let competitions =
        parse_competitions(read("competitions.csv").as_slice()).expect("competitions.csv parses");
    store
        .import_competitions(competitions, now)
        .await
        .expect("competitions import");
    let registrations = parse_registrations(read("registrations.csv").as_slice())
        .expect("registrations.csv parses");
    store
        .import_registrations(registrations, now)
        .await
        .expect("registrations import");
}

/// A logged-in browser session: its cookie and CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

/// The panel under test.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) store: Store,
    pub(crate) outbox: tempfile::TempDir,
    pub(crate) client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the database outlives the server.
    _db: TestDb,
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a redirect (303) to a path starting with `prefix`.
    #[track_caller]
    pub(crate) fn assert_redirect(&self, prefix: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "expected a redirect to {prefix}: {}",
            self.body
        );
        assert!(
            self.location().starts_with(prefix),
            "redirect to {} instead of {prefix}",
            self.location()
        );
    }

    /// Asserts the API error shape with `code`.
    #[track_caller]
    pub(crate) fn assert_api_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
}

/// The value of `name="<field>" value="..."` in a page (the first one).
pub(crate) fn hidden_value(html: &str, field: &str) -> Option<String> {
    let marker = format!("name=\"{field}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

/// `name=value` of the first `Set-Cookie` for `name`.
pub(crate) fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The full `Set-Cookie` line for `name`.
pub(crate) fn set_cookie_line(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(TestDb::sqlite().await, Options::default()).await
}

/// With `TEST_LOG` set, the server's logs go to the test output (`TEST_LOG=debug` for more).
fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let filter = if filter.is_empty() || filter == "1" {
                "info".to_owned()
            } else {
                filter
            };
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

pub(crate) async fn spawn_app_with(db: TestDb, options: Options) -> TestApp {
    init_test_log();
    let store = Store::from_conn(db.conn().clone());
    load_fixtures(&store).await;
    let hash = broadcast_app::password::hash_password(PASSWORD).expect("hash");
    store
        .create_admin(ADMIN, &hash, chrono::Utc::now())
        .await
        .expect("admin user");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let outbox = tempfile::tempdir().expect("outbox dir");
    let base = format!("http://{addr}");
    let vars: HashMap<&str, String> = HashMap::from([
        ("ADMIN_SECRET_KEY", SECRET.to_owned()),
        ("DATABASE_URL", db.url().to_owned()),
        ("OUTBOX_DIR", outbox.path().display().to_string()),
        (
            "ADMIN_API_TOKENS",
            format!("{API_TOKEN},another-token-0123456789abcdef"),
        ),
        ("PUBLIC_BASE_URL", base.clone()),
        ("ADMIN_RUN_WORKER", options.run_worker.to_string()),
        ("ADMIN_PROGRESS_POLL_MS", "200".to_owned()),
        ("WORKER_ID", format!("test-worker-{}", addr.port())),
    ]);
    let mut settings =
        Settings::from_lookup(|k| vars.get(k).cloned()).expect("test settings are valid");
    settings.throttle = options.throttle;
    settings.worker.idle_poll = Duration::from_millis(100);
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(broadcast_admin_web::run(settings, listener, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let app = TestApp {
        base,
        store,
        outbox,
        client,
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    };
    // Wait until it answers.
    let started = Instant::now();
    loop {
        if let Ok(r) = app.client.get(app.url("/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        if app.server.as_ref().is_some_and(JoinHandle::is_finished) {
            panic!("the server stopped while starting");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it (worker included) to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("the server stops within 20 s")
                .expect("the server task did not panic")
                .expect("the server ended without error");
        }
    }

    async fn reply(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET without a session.
    pub(crate) async fn get_anon(&self, path: &str) -> Reply {
        self.reply(self.client.get(self.url(path))).await
    }

    /// A request without a session or token.
    pub(crate) async fn request_anon(&self, method: Method, path: &str) -> Reply {
        self.reply(self.client.request(method, self.url(path)))
            .await
    }

    /// GET with a session.
    pub(crate) async fn get(&self, path: &str, session: &Session) -> Reply {
        self.reply(
            self.client
                .get(self.url(path))
                .header(COOKIE, &session.cookie),
        )
        .await
    }

    /// POST of a URL-encoded form with a session; `csrf` is added unless `fields` has one.
    pub(crate) async fn post_form(
        &self,
        path: &str,
        session: &Session,
        fields: &[(&str, &str)],
    ) -> Reply {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &session.csrf));
        }
        let body = serde_html_form_encode(&all);
        self.reply(
            self.client
                .post(self.url(path))
                .header(COOKIE, &session.cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// Logs in; panics unless it works.
    pub(crate) async fn login(&self) -> Session {
        let reply = self.try_login(ADMIN, PASSWORD).await;
        reply.assert_redirect("/");
        let cookie = set_cookie(&reply.headers, "bc_session").expect("session cookie");
        let page = self
            .get(
                "/",
                &Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                },
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = hidden_value(&page.body, "csrf").expect("csrf token in the page");
        Session { cookie, csrf }
    }

    /// Submits the login form (fetching it first for its CSRF cookie and token).
    pub(crate) async fn try_login(&self, username: &str, password: &str) -> Reply {
        let form = self.get_anon("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let cookie = set_cookie(&form.headers, "bc_login").expect("login cookie");
        let csrf = hidden_value(&form.body, "csrf").expect("login csrf");
        let body = serde_html_form_encode(&[
            ("username", username),
            ("password", password),
            ("csrf", &csrf),
            ("next", "/"),
        ]);
        self.reply(
            self.client
                .post(self.url("/login"))
                .header(COOKIE, cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// An API request with the test token.
    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.reply(request).await
    }

    pub(crate) async fn broadcast(&self, id: i64) -> Broadcast {
        self.store.get_broadcast(id).await.expect("broadcast")
    }

    /// The first user matching a search.
    pub(crate) async fn user_matching(&self, search: &str) -> User {
        self.store
            .list_users(&UserQuery {
                search: Some(search.to_owned()),
                offset: 0,
                limit: 1,
            })
            .await
            .expect("users")
            .items
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no user matches {search}"))
    }

    /// Waits until the broadcast reaches `status` (its progress read over HTTP).
    pub(crate) async fn wait_for_status(&self, session: &Session, id: i64, status: &str) {
        let started = Instant::now();
        loop {
            let p = self
                .get(&format!("/broadcasts/{id}/progress"), session)
                .await
                .json();
            if p["status"] == status {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "broadcast {id} did not become {status}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a valid template through the API; returns its id.
    pub(crate) async fn create_template(&self, name: &str) -> i64 {
        let reply = self
            .api(
                Method::POST,
                "/templates",
                Some(serde_json::json!({
                    "name": name,
                    "description": "made by a test",
                    "content": {
                        "telegram_text": "Hi <b>{{ first_name }}</b>, news about {{ competition_name }}.",
                        "parse_mode": "html",
                        "email_subject": "News for {{ first_name }}",
                        "email_text": "Hello {{ full_name }}.\nUnsubscribe: {{ unsubscribe_url }}",
                    },
                })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.json()["id"].as_i64().expect("id")
    }

    /// Lines in the Telegram outbox.
    pub(crate) fn telegram_outbox(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.outbox.path().join("telegram.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// `.eml` files in the e-mail outbox.
    pub(crate) fn email_outbox(&self) -> Vec<String> {
        std::fs::read_dir(self.outbox.path().join("email"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    /// Delivers a running broadcast to the end with a worker of the test's own (like another
    /// worker process sharing the database), pausing between batches of `batch` rows.
    pub(crate) async fn drain(&self, id: i64, batch: u64, pause: Duration) {
        use broadcast_channels::{EmailOutbox, EmailSender, TelegramOutbox};
        use broadcast_orchestrator::{Channels, Orchestrator, Ports};
        let shared = std::sync::Arc::new(self.store.clone());
        let sender = EmailSender::new(
            broadcast_domain::EmailAddress::parse("test@example.org").unwrap(),
            None,
        );
        let ports = Ports {
            templates: shared.clone(),
            broadcasts: shared.clone(),
            deliveries: shared.clone(),
            audience: shared.clone(),
            source: shared,
            renderer: std::sync::Arc::new(broadcast_render::TeraRenderer::new()),
            channels: Channels::new()
                .with(std::sync::Arc::new(
                    TelegramOutbox::new(self.outbox.path()).unwrap(),
                ))
                .with(std::sync::Arc::new(
                    EmailOutbox::new(self.outbox.path(), &sender).unwrap(),
                )),
            clock: std::sync::Arc::new(broadcast_domain::SystemClock),
            links: None,
            budget: None,
            audit: None,
            admins: None,
            media: None,
        };
        let worker = Orchestrator::new(
            ports,
            broadcast_orchestrator::Settings {
                worker_id: "test-drain".to_owned(),
                batch_size: batch,
                ..broadcast_orchestrator::Settings::default()
            },
        );
        let started = Instant::now();
        loop {
            let tick = worker.tick(Some(id)).await.expect("tick");
            if tick.claimed == 0 && worker.complete_if_done(id).await.expect("complete") {
                break;
            }
            if tick.claimed == 0 && self.broadcast(id).await.status.is_final() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "broadcast {id} did not finish"
            );
            tokio::time::sleep(pause).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// URL-encodes form fields.
pub(crate) fn serde_html_form_encode(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}
