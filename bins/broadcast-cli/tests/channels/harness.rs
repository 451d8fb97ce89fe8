//! Runs the real `broadcast-cli` binary in a temporary directory against the fakes, with a fresh
//! SQLite database, and reads its JSON output. Every run's stdout and stderr is checked for the
//! secrets the binary was given.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use broadcast_testkit::smtp::SmtpSink;
use broadcast_testkit::telegram::{FakeTelegram, FakeTelegramConfig};
use serde_json::Value;

/// `PUBLIC_BASE_URL` of every run: nothing listens there, the links are only compared.
pub(crate) const PUBLIC_BASE_URL: &str = "http://127.0.0.1:9/";
/// `APP_NAME` of every run.
pub(crate) const APP_NAME: &str = "Channel Tests";
/// `SMTP_FROM_EMAIL` of every run.
pub(crate) const FROM_EMAIL: &str = "news@channels.example.org";
/// `SMTP_FROM_NAME` of every run.
pub(crate) const FROM_NAME: &str = "Channel News";
/// How long a command may take before the test gives up on it.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// A random number (std's hasher keys are seeded from the OS and differ per `RandomState`).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// `len` random lower-case hex digits.
pub(crate) fn random_hex(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&format!("{:016x}", random_u64()));
    }
    s.truncate(len);
    s
}

/// A random bot token, `<bot id>:<secret>`, shaped like @BotFather's.
pub(crate) fn random_token() -> String {
    format!(
        "{}:AAH{}_{}",
        1_000_000 + random_u64() % 9_000_000,
        random_hex(20),
        random_hex(12)
    )
}

/// A fake Bot API server that accepts a random token.
pub(crate) async fn fake_telegram() -> FakeTelegram {
    FakeTelegram::start_with(FakeTelegramConfig {
        token: random_token(),
        ..FakeTelegramConfig::default()
    })
    .await
}

/// A port on 127.0.0.1 where nothing listens.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Every spelling in which a secret could leak: raw, percent-encoded (a bot token in a URL
/// path), base64 (SMTP AUTH), and the part of a bot token after the colon.
fn spellings(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut out = vec![
        secret.to_owned(),
        secret.replace(':', "%3A"),
        b64.encode(secret),
    ];
    if let Some((_, after)) = secret.split_once(':') {
        out.push(after.to_owned());
    }
    out
}

/// Panics when `text` contains any spelling of any of `secrets` (named by label only).
pub(crate) fn assert_no_secret(text: &str, secrets: &[(String, String)], what: &str) {
    for (label, secret) in secrets {
        for spelling in spellings(secret) {
            assert!(
                !text.contains(&spelling),
                "{what} contains the {label} (spelled `{}…`)",
                spelling.chars().take(6).collect::<String>()
            );
        }
    }
}

/// One finished (or killed) run of the binary.
#[derive(Debug)]
pub(crate) struct Run {
    /// The command line, for messages.
    pub(crate) args: String,
    /// Exit code; `None` when killed.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts exit code 0.
    #[track_caller]
    pub(crate) fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "`broadcast-cli {}` failed\n--- stdout\n{}\n--- stderr (tail)\n{}",
            self.args,
            self.stdout,
            tail(&self.stderr, 4000)
        );
        self
    }

    /// Asserts exit code 0 and parses stdout as one JSON document.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        self.ok();
        self.document()
    }

    /// Parses stdout as one JSON document, whatever the exit code.
    #[track_caller]
    pub(crate) fn document(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`broadcast-cli {}` printed no JSON document ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A running child process whose output goes to files.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    args: String,
    out: PathBuf,
    err: PathBuf,
}

/// The binary's environment and working directory for one test: a temporary directory with a
/// fresh SQLite database, `LOG=debug`, and whatever channels the test configures.
#[derive(Debug)]
pub(crate) struct Cli {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    runs: Mutex<u32>,
    transcript: Mutex<String>,
}

