//! The e-mail channel against the SMTP sink.

use std::sync::Arc;
use std::time::Duration;

use broadcast_channels::{EmailChannel, SmtpConfig, SmtpTls};
use broadcast_domain::{Channel, EmailAddress, FailureKind};
use broadcast_testkit::smtp::{Reply, SmtpSink, SmtpSinkConfig};
use secrecy::SecretString;

use crate::{closed_port, email};

const PASSWORD: &str = "s3cret-Passw0rd";

fn config(port: u16) -> SmtpConfig {
    let mut config = SmtpConfig::new(
        "127.0.0.1",
        EmailAddress::parse("news@broadcast.example.org").unwrap(),
    );
    config.port = Some(port);
    config.tls = SmtpTls::None;
    config.from_name = Some("Competition News".to_owned());
    config.timeout = Duration::from_secs(5);
    config
}

fn channel(sink: &SmtpSink) -> EmailChannel {
    EmailChannel::new(config(sink.port())).unwrap()
}

#[tokio::test]
async fn a_multipart_message_arrives_with_its_headers() {
    let sink = SmtpSink::start().await;
    let channel = channel(&sink);
    assert_eq!(
        channel.describe(),
        format!("smtp (127.0.0.1:{}, none)", sink.port())
    );
    let unsubscribe = "https://broadcast.example.org/unsubscribe/abcDEF123";
    let msg = email(
        "ann@example.org",
        Some("Hello Ann, registration closes tomorrow."),
        Some("<p>Hello <b>Ann</b>, registration closes tomorrow.</p>"),
        Some(unsubscribe),
    );
    let first = channel.send(&msg).await.unwrap();
    let second = channel.send(&msg).await.unwrap();
    let ids = [
        first.provider_message_id.unwrap(),
        second.provider_message_id.unwrap(),
    ];
    assert_ne!(ids[0], ids[1], "Message-IDs are unique");

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for (mail, id) in messages.iter().zip(&ids) {
        assert_eq!(mail.mail_from, "news@broadcast.example.org");
        assert_eq!(mail.rcpt_to, vec!["ann@example.org".to_owned()]);
        assert_eq!(mail.header("Message-ID").as_ref(), Some(id));
        assert!(
            id.starts_with('<') && id.ends_with("@broadcast.example.org>"),
            "{id}"
        );
        assert_eq!(
            mail.header("From").as_deref(),
            Some("\"Competition News\" <news@broadcast.example.org>")
        );
        assert_eq!(
            mail.header("To").as_deref(),
            Some("\"Ann Lee\" <ann@example.org>")
        );
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("Registration closes tomorrow")
        );
        assert_eq!(
            mail.header("List-Unsubscribe").as_deref(),
            Some(format!("<{unsubscribe}>").as_str())
        );
        assert_eq!(
            mail.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let content_type = mail.header("Content-Type").unwrap();
        assert!(
            content_type.starts_with("multipart/alternative"),
            "{content_type}"
        );
        let body = mail.body();
        let plain = body.find("Content-Type: text/plain").expect("a text part");
        let html = body.find("Content-Type: text/html").expect("an HTML part");
        assert!(plain < html, "plain text first, HTML last (preferred)");
        assert!(body.contains("Hello Ann, registration closes tomorrow."));
        assert!(body.contains("<p>Hello <b>Ann</b>, registration closes tomorrow.</p>"));
    }
}

#[tokio::test]
async fn a_text_only_message_is_a_single_part() {
    let sink = SmtpSink::start().await;
    let channel = channel(&sink);
    channel
        .send(&email("bob@example.org", Some("Just text."), None, None))
        .await
        .unwrap();
    let mail = &sink.messages()[0];
    let content_type = mail.header("Content-Type").unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(!mail.raw().contains("multipart"));
    assert!(mail.header("List-Unsubscribe").is_none());
    assert!(mail.body().contains("Just text."));
}

