//! The real `broadcast-cli` binary: the demo end to end, exit codes and error lines.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_broadcast-cli"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run broadcast-cli")
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// external id -> (first name, chat id, e-mail) of the demo audience.
fn fixture_users() -> Vec<HashMap<String, String>> {
    let text = fixture("users.csv");
    let mut reader = csv_lines(&text);
    let header = reader.remove(0);
    reader
        .into_iter()
        .map(|row| header.iter().cloned().zip(row).collect())
        .collect()
}

/// A minimal CSV reader for the fixture (quoted fields with doubled quotes).
fn csv_lines(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        rows.push(fields);
    }
    rows
}

fn count(stats: &Value, channel: &str, status: &str) -> u64 {
    stats["stats"]["by_channel"][channel][status]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn demo_sends_a_personalised_broadcast_to_the_outbox_and_explains_every_skip() {
    let dir = tempfile::tempdir().unwrap();
    let stats = ok_json(dir.path(), &["demo", "--json"]);
    assert_eq!(stats["status"], "completed");
    let outbox = dir.path().join("data/outbox");
    assert!(dir.path().join("data/broadcast.db").exists());

    // One JSON line per Telegram delivery, personalised with the user's own first name.
    let users = fixture_users();
    let by_chat: HashMap<&str, &HashMap<String, String>> = users
        .iter()
        .filter(|u| !u["telegram_chat_id"].is_empty())
        .map(|u| (u["telegram_chat_id"].as_str(), u))
        .collect();
    let jsonl = std::fs::read_to_string(outbox.join("telegram.jsonl")).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, count(&stats, "telegram", "sent"));
    assert!(lines.len() > 20);
    for line in &lines {
        let chat = line["chat_id"].to_string();
        let user = by_chat[chat.as_str()];
        let first = user["first_name"]
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let text = line["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("Hi {first}!")), "{chat}: {text}");
        assert_eq!(line["parse_mode"], "html");
        // The poster above the text, and a button to the registration page.
        assert_eq!(line["method"], "sendPhoto", "{line}");
        assert_eq!(line["media"][0]["name"], "poster.png", "{line}");
        assert_eq!(line["media"][0]["content_type"], "image/png", "{line}");
        let button = &line["buttons"][0][0];
        assert_eq!(button["text"], "Update my registration", "{line}");
        let url = button["url"].as_str().unwrap();
        assert!(
            url.starts_with(
                "https://example.org/registration?competition=European%20Robotics%20Challenge%202027&role="
            ),
            "{url}"
        );
        assert_ne!(
            user["telegram_blocked"], "true",
            "a blocked user got a message"
        );
    }

    // One .eml per e-mail, to the user's address, with their name.
    let emails: Vec<String> = std::fs::read_dir(outbox.join("email"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(emails.len() as u64, count(&stats, "email", "sent"));
    let unsubscribed = users
        .iter()
        .find(|u| u["email_unsubscribed"] == "true")
        .unwrap();
    for eml in &emails {
        assert!(eml.contains("Subject: European Robotics Challenge 2027 starts on 2027-03-19"));
        assert!(
            !eml.contains(&unsubscribed["email"]),
            "an unsubscribed user got an e-mail"
        );
    }

    // Skipped users are counted with their reason.
    let skipped = &stats["stats"]["by_skip_reason"];
    assert_eq!(skipped["telegram_blocked"], 1);
    assert_eq!(skipped["email_unsubscribed"], 1);
    assert!(skipped["no_telegram"].as_u64().unwrap() > 0);
    assert!(skipped["no_email"].as_u64().unwrap() > 0);
    let total = stats["stats"]["total"].as_u64().unwrap();
    let sent = stats["stats"]["by_status"]["sent"].as_u64().unwrap();
    let skipped_total: u64 = skipped
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sent + skipped_total, total, "every row is explained");

    // A second run sends a second broadcast; --reset starts over.
    let again = ok_json(dir.path(), &["demo", "--json"]);
    assert_eq!(again["broadcast_id"], 2);
    let reset = ok_json(dir.path(), &["demo", "--reset", "--json"]);
    assert_eq!(reset["broadcast_id"], 1);
    let jsonl = std::fs::read_to_string(outbox.join("telegram.jsonl")).unwrap();
    assert_eq!(
        jsonl.lines().count(),
        lines.len(),
        "the outbox was emptied by --reset"
    );
}

#[test]
fn demo_works_from_any_directory_and_prints_where_the_outbox_is() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("some/where");
    std::fs::create_dir_all(&nested).unwrap();
    let out = cli(&nested, &["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(
        stdout.contains("telegram.jsonl") && stdout.contains("email"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("telegram -> outbox"), "{stderr}");
}

fn fails(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let out = cli(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        error_lines.len(),
        1,
        "{args:?}: one error line expected: {stderr}"
    );
    assert!(error_lines[0].contains(needle), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn bad_input_exits_with_2_and_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_json(
        d,
        &[
            "template",
            "create",
            "--name",
            "ok",
            "--telegram-text",
            "Hi {{ first_name }}",
            "--json",
        ],
    );
    fails(
        d,
        &[
            "template",
            "create",
            "--name",
            "broken",
            "--telegram-text",
            "Hi\n{{ first_name",
        ],
        2,
        "telegram_text: syntax error at line 2, column",
    );
    fails(
        d,
        &[
            "template",
            "create",
            "--name",
            "typo",
            "--telegram-text",
            "Hi {{ frist_name }}",
        ],
        2,
        "unknown variable `frist_name`",
    );
    fails(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "x",
            "--template",
            "ok",
            "--channels",
            "telegram",
            "--filter",
            "{\"roles\": [\"judge\"}",
        ],
        2,
        "invalid audience filter: not valid JSON",
    );
    fails(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "x",
            "--template",
            "ok",
            "--channels",
            "telegram",
            "--filter",
            "{\"has_email\": \"yes\"}",
        ],
        2,
        "field `has_email`",
    );
    fails(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "x",
            "--template",
            "ok",
            "--role",
            "jduge",
        ],
        2,
        "unknown role `jduge`",
    );
    fails(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "x",
            "--template",
            "ok",
            "--channels",
            "both",
        ],
        2,
        "needs an e-mail subject",
    );
    fails(
        d,
        &["broadcast", "show", "4242"],
        2,
        "broadcast 4242 not found",
    );
    fails(
        d,
        &["broadcast", "launch", "4242"],
        2,
        "broadcast 4242 not found",
    );
    fails(
        d,
        &["template", "show", "nope"],
        2,
        "template `nope` not found",
    );
    fails(
        d,
        &["audience", "import", "--users", "missing.csv"],
        2,
        "cannot open missing.csv",
    );
    // Usage errors are clap's, also exit code 2.
    let out = cli(d, &["broadcast", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn csv_import_reports_the_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("users.csv"),
        "external_id,first_name,email\nu1,Ann,ann@example.org\nu2,Bob,bob@\nu3,Cy,cy@example.org\n",
    )
    .unwrap();
    fails(
        d,
        &["audience", "import", "--users", "users.csv"],
        2,
        "line 3, column `email`",
    );
    let listed = ok_json(d, &["audience", "list", "--json"]);
    assert_eq!(listed["total"], 0, "nothing from the file was written");
    // Three bad rows: every one is named.
    std::fs::write(
        d.join("users.csv"),
        "external_id,email,telegram_chat_id\nu1,ann@example.org,1\nu2,bob@,2\nu3,cy@example.org,0\nu1,dee@example.org,4\n",
    )
    .unwrap();
    let out = cli(d, &["audience", "import", "--users", "users.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for place in [
        "3 problems in users.csv",
        "users.csv line 3, column `email`",
        "users.csv line 4, column `telegram_chat_id`: 0 is not a valid Telegram chat id",
        "users.csv line 5, column `external_id`: `u1` is also on line 2",
    ] {
        assert!(stderr.contains(place), "{place}: {stderr}");
    }
    let listed = ok_json(d, &["audience", "list", "--json"]);
    assert_eq!(listed["total"], 0, "nothing from the file was written");
    std::fs::write(
        d.join("users.csv"),
        "external_id,first_name,email\nu1,Ann,ann@example.org\n",
    )
    .unwrap();
    let report = ok_json(d, &["audience", "import", "--users", "users.csv", "--json"]);
    assert_eq!(report["users"]["inserted"], 1);
}

#[test]
fn a_broadcast_runs_through_its_lifecycle_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_json(d, &["demo", "--json"]);
    let created = ok_json(
        d,
        &[
            "broadcast",
            "create",
            "--name",
            "Judges",
            "--template",
            "schedule-published",
            "--channels",
            "telegram-then-email",
            "--role",
            "judge",
            "--json",
        ],
    );
    let id = created["id"].as_i64().unwrap().to_string();
    assert_eq!(created["status"], "draft");
    let count = ok_json(d, &["broadcast", "count", &id, "--json"]);
    assert!(count["users"].as_u64().unwrap() > 0);
    let previews = ok_json(d, &["broadcast", "preview", &id, "--limit", "2", "--json"]);
    assert_eq!(previews.as_array().unwrap().len(), 2);
    let scheduled = ok_json(
        d,
        &[
            "broadcast",
            "schedule",
            &id,
            "--at",
            "2030-01-01T09:00:00Z",
            "--json",
        ],
    );
    assert_eq!(scheduled["status"], "scheduled");
    let draft = ok_json(d, &["broadcast", "schedule", &id, "--clear", "--json"]);
    assert_eq!(draft["status"], "draft");
    fails(d, &["broadcast", "resume", &id], 2, "is draft");
    let stats = ok_json(d, &["broadcast", "run", &id, "--yes", "--json"]);
    assert_eq!(stats["status"], "completed");
    let failed = ok_json(
        d,
        &[
            "broadcast",
            "recipients",
            &id,
            "--status",
            "failed",
            "--json",
        ],
    );
    assert_eq!(failed["total"], 0);
    fails(d, &["broadcast", "cancel", &id], 2, "is completed");
    let retried = ok_json(d, &["broadcast", "retry", &id, "--json"]);
    assert_eq!(retried["requeued_rows"], 0);
}