impl Cli {
    /// Nothing configured but the database, the unsubscribe links and debug logs.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret_key = random_hex(48);
        let mut cli = Self {
            env: Vec::new(),
            secrets: Vec::new(),
            runs: Mutex::new(0),
            transcript: Mutex::new(String::new()),
            dir,
        };
        let db = format!("sqlite://{}/b.db?mode=rwc", cli.dir.path().display());
        let outbox = cli.dir.path().join("outbox").display().to_string();
        cli.set("PATH", &std::env::var("PATH").unwrap_or_default());
        cli.set("DATABASE_URL", &db);
        cli.set("LOG", "debug");
        cli.set("NO_COLOR", "1");
        cli.set("OUTBOX_DIR", &outbox);
        cli.set("APP_NAME", APP_NAME);
        cli.set("PUBLIC_BASE_URL", PUBLIC_BASE_URL);
        cli.set("SMTP_FROM_EMAIL", FROM_EMAIL);
        cli.set("SMTP_FROM_NAME", FROM_NAME);
        cli.secret("ADMIN_SECRET_KEY", &secret_key);
        cli
    }

    /// Sets an environment variable of every later run.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a secret environment variable: it must never appear in what the binary prints.
    pub(crate) fn secret(&mut self, name: &str, value: &str) -> &mut Self {
        self.set(name, value);
        self.watch_secret(name, value);
        self
    }

    /// A secret the binary must never print, though it was not given to it (the fake's real
    /// token when the binary has a wrong one, say).
    pub(crate) fn watch_secret(&mut self, label: &str, value: &str) {
        self.secrets.push((label.to_owned(), value.to_owned()));
    }

    /// The value of a variable set for the runs.
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The secrets watched, labelled.
    pub(crate) fn secrets(&self) -> &[(String, String)] {
        &self.secrets
    }

    /// The temporary directory (the binary's working directory).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The real Telegram channel, pointed at the fake.
    pub(crate) fn telegram(&mut self, fake: &FakeTelegram) -> &mut Self {
        self.set("TELEGRAM_API_URL", &fake.api_url());
        self.secret("TELEGRAM_BOT_TOKEN", fake.token())
    }

    /// The real e-mail channel, pointed at the sink (plain SMTP), with AUTH when given.
    pub(crate) fn smtp(&mut self, sink: &SmtpSink, login: Option<(&str, &str)>) -> &mut Self {
        self.set("SMTP_HOST", "127.0.0.1");
        self.set("SMTP_PORT", &sink.port().to_string());
        self.set("SMTP_TLS", "none");
        if let Some((user, password)) = login {
            self.set("SMTP_USERNAME", user);
            self.secret("SMTP_PASSWORD", password);
            // What AUTH PLAIN sends, base64-encoded.
            self.watch_secret("SMTP AUTH PLAIN response", &format!("\0{user}\0{password}"));
        }
        self
    }

    /// Everything every run of this `Cli` printed so far, stdout and stderr.
    pub(crate) fn transcript(&self) -> String {
        self.transcript.lock().expect("transcript").clone()
    }

    /// Starts `broadcast-cli <args>`.
    pub(crate) fn spawn(&self, args: &[&str]) -> Proc {
        let n = {
            let mut runs = self.runs.lock().expect("runs");
            *runs += 1;
            *runs
        };
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs directory");
        let out = logs.join(format!("{n:03}.stdout"));
        let err = logs.join(format!("{n:03}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_broadcast-cli"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("broadcast-cli starts");
        Proc {
            child,
            args: args.join(" "),
            out,
            err,
        }
    }

    /// Waits for a started run; kills it after `timeout` (then `code` is `None`). Checks the
    /// output for secrets and adds it to the transcript.
    pub(crate) async fn wait(&self, mut proc: Proc, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(status) = proc.child.try_wait().expect("waiting for broadcast-cli") {
                break status.code();
            }
            if Instant::now() >= deadline {
                proc.child.kill().expect("killing broadcast-cli");
                proc.child.wait().expect("reaping broadcast-cli");
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let read = |p: &PathBuf| {
            String::from_utf8_lossy(&std::fs::read(p).expect("output file")).into_owned()
        };
        let run = Run {
            args: proc.args,
            code,
            stdout: read(&proc.out),
            stderr: read(&proc.err),
        };
        {
            let mut t = self.transcript.lock().expect("transcript");
            t.push_str(&format!(
                "$ broadcast-cli {}\n{}\n{}\n",
                run.args, run.stdout, run.stderr
            ));
        }
        assert_no_secret(
            &format!("{}\n{}", run.stdout, run.stderr),
            &self.secrets,
            &format!("the output of `broadcast-cli {}`", run.args),
        );
        run
    }

    /// Runs `broadcast-cli <args>` to the end.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let proc = self.spawn(args);
        let run = self.wait(proc, COMMAND_TIMEOUT).await;
        assert!(
            run.code.is_some(),
            "`broadcast-cli {}` did not finish within {COMMAND_TIMEOUT:?}",
            run.args
        );
        run
    }

    /// Writes a file into the temporary directory; returns its path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("writing a test file");
        path.display().to_string()
    }

    /// `audience import --users <csv>`.
    pub(crate) async fn import_users(&self, users: &[UserRow]) {
        let n = *self.runs.lock().expect("runs");
        let path = self.write(&format!("users-{n}.csv"), &users_csv(users));
        let report = self
            .run(&["audience", "import", "--users", &path, "--json"])
            .await
            .json();
        let written = report["users"]["inserted"].as_u64().unwrap_or(0)
            + report["users"]["updated"].as_u64().unwrap_or(0);
        assert_eq!(written, users.len() as u64, "{report}");
    }

    /// `template create --from-json <file>`; returns the template id.
    pub(crate) async fn create_template(&self, template: &Value) -> i64 {
        let name = template["name"].as_str().expect("a template name");
        let path = self.write(&format!("template-{name}.json"), &template.to_string());
        let t = self
            .run(&["template", "create", "--from-json", &path, "--json"])
            .await
            .json();
        t["id"].as_i64().unwrap_or_else(|| panic!("no id in {t}"))
    }

    /// `broadcast create` to everyone matching `filter` (JSON); returns the broadcast id.
    pub(crate) async fn create_broadcast(
        &self,
        name: &str,
        template: i64,
        channels: &str,
        filter: &str,
    ) -> i64 {
        let b = self
            .run(&[
                "broadcast",
                "create",
                "--name",
                name,
                "--template",
                &template.to_string(),
                "--channels",
                channels,
                "--filter",
                filter,
                "--json",
            ])
            .await
            .json();
        assert_eq!(b["status"], "draft", "{b}");
        b["id"].as_i64().unwrap_or_else(|| panic!("no id in {b}"))
    }

    /// `broadcast run <id> --json` to the end, which must succeed; returns the run (stdout: the
    /// statistics).
    pub(crate) async fn run_broadcast(&self, id: i64) -> Run {
        let run = self.run_broadcast_ending(id, 0).await;
        run.ok();
        run
    }

    /// `broadcast run <id> --json` to the end, which must exit with `code`.
    pub(crate) async fn run_broadcast_ending(&self, id: i64, code: i32) -> Run {
        let run = self
            .run(&["broadcast", "run", &id.to_string(), "--yes", "--json"])
            .await;
        assert_eq!(
            run.code,
            Some(code),
            "`broadcast-cli {}`\n--- stdout\n{}\n--- stderr (tail)\n{}",
            run.args,
            run.stdout,
            tail(&run.stderr, 4000)
        );
        run
    }

    /// `broadcast stats <id> --json`.
    pub(crate) async fn stats(&self, id: i64) -> Value {
        self.run(&["broadcast", "stats", &id.to_string(), "--json"])
            .await
            .json()
    }

    /// `broadcast recipients <id> --limit 0 --json`: every row.
    pub(crate) async fn recipients(&self, id: i64) -> Vec<Value> {
        let page = self
            .run(&[
                "broadcast",
                "recipients",
                &id.to_string(),
                "--limit",
                "0",
                "--json",
            ])
            .await
            .json();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(page["total"].as_u64(), Some(items.len() as u64), "{page}");
        items
    }

    /// `audience list --json`: every user.
    pub(crate) async fn users(&self) -> Vec<Value> {
        let page = self
            .run(&["audience", "list", "--limit", "10000", "--json"])
            .await
            .json();
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

/// A row of users.csv.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserRow {
    pub(crate) external_id: String,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) email: Option<String>,
    pub(crate) chat: Option<i64>,
    pub(crate) city: Option<String>,
    pub(crate) telegram_blocked: bool,
    pub(crate) email_unsubscribed: bool,
}

