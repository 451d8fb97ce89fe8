//! Neither the bot token nor the SMTP password (nor the unsubscribe signing key) appears in
//! anything the binary prints, with debug logs on (trace for the failing runs), when sending
//! works and when it fails: wrong password, wrong token, unreachable servers, a malformed token. The binary says at start
//! which implementation each channel uses.
//!
//! Every run of every test in this binary is also checked by the harness
//! ([`crate::harness::Cli::wait`]); this test adds the runs that fail.

use broadcast_testkit::smtp::{SmtpSink, SmtpSinkConfig};
use serde_json::json;

use crate::harness::{
    Cli, Run, UserRow, assert_no_secret, closed_port, fake_telegram, ids_by_external, outcome,
    random_hex, random_token, row,
};

/// One user on both channels, a template for both, and a broadcast to them; returns its id.
async fn prepare(cli: &Cli) -> i64 {
    cli.import_users(&[UserRow::new("s1", "Sam", "Secret")
        .chat(7_300_001)
        .email("sam@example.org")
        .city("Oslo")])
        .await;
    let template = cli
        .create_template(&json!({
            "name": "secrets",
            "telegram_text": "Hi {{ first_name }}",
            "parse_mode": "plain",
            "email_subject": "Hi {{ first_name }}",
            "email_text": "Hi {{ first_name }}, {{ unsubscribe_url }}",
        }))
        .await;
    cli.create_broadcast("Secrets", template, "both", "{}")
        .await
}

/// The channel lines printed at start: `telegram -> ...` and `email -> ...`.
fn channel_lines(run: &Run) -> (String, String) {
    let find = |kind: &str| {
        run.stderr
            .lines()
            .find(|l| {
                l.split_whitespace().next() == Some(kind)
                    && l.split_whitespace().nth(1) == Some("->")
            })
            .unwrap_or_else(|| panic!("no `{kind} -> ...` line on stderr:\n{}", run.stderr))
            .to_owned()
    };
    (find("telegram"), find("email"))
}

async fn sink_with_login(password: &str) -> SmtpSink {
    SmtpSink::start_with(SmtpSinkConfig {
        credentials: Some(("mailer".into(), password.into())),
        ..SmtpSinkConfig::default()
    })
    .await
}

