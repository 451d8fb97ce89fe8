//! Each class of failure ends in its delivery status and error kind; blocked chats and bounced
//! addresses mark the user, so that the next broadcast skips them; transient failures are
//! retried.

use std::time::{Duration, Instant};

use broadcast_testkit::smtp::{Reply, SmtpSink};
use broadcast_testkit::telegram::ChatBehavior;
use serde_json::{Value, json};

use crate::delivery::template;
use crate::harness::{Cli, UserRow, count, fake_telegram, ids_by_external, outcome, row, user};

fn is_set(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

#[tokio::test]
async fn every_permanent_failure_gets_its_kind_and_flags_stop_the_next_broadcast() {
    let fake = fake_telegram().await;
    let sink = SmtpSink::start().await;
    let mut cli = Cli::new();
    cli.telegram(&fake).smtp(&sink, None);
    let people = vec![
        UserRow::new("e1", "Bea", "Blocked")
            .chat(6_000_001)
            .email("bea@example.org"),
        UserRow::new("e2", "Dan", "Deactivated")
            .chat(6_000_002)
            .email("dan@example.org"),
        UserRow::new("e3", "Nat", "Notfound")
            .chat(6_000_003)
            .email("nat@example.org"),
        UserRow::new("e4", "Pat", "Permanent")
            .chat(6_000_004)
            .email("pat@example.org"),
        UserRow::new("e5", "Bob", "Bounce")
            .chat(6_000_005)
            .email("bob.bounce@example.org"),
        UserRow::new("e6", "Ok", "Control")
            .chat(6_000_006)
            .email("ok@example.org"),
    ]
    .into_iter()
    .map(|u| u.city("Berlin"))
    .collect::<Vec<_>>();
    fake.set_chat(6_000_001, ChatBehavior::Blocked);
    fake.set_chat(6_000_002, ChatBehavior::Deactivated);
    fake.set_chat(6_000_003, ChatBehavior::NotFound);
    fake.set_chat(
        6_000_004,
        ChatBehavior::Error {
            code: 400,
            description: "Bad Request: not enough rights to send text messages to the chat".into(),
        },
    );
    sink.reject_recipient(
        "bob.bounce@example.org",
        Reply::new(
            550,
            "5.1.1 <bob.bounce@example.org>: Recipient address rejected: User unknown",
        ),
    );
    cli.import_users(&people).await;
    let ids = ids_by_external(&cli.users().await);
    let template = cli.create_template(&template("errors")).await;

    let first = cli.create_broadcast("First", template, "both", "{}").await;
    let printed = cli.run_broadcast(first).await.json();
    assert_eq!(printed["status"], "completed", "{printed}");
    let rows = cli.recipients(first).await;
    let tg = |ext: &str| outcome(row(&rows, ids[ext], "telegram"));
    let mail = |ext: &str| outcome(row(&rows, ids[ext], "email"));
    let failed = |kind: &str| ("failed".to_owned(), kind.to_owned(), 1);
    let sent = ("sent".to_owned(), String::new(), 1);
    assert_eq!(tg("e1"), failed("blocked"));
    assert_eq!(tg("e2"), failed("blocked"));
    assert_eq!(tg("e3"), failed("invalid_address"));
    assert_eq!(tg("e4"), failed("permanent"));
    assert_eq!(mail("e5"), failed("invalid_address"));
    for ext in ["e1", "e2", "e3", "e4", "e6"] {
        assert_eq!(mail(ext), sent, "e-mail to {ext}");
    }
    for ext in ["e5", "e6"] {
        assert_eq!(tg(ext), sent, "Telegram to {ext}");
    }
    let error = |ext: &str, channel: &str| {
        row(&rows, ids[ext], channel)["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        error("e1", "telegram").contains("blocked"),
        "{}",
        error("e1", "telegram")
    );
    assert!(
        error("e3", "telegram").contains("chat not found"),
        "{}",
        error("e3", "telegram")
    );
    assert!(
        error("e4", "telegram").contains("not enough rights"),
        "{}",
        error("e4", "telegram")
    );
    assert!(
        error("e5", "email").contains("550"),
        "{}",
        error("e5", "email")
    );
    // Exactly the accepted messages arrived, and the statistics say so.
    assert_eq!(fake.message_count(), 2);
    assert_eq!(sink.message_count(), 5);
    assert_eq!(sink.counts().rcpt_refused, 1);
    let stats = cli.stats(first).await;
    assert_eq!(count(&stats, &["stats", "by_error_kind", "blocked"]), 2);
    assert_eq!(
        count(&stats, &["stats", "by_error_kind", "invalid_address"]),
        2
    );
    assert_eq!(count(&stats, &["stats", "by_error_kind", "permanent"]), 1);
    assert_eq!(count(&stats, &["stats", "by_status", "failed"]), 5);
    assert_eq!(count(&stats, &["stats", "by_status", "sent"]), 7);

    // Blocked and deactivated users are marked, the bounced address too; nobody else.
    let users = cli.users().await;
    for ext in ["e1", "e2", "e3", "e4", "e5", "e6"] {
        let u = user(&users, ext);
        assert_eq!(
            is_set(&u["telegram_blocked_at"]),
            ["e1", "e2"].contains(&ext),
            "telegram_blocked_at of {ext}: {u}"
        );
        assert_eq!(
            is_set(&u["email_bounced_at"]),
            ext == "e5",
            "email_bounced_at of {ext}: {u}"
        );
    }

    // The fakes would now accept them; the next broadcast must not even try.
    fake.clear_chat(6_000_001);
    fake.clear_chat(6_000_002);
    sink.accept_recipient("bob.bounce@example.org");
    let second = cli.create_broadcast("Second", template, "both", "{}").await;
    assert_eq!(
        cli.run_broadcast(second).await.json()["status"],
        "completed"
    );
    let rows = cli.recipients(second).await;
    let skipped = |reason: &str| ("skipped".to_owned(), reason.to_owned(), 0);
    assert_eq!(
        outcome(row(&rows, ids["e1"], "telegram")),
        skipped("telegram_blocked")
    );
    assert_eq!(
        outcome(row(&rows, ids["e2"], "telegram")),
        skipped("telegram_blocked")
    );
    assert_eq!(
        outcome(row(&rows, ids["e5"], "email")),
        skipped("email_bounced")
    );
    assert!(fake.messages_to(6_000_001).is_empty());
    assert!(fake.messages_to(6_000_002).is_empty());
    assert!(sink.messages_to("bob.bounce@example.org").is_empty());
    // Not-found and other 400s do not flag the user: they are tried (and fail) again.
    assert_eq!(
        outcome(row(&rows, ids["e3"], "telegram")),
        ("failed".to_owned(), "invalid_address".to_owned(), 1)
    );
    assert_eq!(
        outcome(row(&rows, ids["e4"], "telegram")),
        ("failed".to_owned(), "permanent".to_owned(), 1)
    );
    let stats = cli.stats(second).await;
    assert_eq!(
        count(&stats, &["stats", "by_skip_reason", "telegram_blocked"]),
        2
    );
    assert_eq!(
        count(&stats, &["stats", "by_skip_reason", "email_bounced"]),
        1
    );
}

/// Runs a broadcast that needs retries; fails with a clear message when the retries are not
/// done within `deadline` (the retry backoff must follow `RETRY_BASE_SECONDS`).
async fn run_with_retries(cli: &Cli, id: i64, deadline: Duration) -> Value {
    let started = Instant::now();
    let proc = cli.spawn(&["broadcast", "run", &id.to_string(), "--yes", "--json"]);
    let run = cli.wait(proc, deadline).await;
    if run.code.is_none() {
        let rows = cli.recipients(id).await;
        panic!(
            "`broadcast run` still retrying after {:?} with RETRY_BASE_SECONDS={}: the \
             retry backoff does not follow RETRY_BASE_SECONDS (broadcast-cli app.rs \
             Config::from_env must read it into Settings::retry_base)\nrows: {rows:#?}",
            started.elapsed(),
            cli.var("RETRY_BASE_SECONDS").unwrap_or("-"),
        );
    }
    run.json()
}

#[tokio::test]
async fn telegram_server_errors_are_transient_and_retried() {
    let fake = fake_telegram().await;
    let mut cli = Cli::new();
    cli.telegram(&fake);
    cli.set("MAX_ATTEMPTS", "3");
    cli.set("RETRY_BASE_SECONDS", "1");
    // 500 twice, then accepted: delivered at the last allowed attempt. 500 every time: given up
    // after MAX_ATTEMPTS. (teloxide waits 10 s after each 5xx before reporting it.)
    fake.set_chat(6_100_001, ChatBehavior::FailTimes(2));
    fake.set_chat(6_100_002, ChatBehavior::FailTimes(1000));
    cli.import_users(&[
        UserRow::new("t1", "Tia", "Twice")
            .chat(6_100_001)
            .city("Roma"),
        UserRow::new("t2", "Al", "Always")
            .chat(6_100_002)
            .city("Roma"),
    ])
    .await;
    let ids = ids_by_external(&cli.users().await);
    let template = cli
        .create_template(&json!({
            "name": "transient-tg",
            "telegram_text": "Hello {{ first_name }}",
            "parse_mode": "plain",
        }))
        .await;
    let id = cli
        .create_broadcast("Retry", template, "telegram", "{}")
        .await;
    let printed = run_with_retries(&cli, id, Duration::from_secs(45)).await;
    assert_eq!(printed["status"], "completed", "{printed}");

    let rows = cli.recipients(id).await;
    let delivered = row(&rows, ids["t1"], "telegram");
    assert_eq!(
        outcome(delivered),
        ("sent".to_owned(), String::new(), 3),
        "{delivered}"
    );
    let given_up = row(&rows, ids["t2"], "telegram");
    assert_eq!(
        outcome(given_up),
        ("failed".to_owned(), "transient".to_owned(), 3),
        "{given_up}"
    );
    let error = given_up["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("Internal Server Error"), "{error}");
    assert_eq!(fake.messages_to(6_100_001).len(), 1, "delivered once");
    assert!(fake.messages_to(6_100_002).is_empty());
    // 2 + 1 requests for the first chat, 3 for the second: no attempt more, none less.
    assert_eq!(fake.request_count(), 6);
    let stats = cli.stats(id).await;
    assert_eq!(count(&stats, &["stats", "by_error_kind", "transient"]), 1);
}

#[tokio::test]
async fn smtp_4xx_is_transient_and_retried() {
    let sink = SmtpSink::start().await;
    let mut cli = Cli::new();
    cli.smtp(&sink, None);
    cli.set("MAX_ATTEMPTS", "3");
    cli.set("RETRY_BASE_SECONDS", "0.2");
    sink.reject_recipient_times(
        "later@example.org",
        Reply::new(451, "4.3.0 Try again later"),
        2,
    );
    sink.reject_recipient(
        "never@example.org",
        Reply::new(451, "4.7.1 Greylisted, try again later"),
    );
    cli.import_users(&[
        UserRow::new("m1", "Lea", "Later")
            .email("later@example.org")
            .city("Lyon"),
        UserRow::new("m2", "Ned", "Never")
            .email("never@example.org")
            .city("Lyon"),
    ])
    .await;
    let ids = ids_by_external(&cli.users().await);
    let template = cli
        .create_template(&json!({
            "name": "transient-mail",
            "email_subject": "Hello {{ first_name }}",
            "email_text": "Hello {{ first_name }}",
        }))
        .await;
    let id = cli.create_broadcast("Retry", template, "email", "{}").await;
    let printed = run_with_retries(&cli, id, Duration::from_secs(12)).await;
    assert_eq!(printed["status"], "completed", "{printed}");

    let rows = cli.recipients(id).await;
    let delivered = row(&rows, ids["m1"], "email");
    assert_eq!(
        outcome(delivered),
        ("sent".to_owned(), String::new(), 3),
        "{delivered}"
    );
    let given_up = row(&rows, ids["m2"], "email");
    assert_eq!(
        outcome(given_up),
        ("failed".to_owned(), "transient".to_owned(), 3),
        "{given_up}"
    );
    let error = given_up["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("451"), "{error}");
    assert_eq!(sink.messages_to("later@example.org").len(), 1);
    assert!(sink.messages_to("never@example.org").is_empty());
    assert_eq!(sink.counts().rcpt_refused, 5);
    // A transient failure never marks the address bounced.
    let users = cli.users().await;
    for ext in ["m1", "m2"] {
        assert!(
            !is_set(&user(&users, ext)["email_bounced_at"]),
            "{ext} marked bounced"
        );
    }
}
