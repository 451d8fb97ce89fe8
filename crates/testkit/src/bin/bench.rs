//! `bench`: the benchmark driver behind `just bench` (see `docs/performance.md`).
//!
//! It runs every scenario of the performance issue on this machine and prints one table:
//! scenario, N, wall time, rate, CPU seconds, peak RSS, target, and the ratio to a naive sender
//! measured in the same run.
//!
//! - **Whole-process scenarios** run the release `broadcast-cli` (launch, `worker --once`)
//!   against the fakes started as separate processes (`fake-smtp`, `fake-telegram`).
//! - **In-process scenarios** run this binary again as a child: `bench engine` (the
//!   orchestrator with the real store and a channel that accepts instantly) and `bench naive`
//!   (one message at a time, no batching, no concurrency, 50 ms between Telegram messages).
//! - **Render** runs the criterion bench of `broadcast-render` and reads its medians.
//!
//! Measuring a child: wall time from spawn to exit; CPU seconds from this process's
//! `cutime + cstime` (`/proc/self/stat`, fields 16-17: the CPU of reaped children) read before
//! the spawn and after the child is reaped, so it is exact and includes the child's own
//! children; peak RSS from `VmHWM` in `/proc/<pid>/status`, sampled every 10 ms while the
//! child runs (the kernel's high-water mark, so a peak between samples is still seen at the
//! next sample; only growth in the last 10 ms before exit could be missed). The in-process
//! children also report their delivery phase alone (reset of `VmHWM` through
//! `/proc/self/clear_refs`, CPU from `/proc/self/stat`), which the table shows.
//!
//! Usage: `bench [quick|full] [--only NAME,...] [--runs N] [--json FILE]`; `NAME` is one of
//! `launch`, `engine`, `email`, `telegram`, `latency`, `memory`, `render`, `admin`. Environment:
//! `TEST_DATABASE_URL` (PostgreSQL server, default `postgres://postgres@127.0.0.1:5432/test`;
//! unreachable: PostgreSQL rows say so), `BATCH_SIZE` / `WORKER_CONCURRENCY` / `SMTP_POOL_SIZE`
//! (passed to the workers and the engine when set).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broadcast_domain::{
    AudienceFilter, Channel, ChannelKind, ClaimRequest, Delivered, DeliveryError, DeliveryResult,
    DeliveryStatus, DeliveryStore, MessageBody, Outcome, OutgoingMessage, RenderEnv, Renderer,
    SystemClock, UnsubscribeLinks,
};
use broadcast_filter::SqlAudience;
use broadcast_orchestrator::{Channels, Orchestrator, Ports, Settings};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use serde_json::{Value, json};

const USAGE: &str = "usage: bench [quick|full] [--only NAME,...] [--runs N] [--json FILE]
       bench engine --database-url URL --broadcast ID
       bench naive launch|deliver --database-url URL --broadcast ID --n N [--telegram URL | --smtp-port P]
NAME: launch engine email telegram latency memory render admin";

/// The fake Telegram server's default token.
const BOT_TOKEN: &str = "123456:TEST-token_abcdefghijklmnopqrstuvwxyz";
/// Signs the unsubscribe links of the e-mails (and the admin panel's cookies).
const SECRET: &str = "bench-secret-key-0123456789abcdef-0123456789abcdef";
/// Bearer token of the admin panel's API.
const API_TOKEN: &str = "bench-api-token-0123456789abcdef";
const PUBLIC_URL: &str = "https://broadcast.example.org";
const TEMPLATE: &str = "registration-reminder";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("engine") => child_engine(&args[1..]),
        Some("naive") => child_naive(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => driver(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn runtime() -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)
}

/// `--name value` pairs.
fn options(args: &[String]) -> Res<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument `{a}`\n{USAGE}"));
        };
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(out)
}

fn required<'a>(opts: &'a BTreeMap<String, String>, name: &str) -> Res<&'a str> {
    opts.get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
}

fn number<T: std::str::FromStr>(raw: &str, what: &str) -> Res<T> {
    raw.parse()
        .map_err(|_| format!("{what}: `{raw}` is not a number"))
}

// ---------------------------------------------------------------------------------------------
// /proc measurements
// ---------------------------------------------------------------------------------------------

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 is index 0).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU ticks of this process's reaped children (cutime + cstime).
fn children_ticks() -> u64 {
    stat_fields("self").map_or(0, |f| f[13] + f[14])
}

/// CPU ticks of this process (utime + stime).
fn own_ticks() -> u64 {
    stat_fields("self").map_or(0, |f| f[11] + f[12])
}

/// `VmHWM` of a process, kB.
fn peak_rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a measured child did.
#[derive(Debug, Clone, Default)]
struct Usage {
    wall: Duration,
    cpu: f64,
    rss_kb: u64,
    stdout: String,
    stderr: String,
    ok: bool,
}

struct Running {
    child: Child,
    pid: String,
    started: Instant,
    rss_kb: u64,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn reader(stream: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<String>> {
    stream.map(|mut s| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    })
}

fn start(mut cmd: Command) -> Res<Running> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id().to_string();
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    Ok(Running {
        child,
        pid,
        started: Instant::now(),
        rss_kb: 0,
        out,
        err,
    })
}