#[tokio::test]
async fn secrets_never_appear_in_what_the_binary_prints() {
    let mut everything = String::new();
    let mut secrets = Vec::new();

    // 1. Everything right, with SMTP AUTH.
    let password = format!("pw-{}", random_hex(24));
    let fake = fake_telegram().await;
    let sink = sink_with_login(&password).await;
    let mut ok = Cli::new();
    ok.telegram(&fake).smtp(&sink, Some(("mailer", &password)));
    let id = prepare(&ok).await;
    let run = ok.run_broadcast(id).await;
    let (telegram, email) = channel_lines(&run);
    assert!(
        telegram.ends_with(&format!("-> telegram (127.0.0.1:{})", fake.addr().port())),
        "{telegram}"
    );
    assert!(
        email.ends_with(&format!("-> smtp (127.0.0.1:{}, none)", sink.port())),
        "{email}"
    );
    assert_eq!(fake.message_count(), 1);
    assert_eq!(
        sink.messages()[0].authenticated_as.as_deref(),
        Some("mailer")
    );
    ok.recipients(id).await;
    everything.push_str(&ok.transcript());
    secrets.extend_from_slice(ok.secrets());

    // 2. A wrong bot token and a wrong SMTP password: refused, and said so without them. They
    //    are faults of the channels: the broadcast pauses and the rows stay pending, untried.
    let fake = fake_telegram().await;
    let real_password = format!("pw-{}", random_hex(24));
    let sink = sink_with_login(&real_password).await;
    let mut wrong = Cli::new();
    wrong.set("MAX_ATTEMPTS", "1");
    // Even trace-level logs (reqwest, hyper, teloxide) must not show them.
    wrong.set("LOG", "trace");
    wrong.set("TELEGRAM_API_URL", &fake.api_url());
    wrong.secret("TELEGRAM_BOT_TOKEN", &random_token());
    wrong.watch_secret("fake's real token", fake.token());
    wrong.smtp(
        &sink,
        Some(("mailer", &format!("wrong-{}", random_hex(20)))),
    );
    wrong.watch_secret("sink's real password", &real_password);
    let id = prepare(&wrong).await;
    // Exit code 3: the run ended paused, delivering nothing; stdout and the error line say so.
    let run = wrong.run_broadcast_ending(id, 3).await;
    channel_lines(&run);
    let printed = run.document();
    assert_eq!(
        (&printed["status"], &printed["outcome"]),
        (&"paused".into(), &"paused".into()),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "error: broadcast {id} is paused (paused: the telegram channel failed"
        )) && run.stderr.contains("broadcast-cli broadcast resume"),
        "{}",
        run.stderr
    );
    let rows = wrong.recipients(id).await;
    let users = ids_by_external(&wrong.users().await);
    let tg = row(&rows, users["s1"], "telegram");
    let mail = row(&rows, users["s1"], "email");
    assert_eq!(outcome(tg), ("pending".into(), String::new(), 0), "{tg}");
    assert!(
        tg["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid bot token"),
        "{tg}"
    );
    assert_eq!(
        outcome(mail),
        ("pending".into(), String::new(), 0),
        "{mail}"
    );
    assert!(
        mail["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("535"),
        "{mail}"
    );
    assert_eq!(fake.message_count(), 0);
    assert_eq!(sink.counts().auth_failed, 1);
    assert_eq!(sink.message_count(), 0);
    everything.push_str(&wrong.transcript());
    secrets.extend_from_slice(wrong.secrets());

    // 3. Nothing listens: connection errors carry the request URL, which holds the token.
    let mut down = Cli::new();
    down.set("MAX_ATTEMPTS", "1");
    down.set("LOG", "trace");
    down.set(
        "TELEGRAM_API_URL",
        &format!("http://127.0.0.1:{}", closed_port()),
    );
    down.secret("TELEGRAM_BOT_TOKEN", &random_token());
    down.set("SMTP_HOST", "127.0.0.1");
    down.set("SMTP_PORT", &closed_port().to_string());
    down.set("SMTP_TLS", "none");
    down.set("SMTP_USERNAME", "mailer");
    down.secret("SMTP_PASSWORD", &format!("pw-{}", random_hex(24)));
    let id = prepare(&down).await;
    // Every row failed: completed with nothing delivered, exit code 3.
    let run = down.run_broadcast_ending(id, 3).await;
    assert_eq!(run.document()["outcome"], "nothing_delivered");
    assert!(
        run.stderr.contains(&format!(
            "broadcast {id} completed without delivering any message"
        )),
        "{}",
        run.stderr
    );
    let rows = down.recipients(id).await;
    for r in &rows {
        assert_eq!(outcome(r), ("failed".into(), "transient".into(), 1), "{r}");
    }
    let tg_error = rows
        .iter()
        .find(|r| r["channel"] == "telegram")
        .and_then(|r| r["last_error"].as_str())
        .unwrap_or_default();
    // The request URL is in the message (the token's usual way out), without the token.
    assert!(
        tg_error.contains("network error") && tg_error.contains("/SendMessage"),
        "{tg_error}"
    );
    everything.push_str(&down.transcript());
    secrets.extend_from_slice(down.secrets());

    // 4. A malformed token is refused at start without repeating it.
    let mut malformed = Cli::new();
    let bad_token = format!("12345:{} {}", random_hex(16), random_hex(16));
    malformed.secret("TELEGRAM_BOT_TOKEN", &bad_token);
    malformed.watch_secret("half of the malformed token", &bad_token[6..22]);
    let run = malformed.run(&["broadcast", "list", "--json"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("bot token must look like"),
        "{}",
        run.stderr
    );
    everything.push_str(&malformed.transcript());
    secrets.extend_from_slice(malformed.secrets());

    // 5. Nothing configured: both channels are outboxes, and the binary says so.
    let outbox = Cli::new();
    let id = prepare(&outbox).await;
    let run = outbox.run_broadcast(id).await;
    let (telegram, email) = channel_lines(&run);
    let dir = outbox.dir().join("outbox");
    assert!(telegram.contains("-> outbox ("), "{telegram}");
    assert!(email.contains("-> outbox ("), "{email}");
    assert!(telegram.contains(&dir.display().to_string()), "{telegram}");
    everything.push_str(&outbox.transcript());
    secrets.extend_from_slice(outbox.secrets());

    // The whole transcript, once more, with the secrets of every run; and it is the real thing:
    // debug logs and the failures above are in it.
    assert_no_secret(&everything, &secrets, "the output of the runs");
    assert!(everything.contains("DEBUG"), "LOG=debug shows debug events");
    for expected in ["Invalid bot token", "535", "network error"] {
        assert!(
            everything.contains(expected),
            "`{expected}` is reported somewhere"
        );
    }
    assert!(secrets.len() >= 8, "{} secrets watched", secrets.len());
}
