//! A broadcast over both real channels: the fakes receive exactly what was rendered, one message
//! per reachable user, and the statistics count what they received.

use std::collections::{BTreeMap, BTreeSet};

use broadcast_channels::SignedUnsubscribeLinks;
use broadcast_domain::UnsubscribeLinks as _;
use broadcast_testkit::smtp::SmtpSink;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::{
    APP_NAME, Cli, FROM_EMAIL, FROM_NAME, PUBLIC_BASE_URL, UserRow, count, fake_telegram,
    ids_by_external, outcome, row,
};
use crate::mime;

/// Telegram's HTML escaping of user data.
pub(crate) fn telegram_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// E-mail HTML escaping of user data.
fn email_html(s: &str) -> String {
    telegram_html(s).replace('\'', "&#39;")
}

/// The unsubscribe URL the binary must put in a user's e-mail.
fn unsubscribe_url(cli: &Cli, user_id: i64) -> String {
    let links = SignedUnsubscribeLinks::new(
        Some(url::Url::parse(PUBLIC_BASE_URL).unwrap()),
        SecretString::from(cli.var("ADMIN_SECRET_KEY").unwrap().to_owned()),
    )
    .unwrap();
    let url = links.url_for(user_id).unwrap();
    assert!(url.starts_with("http://127.0.0.1:9/unsubscribe/"), "{url}");
    url
}

fn audience() -> Vec<UserRow> {
    vec![
        UserRow::new("d1", "Ann", "Lee")
            .email("ann.lee@example.org")
            .chat(5_550_001)
            .city("Berlin"),
        // Markup in user data must arrive as text.
        UserRow::new("d2", "<b>Max</b>", "Mustermann & Söhne")
            .email("max@example.org")
            .chat(5_550_002)
            .city("München"),
        // Non-ASCII everywhere: encoded words in the subject, encoded body parts.
        UserRow::new("d3", "Олена", "Шевченко")
            .email("olena@example.com")
            .chat(5_550_003)
            .city("Київ"),
        UserRow::new("d4", "Pieter", "van der Meer")
            .chat(5_550_004)
            .city("Utrecht"),
        UserRow::new("d5", "Rosa", "Ortega")
            .email("rosa@example.es")
            .city("Valencia"),
        UserRow::new("d6", "Thomas", "Berger")
            .email("thomas@example.de")
            .chat(5_550_006)
            .city("Wien")
            .blocked(),
        UserRow::new("d7", "Claire", "Fontaine")
            .email("claire@example.fr")
            .chat(5_550_007)
            .city("Paris")
            .unsubscribed(),
    ]
}

pub(crate) fn template(name: &str) -> Value {
    json!({
        "name": name,
        "description": "channel integration test",
        "telegram_text": "Hi <b>{{ first_name }}</b> from {{ city }}!\n{{ broadcast_name }} — {{ app_name }}",
        "parse_mode": "html",
        "link_preview": false,
        "email_subject": "{{ broadcast_name }} for {{ full_name }}",
        "email_html": "<p>Hello <b>{{ first_name }}</b> {{ last_name }},</p>\n<p>{{ broadcast_name }} from {{ city }}.</p>\n<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "email_text": "Hello {{ first_name }} {{ last_name }},\n\n{{ broadcast_name }} from {{ city }}.\n\nUnsubscribe: {{ unsubscribe_url }}",
    })
}