#[tokio::test]
async fn auth_is_used_and_the_password_never_shows() {
    let sink = SmtpSink::start_with(SmtpSinkConfig {
        credentials: Some(("mailer".to_owned(), PASSWORD.to_owned())),
        ..SmtpSinkConfig::default()
    })
    .await;
    let mut good = config(sink.port());
    good.username = Some("mailer".to_owned());
    good.password = Some(SecretString::from(PASSWORD.to_owned()));
    let channel = EmailChannel::new(good.clone()).unwrap();
    channel.verify().await.unwrap();
    channel
        .send(&email("ann@example.org", Some("hi"), None, None))
        .await
        .unwrap();
    assert_eq!(
        sink.messages()[0].authenticated_as.as_deref(),
        Some("mailer")
    );

    let mut wrong = good.clone();
    wrong.password = Some(SecretString::from("not-the-password".to_owned()));
    let wrong = EmailChannel::new(wrong).unwrap();
    let err = wrong
        .send(&email("ann@example.org", Some("hi"), None, None))
        .await
        .unwrap_err();
    // Wrong credentials are the channel's fault, not the recipient's.
    assert_eq!(err.kind, FailureKind::ChannelFault, "{err}");
    assert!(err.message.contains("535"), "{err}");

    let anonymous = EmailChannel::new(config(sink.port())).unwrap();
    let err2 = anonymous
        .send(&email("ann@example.org", Some("hi"), None, None))
        .await
        .unwrap_err();
    assert_eq!(err2.kind, FailureKind::ChannelFault, "{err2}");
    assert!(err2.message.contains("530"), "{err2}");

    for text in [
        err.to_string(),
        format!("{err:?}"),
        format!("{good:?}"),
        format!("{channel:?}"),
        channel.describe(),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains("not-the-password"),
            "{text}"
        );
    }
    assert_eq!(sink.message_count(), 1);
}

