//! Every command family of the real `broadcast-cli` binary: the `--json` documents of
//! `docs/cli.md` parsed and checked, exports, administrators, completions, the confirmation
//! before sending, exit codes on bad input, and what the output does on and off a terminal.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_broadcast-cli");

/// The binary in `dir` with nothing configured but `env`; `stdin` is piped from `input`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run broadcast-cli");
    let mut stdin = child.stdin.take().unwrap();
    // A command that does not read stdin may have exited already.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("wait for broadcast-cli")
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    run(dir, args, &[], "")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
}

#[track_caller]
fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = cli(dir, args);
    ok(&out, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}): {}",
            text(&out.stdout)
        )
    })
}

/// Runs a failing command and returns its single `error:` line.
#[track_caller]
fn fails(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_owned()
}

/// A directory with the demo audience and templates loaded (broadcast 1 is the demo's).
fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok_json(dir.path(), &["demo", "--json"]);
    dir
}

/// Creates a draft broadcast to the judges and returns its id.
fn judges(dir: &Path, channels: &str) -> String {
    let b = ok_json(
        dir,
        &[
            "broadcast",
            "create",
            "--name",
            "Judges",
            "--template",
            "schedule-published",
            "--channels",
            channels,
            "--role",
            "judge",
            "--json",
        ],
    );
    b["id"].as_i64().unwrap().to_string()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object expected: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn template_commands_print_the_documented_json() {
    let dir = demo_dir();
    let d = dir.path();
    let created = ok_json(
        d,
        &[
            "template",
            "create",
            "--name",
            "hello",
            "--description",
            "a greeting",
            "--telegram-text",
            "Hi {{ first_name }}",
            "--subject",
            "Hello {{ first_name }}",
            "--text",
            "Hi {{ first_name }}",
            "--json",
        ],
    );
    assert_eq!(
        keys(&created),
        set(&[
            "id",
            "name",
            "description",
            "content",
            "version",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(created["version"], 1);
    assert_eq!(created["content"]["telegram_text"], "Hi {{ first_name }}");
    assert_eq!(created["content"]["parse_mode"], "html");
    let updated = ok_json(
        d,
        &["template", "update", "hello", "--subject", "Hey", "--json"],
    );
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["content"]["email_subject"], "Hey");
    assert_eq!(updated["content"]["email_text"], "Hi {{ first_name }}");

    let list = ok_json(d, &["template", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"hello") && names.contains(&"registration-reminder"));
    let shown = ok_json(d, &["template", "show", "hello", "--json"]);
    assert_eq!(shown["id"], created["id"]);
    assert_eq!(
        ok_json(d, &["template", "validate", "hello", "--json"]),
        serde_json::json!({ "valid": true })
    );

    let previews = ok_json(
        d,
        &[
            "template", "preview", "hello", "--role", "judge", "--limit", "2", "--json",
        ],
    );
    let previews = previews.as_array().unwrap();
    assert_eq!(previews.len(), 2);
    for p in previews {
        assert_eq!(keys(p), set(&["user_id", "full_name", "telegram", "email"]));
        let first = p["full_name"].as_str().unwrap().split(' ').next().unwrap();
        let tg = p["telegram"]["text"].as_str().unwrap();
        assert!(tg.starts_with("Hi "), "{tg}");
        assert!(tg.contains(&first.replace('&', "&amp;")), "{tg} / {first}");
        assert_eq!(p["email"]["subject"], "Hey");
    }

    let deleted = ok_json(d, &["template", "delete", "hello", "--json"]);
    assert_eq!(deleted["deleted"], created["id"]);
    let err = fails(&cli(d, &["template", "show", "hello"]), 2);
    assert!(err.contains("template `hello` not found"), "{err}");
}

#[test]
fn broadcast_commands_print_the_documented_json() {
    let dir = demo_dir();
    let d = dir.path();
    let id = judges(d, "both");
    let shown = ok_json(d, &["broadcast", "show", &id, "--json"]);
    for key in [
        "id",
        "name",
        "template_id",
        "frozen_template",
        "channel_policy",
        "filter",
        "status",
        "status_reason",
        "scheduled_at",
        "started_at",
        "finished_at",
        "created_by",
        "total_recipients",
        "created_at",
        "updated_at",
        "probe",
    ] {
        assert!(
            shown.get(key).is_some(),
            "broadcast show lacks `{key}`: {shown}"
        );
    }
    assert_eq!(shown["status"], "draft");
    assert_eq!(
        shown["probe"],
        serde_json::Value::Null,
        "no breaker probe: {shown}"
    );
    assert_eq!(shown["channel_policy"], "both");
    assert_eq!(shown["filter"]["roles"], serde_json::json!(["judge"]));

    let list = ok_json(d, &["broadcast", "list", "--status", "draft", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"].to_string(), id);

    let count = ok_json(d, &["broadcast", "count", &id, "--json"]);
    assert_eq!(
        keys(&count),
        set(&[
            "broadcast_id",
            "users",
            "channel_policy",
            "reachable",
            "messages",
            "unreachable"
        ])
    );
    let (tg, mail) = (
        count["messages"]["telegram"].as_u64().unwrap(),
        count["messages"]["email"].as_u64().unwrap(),
    );
    assert!(tg > 0 && mail > 0);

    let launched = ok_json(d, &["broadcast", "launch", &id, "--yes", "--json"]);
    assert_eq!(launched["broadcast"]["status"], "running");
    assert_eq!(launched["materialised"]["queued"]["telegram"], tg);
    assert_eq!(launched["materialised"]["queued"]["email"], mail);
    assert!(launched["broadcast"]["frozen_template"].is_object());

    let stats = ok_json(d, &["broadcast", "run", &id, "--yes", "--json"]);
    assert_eq!(
        keys(&stats),
        set(&[
            "broadcast_id",
            "name",
            "status",
            "status_reason",
            "stats",
            "send_rate",
            "started_at",
            "finished_at",
            "duration_seconds",
            "outcome"
        ])
    );
    assert_eq!(stats["status"], "completed");
    assert_eq!(stats["outcome"], "delivered");
    assert_eq!(stats["name"], "Judges");
    assert!(stats["duration_seconds"].as_f64().unwrap() >= 0.0);
    let s = &stats["stats"];
    assert_eq!(s["by_status"]["sent"].as_u64().unwrap(), tg + mail);
    assert_eq!(s["by_channel"]["telegram"]["sent"], tg);
    assert_eq!(s["by_channel"]["email"]["sent"], mail);
    // `broadcast stats` prints the same document, without the run's outcome.
    let mut without_outcome = stats.clone();
    without_outcome.as_object_mut().unwrap().remove("outcome");
    assert_eq!(
        ok_json(d, &["broadcast", "stats", &id, "--json"]),
        without_outcome
    );

    let recipients = ok_json(
        d,
        &[
            "broadcast",
            "recipients",
            &id,
            "--status",
            "sent",
            "--limit",
            "5",
            "--json",
        ],
    );
    assert_eq!(recipients["total"].as_u64().unwrap(), tg + mail);
    let items = recipients["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|r| r["status"] == "sent"));

    // The text form: a table with a total column, the rate and the duration.
    let out = cli(d, &["broadcast", "stats", &id]);
    ok(&out, &["broadcast", "stats"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("channel") && stdout.contains("total"),
        "{stdout}"
    );
    assert!(
        stdout.contains("send rate:") || stdout.contains("duration:"),
        "{stdout}"
    );
    assert!(stdout.contains("duration:"), "{stdout}");
}

#[test]
fn export_writes_every_row_as_csv_or_json_lines() {
    let dir = demo_dir();
    let d = dir.path();
    let stats = ok_json(d, &["broadcast", "stats", "1", "--json"]);
    let total = stats["stats"]["total"].as_u64().unwrap();
    assert!(total > 50);

    // CSV on stdout, parsed by a real CSV reader.
    let out = cli(d, &["broadcast", "export", "1", "--format", "csv"]);
    ok(&out, &["broadcast", "export"]);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "broadcast_id",
            "user_id",
            "name",
            "registration_id",
            "channel",
            "address",
            "status",
            "skip_reason",
            "attempts",
            "error_kind",
            "last_error",
            "provider_message_id",
            "sent_at",
            "next_attempt_at",
            "uncertain_sends",
            "updated_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, total);
    let ids: BTreeSet<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "every row once");
    let sent = rows.iter().filter(|r| &r[7] == "sent").count() as u64;
    assert_eq!(sent, stats["stats"]["by_status"]["sent"].as_u64().unwrap());
    for r in rows.iter().filter(|r| &r[7] == "skipped") {
        assert!(!r[8].is_empty(), "a skipped row says why: {r:?}");
    }
    // Every row names its user beside the id (the demo users all have names).
    assert!(rows.iter().all(|r| !r[3].is_empty()), "names beside ids");

    // JSON lines into a file, with a JSON summary on stdout.
    std::fs::create_dir(d.join("out")).unwrap();
    let summary = ok_json(
        d,
        &[
            "broadcast",
            "export",
            "1",
            "--format",
            "jsonl",
            "--output",
            "out/rows.jsonl",
            "--status",
            "sent",
            "--json",
        ],
    );
    let sent_rows = stats["stats"]["by_status"]["sent"].as_u64().unwrap();
    assert_eq!(summary["rows"], sent_rows);
    assert_eq!(summary["format"], "jsonl");
    let lines = std::fs::read_to_string(d.join("out/rows.jsonl")).unwrap();
    let parsed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(parsed.len() as u64, sent_rows);
    for row in &parsed {
        let names: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns: Vec<&str> = header.iter().map(String::as_str).collect();
        columns.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, columns, "JSON lines carry the CSV's columns");
        assert_eq!(row["status"], "sent");
        assert!(row["sent_at"].is_string() && row["address"].is_string());
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["rows.jsonl"], "no partial file is left");

    // Bad input.
    let err = fails(&cli(d, &["broadcast", "export", "4242"]), 2);
    assert!(err.contains("broadcast 4242 not found"), "{err}");
    let err = fails(
        &cli(d, &["broadcast", "export", "1", "--status", "lost"]),
        2,
    );
    assert!(err.contains("unknown delivery status `lost`"), "{err}");
    let out = cli(d, &["broadcast", "export", "1", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn export_to_a_missing_directory_fails_and_leaves_nothing() {
    let dir = demo_dir();
    let d = dir.path();
    let out = cli(
        d,
        &["broadcast", "export", "1", "--output", "nowhere/rows.csv"],
    );
    let err = fails(&out, 2);
    assert!(
        err.contains("cannot write nowhere/rows.csv.partial"),
        "{err}"
    );
    assert!(!d.join("nowhere").exists());
}

#[test]
fn audience_commands_print_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("competitions.csv"),
        "slug,name,starts_on,city,country\ncup,The Cup,2027-05-01,Berlin,Germany\n",
    )
    .unwrap();
    std::fs::write(
        d.join("users.csv"),
        "external_id,first_name,last_name,email,telegram_chat_id,country,city,telegram_blocked\n\
         u1,Ann,Lee,ann@example.org,1001,Germany,Berlin,false\n\
         u2,Bob,Roe,,1002,Germany,Munich,true\n",
    )
    .unwrap();
    std::fs::write(
        d.join("registrations.csv"),
        "user_external_id,competition_slug,role,status\nu1,cup,judge,confirmed\nu2,cup,participant,pending\n",
    )
    .unwrap();
    let report = ok_json(
        d,
        &[
            "audience",
            "import",
            "--competitions",
            "competitions.csv",
            "--users",
            "users.csv",
            "--registrations",
            "registrations.csv",
            "--json",
        ],
    );
    assert_eq!(
        report,
        serde_json::json!({
            "competitions": { "inserted": 1, "updated": 0 },
            "users": { "inserted": 2, "updated": 0 },
            "registrations": { "inserted": 2, "updated": 0 },
        })
    );
    let list = ok_json(d, &["audience", "list", "--search", "bob", "--json"]);
    assert_eq!(list["total"], 1);
    let bob = &list["items"][0];
    let bob_id = bob["id"].as_i64().unwrap().to_string();
    assert_eq!(bob["first_name"], "Bob");

    let shown = ok_json(d, &["audience", "show", &bob_id, "--json"]);
    assert_eq!(keys(&shown), set(&["user", "flags", "registrations"]));
    assert_eq!(shown["user"]["city"], "Munich");
    assert_eq!(
        shown["flags"],
        serde_json::json!({
            "telegram_blocked": true, "email_unsubscribed": false, "email_bounced": false
        })
    );
    let regs = shown["registrations"].as_array().unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0]["registration"]["role"], "participant");
    assert_eq!(regs[0]["registration"]["status"], "pending");
    assert_eq!(regs[0]["competition"]["slug"], "cup");

    let out = cli(d, &["audience", "show", &bob_id]);
    ok(&out, &["audience", "show"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("blocked the bot"), "{stdout}");
    assert!(
        stdout.contains("The Cup") && stdout.contains("pending"),
        "{stdout}"
    );

    let count = ok_json(d, &["audience", "count", "--city", "berlin", "--json"]);
    assert_eq!(
        count,
        serde_json::json!({
            "users": 1, "channel_policy": "both",
            "reachable": { "telegram": 1, "email": 1 },
            "messages": { "telegram": 1, "email": 1 }, "unreachable": 0
        })
    );
    let count = ok_json(
        d,
        &[
            "audience",
            "count",
            "--city",
            "berlin",
            "--channels",
            "telegram-then-email",
            "--json",
        ],
    );
    assert_eq!(
        count["messages"],
        serde_json::json!({ "telegram": 1, "email": 0 })
    );
    let err = fails(
        &cli(
            d,
            &[
                "audience",
                "count",
                "--channels",
                "first_reachable:telegram,fax",
            ],
        ),
        2,
    );
    assert!(err.contains("no channel `fax`"), "{err}");
    let err = fails(&cli(d, &["audience", "show", "4242"]), 2);
    assert!(err.contains("user 4242 not found"), "{err}");
    let out = cli(d, &["audience", "show", "bob"]);
    assert_eq!(out.status.code(), Some(2), "a user id is a number");
}

#[tokio::test(flavor = "multi_thread")]
async fn recount_repairs_statistics_after_manual_sql_and_refuses_a_running_broadcast() {
    let dir = demo_dir();
    let d = dir.path().to_owned();
    let count = |stats: &Value, status: &str| stats["stats"]["by_status"][status].as_u64();
    let before = ok_json(&d, &["broadcast", "stats", "1", "--json"]);
    let sent = count(&before, "sent").expect("the demo sent messages");

    // An operator marks one delivered row failed with manual SQL: the counters do not see it.
    let url = format!(
        "sqlite://{}?mode=rwc",
        d.join("data/broadcast.db").display()
    );
    let changed = broadcast_testkit::db::execute_sql(
        &url,
        "UPDATE broadcast_recipients SET status = 'failed', error_kind = 'permanent' \
         WHERE id = (SELECT MIN(id) FROM broadcast_recipients \
         WHERE broadcast_id = 1 AND status = 'sent')",
    )
    .await;
    assert_eq!(changed, 1);
    let stale = ok_json(&d, &["broadcast", "stats", "1", "--json"]);
    assert_eq!(count(&stale, "sent"), Some(sent), "counters, not a count");

    let repaired = ok_json(&d, &["broadcast", "recount", "1", "--json"]);
    assert_eq!(count(&repaired, "sent"), Some(sent - 1), "{repaired}");
    assert_eq!(
        count(&repaired, "failed"),
        Some(count(&before, "failed").unwrap_or(0) + 1),
        "{repaired}"
    );
    assert_eq!(
        repaired["stats"]["total"], before["stats"]["total"],
        "{repaired}"
    );
    assert_eq!(
        ok_json(&d, &["broadcast", "stats", "1", "--json"]),
        repaired
    );

    // A running broadcast is refused, and an unknown one named.
    broadcast_testkit::db::execute_sql(
        &url,
        "UPDATE broadcasts SET status = 'running' WHERE id = 1",
    )
    .await;
    // Refused like any operation a broadcast's status does not allow: exit code 2.
    let error = fails(&cli(&d, &["broadcast", "recount", "1"]), 2);
    assert!(
        error.contains("running") && error.contains("pause"),
        "{error}"
    );
    let error = fails(&cli(&d, &["broadcast", "recount", "99"]), 2);
    assert!(error.contains("99"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_users_get_argon2_hashes_and_the_password_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let password = "correct horse battery";
    let out = run(
        &d,
        &[
            "admin",
            "create-user",
            "alice",
            "--password-stdin",
            "--json",
        ],
        &[],
        &format!("{password}\n"),
    );
    ok(&out, &["admin", "create-user"]);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        keys(&created),
        set(&["id", "username", "created_at", "last_login_at"])
    );
    assert_eq!(created["username"], "alice");
    for stream in [&out.stdout, &out.stderr] {
        let s = text(stream);
        assert!(!s.contains(password) && !s.contains("argon2"), "{s}");
    }

    // The stored hash is argon2id and verifies.
    let url = format!(
        "sqlite://{}?mode=rwc",
        d.join("data/broadcast.db").display()
    );
    let store = broadcast_store::Store::connect(&url).await.unwrap();
    use broadcast_domain::AdminStore as _;
    let admin = store.find_admin("alice").await.unwrap().unwrap();
    assert!(admin.password_hash.starts_with("$argon2id$"));
    assert!(broadcast_app::password::verify_password(
        password,
        &admin.password_hash
    ));

    // A new password replaces the old one.
    let out = run(
        &d,
        &["admin", "set-password", "alice", "--password-stdin"],
        &[],
        "another password\n",
    );
    ok(&out, &["admin", "set-password"]);
    let admin = store.find_admin("alice").await.unwrap().unwrap();
    assert!(broadcast_app::password::verify_password(
        "another password",
        &admin.password_hash
    ));
    assert!(!broadcast_app::password::verify_password(
        password,
        &admin.password_hash
    ));

    let list: Value =
        serde_json::from_slice(&run(&d, &["admin", "list", "--json"], &[], "").stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("password_hash").is_none());

    // Bad input: exit code 2, one line, nothing stored.
    let dup = run(
        &d,
        &["admin", "create-user", "alice", "--password-stdin"],
        &[],
        "whatever123\n",
    );
    assert!(fails(&dup, 2).contains("already exists"));
    let short = run(
        &d,
        &["admin", "create-user", "bob", "--password-stdin"],
        &[],
        "short\n",
    );
    assert!(fails(&short, 2).contains("at least 8 characters"));
    let empty = run(
        &d,
        &["admin", "create-user", "bob", "--password-stdin"],
        &[],
        "",
    );
    assert!(fails(&empty, 2).contains("stdin has no password"));
    let no_tty = run(&d, &["admin", "create-user", "bob"], &[], "");
    assert!(fails(&no_tty, 2).contains("pass --password-stdin"));
    let missing = run(
        &d,
        &["admin", "set-password", "carol", "--password-stdin"],
        &[],
        "whatever123\n",
    );
    assert!(fails(&missing, 2).contains("administrator `carol` not found"));
    assert!(store.find_admin("bob").await.unwrap().is_none());
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef broadcast-cli"),
        ("fish", "complete -c broadcast-cli"),
    ] {
        let out = cli(d, &["completions", shell]);
        ok(&out, &["completions", shell]);
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for word in ["broadcast", "create-user", "export", "password-stdin"] {
            assert!(script.contains(word), "{shell} completes `{word}`");
        }
    }
    assert!(
        !d.join("data").exists(),
        "completions need no database and create none"
    );
    assert_eq!(cli(d, &["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &["demo"],
        &["worker"],
        &["completions"],
        &["template", "create"],
        &["template", "update"],
        &["template", "list"],
        &["template", "show"],
        &["template", "validate"],
        &["template", "preview"],
        &["template", "delete"],
        &["broadcast", "create"],
        &["broadcast", "list"],
        &["broadcast", "show"],
        &["broadcast", "count"],
        &["broadcast", "preview"],
        &["broadcast", "launch"],
        &["broadcast", "run"],
        &["broadcast", "schedule"],
        &["broadcast", "pause"],
        &["broadcast", "resume"],
        &["broadcast", "cancel"],
        &["broadcast", "retry"],
        &["broadcast", "test"],
        &["broadcast", "stats"],
        &["broadcast", "recount"],
        &["broadcast", "recipients"],
        &["broadcast", "export"],
        &["audience", "import"],
        &["audience", "list"],
        &["audience", "count"],
        &["audience", "show"],
        &["admin", "create-user"],
        &["admin", "set-password"],
        &["admin", "list"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = cli(dir.path(), &args);
        ok(&out, &args);
        let help = text(&out.stdout);
        assert!(
            help.contains("Example: broadcast-cli"),
            "{command:?} --help has no example:\n{help}"
        );
    }
}

#[test]
fn launch_and_run_ask_first_and_refuse_without_a_terminal() {
    let dir = demo_dir();
    let d = dir.path();
    let id = judges(d, "both");
    for command in ["launch", "run"] {
        let out = cli(d, &["broadcast", command, &id]);
        let err = fails(&out, 2);
        assert_eq!(err, "error: stdin is not a terminal: pass --yes to confirm");
        assert!(out.stdout.is_empty());
    }
    let b = ok_json(d, &["broadcast", "show", &id, "--json"]);
    assert_eq!(b["status"], "draft", "nothing was launched");
    assert_eq!(b["total_recipients"], 0);

    // Errors about the broadcast itself come before the question.
    let err = fails(&cli(d, &["broadcast", "launch", "1"]), 2);
    assert!(err.contains("broadcast 1 is completed"), "{err}");

    // With --yes the launch goes ahead without counting the audience first: stderr names the
    // broadcast and its channels, the report on stdout gives the numbers.
    let out = cli(d, &["broadcast", "launch", &id, "--yes"]);
    ok(&out, &["broadcast", "launch", "--yes"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("broadcast {id} `")), "{stderr}");
    assert!(stderr.contains("audience: "), "{stderr}");
    assert!(
        !stderr.contains("users matching:"),
        "nothing was counted: {stderr}"
    );
    assert!(!stderr.contains("estimated duration"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("launched broadcast {id}: queued ")),
        "{stdout}"
    );
}

/// Runs a command line under a pseudo-terminal with `script`, feeding `input`; `None` (with a
/// loud message) where `script` (util-linux) is missing.
fn in_terminal(dir: &Path, command: &str, env: &[(&str, &str)], input: &str) -> Option<Output> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed; terminal behaviour untested");
        return None;
    }
    let line = format!("'{BIN}' {command}");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    Some(child.wait_with_output().unwrap())
}

#[test]
fn on_a_terminal_the_question_is_asked_and_the_answer_obeyed() {
    let dir = demo_dir();
    let d = dir.path();
    let id = judges(d, "telegram");
    let Some(no) = in_terminal(d, &format!("broadcast launch {id}"), &[], "n\n") else {
        return;
    };
    let screen = text(&no.stdout);
    assert_eq!(no.status.code(), Some(1), "{screen}");
    assert!(
        screen.contains(&format!("Launch broadcast {id} and queue")),
        "{screen}"
    );
    assert!(screen.contains("not confirmed"), "{screen}");
    assert_eq!(
        ok_json(d, &["broadcast", "show", &id, "--json"])["status"],
        "draft"
    );

    let yes = in_terminal(d, &format!("broadcast run {id}"), &[], "y\n").unwrap();
    let screen = text(&yes.stdout);
    assert_eq!(yes.status.code(), Some(0), "{screen}");
    assert!(screen.contains("completed"), "{screen}");
    assert_eq!(
        ok_json(d, &["broadcast", "show", &id, "--json"])["status"],
        "completed"
    );
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let dir = demo_dir();
    let d = dir.path();
    // Off a terminal: no escape codes anywhere.
    let out = cli(d, &["broadcast", "stats", "1"]);
    ok(&out, &["broadcast", "stats"]);
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b));

    let Some(coloured) = in_terminal(d, "broadcast stats 1", &[], "") else {
        return;
    };
    assert!(
        text(&coloured.stdout).contains("\x1b["),
        "a terminal gets colours: {:?}",
        text(&coloured.stdout)
    );
    let plain = in_terminal(d, "broadcast stats 1", &[("NO_COLOR", "1")], "").unwrap();
    let screen = text(&plain.stdout);
    assert!(screen.contains("completed"), "{screen}");
    assert!(!screen.contains('\x1b'), "NO_COLOR is obeyed: {screen:?}");
    let error = in_terminal(d, "broadcast show 4242", &[("NO_COLOR", "1")], "").unwrap();
    assert_eq!(error.status.code(), Some(2));
    assert!(!text(&error.stdout).contains('\x1b'));
}

#[test]
fn tables_fit_the_terminal_width() {
    let dir = demo_dir();
    let d = dir.path();
    let Some(out) = in_terminal(
        d,
        "audience list --limit 30",
        &[("COLUMNS", "50"), ("NO_COLOR", "1")],
        "",
    ) else {
        return;
    };
    let screen = text(&out.stdout);
    let lines: Vec<&str> = screen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.len() > 30, "{screen}");
    for line in &lines {
        assert!(line.chars().count() <= 50, "wider than 50: {line:?}");
    }
    assert!(screen.contains('…'), "long cells are cut: {screen}");
    // Off a terminal the same listing keeps whole cells.
    let piped = cli(d, &["audience", "list", "--limit", "30"]);
    assert!(text(&piped.stdout).lines().any(|l| l.chars().count() > 50));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_off_a_terminal_prints_plain_progress_lines() {
    let dir = demo_dir();
    let d = dir.path().to_owned();
    // A real (fake) Telegram at 50 messages/s, so that the run takes a few seconds.
    let telegram = broadcast_testkit::telegram::FakeTelegram::start().await;
    let b = ok_json(
        &d,
        &[
            "broadcast",
            "create",
            "--name",
            "Everyone",
            "--template",
            "schedule-published",
            "--channels",
            "telegram",
            "--json",
        ],
    );
    let id = b["id"].as_i64().unwrap().to_string();
    let env = [
        ("TELEGRAM_BOT_TOKEN", telegram.token().to_owned()),
        ("TELEGRAM_API_URL", telegram.api_url()),
        ("TELEGRAM_RATE_LIMIT", "25".to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&d, &["broadcast", "run", &id, "--yes"], &env, "")
    })
    .await
    .unwrap();
    ok(&out, &["broadcast", "run", "--yes"]);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !out.stdout.contains(&0x1b),
        "{stderr:?}"
    );
    assert!(stderr.contains("25/s"), "the plan shows the rate: {stderr}");
    assert!(stderr.contains("estimated duration: about"), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(
        progress.len() >= 3,
        "first, periodic and final lines: {stderr}"
    );
    let sent = telegram.messages().len();
    assert!(sent > 50, "{sent}");
    for line in &progress {
        // progress: 40/170 done, 35 sent, 0 failed, 130 open, 24.8/s, eta 5s
        let rest = line.strip_prefix("progress: ").unwrap();
        let (counts, tail) = rest.split_once(" done, ").expect(line);
        let (done, total) = counts.split_once('/').expect(line);
        assert!(done.parse::<u64>().unwrap() <= total.parse::<u64>().unwrap());
        assert!(
            tail.contains(" sent, ") && tail.contains(" failed"),
            "{line}"
        );
    }
    let last = progress.last().unwrap();
    assert!(
        last.contains(&format!(" {sent} sent, 0 failed, 0 open")),
        "the final state: {last}"
    );
    let (counts, _) = last["progress: ".len()..].split_once(' ').unwrap();
    let (done, total) = counts.split_once('/').unwrap();
    assert_eq!(done, total, "{last}");
    let middle = &progress[1..progress.len() - 1];
    assert!(
        middle.iter().any(|l| l.contains("/s, eta ")),
        "periodic lines show the rate and the time left: {stderr}"
    );
    assert!(text(&out.stdout).contains("completed"));
}

#[test]
fn a_worker_delivers_what_was_launched_and_exits_with_once() {
    let dir = demo_dir();
    let d = dir.path();
    let id = judges(d, "both");
    ok_json(d, &["broadcast", "launch", &id, "--yes", "--json"]);
    let out = cli(d, &["worker", "--once", "--concurrency", "4"]);
    ok(&out, &["worker", "--once"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nothing left to do"), "{stderr}");
    let stats = ok_json(d, &["broadcast", "stats", &id, "--json"]);
    assert_eq!(stats["status"], "completed");
    assert_eq!(stats["stats"]["by_status"].get("pending"), None);
    let err = fails(&cli(d, &["worker", "--concurrency", "0"]), 2);
    assert!(err.contains("--concurrency must be at least 1"), "{err}");
}

#[test]
fn a_bad_worker_setting_is_an_error_naming_it() {
    let dir = demo_dir();
    let d = dir.path();
    for (name, value) in [
        ("RETRY_BASE_SECONDS", "-1"),
        ("RETRY_MAX_SECONDS", "inf"),
        ("LEASE_SECONDS", "0"),
        ("BATCH_SIZE", "-3"),
        ("BREAKER_RATIO", "1.5"),
    ] {
        let out = run(d, &["worker", "--once"], &[(name, value)], "");
        let err = fails(&out, 2);
        assert!(
            err.contains(&format!("{name}=`{value}` is not valid")),
            "{name}={value}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The audit log's entries after the first `skip` (oldest first): actor, action, target id.
async fn audit_after(dir: &Path, skip: usize) -> Vec<(String, String, Option<i64>)> {
    use broadcast_domain::AuditLog as _;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join("data/broadcast.db").display()
    );
    let store = broadcast_store::Store::connect(&url).await.unwrap();
    let mut all = store.recent(10_000, 0).await.unwrap();
    all.reverse();
    all.into_iter()
        .skip(skip)
        .map(|e| (e.actor, e.action, e.target_id))
        .collect()
}

#[tokio::test]
async fn every_change_from_the_cli_writes_one_audit_entry_naming_the_user() {
    let dir = demo_dir();
    let d = dir.path();
    let mut seen = audit_after(d, 0).await.len();
    let as_alice = |args: &[&str]| -> Value {
        let out = run(d, args, &[("USER", "alice")], "");
        ok(&out, args);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let expect = async |seen: &mut usize, action: &str, target: Option<i64>| {
        let new = audit_after(d, *seen).await;
        assert_eq!(
            new,
            vec![("cli:alice".to_owned(), action.to_owned(), target)],
            "after {action}"
        );
        *seen += 1;
    };

    let t = as_alice(&[
        "template",
        "create",
        "--name",
        "audited",
        "--telegram-text",
        "Hi",
        "--subject",
        "Hi",
        "--text",
        "Hi",
        "--json",
    ]);
    let template = t["id"].as_i64().unwrap();
    expect(&mut seen, "template.create", Some(template)).await;
    as_alice(&[
        "template",
        "update",
        "audited",
        "--telegram-text",
        "Hello",
        "--json",
    ]);
    expect(&mut seen, "template.update", Some(template)).await;

    std::fs::write(
        d.join("more.csv"),
        "external_id,first_name,email\naudit-1,Ann,audit-1@example.org\n",
    )
    .unwrap();
    as_alice(&["audience", "import", "--users", "more.csv", "--json"]);
    expect(&mut seen, "audience.import", None).await;

    let b = as_alice(&[
        "broadcast",
        "create",
        "--name",
        "Audited",
        "--template",
        "audited",
        "--channels",
        "email",
        "--role",
        "judge",
        "--json",
    ]);
    let id = b["id"].as_i64().unwrap();
    let ids = id.to_string();
    expect(&mut seen, "broadcast.create", Some(id)).await;
    for (args, action) in [
        (
            vec![
                "broadcast",
                "schedule",
                &ids,
                "--at",
                "2099-01-01T10:00:00Z",
                "--json",
            ],
            "broadcast.schedule",
        ),
        (
            vec!["broadcast", "schedule", &ids, "--clear", "--json"],
            "broadcast.schedule",
        ),
        (
            vec!["broadcast", "launch", &ids, "--yes", "--json"],
            "broadcast.launch",
        ),
        (
            vec!["broadcast", "pause", &ids, "--json"],
            "broadcast.pause",
        ),
        (
            vec!["broadcast", "recount", &ids, "--json"],
            "broadcast.recount",
        ),
        (
            vec!["broadcast", "retry", &ids, "--json"],
            "broadcast.retry",
        ),
        (
            vec!["broadcast", "resume", &ids, "--json"],
            "broadcast.resume",
        ),
        (
            vec!["broadcast", "cancel", &ids, "--json"],
            "broadcast.cancel",
        ),
    ] {
        as_alice(&args);
        expect(&mut seen, action, Some(id)).await;
    }

    // A refused change writes nothing.
    let out = run(d, &["broadcast", "resume", &ids], &[("USER", "alice")], "");
    fails(&out, 2);
    assert_eq!(audit_after(d, seen).await, vec![]);

    let unused = as_alice(&[
        "template",
        "create",
        "--name",
        "unused",
        "--telegram-text",
        "Hi",
        "--json",
    ]);
    let unused = unused["id"].as_i64().unwrap();
    expect(&mut seen, "template.create", Some(unused)).await;
    as_alice(&["template", "delete", "unused", "--json"]);
    expect(&mut seen, "template.delete", Some(unused)).await;
}

#[test]
fn worker_once_exits_3_and_says_why_when_a_broadcast_it_drove_delivered_nothing() {
    let dir = demo_dir();
    let d = dir.path();
    ok_json(
        d,
        &[
            "template",
            "create",
            "--name",
            "both-parts",
            "--telegram-text",
            "Hi",
            "--subject",
            "Hi",
            "--text",
            "Hi",
            "--json",
        ],
    );
    let b = ok_json(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "Doomed",
            "--template",
            "both-parts",
            "--channels",
            "both",
            "--role",
            "judge",
            "--json",
        ],
    );
    let doomed = b["id"].as_i64().unwrap();
    let a_minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    ok_json(
        d,
        &[
            "broadcast",
            "schedule",
            &doomed.to_string(),
            "--at",
            &a_minute_ago,
            "--json",
        ],
    );
    // The template loses its e-mail parts: a launch on both channels now fails.
    ok_json(
        d,
        &[
            "template",
            "update",
            "both-parts",
            "--subject",
            "",
            "--text",
            "",
            "--json",
        ],
    );
    let out = cli(d, &["worker", "--once", "--json"]);
    let line = fails(&out, 3);
    assert!(
        line.starts_with(&format!(
            "error: broadcast {doomed} failed (scheduled launch failed:"
        )),
        "{line}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!([{ "broadcast_id": doomed, "status": "failed", "outcome": "failed" }])
    );

    // A launched broadcast that delivers: exit code 0 and `delivered`.
    let fine = judges(d, "telegram");
    ok_json(d, &["broadcast", "launch", &fine, "--yes", "--json"]);
    let out = cli(d, &["worker", "--once", "--json"]);
    ok(&out, &["worker", "--once"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["outcome"], "delivered", "{report}");

    // `broadcast run` of a broadcast whose audience cannot be reached at all: exit code 3.
    let nobody = ok_json(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "Nobody",
            "--template",
            "schedule-published",
            "--channels",
            "email",
            "--has-email",
            "false",
            "--json",
        ],
    );
    let nobody = nobody["id"].as_i64().unwrap().to_string();
    let out = cli(d, &["broadcast", "run", &nobody, "--yes", "--json"]);
    let line = fails(&out, 3);
    assert!(
        line.contains("completed without delivering any message"),
        "{line}"
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["outcome"], "nothing_delivered");
}

/// Log lines written to a pipe or a file carry no colour codes.
#[test]
fn log_lines_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["demo", "--json"], &[("LOG", "debug")], "");
    ok(&out, &["demo", "--json"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("DEBUG") || l.contains("INFO"))
            .count()
            > 5,
        "the demo logs at debug level: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in the log: {stderr:?}"
    );
}

/// `PUBLIC_BASE_URL` without `ADMIN_SECRET_KEY` makes e-mails without an unsubscribe link: the
/// CLI says so.
#[test]
fn a_public_url_without_a_secret_key_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["demo", "--json"];
    let out = run(
        dir.path(),
        &args,
        &[("PUBLIC_BASE_URL", "https://news.example.org")],
        "",
    );
    ok(&out, &args);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("PUBLIC_BASE_URL is set but ADMIN_SECRET_KEY is not"),
        "{stderr}"
    );
    let quiet = run(
        dir.path(),
        &["template", "list", "--json"],
        &[
            ("PUBLIC_BASE_URL", "https://news.example.org"),
            (
                "ADMIN_SECRET_KEY",
                "a-secret-key-of-at-least-32-bytes-0123456789",
            ),
        ],
        "",
    );
    ok(&quiet, &["template", "list", "--json"]);
    assert!(
        !text(&quiet.stderr).contains("ADMIN_SECRET_KEY"),
        "{}",
        text(&quiet.stderr)
    );
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

#[tokio::test]
async fn media_commands_keep_files_by_their_bytes_and_refuse_what_lies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let png = d.join("poster.png");
    std::fs::write(&png, PNG).unwrap();
    let added = ok_json(d, &["--json", "media", "add", png.to_str().unwrap()]);
    assert_eq!(
        keys(&added),
        set(&[
            "id",
            "name",
            "kind",
            "content_type",
            "size",
            "sha256",
            "created_by",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(added["name"], "poster.png");
    assert_eq!(added["kind"], "photo");
    assert_eq!(added["content_type"], "image/png");
    assert_eq!(added["size"], PNG.len());

    // A file whose bytes are not what its name says is refused and writes nothing; so is a
    // name already taken, unless replaced.
    let fake = d.join("schedule.pdf");
    std::fs::write(&fake, "not a PDF at all").unwrap();
    let err = fails(&cli(d, &["media", "add", fake.to_str().unwrap()]), 2);
    assert!(
        err.contains("schedule.pdf") && err.contains("application/pdf") && err.contains("text"),
        "{err}"
    );
    let err = fails(&cli(d, &["media", "add", png.to_str().unwrap()]), 2);
    assert!(err.contains("`poster.png` already exists"), "{err}");
    let missing = fails(&cli(d, &["media", "add", "nowhere.png"]), 2);
    assert!(missing.contains("cannot read nowhere.png"), "{missing}");
    let list = ok_json(d, &["--json", "media", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Show writes the bytes back as they came; by name or by id.
    let out = d.join("copy.bin");
    let shown = ok_json(
        d,
        &[
            "--json",
            "media",
            "show",
            "poster.png",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(shown, added);
    assert_eq!(std::fs::read(&out).unwrap(), PNG);
    let id = added["id"].as_i64().unwrap().to_string();
    assert_eq!(
        ok_json(d, &["--json", "media", "show", &id])["name"],
        "poster.png"
    );

    // The name given is held to the bytes too; replacing gives the name new bytes; removing
    // takes it away.
    let gif = d.join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let gif = gif.to_str().unwrap();
    let err = fails(
        &cli(
            d,
            &["media", "add", gif, "--name", "poster.png", "--replace"],
        ),
        2,
    );
    assert!(
        err.contains("image/png") && err.contains("image/gif"),
        "{err}"
    );
    let animation = ok_json(d, &["--json", "media", "add", gif]);
    assert_eq!(animation["kind"], "animation");
    let newer = d.join("poster-v2.png");
    std::fs::write(&newer, [PNG, b"v2"].concat()).unwrap();
    let newer = newer.to_str().unwrap();
    let replaced = ok_json(
        d,
        &[
            "--json",
            "media",
            "add",
            newer,
            "--name",
            "poster.png",
            "--replace",
        ],
    );
    assert_eq!(replaced["id"], added["id"]);
    assert_eq!(replaced["size"], PNG.len() + 2);
    assert_ne!(replaced["sha256"], added["sha256"]);
    ok(&cli(d, &["media", "rm", "poster.png"]), &["media", "rm"]);
    let err = fails(&cli(d, &["media", "show", "poster.png"]), 2);
    assert!(err.contains("medium `poster.png` not found"), "{err}");
    let list = ok_json(d, &["--json", "media", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["anim.gif"]);

    // Each change is in the audit log: add, add, replace, remove (the refusals wrote nothing).
    let actions: Vec<String> = audit_after(d, 0)
        .await
        .into_iter()
        .map(|(_, action, _)| action)
        .collect();
    assert_eq!(
        actions,
        ["media.add", "media.add", "media.replace", "media.remove"]
    );
}

#[tokio::test]
async fn a_template_shows_a_medium_by_name_and_keeps_it_from_removal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let png = d.join("poster.png");
    std::fs::write(&png, PNG).unwrap();
    let added = ok_json(d, &["--json", "media", "add", png.to_str().unwrap()]);
    let create = |name: &str, text: &str, medium: &str| {
        [
            "--json",
            "template",
            "create",
            "--name",
            name,
            "--telegram-text",
            text,
            "--medium",
            medium,
        ]
        .map(str::to_owned)
    };
    let run = |args: [String; 9]| cli(d, &args.each_ref().map(String::as_str));
    // A caption over 1024 characters, and a medium not in the library, write nothing.
    let long = format!("{} {{{{ first_name }}}}", "a".repeat(1020));
    let err = fails(&run(create("long", &long, "poster.png")), 2);
    assert!(
        err.contains("rendered caption is 1025 characters long") && err.contains("1024"),
        "{err}"
    );
    let err = fails(&run(create("missing", "Hi", "nothing.png")), 2);
    assert!(
        err.contains("medium `nothing.png` is not in the media library"),
        "{err}"
    );
    let list = ok_json(d, &["--json", "template", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    let args = create("poster", "Hi {{ first_name }}", "poster.png");
    let t = ok_json(d, &args.each_ref().map(String::as_str));
    let media = &t["content"]["telegram_media"];
    assert_eq!(media.as_array().map(Vec::len), Some(1), "{t}");
    for key in ["id", "name", "kind", "content_type", "size", "sha256"] {
        assert_eq!(media[0][key], added[key], "{key}: {t}");
    }
    let out = cli(d, &["template", "show", "poster"]);
    ok(&out, &["template", "show"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("medium:      poster.png (photo, image/png, 67 bytes)"),
        "{shown}"
    );

    // In use by the template: not removed; taken out of it, removed.
    let err = fails(&cli(d, &["media", "rm", "poster.png"]), 2);
    assert!(
        err.contains("medium `poster.png` is in use by template `poster`"),
        "{err}"
    );
    let updated = ok_json(
        d,
        &["--json", "template", "update", "poster", "--medium", ""],
    );
    assert!(
        updated["content"].get("telegram_media").is_none(),
        "{updated}"
    );
    ok(&cli(d, &["media", "rm", "poster.png"]), &["media", "rm"]);
}

#[tokio::test]
async fn template_buttons_are_checked_at_save_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = |buttons: serde_json::Value| {
        let path = d.join("buttons.json");
        let body = serde_json::json!({
            "name": "buttons",
            "telegram_text": "Hi {{ first_name }}",
            "telegram_buttons": buttons,
        });
        std::fs::write(&path, body.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let evil = file(serde_json::json!([[{"text": "Open", "url": "javascript:alert(1)"}]]));
    let err = fails(&cli(d, &["template", "create", "--from-json", &evil]), 2);
    assert!(
        err.contains("row 1, button 1")
            && err.contains("a button opens only http, https or tg URLs"),
        "{err}"
    );
    let list = ok_json(d, &["--json", "template", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    let good = file(serde_json::json!([[
        {"text": "Register", "url": "https://example.org/r?u={{ telegram_id }}"},
        {"text": "Chat", "url": "tg://resolve?domain=example"},
    ]]));
    let t = ok_json(d, &["--json", "template", "create", "--from-json", &good]);
    assert_eq!(
        t["content"]["telegram_buttons"][0][1],
        serde_json::json!({"text": "Chat", "url": "tg://resolve?domain=example"})
    );
    let out = cli(d, &["template", "show", "buttons"]);
    ok(&out, &["template", "show"]);
    assert!(
        text(&out.stdout).contains(
            "buttons 1:   [Register](https://example.org/r?u={{ telegram_id }}) \
             [Chat](tg://resolve?domain=example)"
        ),
        "{}",
        text(&out.stdout)
    );
}
