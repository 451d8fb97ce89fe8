//! Runs the real `migrate` binary in a fresh directory with no database configured.

use std::path::Path;
use std::process::{Command, Output};

const MIGRATIONS: [&str; 16] = [
    "m20261128_000001_create_audience",
    "m20261128_000002_create_templates",
    "m20261128_000003_create_broadcasts",
    "m20261128_000004_create_admin",
    "m20261128_000005_create_send_budgets",
    "m20261128_000006_ledger_counters",
    "m20261203_000007_uncertain_sends",
    "m20261203_000008_folded_keys",
    "m20261203_000009_budget_moves",
    "m20261203_000010_probes_and_holds",
    "m20261204_000011_counted_sends",
    "m20261204_000012_admin_sessions",
    "m20261205_000013_budget_owed_moves",
    "m20261205_000014_media_library",
    "m20261205_000015_template_media",
    "m20261205_000016_template_buttons",
];

fn migrate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run migrate")
}

/// Runs `migrate args`, asserts success and returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = migrate(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "migrate {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// The status of each migration, in order, as printed by `migrate status`.
fn statuses(dir: &Path) -> Vec<(String, String)> {
    ok(dir, &["status"])
        .lines()
        .filter(|line| !line.starts_with("database:"))
        .map(|line| {
            let (status, name) = line.split_once(' ').expect("status line");
            (name.trim().to_owned(), status.to_owned())
        })
        .collect()
}

fn expected(applied: usize) -> Vec<(String, String)> {
    MIGRATIONS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let status = if i < applied { "applied" } else { "pending" };
            ((*name).to_owned(), status.to_owned())
        })
        .collect()
}

#[test]
fn up_down_status_and_fresh_on_the_default_sqlite_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    let all = MIGRATIONS.len();
    let up = ok(dir, &["up"]);
    assert!(up.contains("sqlite://data/broadcast.db"), "{up}");
    assert!(up.contains(&format!("applied {all} migration(s)")), "{up}");
    assert!(dir.join("data/broadcast.db").is_file());
    assert_eq!(statuses(dir), expected(all));

    // Up again is a no-op.
    assert!(ok(dir, &["up"]).contains("applied 0 migration(s)"));

    let down = ok(dir, &["down"]);
    assert!(down.contains("rolled back 1 migration(s)"), "{down}");
    assert_eq!(statuses(dir), expected(all - 1));

    ok(dir, &["down", "-n", "5"]);
    assert_eq!(statuses(dir), expected(all - 6));

    let fresh = ok(dir, &["fresh"]);
    assert!(
        fresh.contains(&format!("applied {all} migration(s)")),
        "{fresh}"
    );
    assert_eq!(statuses(dir), expected(all));

    ok(dir, &["down", "--steps", &all.to_string()]);
    assert_eq!(statuses(dir), expected(0));
}

#[test]
fn database_url_flag_and_env_are_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    ok(
        dir,
        &["--database-url", "sqlite://nested/dir/flag.db", "up"],
    );
    assert!(dir.join("nested/dir/flag.db").is_file());

    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["status"])
        .current_dir(dir)
        .env("DATABASE_URL", "sqlite://env.db")
        .output()
        .expect("run migrate");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending  m20261128_000001"));
    assert!(dir.join("env.db").is_file());
    assert!(
        !dir.join("data").exists(),
        "the default database was not used"
    );
}

/// Asserts that `migrate args` fails with exit code `code` and a single `error: ...` line.
fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = migrate(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "migrate {args:?}: {stderr}");
    stderr
}

#[test]
fn bad_urls_give_one_line_errors_without_passwords() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    let stderr = fails(dir, &["--database-url", "mysql://x/y", "up"], 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("sqlite:// or postgres://"), "{stderr}");

    // Nothing listens on port 1.
    let stderr = fails(
        dir,
        &[
            "--database-url",
            "postgres://bob:hunter2@127.0.0.1:1/db",
            "status",
        ],
        1,
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot connect to postgres://bob:***@127.0.0.1:1/db"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let stderr = fails(
        dir,
        &["--database-url", "sqlite:///proc/no/such/dir/x.db", "up"],
        1,
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn bad_usage_exits_with_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    fails(dir.path(), &["sideways"], 2);
    fails(dir.path(), &["down", "-n", "0"], 2);
    fails(dir.path(), &[], 2);
    assert!(
        !dir.path().join("data").exists(),
        "bad usage touched the database"
    );
}

#[tokio::test]
async fn up_status_down_and_fresh_on_postgres() {
    let Some(db) = broadcast_testkit::TestDb::postgres_unmigrated().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let url = db.url();
    let status = |dir: &Path| {
        ok(dir, &["--database-url", url, "status"])
            .lines()
            .filter(|line| line.starts_with("applied"))
            .count()
    };

    assert_eq!(status(dir), 0);
    ok(dir, &["--database-url", url, "up"]);
    assert_eq!(status(dir), MIGRATIONS.len());
    ok(dir, &["--database-url", url, "down", "-n", "6"]);
    assert_eq!(status(dir), MIGRATIONS.len() - 6);
    ok(dir, &["--database-url", url, "fresh"]);
    assert_eq!(status(dir), MIGRATIONS.len());
    assert!(!dir.join("data").exists());
}