impl UserRow {
    /// A user with a name, an e-mail address and a chat id.
    pub(crate) fn new(external_id: &str, first: &str, last: &str) -> Self {
        Self {
            external_id: external_id.to_owned(),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            ..Self::default()
        }
    }

    pub(crate) fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    pub(crate) fn chat(mut self, chat: i64) -> Self {
        self.chat = Some(chat);
        self
    }

    pub(crate) fn city(mut self, city: &str) -> Self {
        self.city = Some(city.to_owned());
        self
    }

    pub(crate) fn blocked(mut self) -> Self {
        self.telegram_blocked = true;
        self
    }

    pub(crate) fn unsubscribed(mut self) -> Self {
        self.email_unsubscribed = true;
        self
    }

    /// First and last name joined as the product does.
    pub(crate) fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
            .trim()
            .to_owned()
    }
}

/// users.csv with the documented header (fixtures/README.md).
pub(crate) fn users_csv(users: &[UserRow]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    }
    let mut csv = String::from(
        "external_id,first_name,last_name,email,telegram_chat_id,city,telegram_blocked,email_unsubscribed\n",
    );
    for u in users {
        let row = [
            field(&u.external_id),
            field(&u.first_name),
            field(&u.last_name),
            field(u.email.as_deref().unwrap_or_default()),
            u.chat.map(|c| c.to_string()).unwrap_or_default(),
            field(u.city.as_deref().unwrap_or_default()),
            u.telegram_blocked.to_string(),
            u.email_unsubscribed.to_string(),
        ];
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    csv
}