#[tokio::test]
async fn refusals_are_classified() {
    let sink = SmtpSink::start().await;
    sink.reject_recipient(
        "gone@example.org",
        Reply::new(550, "5.1.1 <gone@example.org>: Recipient address rejected"),
    );
    sink.reject_recipient("busy@example.org", Reply::new(451, "4.3.0 Try again later"));
    sink.reject_recipient("plain550@example.org", Reply::new(550, "No such user"));
    let channel = channel(&sink);
    let cases = [
        ("gone@example.org", FailureKind::InvalidAddress, "550"),
        ("busy@example.org", FailureKind::Transient, "451"),
        (
            "plain550@example.org",
            FailureKind::InvalidAddress,
            "No such user",
        ),
    ];
    for (to, kind, words) in cases {
        let err = channel
            .send(&email(to, Some("hi"), None, None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{to}: {err}");
        assert!(err.message.contains(words), "{to}: {err}");
    }
    // The pool recovers after each refusal: a good recipient still gets through.
    channel
        .send(&email("fine@example.org", Some("hi"), None, None))
        .await
        .unwrap();
    // A refusal at the end of DATA is about the message, not the address.
    sink.reject_all_at_data(Some(Reply::new(554, "5.7.1 Message rejected")));
    let err = channel
        .send(&email("fine@example.org", Some("hi"), None, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert_eq!(sink.message_count(), 1);
    assert_eq!(sink.counts().data_refused, 1);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let channel = EmailChannel::new(config(closed_port().await)).unwrap();
    let err = channel
        .send(&email("ann@example.org", Some("hi"), None, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
    assert_eq!(
        channel.verify().await.unwrap_err().kind,
        FailureKind::Transient
    );
}

#[tokio::test]
async fn concurrency_is_bounded_by_the_pool() {
    let sink = SmtpSink::start().await;
    let mut settings = config(sink.port());
    settings.pool_size = 3;
    settings.rate_per_sec = Some(100);
    let channel = Arc::new(EmailChannel::new(settings).unwrap());
    assert_eq!(channel.max_concurrency(), 3);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let channel = Arc::clone(&channel);
        tasks.spawn(async move {
            let to = format!("user{i}@example.org");
            channel
                .send(&email(&to, Some("hi"), Some("<p>hi</p>"), None))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(sink.message_count(), 40);
    let connections = sink.counts().connections;
    assert!(
        connections <= 3,
        "{connections} connections for a pool of 3"
    );
}

#[tokio::test]
async fn mail_rcpt_and_data_are_pipelined_when_the_server_offers_it() {
    let sink = SmtpSink::start().await;
    let mut settings = config(sink.port());
    settings.pool_size = 1;
    let channel = EmailChannel::new(settings).unwrap();
    let text = "First line.\n.A line that starts with a dot\n..and one with two\n.";
    for to in ["ann@example.org", "bob@example.org", "cy@example.org"] {
        channel
            .send(&email(to, Some(text), Some("<p>hi</p>"), None))
            .await
            .unwrap();
    }
    let counts = sink.counts();
    assert_eq!(counts.accepted, 3);
    assert_eq!(counts.connections, 1, "one pooled connection");
    // MAIL and RCPT of each message arrived before their replies were sent (DATA was last in
    // its group; the body came after the 354).
    assert_eq!(counts.pipelined, 2 * 3);
    let messages = sink.messages();
    let recipients: Vec<_> = messages.iter().map(|m| m.rcpt_to.join(",")).collect();
    assert_eq!(
        recipients,
        ["ann@example.org", "bob@example.org", "cy@example.org"]
    );
    for mail in &messages {
        assert_eq!(mail.mail_from, "news@broadcast.example.org");
        let body = mail.body();
        assert!(
            body.contains("\r\n.A line that starts with a dot\r\n..and one with two\r\n.\r\n"),
            "the dots arrive as written: {body}"
        );
        assert!(body.contains("<p>hi</p>"), "{body}");
    }
}

#[tokio::test]
async fn without_pipelining_commands_go_one_at_a_time() {
    let sink = SmtpSink::start_with(SmtpSinkConfig {
        no_pipelining: true,
        ..SmtpSinkConfig::default()
    })
    .await;
    let mut settings = config(sink.port());
    settings.pool_size = 1;
    let channel = EmailChannel::new(settings).unwrap();
    for to in ["ann@example.org", "bob@example.org"] {
        channel
            .send(&email(to, Some("hi"), Some("<p>hi</p>"), None))
            .await
            .unwrap();
    }
    let counts = sink.counts();
    assert_eq!((counts.accepted, counts.connections), (2, 1));
    assert_eq!(counts.pipelined, 0, "every command waited for its reply");
    assert_eq!(sink.messages_to("bob@example.org").len(), 1);
}

#[tokio::test]
async fn a_refused_recipient_is_classified_alike_with_and_without_pipelining() {
    let refusals = [
        (
            "gone@example.org",
            Reply::new(550, "5.1.1 <gone@example.org>: Recipient address rejected"),
            FailureKind::InvalidAddress,
        ),
        (
            "busy@example.org",
            Reply::new(451, "4.3.0 Try again later"),
            FailureKind::Transient,
        ),
        (
            "policy@example.org",
            Reply::new(550, "5.7.1 Relaying denied"),
            FailureKind::Permanent,
        ),
    ];
    let mut errors = Vec::new();
    for no_pipelining in [false, true] {
        let sink = SmtpSink::start_with(SmtpSinkConfig {
            no_pipelining,
            ..SmtpSinkConfig::default()
        })
        .await;
        for (to, reply, _) in &refusals {
            sink.reject_recipient(to, reply.clone());
        }
        let mut settings = config(sink.port());
        settings.pool_size = 1;
        let channel = EmailChannel::new(settings).unwrap();
        for (i, (to, _, kind)) in refusals.iter().enumerate() {
            let err = channel
                .send(&email(to, Some("hi"), None, None))
                .await
                .unwrap_err();
            assert_eq!(
                err.kind, *kind,
                "{to} (pipelining: {}): {err}",
                !no_pipelining
            );
            errors.push((no_pipelining, to, err.kind, err.message));
            // The next message on the pool gets through, on a new connection: the refused
            // one (the first, or the one the previous good message left idle) is not reused.
            channel
                .send(&email("fine@example.org", Some("hi"), None, None))
                .await
                .unwrap();
            assert_eq!(sink.counts().connections, i as u64 + 2, "{to}");
        }
        assert_eq!(sink.messages_to("fine@example.org").len(), refusals.len());
        assert_eq!(sink.counts().rcpt_refused, refusals.len() as u64);
        assert_eq!(sink.counts().pipelined > 0, !no_pipelining);
    }
    let (pipelined, one_at_a_time) = errors.split_at(refusals.len());
    for ((_, to, kind, message), (_, _, kind2, message2)) in pipelined.iter().zip(one_at_a_time) {
        assert_eq!((kind, message), (kind2, message2), "{to}");
    }
}
