//! Runs the real `broadcast-cli` binary as an operator would: one-shot commands to the end, and
//! long-running workers as child processes that a test kills (SIGKILL), stops (SIGTERM) and
//! restarts. Every test gets its own temporary directory (the working directory, the SQLite
//! database unless a PostgreSQL URL is given, and the output of every run) and an environment
//! that holds nothing but `PATH` and what the test sets.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use broadcast_testkit::smtp::SmtpSink;
use broadcast_testkit::telegram::{FakeTelegram, FakeTelegramConfig};
use serde_json::{Value, json};

/// How long a one-shot command may take before the test gives up on it.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The bot token the fake accepts and the binary is given.
pub(crate) const TOKEN: &str = "4242424:AAH-durability_test_token_0123456789";

/// A fake Bot API server with this token and these limits (enforced).
pub(crate) async fn fake_telegram(per_second: u32, paid_per_second: u32) -> FakeTelegram {
    fake_telegram_away(per_second, paid_per_second, std::time::Duration::ZERO).await
}

/// [`fake_telegram`] `one_way_delay` away from the workers.
pub(crate) async fn fake_telegram_away(
    per_second: u32,
    paid_per_second: u32,
    one_way_delay: std::time::Duration,
) -> FakeTelegram {
    FakeTelegram::start_with(FakeTelegramConfig {
        token: TOKEN.to_owned(),
        per_second,
        paid_per_second,
        one_way_delay,
        ..FakeTelegramConfig::default()
    })
    .await
}

/// One finished run of a one-shot command.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) args: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts exit code 0.
    #[track_caller]
    pub(crate) fn ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "`broadcast-cli {}` failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.status,
            self.stdout,
            tail(&self.stderr, 4000)
        );
        self
    }

    /// Asserts exit code 0 and parses stdout as one JSON document.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        self.ok();
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`broadcast-cli {}` printed no JSON document ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

/// The last `n` bytes of `s` (at a character boundary).
pub(crate) fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A running `broadcast-cli` process whose output goes to files; killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    args: String,
    out: PathBuf,
    err: PathBuf,
    /// When it was started.
    pub(crate) started: Instant,
}

impl Proc {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends on unix), and reaps the process.
    pub(crate) fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL broadcast-cli");
        self.child.wait().expect("reaping broadcast-cli");
    }

    /// Sends SIGTERM (with `kill`, no new crate), without waiting.
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Exited already? (`Some(status)` then.)
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for broadcast-cli")
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What it printed on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    /// What it printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// The command line, for messages.
    pub(crate) fn args(&self) -> &str {
        &self.args
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The environment and working directory of the binary for one test.
#[derive(Debug)]
pub(crate) struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
    runs: AtomicU32,
}