/// Database ids of the users, by external id, from `audience list --json`.
pub(crate) fn ids_by_external(users: &[Value]) -> std::collections::HashMap<String, i64> {
    users
        .iter()
        .map(|u| {
            (
                u["external_id"].as_str().unwrap_or_default().to_owned(),
                u["id"].as_i64().expect("a user id"),
            )
        })
        .collect()
}

/// The user with this external id.
#[track_caller]
pub(crate) fn user<'a>(users: &'a [Value], external_id: &str) -> &'a Value {
    users
        .iter()
        .find(|u| u["external_id"] == external_id)
        .unwrap_or_else(|| panic!("no user {external_id} in {users:?}"))
}

/// The recipient row of a user on a channel.
#[track_caller]
pub(crate) fn row<'a>(rows: &'a [Value], user_id: i64, channel: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["user_id"] == user_id && r["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} row for user {user_id} in {rows:#?}"))
}

/// `(status, error_kind or skip_reason, attempts)` of a row, for compact assertions.
pub(crate) fn outcome(row: &Value) -> (String, String, i64) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let why = match (&row["error_kind"], &row["skip_reason"]) {
        (Value::String(k), _) => k.clone(),
        (_, Value::String(r)) => r.clone(),
        _ => String::new(),
    };
    (
        s(&row["status"]),
        why,
        row["attempts"].as_i64().unwrap_or(-1),
    )
}

/// A count from the statistics JSON (`broadcast stats --json`), 0 when absent.
pub(crate) fn count(stats: &Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

#[test]
fn the_secret_check_finds_every_spelling() {
    let secrets = vec![("token".to_owned(), "123:AAH-secret_x".to_owned())];
    assert_no_secret("bot<redacted>/SendMessage", &secrets, "clean text");
    for leak in [
        "url http://x/bot123:AAH-secret_x/SendMessage",
        "url http://x/bot123%3AAAH-secret_x/SendMessage",
        "secret part AAH-secret_x alone",
        "AUTH PLAIN MTIzOkFBSC1zZWNyZXRfeA==",
    ] {
        let caught = std::panic::catch_unwind(|| assert_no_secret(leak, &secrets, "leak"));
        assert!(caught.is_err(), "not caught: {leak}");
    }
}