/// Runs commands side by side; returns each one's usage when all have exited.
fn measure_all(cmds: Vec<Command>, ticks_per_s: f64) -> Res<Vec<Usage>> {
    let mut running = Vec::new();
    for cmd in cmds {
        running.push(Some(start(cmd)?));
    }
    let mut done: Vec<Option<Usage>> = vec![None; running.len()];
    let mut ticks = children_ticks();
    while done.iter().any(Option::is_none) {
        for (i, slot) in running.iter_mut().enumerate() {
            let Some(r) = slot else { continue };
            if let Some(kb) = peak_rss_kb(&r.pid) {
                r.rss_kb = r.rss_kb.max(kb);
            }
            if let Some(status) = r.child.try_wait().map_err(err)? {
                let wall = r.started.elapsed();
                let now = children_ticks();
                let cpu = (now - ticks) as f64 / ticks_per_s;
                ticks = now;
                let r = slot.take().expect("running");
                done[i] = Some(Usage {
                    wall,
                    cpu,
                    rss_kb: r.rss_kb,
                    stdout: r
                        .out
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default(),
                    stderr: r
                        .err
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default(),
                    ok: status.success(),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(done.into_iter().flatten().collect())
}

fn measure(cmd: Command, ticks_per_s: f64) -> Res<Usage> {
    Ok(measure_all(vec![cmd], ticks_per_s)?.remove(0))
}

/// A long-running helper process (a fake server), killed when dropped.
struct Service {
    child: Child,
}

impl Service {
    /// Starts `cmd` and waits for its first stdout line (the fakes print their address).
    fn start(mut cmd: Command, name: &'static str) -> Res<(Service, String)> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line).map_err(err)?;
        // Keep draining stdout so that the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        if line.trim().is_empty() {
            let _ = child.kill();
            return Err(format!("{name} did not start"));
        }
        Ok((Service { child }, line.trim().to_owned()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection)
// ---------------------------------------------------------------------------------------------

/// One request; returns the status, the `Set-Cookie` values (`name=value` parts) and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res<(u16, Vec<String>, String)> {
    let mut stream = TcpStream::connect(addr).map_err(err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(request, "Content-Length: {}\r\n", body.len());
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).map_err(err)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {addr}{path}"))?;
    let cookies = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .collect();
    Ok((status, cookies, body.to_owned()))
}

fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Res<(u16, String)> {
    http(addr, "GET", path, headers, "").map(|(status, _, body)| (status, body))
}

/// Logs in to the admin panel; returns the `Cookie` header of the session.
fn admin_login(addr: &str, user: &str, password: &str) -> Res<String> {
    let (_, cookies, page) = http(addr, "GET", "/login", &[], "")?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no CSRF token on the login page")?
        .to_owned();
    let form = format!("username={user}&password={password}&csrf={csrf}");
    let cookie = cookies.join("; ");
    let (status, session, _) = http(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )?;
    if session.is_empty() || status >= 400 {
        return Err(format!("login failed: HTTP {status}"));
    }
    Ok(session.join("; "))
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A generated audience in a migrated database with the demo template, copied for each run.
#[derive(Debug)]
struct Base {
    backend: Backend,
    /// SQLite: the file; PostgreSQL: the database name.
    location: String,
}

/// A database of one run (a copy of a [`Base`]).
#[derive(Debug)]
struct RunDb {
    backend: Backend,
    url: String,
    location: String,
}

struct Env {
    exe_dir: PathBuf,
    root: PathBuf,
    work: tempfile::TempDir,
    server_url: String,
    postgres: bool,
    ticks: f64,
    rt: tokio::runtime::Runtime,
    passthrough: Vec<(String, String)>,
}

fn server_base(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(base, _)| base)
}

impl Env {
    fn exe(&self, name: &str) -> PathBuf {
        self.exe_dir.join(name)
    }

    fn pg_url(&self, db: &str) -> String {
        format!("{}/{db}", server_base(&self.server_url))
    }

    async fn admin(&self) -> Res<DatabaseConnection> {
        sea_orm::Database::connect(self.server_url.as_str())
            .await
            .map_err(err)
    }

    /// A fresh database with `users` generated users (one registration each to competition 1)
    /// and the demo template. `flags`: 1 % without e-mail, some unsubscribed and blocked.
    fn make_base(&self, backend: Backend, users: u64, flags: bool) -> Res<Base> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let (location, url) = match backend {
            Backend::Sqlite => {
                let path = self.work.path().join(format!("{name}.db"));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (path.display().to_string(), url)
            }
            Backend::Postgres => {
                self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!("CREATE DATABASE {name}"))
                        .await
                        .map_err(err)
                })?;
                (name.clone(), self.pg_url(&name))
            }
        };
        let started = Instant::now();
        self.rt.block_on(async {
            let conn = broadcast_migration::connect(&url).await.map_err(err)?;
            <broadcast_migration::Migrator as sea_orm_migration::MigratorTrait>::up(&conn, None)
                .await
                .map_err(err)?;
            generate(&conn, users, flags).await?;
            conn.close().await.map_err(err)
        })?;
        eprintln!(
            "  generated {users} users on {} in {:.1} s",
            backend.name(),
            started.elapsed().as_secs_f64()
        );
        let template = self
            .root
            .join(format!("fixtures/templates/{TEMPLATE}.json"));
        self.cli(&url, &[])
            .args(["template", "create", "--from-json"])
            .arg(template)
            .output()
            .map_err(err)
            .and_then(|o| check(&o, "template create"))?;
        if backend == Backend::Sqlite {
            // Everything into the main file, so that a copy of it is complete.
            self.rt.block_on(async {
                let conn = broadcast_migration::connect(&url).await.map_err(err)?;
                conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                    .await
                    .map_err(err)?;
                conn.close().await.map_err(err)
            })?;
        }
        Ok(Base { backend, location })
    }

    /// A copy of a base for one run.
    fn run_db(&self, base: &Base) -> Res<RunDb> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        match base.backend {
            Backend::Sqlite => {
                let path = self.work.path().join(format!("{name}.db"));
                std::fs::copy(&base.location, &path).map_err(err)?;
                Ok(RunDb {
                    backend: base.backend,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    location: path.display().to_string(),
                })
            }
            Backend::Postgres => {
                self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!(
                            "CREATE DATABASE {name} TEMPLATE {}",
                            base.location
                        ))
                        .await
                        .map_err(err)
                })?;
                Ok(RunDb {
                    backend: base.backend,
                    url: self.pg_url(&name),
                    location: name,
                })
            }
        }
    }

    fn drop_db(&self, db: &RunDb) {
        self.drop_location(db.backend, &db.location);
    }

    fn drop_base(&self, base: &Base) {
        self.drop_location(base.backend, &base.location);
    }

    fn drop_location(&self, backend: Backend, location: &str) {
        match backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{location}{suffix}"));
                }
            }
            Backend::Postgres => {
                let _ = self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {location} WITH (FORCE)"
                        ))
                        .await
                        .map_err(err)
                });
            }
        }
    }

    /// `broadcast-cli` with a clean environment: the database, the outbox under the work
    /// directory, quiet logs, no colours, plus `extra`.
    fn cli(&self, url: &str, extra: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(self.exe("broadcast-cli"));
        cmd.current_dir(self.work.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.work.path())
            .env("DATABASE_URL", url)
            .env("OUTBOX_DIR", self.work.path().join("outbox"))
            .env("LOG", "warn")
            .env("NO_COLOR", "1");
        for (k, v) in &self.passthrough {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Creates a draft broadcast of the demo template to everyone registered for competition 1.
    fn create_broadcast(&self, db: &RunDb, channels: &str) -> Res<i64> {
        let out = self
            .cli(&db.url, &[])
            .args(["--json", "broadcast", "create", "--name", "Bench"])
            .args(["--template", TEMPLATE, "--channels", channels])
            .args(["--competition", "1"])
            .output()
            .map_err(err)?;
        let text = check(&out, "broadcast create")?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        v["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in `broadcast create` output: {text}"))
    }

    fn launch_cmd(&self, db: &RunDb, id: i64) -> Command {
        let mut cmd = self.cli(&db.url, &[]);
        cmd.args(["--json", "broadcast", "launch", &id.to_string(), "--yes"]);
        cmd
    }

    fn launch(&self, db: &RunDb, id: i64) -> Res<()> {
        let out = self.launch_cmd(db, id).output().map_err(err)?;
        check(&out, "broadcast launch").map(drop)
    }

    fn count_status(&self, db: &RunDb, id: i64, status: DeliveryStatus) -> Res<u64> {
        self.rt.block_on(async {
            let conn = sea_orm::Database::connect(db.url.as_str())
                .await
                .map_err(err)?;
            let backend = conn.get_database_backend();
            let sql = match backend {
                DatabaseBackend::Postgres => "SELECT COUNT(*) AS n FROM broadcast_recipients WHERE broadcast_id = $1 AND status = $2",
                _ => "SELECT COUNT(*) AS n FROM broadcast_recipients WHERE broadcast_id = ? AND status = ?",
            };
            let row = conn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [id.into(), status.as_str().into()],
                ))
                .await
                .map_err(err)?
                .ok_or("no count")?;
            let n: i64 = row.try_get("", "n").map_err(err)?;
            conn.close().await.map_err(err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

fn check(out: &std::process::Output, what: &str) -> Res<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{what}` failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Fills `competitions`, `users` and `registrations` with set-based statements.
async fn generate(conn: &DatabaseConnection, users: u64, flags: bool) -> Res<()> {
    let backend = conn.get_database_backend();
    let now = chrono::Utc::now();
    let (p, series) = match backend {
        DatabaseBackend::Postgres => ("$1", format!("generate_series(1, {users}) AS n(i)")),
        _ => ("?1", "n".to_owned()),
    };
    let with = match backend {
        DatabaseBackend::Postgres => String::new(),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}) "
        ),
    };
    let flag = if flags { "TRUE" } else { "FALSE" };
    let statements = [
        format!(
            "INSERT INTO competitions (slug, name, starts_on, city, country, created_at) \
             VALUES ('bench-cup-2027', 'Bench Cup 2027', '2027-05-22', 'Kraków', 'Poland', {p})"
        ),
        format!(
            "{with}INSERT INTO users (external_id, telegram_chat_id, email, first_name, last_name, \
             username, language, country, city, attributes, telegram_blocked_at, \
             email_unsubscribed_at, created_at, updated_at) \
             SELECT 'bench-' || i, 1000000000 + i, \
             CASE WHEN {flag} AND i % 100 = 0 THEN NULL ELSE 'user' || i || '@example.org' END, \
             'Anna' || i, 'Schmidt', 'user' || i, 'de', 'Poland', 'Kraków', '{{}}', \
             CASE WHEN {flag} AND i % 500 = 7 THEN {p} END, \
             CASE WHEN {flag} AND i % 250 = 3 THEN {p} END, {p}, {p} FROM {series}"
        ),
        "INSERT INTO registrations (user_id, competition_id, role, status, created_at, \
         updated_at) SELECT id, 1, CASE id % 5 WHEN 0 THEN 'judge' WHEN 1 THEN 'mentor' \
         ELSE 'participant' END, 'confirmed', created_at, created_at FROM users"
            .to_owned(),
    ];
    for sql in statements {
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, [now.into()]))
            .await
            .map_err(err)?;
    }
    if backend == DatabaseBackend::Postgres {
        // Statistics as autovacuum would have them after a large import.
        conn.execute_unprepared("ANALYZE").await.map_err(err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Row {
    scenario: String,
    n: u64,
    wall: Option<f64>,
    rate: Option<f64>,
    unit: &'static str,
    cpu: Option<f64>,
    rss_mb: Option<f64>,
    target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target or not measured.
    met: Option<bool>,
    ratio: Option<String>,
    note: String,
}

impl Row {
    fn new(scenario: impl Into<String>, n: u64) -> Self {
        Row {
            scenario: scenario.into(),
            n,
            unit: "/s",
            ..Row::default()
        }
    }

    fn not_measured(scenario: impl Into<String>, n: u64, why: impl Into<String>) -> Self {
        Row {
            note: format!("not measured: {}", why.into()),
            ..Row::new(scenario, n)
        }
    }

    fn usage(mut self, u: &Usage) -> Self {
        self.wall = Some(u.wall.as_secs_f64());
        self.cpu = Some(u.cpu);
        self.rss_mb = Some(u.rss_kb as f64 / 1024.0);
        self
    }

    fn json(&self) -> Value {
        json!({
            "scenario": self.scenario, "n": self.n, "wall_s": self.wall, "rate": self.rate,
            "unit": self.unit, "cpu_s": self.cpu, "rss_mb": self.rss_mb, "target": self.target,
            "met": self.met, "vs_naive": self.ratio, "note": self.note,
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median run by wall time (CPU and RSS of that run; RSS the largest of all).
fn median_usage(runs: &[Usage]) -> Usage {
    let mut sorted: Vec<&Usage> = runs.iter().collect();
    sorted.sort_by_key(|u| u.wall);
    let mut u = sorted[sorted.len() / 2].clone();
    u.rss_kb = runs.iter().map(|r| r.rss_kb).max().unwrap_or(0);
    u
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn fmt_rate(v: Option<f64>, unit: &str) -> String {
    match v.filter(|v| v.is_finite()) {
        None => "-".to_owned(),
        Some(v) if v >= 100.0 => format!("{} {unit}", group(v.round() as u64)),
        Some(v) => format!("{v:.1} {unit}"),
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "N",
        "wall s",
        "rate",
        "CPU s",
        "peak RSS MB",
        "target",
        "met",
        "vs naive",
        "note",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                group(r.n),
                fmt_opt(r.wall, 2),
                fmt_rate(r.rate, r.unit),
                fmt_opt(r.cpu, 2),
                fmt_opt(r.rss_mb, 1),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => "-".to_owned(),
                },
                r.ratio.clone().unwrap_or_else(|| "-".to_owned()),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('|');
    for w in widths {
        out.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Plan {
    mode: &'static str,
    /// Runs of each SQLite scenario (the median is reported).
    runs: usize,
    /// Runs of the slow PostgreSQL launch and engine scenarios.
    pg_runs: usize,
    launch_n: u64,
    engine_n: u64,
    email_n: u64,
    tg_free_n: u64,
    tg_paid_n: u64,
    latency_runs: usize,
    latency_n: u64,
    naive_launch_n: u64,
    naive_deliver_n: u64,
    naive_email_n: u64,
    naive_tg_n: u64,
    admin_seconds: u64,
}

impl Plan {
    fn full() -> Self {
        Plan {
            mode: "full",
            runs: 3,
            pg_runs: 1,
            launch_n: 1_000_000,
            engine_n: 200_000,
            email_n: 100_000,
            tg_free_n: 3_000,
            tg_paid_n: 30_000,
            latency_runs: 5,
            latency_n: 1_000,
            naive_launch_n: 20_000,
            naive_deliver_n: 1_000,
            naive_email_n: 2_000,
            naive_tg_n: 100,
            admin_seconds: 10,
        }
    }

    fn quick() -> Self {
        Plan {
            mode: "quick",
            runs: 1,
            pg_runs: 1,
            launch_n: 100_000,
            engine_n: 20_000,
            email_n: 10_000,
            tg_free_n: 300,
            tg_paid_n: 3_000,
            latency_runs: 3,
            latency_n: 1_000,
            naive_launch_n: 2_000,
            naive_deliver_n: 300,
            naive_email_n: 500,
            naive_tg_n: 40,
            admin_seconds: 3,
        }
    }
}

const ALL: [&str; 8] = [
    "render", "launch", "engine", "email", "memory", "telegram", "latency", "admin",
];

fn driver(args: &[String]) -> Res<()> {
    let mut plan = Plan::full();
    let mut only: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
    let mut json_out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "full" => plan = Plan::full(),
            "quick" => plan = Plan::quick(),
            "--only" => {
                let v = it.next().ok_or("--only needs a value")?;
                only = v.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = only.iter().find(|s| !ALL.contains(&s.as_str())) {
                    return Err(format!("unknown scenario `{bad}`\n{USAGE}"));
                }
            }
            "--runs" => {
                plan.runs = number(it.next().ok_or("--runs needs a value")?, "--runs")?;
                plan.pg_runs = plan.runs;
            }
            "--json" => json_out = Some(PathBuf::from(it.next().ok_or("--json needs a file")?)),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let exe = std::env::current_exe().map_err(err)?;
    let exe_dir = exe.parent().ok_or("no executable directory")?.to_path_buf();
    for bin in ["broadcast-cli", "fake-smtp", "fake-telegram"] {
        if !exe_dir.join(bin).exists() {
            return Err(format!(
                "{} is missing: run `cargo build --release -p broadcast-cli -p broadcast-testkit \
                 --bins --features broadcast-testkit/bench` (or `just bench`)",
                exe_dir.join(bin).display()
            ));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .map_err(err)?;
    let server_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| broadcast_testkit::db::DEFAULT_TEST_DATABASE_URL.to_owned());
    let rt = runtime()?;
    let postgres = rt.block_on(async {
        sea_orm::Database::connect(server_url.as_str())
            .await
            .is_ok()
    });
    if !postgres {
        eprintln!(
            "!!! PostgreSQL at {} is unreachable: its scenarios are not measured",
            broadcast_migration::redact_url(&server_url)
        );
    }
    let passthrough = ["BATCH_SIZE", "WORKER_CONCURRENCY", "SMTP_POOL_SIZE"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    let env = Env {
        exe_dir,
        root,
        work: tempfile::Builder::new()
            .prefix("broadcast-bench-")
            .tempdir()
            .map_err(err)?,
        server_url,
        postgres,
        ticks: clock_ticks(),
        rt,
        passthrough,
    };

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let wants = |s: &str| only.iter().any(|o| o == s);
    type Section<'a> = Box<dyn Fn(&Env, &Plan) -> Res<Vec<Row>> + 'a>;
    let mut sections: Vec<(&str, Section<'_>)> = Vec::new();
    if wants("render") {
        sections.push(("render", Box::new(scenario_render)));
    }
    if wants("launch") || wants("memory") {
        let (launch, memory) = (wants("launch"), wants("memory"));
        sections.push((
            "launch",
            Box::new(move |e, p| scenario_launch_and_memory(e, p, launch, memory)),
        ));
    }
    if wants("engine") {
        sections.push(("engine", Box::new(scenario_engine)));
    }
    if wants("email") || wants("memory") {
        sections.push(("email", Box::new(scenario_email)));
    }
    if wants("telegram") {
        sections.push(("telegram", Box::new(scenario_telegram)));
    }
    if wants("latency") {
        sections.push(("latency", Box::new(scenario_latency)));
    }
    if wants("admin") {
        sections.push(("admin", Box::new(scenario_admin)));
    }
    for (name, run) in sections {
        eprintln!(
            "== {name} ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        match run(&env, &plan) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("   {name} failed: {e}");
                rows.push(Row::not_measured(name, 0, format!("failed: {e}")));
            }
        }
    }
    compare_memory(&mut rows);

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&env.root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(&env.root)
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "\nbench {} · commit {commit}{} · {cores} cores · {cpu} · {:.0} s\n",
        plan.mode,
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows));
    if let Some(path) = json_out {
        let doc = json!({
            "mode": plan.mode, "commit": commit, "dirty": dirty, "cores": cores, "cpu": cpu,
            "seconds": started.elapsed().as_secs_f64(),
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).map_err(err)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn backends(env: &Env) -> Vec<Backend> {
    if env.postgres {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        vec![Backend::Sqlite]
    }
}

fn ratio(engine: f64, naive: f64) -> Option<String> {
    (engine.is_finite() && naive.is_finite() && naive > 0.0)
        .then(|| format!("{:.0}x", engine / naive))
}

/// Runs `bench naive ...` and returns its messages per second.
fn naive(env: &Env, mode: &str, db: &RunDb, id: i64, n: u64, extra: &[&str]) -> Res<(f64, Usage)> {
    let mut cmd = Command::new(std::env::current_exe().map_err(err)?);
    cmd.args([
        "naive",
        mode,
        "--database-url",
        &db.url,
        "--broadcast",
        &id.to_string(),
    ])
    .args(["--n", &n.to_string()])
    .args(extra);
    let u = measure(cmd, env.ticks)?;
    if !u.ok {
        return Err(format!("naive {mode} failed: {}", u.stderr));
    }
    let v: Value =
        serde_json::from_str(u.stdout.trim()).map_err(|e| format!("{e}: {}", u.stdout))?;
    Ok((v["rate"].as_f64().unwrap_or(f64::NAN), u))
}

// ----- render -----------------------------------------------------------------------------------

fn scenario_render(env: &Env, _plan: &Plan) -> Res<Vec<Row>> {
    let status = Command::new("cargo")
        .args(["bench", "-p", "broadcast-render", "--bench", "render", "--"])
        .args(["--warm-up-time", "1", "--measurement-time", "3"])
        .current_dir(&env.root)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err("cargo bench -p broadcast-render failed".into());
    }
    let mut rows = Vec::new();
    for (part, what) in [
        ("telegram", "Telegram text"),
        ("email", "e-mail: subject + HTML + text"),
        ("both", "Telegram + e-mail"),
    ] {
        let path = env
            .root
            .join(format!("target/criterion/render/{part}/new/estimates.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(err)?;
        let ns = v["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let rate = 1e9 / ns;
        let mut row = Row::new(
            format!("render demo template, {what} (criterion, 1 thread)"),
            1,
        );
        row.rate = Some(rate);
        row.unit = "renders/s/core";
        row.target = "≥ 200,000 renders/s/core".into();
        row.met = Some(rate >= 200_000.0);
        row.note = format!("median {:.2} µs per render", ns / 1000.0);
        rows.push(row);
    }
    Ok(rows)
}

// ----- launch and memory ------------------------------------------------------------------------

fn scenario_launch_and_memory(env: &Env, plan: &Plan, launch: bool, memory: bool) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    // The memory scenario delivers the broadcast of the last SQLite launch.
    let mut for_memory = None;
    for backend in backends(env) {
        if !launch && backend == Backend::Postgres {
            continue;
        }
        let n = plan.launch_n;
        let base = env.make_base(backend, n, true)?;
        let runs = match (launch, backend) {
            (false, _) => 1,
            (true, Backend::Sqlite) => plan.runs,
            (true, Backend::Postgres) => plan.pg_runs,
        };
        let mut usages = Vec::new();
        let mut rates = Vec::new();
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            let u = measure(env.launch_cmd(&db, id), env.ticks)?;
            if !u.ok {
                return Err(format!("launch failed: {}", u.stderr));
            }
            let v: Value = serde_json::from_str(u.stdout.trim()).unwrap_or(Value::Null);
            let written = v["materialised"]["inserted"].as_u64().unwrap_or(0);
            eprintln!(
                "  launch {run} on {}: {written} rows in {:.2} s",
                backend.name(),
                u.wall.as_secs_f64()
            );
            rates.push(written as f64 / u.wall.as_secs_f64());
            usages.push(u);
            if backend == Backend::Sqlite && memory {
                if let Some((old, _)) = for_memory.replace((db, id)) {
                    env.drop_db(&old);
                }
            } else {
                env.drop_db(&db);
            }
        }
        if launch {
            let u = median_usage(&usages);
            // Naive: one INSERT per recipient, each its own transaction.
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            let naive_rate = naive(env, "launch", &db, id, plan.naive_launch_n, &[])
                .map(|(r, _)| r)
                .unwrap_or(f64::NAN);
            env.drop_db(&db);
            let target = if backend == Backend::Sqlite { 5.0 } else { 8.0 };
            let mut row = Row::new(
                format!("launch: materialise recipients ({})", backend.name()),
                n,
            )
            .usage(&u);
            row.rate = Some(median(rates));
            row.unit = "rows/s";
            row.target = format!("≤ {target:.0} s");
            row.met = Some(u.wall.as_secs_f64() <= target);
            row.ratio = ratio(row.rate.unwrap_or(f64::NAN), naive_rate);
            row.note = format!(
                "median of {runs}; whole `broadcast launch --yes` process (no confirmation \
                 count); naive {} rows/s",
                fmt_opt(Some(naive_rate), 0)
            );
            rows.push(row);
        }
        env.drop_base(&base);
    }
    if let Some((db, id)) = for_memory {
        let (u, delivered) = deliver_email(env, &db, id, true)?;
        env.drop_db(&db);
        let mut row = Row::new(MEMORY_BIG, delivered).usage(&u);
        row.rate = Some(delivered as f64 / u.wall.as_secs_f64());
        row.unit = "msg/s";
        row.target = "peak RSS ≤ 64 MB, ≤ 1.2 × the smaller run".into();
        row.note = format!(
            "the broadcast of the launch scenario; `worker --once` with {}; {:.0} µs CPU/msg",
            tuned_text(),
            u.cpu / delivered.max(1) as f64 * 1e6
        );
        rows.push(row);
    }
    Ok(rows)
}

const MEMORY_BIG: &str = "memory: e-mail worker, large broadcast, tuned (SQLite)";
const EMAIL_ROW: &str = "e-mail to fake-smtp, 1 worker, defaults (SQLite)";
const EMAIL_TUNED_ROW: &str = "e-mail to fake-smtp, 1 worker, tuned (SQLite)";

/// Settings of the "tuned" e-mail runs: more SMTP connections and larger claims than the
/// defaults (4 connections, 200 rows per claim).
const TUNED: [(&str, &str); 3] = [
    ("SMTP_POOL_SIZE", "32"),
    ("WORKER_CONCURRENCY", "32"),
    ("BATCH_SIZE", "1000"),
];

fn tuned_text() -> String {
    TUNED
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets the memory row's verdict from the two e-mail runs' peak RSS.
fn compare_memory(rows: &mut [Row]) {
    let small = rows
        .iter()
        .find(|r| r.scenario == EMAIL_TUNED_ROW)
        .and_then(|r| Some((r.rss_mb?, r.n)));
    if let Some(big) = rows.iter_mut().find(|r| r.scenario == MEMORY_BIG)
        && let Some(rss) = big.rss_mb
    {
        match small {
            Some((small_rss, small_n)) => {
                big.met = Some(rss <= 64.0 && rss <= 1.2 * small_rss);
                big.ratio = Some(format!(
                    "{:.2}x RSS of N={}",
                    rss / small_rss,
                    group(small_n)
                ));
            }
            None => big.met = Some(rss <= 64.0),
        }
    }
}

// ----- engine ceiling ---------------------------------------------------------------------------

fn scenario_engine(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    for backend in backends(env) {
        let base = env.make_base(backend, plan.engine_n, false)?;
        let mut phases = Vec::new();
        let mut delivered = 0;
        let runs = match backend {
            Backend::Sqlite => plan.runs,
            Backend::Postgres => plan.pg_runs,
        };
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            env.launch(&db, id)?;
            let mut cmd = Command::new(std::env::current_exe().map_err(err)?);
            cmd.args([
                "engine",
                "--database-url",
                &db.url,
                "--broadcast",
                &id.to_string(),
            ]);
            for (k, v) in &env.passthrough {
                cmd.env(k, v);
            }
            let u = measure(cmd, env.ticks)?;
            if !u.ok {
                return Err(format!("engine run failed: {}", u.stderr));
            }
            let v: Value =
                serde_json::from_str(u.stdout.trim()).map_err(|e| format!("{e}: {}", u.stdout))?;
            delivered = v["delivered"].as_u64().unwrap_or(0);
            let phase = Usage {
                wall: Duration::from_secs_f64(v["seconds"].as_f64().unwrap_or(f64::NAN)),
                cpu: v["cpu_s"].as_f64().unwrap_or(f64::NAN),
                rss_kb: v["rss_kb"].as_u64().unwrap_or(0),
                ok: true,
                ..Usage::default()
            };
            eprintln!(
                "  engine {run} on {}: {delivered} in {:.2} s (process {:.2} s)",
                backend.name(),
                phase.wall.as_secs_f64(),
                u.wall.as_secs_f64()
            );
            eprintln!("  store calls: {}", v["store_calls"]);
            phases.push(phase);
            env.drop_db(&db);
        }
        let u = median_usage(&phases);
        let rate = delivered as f64 / u.wall.as_secs_f64();
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "email")?;
        env.launch(&db, id)?;
        let naive_rate = naive(env, "deliver", &db, id, plan.naive_deliver_n, &[])
            .map(|(r, _)| r)
            .unwrap_or(f64::NAN);
        env.drop_db(&db);
        env.drop_base(&base);
        let target = if backend == Backend::Sqlite {
            50_000.0
        } else {
            30_000.0
        };
        let mut row = Row::new(
            format!(
                "engine ceiling: instant channel, ledger written ({})",
                backend.name()
            ),
            delivered,
        )
        .usage(&u);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = format!("≥ {} msg/s", group(target as u64));
        row.met = Some(rate >= target);
        row.ratio = ratio(rate, naive_rate);
        row.note = format!(
            "median of {runs}; delivery phase of `run_until_done`; {:.1} µs CPU/msg; naive {} msg/s",
            u.cpu / delivered.max(1) as f64 * 1e6,
            fmt_opt(Some(naive_rate), 0)
        );
        rows.push(row);
    }
    Ok(rows)
}

// ----- e-mail -----------------------------------------------------------------------------------

fn smtp_env(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", port.to_owned()),
        ("SMTP_TLS", "none".to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_URL.to_owned()),
        ("ADMIN_SECRET_KEY", SECRET.to_owned()),
    ]
}

/// Delivers a launched e-mail broadcast with one `worker --once` to a fresh fake-smtp; returns
/// the worker's usage and the number of messages the sink accepted.
fn deliver_email(env: &Env, db: &RunDb, id: i64, tuned: bool) -> Res<(Usage, u64)> {
    let (sink, addr) = Service::start(Command::new(env.exe("fake-smtp")), "fake-smtp")?;
    let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
    let mut extra = smtp_env(&port);
    if tuned {
        extra.extend(TUNED.iter().map(|(k, v)| (*k, (*v).to_owned())));
    }
    let mut cmd = env.cli(&db.url, &extra);
    cmd.args(["worker", "--once"]);
    let u = measure(cmd, env.ticks)?;
    drop(sink);
    if !u.ok {
        return Err(format!("worker failed: {}", u.stderr));
    }
    let sent = env.count_status(db, id, DeliveryStatus::Sent)?;
    Ok((u, sent))
}

fn scenario_email(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let base = env.make_base(Backend::Sqlite, plan.email_n, true)?;
    let mut rows = Vec::new();
    // Naive: one message at a time over one SMTP connection.
    let naive_rate = {
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "email")?;
        env.launch(&db, id)?;
        let (sink, addr) = Service::start(Command::new(env.exe("fake-smtp")), "fake-smtp")?;
        let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
        let rate = naive(
            env,
            "deliver",
            &db,
            id,
            plan.naive_email_n,
            &["--smtp-port", &port],
        )
        .map(|(r, _)| r)
        .unwrap_or(f64::NAN);
        drop(sink);
        env.drop_db(&db);
        rate
    };
    for (tuned, runs) in [(false, plan.runs), (true, 1)] {
        let mut usages = Vec::new();
        let mut delivered = 0;
        for run in 0..runs {
            let db = env.run_db(&base)?;
            let id = env.create_broadcast(&db, "email")?;
            env.launch(&db, id)?;
            let (u, sent) = deliver_email(env, &db, id, tuned)?;
            eprintln!(
                "  e-mail {run}{}: {sent} in {:.2} s",
                if tuned { " tuned" } else { "" },
                u.wall.as_secs_f64()
            );
            delivered = sent;
            usages.push(u);
            env.drop_db(&db);
        }
        let u = median_usage(&usages);
        let rate = delivered as f64 / u.wall.as_secs_f64();
        let cpu_us = u.cpu / delivered.max(1) as f64 * 1e6;
        let mut row =
            Row::new(if tuned { EMAIL_TUNED_ROW } else { EMAIL_ROW }, delivered).usage(&u);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = "≥ 20,000 msg/s; ≤ 40 µs CPU/msg; ≤ 5 s".into();
        row.met = Some(rate >= 20_000.0 && cpu_us <= 40.0 && u.wall.as_secs_f64() <= 5.0);
        row.ratio = ratio(rate, naive_rate);
        row.note = format!(
            "{}`worker --once` start to exit; {cpu_us:.0} µs CPU/msg; naive {} msg/s",
            if tuned {
                format!("{}; ", tuned_text())
            } else {
                format!("median of {runs}; ")
            },
            fmt_opt(Some(naive_rate), 0)
        );
        rows.push(row);
    }
    env.drop_base(&base);
    Ok(rows)
}

// ----- Telegram ---------------------------------------------------------------------------------

fn telegram_env(api: &str, paid: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("TELEGRAM_API_URL", api.to_owned()),
    ];
    if paid {
        v.push(("TELEGRAM_PAID_BROADCAST", "true".to_owned()));
    }
    v
}

fn fake_stats(addr: &str) -> Res<Value> {
    let (status, body) = http_get(addr, "/_fake/stats", &[])?;
    if status != 200 {
        return Err(format!("fake-telegram stats: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(err)
}

fn scenario_telegram(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    let mut configs = vec![
        (Backend::Sqlite, 1usize, false, plan.tg_free_n, 30.0),
        (Backend::Sqlite, 1, true, plan.tg_paid_n, 1000.0),
    ];
    if env.postgres {
        configs.push((Backend::Postgres, 3, false, plan.tg_free_n, 30.0));
        configs.push((Backend::Postgres, 3, true, plan.tg_paid_n, 1000.0));
    }
    let mut naive_rate = None;
    for (backend, workers, paid, n, limit) in configs {
        let base = env.make_base(backend, n, false)?;
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "telegram")?;
        env.launch(&db, id)?;
        let (fake, addr) = Service::start(Command::new(env.exe("fake-telegram")), "fake-telegram")?;
        let api = format!("http://{addr}");
        let cmds = (0..workers)
            .map(|w| {
                let mut extra = telegram_env(&api, paid);
                extra.push(("WORKER_ID", format!("bench-tg-{w}")));
                let mut c = env.cli(&db.url, &extra);
                c.args(["worker", "--once"]);
                c
            })
            .collect();
        let usages = measure_all(cmds, env.ticks)?;
        let stats = fake_stats(&addr)?;
        drop(fake);
        if let Some(bad) = usages.iter().find(|u| !u.ok) {
            return Err(format!("telegram worker failed: {}", bad.stderr));
        }
        let accepted = stats["accepted"].as_u64().unwrap_or(0);
        let span_ms =
            stats["last_ms"].as_f64().unwrap_or(0.0) - stats["first_ms"].as_f64().unwrap_or(0.0);
        // n messages span n - 1 intervals.
        let rate = (accepted.saturating_sub(1)) as f64 / (span_ms / 1000.0);
        let throttled = stats["throttled"].as_u64().unwrap_or(0);
        let wall = usages.iter().map(|u| u.wall).max().unwrap_or_default();
        let cpu: f64 = usages.iter().map(|u| u.cpu).sum();
        let rss = usages.iter().map(|u| u.rss_kb).max().unwrap_or(0);
        if naive_rate.is_none() && backend == Backend::Sqlite {
            // Naive: one message at a time, 50 ms pause between messages.
            let db2 = env.run_db(&base)?;
            let id2 = env.create_broadcast(&db2, "telegram")?;
            env.launch(&db2, id2)?;
            let (fake2, addr2) =
                Service::start(Command::new(env.exe("fake-telegram")), "fake-telegram")?;
            naive_rate = Some(
                naive(
                    env,
                    "deliver",
                    &db2,
                    id2,
                    plan.naive_tg_n,
                    &["--telegram", &format!("http://{addr2}")],
                )
                .map(|(r, _)| r)
                .unwrap_or(f64::NAN),
            );
            drop(fake2);
            env.drop_db(&db2);
        }
        env.drop_db(&db);
        env.drop_base(&base);
        let mut row = Row::new(
            format!(
                "Telegram {} limit {limit:.0}/s, {workers} worker{} ({})",
                if paid { "paid" } else { "free" },
                if workers > 1 { "s" } else { "" },
                backend.name()
            ),
            accepted,
        );
        row.wall = Some(wall.as_secs_f64());
        row.cpu = Some(cpu);
        row.rss_mb = Some(rss as f64 / 1024.0);
        row.rate = Some(rate);
        row.unit = "msg/s";
        row.target = format!("≥ 99 % of {limit:.0}/s, 0 × 429");
        row.met = Some(rate >= 0.99 * limit && throttled == 0 && accepted == n);
        row.ratio = naive_rate.and_then(|nr| ratio(rate, nr));
        row.note = format!(
            "{:.1} % of the limit; {throttled} × 429; max {} in any 1 s; naive {} msg/s",
            rate / limit * 100.0,
            stats["max_per_second"].as_u64().unwrap_or(0),
            fmt_opt(naive_rate, 1)
        );
        rows.push(row);
    }
    Ok(rows)
}

// ----- latency ----------------------------------------------------------------------------------

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn scenario_latency(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let base = env.make_base(Backend::Sqlite, plan.latency_n, false)?;
    let mut latencies = Vec::new();
    for run in 0..plan.latency_runs {
        let db = env.run_db(&base)?;
        let id = env.create_broadcast(&db, "telegram")?;
        let (fake, addr) = Service::start(Command::new(env.exe("fake-telegram")), "fake-telegram")?;
        let mut worker = env.cli(&db.url, &telegram_env(&format!("http://{addr}"), false));
        worker
            .arg("worker")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        let mut worker = worker.spawn().map_err(err)?;
        // Wait until the worker is up (it announces itself on stderr), then a little longer so
        // that it sits in its idle wait, as a worker normally does.
        let mut lines = BufReader::new(worker.stderr.take().ok_or("no stderr")?);
        let mut line = String::new();
        while lines.read_line(&mut line).map_err(err)? > 0 && !line.contains("started") {
            line.clear();
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        std::thread::sleep(Duration::from_millis(700 + 137 * run as u64));
        let t0 = SystemTime::now();
        env.launch(&db, id)?;
        let launched = SystemTime::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut first = None;
        while Instant::now() < deadline {
            let before = SystemTime::now();
            let stats = fake_stats(&addr)?;
            if let Some(first_ms) = stats["first_ms"].as_f64() {
                let after = SystemTime::now();
                // The fake's clock started at (request time - uptime); take the midpoint.
                let mid = (unix_ms(before) + unix_ms(after)) / 2.0;
                let started = mid - stats["uptime_ms"].as_f64().unwrap_or(0.0);
                first = Some(started + first_ms - unix_ms(t0));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = worker.kill();
        let _ = worker.wait();
        drop(fake);
        env.drop_db(&db);
        let latency = first.ok_or("no message arrived within 10 s")?;
        eprintln!(
            "  latency {run}: {latency:.0} ms (launch command {:.0} ms)",
            unix_ms(launched) - unix_ms(t0)
        );
        latencies.push(latency);
    }
    env.drop_base(&base);
    let ms = median(latencies.clone());
    let mut row = Row::new(
        "latency: `broadcast launch` to first Telegram message",
        plan.latency_n,
    );
    row.wall = Some(ms / 1000.0);
    row.unit = "ms";
    row.target = "≤ 100 ms".into();
    row.met = Some(ms <= 100.0);
    row.note = format!(
        "median of {} ({}); a `worker` already running, idle",
        latencies.len(),
        latencies
            .iter()
            .map(|l| format!("{l:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(vec![row])
}

// ----- admin web --------------------------------------------------------------------------------

fn scenario_admin(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let name = "admin web: broadcast page + API document + statistics, p99 under load";
    let exe = env.exe("admin-web");
    if !exe.exists() {
        return Ok(vec![Row::not_measured(
            name,
            if plan.mode == "full" {
                1_000_000
            } else {
                100_000
            },
            "admin panel not built yet (no release admin-web binary)",
        )]);
    }
    let rows_n = if plan.mode == "full" {
        1_000_000
    } else {
        100_000
    };
    let base = env.make_base(Backend::Sqlite, rows_n, true)?;
    let db = env.run_db(&base)?;
    let id = env.create_broadcast(&db, "email")?;
    env.launch(&db, id)?;
    let mut create = env.cli(&db.url, &[]);
    create
        .args(["admin", "create-user", "bench", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = create.spawn().map_err(err)?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(b"bench-password-0123456789\n")
        .map_err(err)?;
    let out = child.wait_with_output().map_err(err)?;
    check(&out, "admin create-user")?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
        l.local_addr().map_err(err)?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(&exe);
    server
        .current_dir(env.work.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("ADMIN_BIND", &addr)
        .env("ADMIN_SECRET_KEY", SECRET)
        .env("ADMIN_API_TOKENS", API_TOKEN)
        .env("ADMIN_RUN_WORKER", "false")
        .env("OUTBOX_DIR", env.work.path().join("outbox"))
        .env("LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn().map_err(err)?;
    let auth = format!("Bearer {API_TOKEN}");
    let password = "bench-password-0123456789";
    let ready = Instant::now();
    while http_get(&addr, "/healthz", &[]).is_err() {
        if ready.elapsed() > Duration::from_secs(20) {
            let _ = server.kill();
            let _ = server.wait();
            return Ok(vec![Row::not_measured(
                name,
                rows_n,
                "admin-web did not answer /healthz",
            )]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cookie = admin_login(&addr, "bench", password)?;
    // The page an organiser opens, and the two documents of the API behind it.
    let paths = [
        (format!("/broadcasts/{id}"), ("Cookie", cookie.as_str())),
        (
            format!("/api/v1/broadcasts/{id}"),
            ("Authorization", auth.as_str()),
        ),
        (
            format!("/api/v1/broadcasts/{id}/stats"),
            ("Authorization", auth.as_str()),
        ),
    ];
    // Load from this process (a second process to the server): 4 clients in a loop.
    let deadline = Instant::now() + Duration::from_secs(plan.admin_seconds);
    let samples: Vec<Res<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                let (addr, paths) = (&addr, &paths);
                s.spawn(move || {
                    let mut v = Vec::new();
                    let mut i = c;
                    while Instant::now() < deadline {
                        let (path, header) = &paths[i % paths.len()];
                        i += 1;
                        let t = Instant::now();
                        let (status, _) = http_get(addr, path, &[*header])?;
                        if status != 200 {
                            return Err(format!("{path}: HTTP {status}"));
                        }
                        v.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let _ = server.kill();
    let _ = server.wait();
    env.drop_db(&db);
    env.drop_base(&base);
    let mut all = Vec::new();
    for s in samples {
        match s {
            Ok(v) => all.extend(v),
            Err(e) => {
                return Ok(vec![Row::not_measured(
                    name,
                    rows_n,
                    format!("requests failed: {e}"),
                )]);
            }
        }
    }
    all.sort_by(f64::total_cmp);
    let p = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    let p99 = p(0.99);
    let mut row = Row::new(name, rows_n);
    row.rate = Some(all.len() as f64 / plan.admin_seconds as f64);
    row.unit = "req/s";
    row.target = "p99 < 50 ms".into();
    row.met = Some(p99 < 50.0);
    row.note = format!(
        "p50 {:.1} ms, p99 {p99:.1} ms over {} requests, 4 clients; N = ledger rows",
        p(0.5),
        all.len()
    );
    Ok(vec![row])
}

// ---------------------------------------------------------------------------------------------
// Children: the engine with an instant channel, and the naive sender
// ---------------------------------------------------------------------------------------------

/// A channel that accepts every message at once.
#[derive(Debug)]
struct InstantChannel(ChannelKind);

#[async_trait::async_trait]
impl Channel for InstantChannel {
    fn kind(&self) -> ChannelKind {
        self.0
    }

    fn describe(&self) -> String {
        "instant (benchmark)".into()
    }

    /// No limit of its own: `WORKER_CONCURRENCY` decides.
    fn max_concurrency(&self) -> usize {
        usize::MAX
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        std::hint::black_box(message);
        Ok(Delivered {
            provider_message_id: None,
            migrated_to: None,
        })
    }
}

/// The store, timing each call of the delivery and audience ports: where the engine's time goes.
#[derive(Debug)]
struct Timed {
    store: Store,
    calls: std::sync::Mutex<BTreeMap<&'static str, (u64, Duration)>>,
}

impl Timed {
    async fn time<T>(&self, name: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let e = calls.entry(name).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        out
    }

    fn report(&self, messages: u64) -> Value {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .map(|(name, (n, d))| {
                (
                    (*name).to_owned(),
                    json!({
                        "calls": n,
                        "seconds": d.as_secs_f64(),
                        "us_per_message": d.as_secs_f64() * 1e6 / messages.max(1) as f64,
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

type DResult<T> = broadcast_domain::Result<T>;

#[async_trait::async_trait]
impl DeliveryStore for Timed {
    async fn claim_due(&self, request: &ClaimRequest) -> DResult<Vec<broadcast_domain::Recipient>> {
        self.time("claim_due", self.store.claim_due(request)).await
    }
    async fn record_results(&self, results: &[DeliveryResult]) -> DResult<u64> {
        self.time("record_results", self.store.record_results(results))
            .await
    }
    async fn status_counts(&self, broadcast: i64) -> DResult<Vec<broadcast_domain::StatusCount>> {
        self.time("status_counts", self.store.status_counts(broadcast))
            .await
    }
    async fn stats(&self, broadcast: i64) -> DResult<broadcast_domain::DeliveryStats> {
        self.time("stats", self.store.stats(broadcast)).await
    }
    async fn open_count(&self, broadcast: i64) -> DResult<u64> {
        self.time("open_count", self.store.open_count(broadcast))
            .await
    }
    async fn cancel_pending(
        &self,
        broadcast: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<u64> {
        self.store.cancel_pending(broadcast, now).await
    }
    async fn list_recipients(
        &self,
        broadcast: i64,
        query: &broadcast_domain::RecipientQuery,
    ) -> DResult<broadcast_domain::Page<broadcast_domain::Recipient>> {
        self.store.list_recipients(broadcast, query).await
    }
    async fn add_email_fallback(
        &self,
        broadcast: i64,
        user: i64,
        registration: Option<i64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<bool> {
        self.store
            .add_email_fallback(broadcast, user, registration, now)
            .await
    }
    async fn requeue_failed(
        &self,
        broadcast: i64,
        kinds: &[broadcast_domain::ErrorKind],
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<u64> {
        self.store.requeue_failed(broadcast, kinds, now).await
    }
}

#[async_trait::async_trait]
impl broadcast_domain::AudienceStore for Timed {
    async fn import_users(
        &self,
        rows: Vec<broadcast_domain::NewUser>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_users(rows, now).await
    }
    async fn import_competitions(
        &self,
        rows: Vec<broadcast_domain::NewCompetition>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_competitions(rows, now).await
    }
    async fn import_registrations(
        &self,
        rows: Vec<broadcast_domain::NewRegistration>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_registrations(rows, now).await
    }
    async fn get_user(&self, id: i64) -> DResult<broadcast_domain::User> {
        self.store.get_user(id).await
    }
    async fn list_users(
        &self,
        query: &broadcast_domain::UserQuery,
    ) -> DResult<broadcast_domain::Page<broadcast_domain::User>> {
        self.store.list_users(query).await
    }
    async fn list_competitions(&self) -> DResult<Vec<broadcast_domain::Competition>> {
        self.store.list_competitions().await
    }
    async fn registrations_of(
        &self,
        user: i64,
    ) -> DResult<
        Vec<(
            broadcast_domain::Registration,
            broadcast_domain::Competition,
        )>,
    > {
        self.store.registrations_of(user).await
    }
    async fn contexts(
        &self,
        recipients: &[broadcast_domain::Recipient],
    ) -> DResult<Vec<broadcast_domain::RecipientContext>> {
        self.time("contexts", self.store.contexts(recipients)).await
    }
    async fn mark_telegram_blocked(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_telegram_blocked(user, at).await
    }
    async fn mark_email_unsubscribed(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_email_unsubscribed(user, at).await
    }
    async fn mark_email_bounced(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_email_bounced(user, at).await
    }
    async fn update_chat_id(
        &self,
        user: i64,
        chat_id: broadcast_domain::TelegramChatId,
    ) -> DResult<()> {
        self.store.update_chat_id(user, chat_id).await
    }
}

fn links() -> Res<Arc<dyn UnsubscribeLinks>> {
    let url = url::Url::parse(PUBLIC_URL).map_err(err)?;
    let links = broadcast_channels::SignedUnsubscribeLinks::new(
        Some(url),
        secrecy::SecretString::from(SECRET.to_owned()),
    )
    .map_err(err)?;
    Ok(Arc::new(links))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `bench engine`: delivers a launched broadcast with the orchestrator and the real store,
/// through instant channels; prints `{"delivered", "seconds", "cpu_s", "rss_kb"}` of the
/// delivery phase.
fn child_engine(args: &[String]) -> Res<()> {
    let opts = options(args)?;
    let url = required(&opts, "database-url")?.to_owned();
    let id: i64 = number(required(&opts, "broadcast")?, "--broadcast")?;
    let ticks = clock_ticks();
    runtime()?.block_on(async move {
        let store = Store::connect(&url).await.map_err(err)?;
        let shared = Arc::new(store.clone());
        let timed = Arc::new(Timed {
            store: store.clone(),
            calls: std::sync::Mutex::new(BTreeMap::new()),
        });
        let defaults = Settings::default();
        let settings = Settings {
            worker_id: "bench-engine".into(),
            batch_size: env_or("BATCH_SIZE", defaults.batch_size),
            concurrency: env_or("WORKER_CONCURRENCY", defaults.concurrency),
            ..defaults
        };
        let ports = Ports {
            templates: shared.clone(),
            broadcasts: shared.clone(),
            deliveries: timed.clone(),
            audience: timed.clone(),
            source: Arc::new(SqlAudience::new(store.conn().clone())),
            renderer: Arc::new(TeraRenderer::new()),
            channels: Channels::new()
                .with(Arc::new(InstantChannel(ChannelKind::Telegram)))
                .with(Arc::new(InstantChannel(ChannelKind::Email))),
            clock: Arc::new(SystemClock),
            links: Some(links()?),
            budget: Some(shared),
            audit: None,
        };
        let orch = Orchestrator::new(ports, settings);
        // The delivery phase alone: reset the peak RSS, note the CPU so far.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let cpu0 = own_ticks();
        let t0 = Instant::now();
        let stats = orch.run_until_done(id).await.map_err(err)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = (own_ticks() - cpu0) as f64 / ticks;
        let delivered = stats
            .by_status
            .get(&DeliveryStatus::Sent)
            .copied()
            .unwrap_or(0);
        println!(
            "{}",
            json!({
                "delivered": delivered, "seconds": seconds, "cpu_s": cpu,
                "rss_kb": peak_rss_kb("self").unwrap_or(0),
                "store_calls": timed.report(delivered),
            })
        );
        Ok(())
    })
}

/// `bench naive`: the baseline. `launch` writes the recipient rows one `INSERT` at a time (each
/// its own transaction) after reading each user; `deliver` claims one row, loads its context,
/// renders, sends and records the result, one message at a time, with a 50 ms pause after each
/// Telegram message.
fn child_naive(args: &[String]) -> Res<()> {
    let (mode, rest) = args.split_first().ok_or(USAGE)?;
    let opts = options(rest)?;
    let url = required(&opts, "database-url")?.to_owned();
    let id: i64 = number(required(&opts, "broadcast")?, "--broadcast")?;
    let n: u64 = number(required(&opts, "n")?, "--n")?;
    let telegram = opts.get("telegram").cloned();
    let smtp_port: Option<u16> = opts
        .get("smtp-port")
        .map(|p| number(p, "--smtp-port"))
        .transpose()?;
    let mode = mode.clone();
    runtime()?.block_on(async move {
        let store = Store::connect(&url).await.map_err(err)?;
        let t0 = Instant::now();
        let done = match mode.as_str() {
            "launch" => naive_launch(&store, id, n).await?,
            "deliver" => naive_deliver(&store, id, n, telegram, smtp_port).await?,
            other => return Err(format!("unknown naive mode `{other}`")),
        };
        let seconds = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"done": done, "seconds": seconds, "rate": done as f64 / seconds})
        );
        Ok(())
    })
}

async fn naive_launch(store: &Store, broadcast: i64, n: u64) -> Res<u64> {
    use broadcast_store::entity::{broadcast_recipients, users};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    let conn = store.conn();
    let filter = AudienceFilter {
        competition_ids: vec![1],
        ..AudienceFilter::default()
    };
    let mut select = broadcast_filter::compile::audience_query(&filter);
    select.limit(n);
    let ids = conn.query_all(&select).await.map_err(err)?;
    let now = chrono::Utc::now();
    let mut done = 0;
    for row in ids {
        let user_id: i64 = row.try_get("", "user_id").map_err(err)?;
        let registration_id: Option<i64> = row.try_get("", "registration_id").map_err(err)?;
        let user = users::Entity::find_by_id(user_id)
            .one(conn)
            .await
            .map_err(err)?
            .ok_or("user vanished")?;
        let reachable = user.email.is_some()
            && user.email_unsubscribed_at.is_none()
            && user.email_bounced_at.is_none();
        let skip = match (
            &user.email,
            user.email_unsubscribed_at,
            user.email_bounced_at,
        ) {
            (None, _, _) => Some("no_email"),
            (_, Some(_), _) => Some("email_unsubscribed"),
            (_, _, Some(_)) => Some("email_bounced"),
            _ => None,
        };
        broadcast_recipients::ActiveModel {
            broadcast_id: Set(broadcast),
            user_id: Set(user_id),
            registration_id: Set(registration_id),
            channel: Set("email".into()),
            address: Set(user.email.clone().unwrap_or_default()),
            status: Set(if reachable { "pending" } else { "skipped" }.into()),
            skip_reason: Set(skip.map(str::to_owned)),
            attempts: Set(0),
            next_attempt_at: Set(now),
            uncertain_sends: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(conn)
        .await
        .map_err(err)?;
        done += 1;
    }
    Ok(done)
}

async fn naive_deliver(
    store: &Store,
    broadcast: i64,
    n: u64,
    telegram: Option<String>,
    smtp_port: Option<u16>,
) -> Res<u64> {
    use broadcast_domain::{AudienceStore, BroadcastStore};
    let channel: Arc<dyn Channel> = if let Some(api) = &telegram {
        let mut config = broadcast_channels::TelegramConfig::new(secrecy::SecretString::from(
            BOT_TOKEN.to_owned(),
        ));
        config.api_url = Some(url::Url::parse(api).map_err(err)?);
        Arc::new(broadcast_channels::TelegramChannel::new(config).map_err(err)?)
    } else if let Some(port) = smtp_port {
        let from = broadcast_domain::EmailAddress::parse("news@example.org").map_err(|e| e.0)?;
        let mut config = broadcast_channels::SmtpConfig::new("127.0.0.1", from);
        config.port = Some(port);
        config.tls = broadcast_channels::SmtpTls::None;
        config.pool_size = 1;
        Arc::new(broadcast_channels::EmailChannel::new(config).map_err(err)?)
    } else {
        Arc::new(InstantChannel(ChannelKind::Email))
    };
    let b = store.get_broadcast(broadcast).await.map_err(err)?;
    let content = b
        .frozen_template
        .clone()
        .ok_or("the broadcast is not launched")?;
    let template = TeraRenderer::new().compile(&content).map_err(err)?;
    let env = RenderEnv {
        broadcast_name: b.name.clone(),
        app_name: "Broadcast".into(),
        current_date: chrono::Utc::now().date_naive(),
    };
    let links = links()?;
    let mut done = 0;
    while done < n {
        let now = chrono::Utc::now();
        let rows = store
            .claim_due(&ClaimRequest {
                worker_id: "naive".into(),
                now,
                lease_for: chrono::Duration::seconds(120),
                limit: 1,
                broadcast_id: Some(broadcast),
                channels: Vec::new(),
            })
            .await
            .map_err(err)?;
        let Some(row) = rows.into_iter().next() else {
            break;
        };
        let context = store
            .contexts(std::slice::from_ref(&row))
            .await
            .map_err(err)?
            .pop()
            .ok_or("no context")?;
        let url = links.url_for(row.user_id);
        let body = match row.channel {
            ChannelKind::Telegram => MessageBody::Telegram {
                chat_id: broadcast_domain::TelegramChatId::parse(&row.address).map_err(|e| e.0)?,
                message: template
                    .render_telegram(&context, &env, url.as_deref())
                    .map_err(err)?,
            },
            ChannelKind::Email => MessageBody::Email {
                to: broadcast_domain::EmailAddress::parse(&row.address).map_err(|e| e.0)?,
                to_name: Some(context.user.full_name()),
                message: template
                    .render_email(&context, &env, url.as_deref())
                    .map_err(err)?,
                unsubscribe_url: url,
            },
        };
        let message = OutgoingMessage {
            broadcast_id: Some(broadcast),
            recipient_id: Some(row.id),
            user_id: Some(row.user_id),
            body,
        };
        let outcome = match channel.send(&message).await {
            Ok(d) => Outcome::Sent {
                at: chrono::Utc::now(),
                provider_message_id: d.provider_message_id,
            },
            Err(e) => Outcome::Failed {
                at: chrono::Utc::now(),
                kind: e.kind.error_kind(),
                error: e.message,
            },
        };
        store
            .record_results(&[DeliveryResult {
                recipient_id: row.id,
                worker_id: "naive".into(),
                uncertain: false,
                outcome,
            }])
            .await
            .map_err(err)?;
        done += 1;
        if telegram.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(done)
}