#[tokio::test]
async fn a_broadcast_over_both_channels_delivers_exactly_what_was_rendered() {
    let fake = fake_telegram().await;
    let sink = SmtpSink::start().await;
    let mut cli = Cli::new();
    cli.telegram(&fake).smtp(&sink, None);
    let people = audience();
    cli.import_users(&people).await;
    let ids = ids_by_external(&cli.users().await);
    let template = cli.create_template(&template("spring-news")).await;
    let name = "Spring news & more";
    let id = cli.create_broadcast(name, template, "both", "{}").await;

    let run = cli.run_broadcast(id).await;
    let printed = run.json();
    assert_eq!(printed["status"], "completed", "{printed}");
    let telegram_line = format!("-> telegram (127.0.0.1:{})", fake.addr().port());
    let email_line = format!("-> smtp (127.0.0.1:{}, none)", sink.port());
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("telegram") && l.ends_with(&telegram_line)),
        "no `telegram {telegram_line}` line on stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("email") && l.ends_with(&email_line)),
        "no `email {email_line}` line on stderr:\n{}",
        run.stderr
    );

    let rows = cli.recipients(id).await;
    let reachable_tg: Vec<&UserRow> = people
        .iter()
        .filter(|u| u.chat.is_some() && !u.telegram_blocked)
        .collect();
    let reachable_mail: Vec<&UserRow> = people
        .iter()
        .filter(|u| u.email.is_some() && !u.email_unsubscribed)
        .collect();

    // Telegram: one message per reachable chat, the rendered text, HTML, no link preview.
    let messages = fake.messages();
    let chats: Vec<i64> = messages.iter().map(|m| m.chat_id).collect();
    let unique: BTreeSet<i64> = chats.iter().copied().collect();
    assert_eq!(
        unique.len(),
        chats.len(),
        "a chat got two messages: {chats:?}"
    );
    assert_eq!(
        unique,
        reachable_tg.iter().map(|u| u.chat.unwrap()).collect(),
        "chats reached"
    );
    for u in &reachable_tg {
        let chat = u.chat.unwrap();
        let m = messages.iter().find(|m| m.chat_id == chat).unwrap();
        let expected = format!(
            "Hi <b>{}</b> from {}!\n{} — {APP_NAME}",
            telegram_html(&u.first_name),
            telegram_html(u.city.as_deref().unwrap()),
            telegram_html(name)
        );
        assert_eq!(m.text, expected, "text sent to {}", u.external_id);
        assert_eq!(m.parse_mode.as_deref(), Some("HTML"));
        assert!(m.link_preview_disabled, "link previews are off by default");
        assert!(!m.paid_broadcast);
        let r = row(&rows, ids[&u.external_id], "telegram");
        assert_eq!(outcome(r), ("sent".into(), String::new(), 1), "{r}");
        assert_eq!(r["address"], chat.to_string());
        assert_eq!(
            r["provider_message_id"],
            format!("{chat}:{}", m.message_id),
            "{r}"
        );
    }

    // E-mail: one message per reachable address, both parts as rendered, RFC 8058 headers.
    let mails = sink.messages();
    assert_eq!(mails.len(), reachable_mail.len(), "one e-mail per address");
    let mut message_ids = BTreeSet::new();
    for u in &reachable_mail {
        let address = u.email.as_deref().unwrap();
        let to_user = sink.messages_to(address);
        assert_eq!(to_user.len(), 1, "e-mails to {address}");
        let mail = &to_user[0];
        let user_id = ids[&u.external_id];
        let city = u.city.as_deref().unwrap();
        assert_eq!(mail.rcpt_to, vec![address.to_owned()]);
        assert_eq!(mail.mail_from, FROM_EMAIL);
        assert_eq!(
            mime::header(mail, "From").as_deref(),
            Some(format!("\"{FROM_NAME}\" <{FROM_EMAIL}>").as_str())
        );
        assert!(
            mime::header(mail, "To")
                .unwrap()
                .ends_with(&format!("<{address}>")),
            "{:?}",
            mail.header("To")
        );
        assert_eq!(
            mime::header(mail, "Subject").unwrap(),
            format!("{name} for {}", u.full_name()),
            "subject to {address}"
        );
        let url = unsubscribe_url(&cli, user_id);
        assert_eq!(
            mail.header("List-Unsubscribe").as_deref(),
            Some(format!("<{url}>").as_str())
        );
        assert_eq!(
            mail.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(
            mail.header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative"),
            "{:?}",
            mail.header("Content-Type")
        );
        let parts = mime::parts(mail);
        let kinds: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
        assert_eq!(kinds, ["text/plain", "text/html"], "plain first, HTML last");
        assert_eq!(
            parts[0].text,
            format!(
                "Hello {} {},\n\n{name} from {city}.\n\nUnsubscribe: {url}",
                u.first_name, u.last_name
            ),
            "text part to {address}"
        );
        assert_eq!(
            parts[1].text,
            format!(
                "<p>Hello <b>{}</b> {},</p>\n<p>{} from {}.</p>\n<p><a href=\"{}\">Unsubscribe</a></p>",
                email_html(&u.first_name),
                email_html(&u.last_name),
                email_html(name),
                email_html(city),
                email_html(&url)
            ),
            "HTML part to {address}"
        );
        let message_id = mail.header("Message-ID").expect("a Message-ID");
        assert!(
            message_id.starts_with('<') && message_id.ends_with("@channels.example.org>"),
            "{message_id}"
        );
        assert!(message_ids.insert(message_id.clone()), "Message-IDs repeat");
        let r = row(&rows, user_id, "email");
        assert_eq!(outcome(r), ("sent".into(), String::new(), 1), "{r}");
        assert_eq!(r["provider_message_id"], message_id, "{r}");
    }

    // Everyone else is skipped with the reason, and nothing went to them.
    for (ext, channel, reason) in [
        ("d5", "telegram", "no_telegram"),
        ("d6", "telegram", "telegram_blocked"),
        ("d4", "email", "no_email"),
        ("d7", "email", "email_unsubscribed"),
    ] {
        let r = row(&rows, ids[ext], channel);
        assert_eq!(outcome(r), ("skipped".into(), reason.into(), 0), "{r}");
    }
    assert!(fake.messages_to(5_550_006).is_empty());
    assert!(sink.messages_to("claire@example.fr").is_empty());
    assert_eq!(rows.len(), 2 * people.len(), "one row per user and channel");

    // The statistics count what the fakes received.
    let stats = cli.stats(id).await;
    assert_eq!(stats["stats"], printed["stats"], "run and stats agree");
    assert_eq!(
        count(&stats, &["stats", "by_channel", "telegram", "sent"]),
        fake.message_count() as u64
    );
    assert_eq!(
        count(&stats, &["stats", "by_channel", "email", "sent"]),
        sink.message_count()
    );
    assert_eq!(count(&stats, &["stats", "by_status", "skipped"]), 4);
    assert_eq!(count(&stats, &["stats", "by_status", "failed"]), 0);
    assert_eq!(count(&stats, &["stats", "total"]), rows.len() as u64);
    let reasons: BTreeMap<String, u64> =
        serde_json::from_value(stats["stats"]["by_skip_reason"].clone()).unwrap();
    assert_eq!(
        reasons,
        BTreeMap::from(
            [
                "email_unsubscribed",
                "no_email",
                "no_telegram",
                "telegram_blocked"
            ]
            .map(|r| (r.to_owned(), 1))
        )
    );
}