impl Env {
    /// A fresh temporary directory with a SQLite database in it.
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/broadcast.db?mode=rwc", dir.path().display());
        Self::with_dir(dir, &url)
    }

    /// A fresh temporary directory; the database at `database_url`.
    pub(crate) fn with_database(database_url: &str) -> Self {
        Self::with_dir(
            tempfile::tempdir().expect("temporary directory"),
            database_url,
        )
    }

    fn with_dir(dir: tempfile::TempDir, database_url: &str) -> Self {
        let mut env = Self {
            vars: Vec::new(),
            runs: AtomicU32::new(0),
            dir,
        };
        let outbox = env.dir.path().join("outbox").display().to_string();
        env.set("PATH", &std::env::var("PATH").unwrap_or_default())
            .set("DATABASE_URL", database_url)
            .set("OUTBOX_DIR", &outbox)
            .set("NO_COLOR", "1")
            .set("LOG", "warn")
            .set("APP_NAME", "Durability Tests")
            .set("SMTP_FROM_EMAIL", "news@durability.example.org");
        env
    }

    /// The database the runs use.
    pub(crate) fn database_url(&self) -> &str {
        self.vars
            .iter()
            .find(|(n, _)| n == "DATABASE_URL")
            .map(|(_, v)| v.as_str())
            .expect("DATABASE_URL is always set")
    }

    /// Sets a variable for every later run.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The real Telegram channel, pointed at the fake.
    pub(crate) fn telegram(&mut self, fake: &FakeTelegram) -> &mut Self {
        self.set("TELEGRAM_API_URL", &fake.api_url())
            .set("TELEGRAM_BOT_TOKEN", fake.token())
    }

    /// The real e-mail channel, pointed at the sink, plain SMTP.
    pub(crate) fn smtp(&mut self, sink: &SmtpSink) -> &mut Self {
        self.set("SMTP_HOST", "127.0.0.1")
            .set("SMTP_PORT", &sink.port().to_string())
            .set("SMTP_TLS", "none")
    }

    /// Starts `broadcast-cli <args>` with the test's variables plus `extra`.
    pub(crate) fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Proc {
        let n = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs directory");
        let out = logs.join(format!("{n:03}.stdout"));
        let err = logs.join(format!("{n:03}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_broadcast-cli"))
            .args(args)
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
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
            started: Instant::now(),
        }
    }

    /// Starts `broadcast-cli worker` with this `WORKER_ID`.
    pub(crate) fn worker(&self, worker_id: &str) -> Proc {
        self.spawn(&["worker"], &[("WORKER_ID", worker_id)])
    }

    /// Runs `broadcast-cli <args>` to the end (at most [`COMMAND_TIMEOUT`]).
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let mut proc = self.spawn(args, &[]);
        let Some(status) = proc.wait(COMMAND_TIMEOUT).await else {
            panic!(
                "`broadcast-cli {}` did not finish within {COMMAND_TIMEOUT:?}\n--- stderr\n{}",
                proc.args(),
                tail(&proc.stderr(), 4000)
            );
        };
        Run {
            args: proc.args().to_owned(),
            status,
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }

    /// Runs `broadcast-cli <args> --json`, asserts success and returns the document.
    pub(crate) async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        self.run(&all).await.json()
    }

    /// Writes a file into the temporary directory; returns its path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("writing a test file");
        path.display().to_string()
    }

    /// Imports users (and, when given, one competition every user is registered for).
    pub(crate) async fn import(&self, users: &[Person], competition: Option<&str>) {
        let users_path = self.write("users.csv", &users_csv(users));
        let mut args = vec!["audience", "import", "--users", &users_path];
        let (competitions, registrations);
        if let Some(slug) = competition {
            competitions = self.write(
                "competitions.csv",
                &format!("slug,name,starts_on,city,country\n{slug},Durability Cup,2027-06-01,Gdańsk,Poland\n"),
            );
            let mut csv = String::from("user_external_id,competition_slug,role,status\n");
            for p in users {
                csv.push_str(&format!("{},{slug},participant,confirmed\n", p.external_id));
            }
            registrations = self.write("registrations.csv", &csv);
            args.extend([
                "--competitions",
                competitions.as_str(),
                "--registrations",
                registrations.as_str(),
            ]);
        }
        let report = self.json(&args).await;
        assert_eq!(
            report["users"]["inserted"].as_u64(),
            Some(users.len() as u64),
            "{report}"
        );
    }

    /// Creates a template with a Telegram text and a plain-text e-mail; returns its id.
    pub(crate) async fn template(&self, name: &str) -> i64 {
        let file = self.write(
            &format!("template-{name}.json"),
            &json!({
                "name": name,
                "telegram_text": "Hi {{ first_name }}, news from {{ app_name }}",
                "parse_mode": "plain",
                "email_subject": "News for {{ first_name }}",
                "email_text": "Hello {{ first_name }} {{ last_name }},\n\nnews from {{ app_name }}.",
            })
            .to_string(),
        );
        let t = self
            .json(&["template", "create", "--from-json", &file])
            .await;
        t["id"].as_i64().unwrap_or_else(|| panic!("no id in {t}"))
    }

    /// `broadcast create --name <name> --template <id> --channels <policy> <filter...>`, plus
    /// `--schedule-at` when given; returns the broadcast document.
    pub(crate) async fn create(
        &self,
        name: &str,
        template: i64,
        channels: &str,
        filter: &[&str],
        schedule_at: Option<&str>,
    ) -> Value {
        let template = template.to_string();
        let mut args = vec![
            "broadcast",
            "create",
            "--name",
            name,
            "--template",
            &template,
            "--channels",
            channels,
        ];
        args.extend_from_slice(filter);
        if let Some(at) = schedule_at {
            args.extend(["--schedule-at", at]);
        }
        self.json(&args).await
    }

    /// `broadcast launch <id> --yes --json`.
    pub(crate) async fn launch(&self, id: i64) -> Value {
        self.json(&["broadcast", "launch", &id.to_string(), "--yes"])
            .await
    }

    /// `broadcast run <id> --yes --json` to the end; returns the statistics it printed, after
    /// checking the exit code against their outcome: 0 when it delivered, otherwise 3 with the
    /// reason on stderr.
    pub(crate) async fn run_broadcast(&self, id: i64) -> Value {
        let run = self
            .run(&["broadcast", "run", &id.to_string(), "--yes", "--json"])
            .await;
        let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "`broadcast-cli {}` printed no JSON document ({e}):\n{}\n--- stderr\n{}",
                run.args,
                run.stdout,
                tail(&run.stderr, 4000)
            )
        });
        let expected = if doc["outcome"] == "delivered" { 0 } else { 3 };
        assert_eq!(
            run.status.code(),
            Some(expected),
            "`broadcast-cli {}` ended {}\n--- stderr\n{}",
            run.args,
            doc["outcome"],
            tail(&run.stderr, 4000)
        );
        if expected == 3 {
            assert!(
                run.stderr.contains(&format!("error: broadcast {id} ")),
                "{}",
                tail(&run.stderr, 4000)
            );
        }
        doc
    }

    /// `broadcast show <id> --json`.
    pub(crate) async fn show(&self, id: i64) -> Value {
        self.json(&["broadcast", "show", &id.to_string()]).await
    }

    /// `broadcast stats <id> --json`.
    pub(crate) async fn stats(&self, id: i64) -> Value {
        self.json(&["broadcast", "stats", &id.to_string()]).await
    }

    /// `broadcast recipients <id> --limit 0 --json`: every row (optionally of one status).
    pub(crate) async fn recipients(&self, id: i64, status: Option<&str>) -> Vec<Value> {
        let id = id.to_string();
        let mut args = vec!["broadcast", "recipients", &id, "--limit", "0"];
        if let Some(s) = status {
            args.extend(["--status", s]);
        }
        let page = self.json(&args).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(page["total"].as_u64(), Some(items.len() as u64), "{page}");
        items
    }

    /// Polls `broadcast show` until the broadcast has `status`; panics after `timeout`, showing
    /// the workers' stderr.
    pub(crate) async fn wait_for_status(
        &self,
        id: i64,
        status: &str,
        timeout: Duration,
        workers: &[&Proc],
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let b = self.show(id).await;
            if b["status"] == status {
                return b;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = workers
                    .iter()
                    .map(|w| {
                        format!(
                            "--- {} (pid {})\n{}",
                            w.args(),
                            w.pid(),
                            tail(&w.stderr(), 3000)
                        )
                    })
                    .collect();
                panic!(
                    "broadcast {id} is not {status} after {timeout:?}: {b}\nstats: {}\n{}",
                    self.stats(id).await,
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A user of the generated audience.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) external_id: String,
    pub(crate) first_name: String,
    pub(crate) email: Option<String>,
    pub(crate) chat: Option<i64>,
}

/// `n` people `<prefix>0000...`, with an e-mail address and/or a chat id starting at `chat_base`.
pub(crate) fn people(prefix: &str, n: usize, email: bool, chat_base: Option<i64>) -> Vec<Person> {
    (0..n)
        .map(|i| Person {
            external_id: format!("{prefix}{i:05}"),
            first_name: format!("Person{i}"),
            email: email.then(|| format!("{prefix}{i:05}@durability.example.org")),
            chat: chat_base.map(|base| base + i as i64),
        })
        .collect()
}

/// users.csv in the documented format (fixtures/README.md).
pub(crate) fn users_csv(users: &[Person]) -> String {
    let mut csv = String::from("external_id,first_name,last_name,email,telegram_chat_id\n");
    for u in users {
        csv.push_str(&format!(
            "{},{},Tester,{},{}\n",
            u.external_id,
            u.first_name,
            u.email.as_deref().unwrap_or_default(),
            u.chat.map(|c| c.to_string()).unwrap_or_default()
        ));
    }
    csv
}

/// A count from statistics JSON (`broadcast stats --json`) at `path`, 0 when absent.
pub(crate) fn count(stats: &Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// An RFC 3339 time `offset` from now (negative: in the past).
pub(crate) fn rfc3339_from_now(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Sends SIGTERM to every worker, then asserts each exits 0 within 10 s; `context` (e.g.
/// `"case: "`) starts the failure message.
pub(crate) async fn stop_all(workers: &mut [Proc], context: &str) {
    for w in workers.iter() {
        w.sigterm();
    }
    for w in workers.iter_mut() {
        let status = w.wait(Duration::from_secs(10)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{context}{} did not stop cleanly: {status:?}\n{}",
            w.args(),
            tail(&w.stderr(), 2000)
        );
    }
}
