//! Rendering: every variable, empty optional values, attributes, missing parts, the catalogue.

use broadcast_domain::{ParseMode, Renderer, TemplateErrorKind, TemplatePart};
use broadcast_render::{TeraRenderer, catalogue, sample_recipient};
use expect_test::expect;

use super::*;

/// One line per catalogue variable: `name=value`.
fn every_variable_template() -> String {
    catalogue()
        .iter()
        .filter(|v| v.name != "attributes")
        .map(|v| format!("{0}={{{{ {0} }}}}\n", v.name))
        .chain(["attributes.shirt_size={{ attributes.shirt_size }}\n".to_owned()])
        .collect()
}

#[test]
fn every_variable_renders_for_a_complete_recipient() {
    let text = render_telegram(
        &telegram(&every_variable_template(), ParseMode::Plain),
        &sample_recipient(),
    )
    .unwrap();
    expect![[r#"
        first_name=Anna
        last_name=Schmidt
        full_name=Anna Schmidt
        username=anna_s
        email=anna.schmidt@example.org
        telegram_id=123456789
        language=de
        country=Germany
        city=Berlin
        competition_name=Spring Open 2026
        competition_date=2026-04-18
        role=participant
        registration_status=confirmed
        broadcast_name=Registration reminder
        current_date=2026-03-01
        app_name=Broadcast
        unsubscribe_url=https://example.org/u/1
        attributes.shirt_size=M
    "#]]
    .assert_eq(&text);
}

#[test]
fn every_variable_renders_in_every_email_part() {
    let src = every_variable_template();
    let content = email(&src, Some(&src), Some(&src));
    let message = compile(&content)
        .render_email(&sample_recipient(), &env(), Some("https://example.org/u/1"))
        .unwrap();
    let telegram_text =
        render_telegram(&telegram(&src, ParseMode::Plain), &sample_recipient()).unwrap();
    // No value of the sample holds an HTML special character, so both bodies read the same.
    assert_eq!(message.text.as_deref(), Some(telegram_text.as_str()));
    assert_eq!(message.html, message.text);
    expect![[r#"first_name=Anna last_name=Schmidt full_name=Anna Schmidt username=anna_s email=anna.schmidt@example.org telegram_id=123456789 language=de country=Germany city=Berlin competition_name=Spring Open 2026 competition_date=2026-04-18 role=participant registration_status=confirmed broadcast_name=Registration reminder current_date=2026-03-01 app_name=Broadcast unsubscribe_url=https://example.org/u/1 attributes.shirt_size=M"#]]
    .assert_eq(&message.subject);
}

#[test]
fn missing_optional_values_render_as_empty_strings() {
    let src: String = catalogue()
        .iter()
        .filter(|v| v.name != "attributes")
        .map(|v| format!("{0}=[{{{{ {0} }}}}]\n", v.name))
        .collect();
    let text = compile(&telegram(&src, ParseMode::Plain))
        .render_telegram(&bare_recipient(), &env(), None)
        .unwrap()
        .text;
    expect![[r#"
        first_name=[Bo]
        last_name=[]
        full_name=[Bo]
        username=[]
        email=[]
        telegram_id=[]
        language=[]
        country=[]
        city=[]
        competition_name=[]
        competition_date=[]
        role=[]
        registration_status=[]
        broadcast_name=[Registration reminder]
        current_date=[2026-03-01]
        app_name=[Broadcast]
        unsubscribe_url=[]
    "#]]
    .assert_eq(&text);
}

#[test]
fn empty_optional_values_are_falsy_in_conditions() {
    let src = "{% if city %}in {{ city }}{% else %}somewhere{% endif %}, \
               {% if competition_name %}at {{ competition_name }}{% else %}no event{% endif %}";
    let content = telegram(src, ParseMode::Plain);
    assert_eq!(
        render_telegram(&content, &sample_recipient()).unwrap(),
        "in Berlin, at Spring Open 2026"
    );
    assert_eq!(
        render_telegram(&content, &bare_recipient()).unwrap(),
        "somewhere, no event"
    );
}

#[test]
fn attributes_are_reachable_by_key_with_a_default_for_missing_keys() {
    let mut r = sample_recipient();
    r.user.attributes = serde_json::from_str(
        r#"{"shirt_size": "L", "team name": "Blue <Owls>", "points": 41, "meta": {"level": "gold"}, "tags": ["a", "b"]}"#,
    )
    .unwrap();
    let src = "size={{ attributes.shirt_size }}\n\
               team={{ attributes[\"team name\"] }}\n\
               next={{ attributes.points + 1 }}\n\
               level={{ attributes.meta.level }}\n\
               tags={{ attributes.tags | join(sep=\",\") }}\n\
               diet=[{{ attributes.diet | default(value=\"\") }}]\n\
               {% if attributes.vip is defined %}vip{% else %}regular{% endif %}";
    let text = render_telegram(&telegram(src, ParseMode::Html), &r).unwrap();
    expect![[r#"
        size=L
        team=Blue &lt;Owls&gt;
        next=42
        level=gold
        tags=a,b
        diet=[]
        regular"#]]
    .assert_eq(&text);
}

#[test]
fn a_missing_attribute_without_default_is_a_render_error_with_a_hint() {
    let content = telegram(
        "Hi {{ first_name }},\nyour size: {{ attributes.shirt_size }}",
        ParseMode::Plain,
    );
    let err = render_telegram(&content, &bare_recipient()).unwrap_err();
    assert_eq!(err.part, TemplatePart::TelegramText);
    expect![[r#"telegram_text: render error: line 2, column 26: Field `shirt_size` is not defined. (for a value some users lack, write `| default(value="")` after it)"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn one_compiled_template_renders_each_recipient_with_their_own_data() {
    let template = compile(&telegram("Hello {{ first_name }}!", ParseMode::Plain));
    let texts: Vec<String> = ["Ann", "Bob", "Zoë"]
        .into_iter()
        .map(|n| {
            template
                .render_telegram(&named(n), &env(), None)
                .unwrap()
                .text
        })
        .collect();
    assert_eq!(texts, ["Hello Ann!", "Hello Bob!", "Hello Zoë!"]);
}

#[test]
fn parse_mode_and_link_preview_come_from_the_template() {
    let mut content = telegram("*Hi*", ParseMode::MarkdownV2);
    content.link_preview = true;
    let message = compile(&content)
        .render_telegram(&sample_recipient(), &env(), None)
        .unwrap();
    assert_eq!(message.parse_mode, ParseMode::MarkdownV2);
    assert!(message.link_preview);
}

#[test]
fn telegram_without_a_telegram_text_is_missing() {
    let template = compile(&email("Hi", None, Some("Body")));
    let err = template
        .render_telegram(&sample_recipient(), &env(), None)
        .unwrap_err();
    assert_eq!(err.part, TemplatePart::TelegramText);
    assert!(matches!(err.kind, TemplateErrorKind::Missing(_)));
    assert_eq!(
        err.to_string(),
        "telegram_text: missing: the template has no Telegram text"
    );
}

#[test]
fn email_without_subject_or_body_is_missing() {
    let template = compile(&telegram("Hi", ParseMode::Plain));
    let err = template
        .render_email(&sample_recipient(), &env(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "email_subject: missing: the template has no e-mail subject"
    );

    let mut content = telegram("Hi", ParseMode::Plain);
    content.email_subject = Some("Subject".into());
    content.email_text = Some("   \n ".into()); // blank counts as absent
    let err = compile(&content)
        .render_email(&sample_recipient(), &env(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "email_text: missing: the template has no e-mail body (neither HTML nor plain text)"
    );
}

#[test]
fn email_with_only_one_body_leaves_the_other_none() {
    let template = compile(&email(
        "Hi {{ first_name }}",
        Some("<p>{{ first_name }}</p>"),
        None,
    ));
    let message = template
        .render_email(&sample_recipient(), &env(), None)
        .unwrap();
    assert_eq!(message.subject, "Hi Anna");
    assert_eq!(message.html.as_deref(), Some("<p>Anna</p>"));
    assert_eq!(message.text, None);

    let template = compile(&email("Hi", None, Some("Text {{ last_name }}")));
    let message = template
        .render_email(&sample_recipient(), &env(), None)
        .unwrap();
    assert_eq!(
        (message.html, message.text.as_deref()),
        (None, Some("Text Schmidt"))
    );
}

#[test]
fn the_catalogue_lists_every_variable_with_a_description() {
    let vars = TeraRenderer::new().variables();
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    for required in [
        "first_name",
        "last_name",
        "full_name",
        "username",
        "email",
        "telegram_id",
        "country",
        "city",
        "competition_name",
        "competition_date",
        "role",
        "registration_status",
        "broadcast_name",
        "current_date",
        "app_name",
        "unsubscribe_url",
        "attributes",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    assert!(vars.iter().all(|v| v.description.len() > 10), "{vars:#?}");
}

#[test]
fn the_operator_reference_documents_every_variable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/templates.md");
    let doc = std::fs::read_to_string(path).expect("docs/templates.md exists");
    for v in catalogue() {
        assert!(
            doc.contains(&format!("| `{}` |", v.name)),
            "docs/templates.md has no table row for `{}`",
            v.name
        );
        assert!(
            doc.contains(v.example),
            "docs/templates.md lacks the example of `{}`",
            v.name
        );
    }
}

#[test]
fn a_compiled_template_knows_the_variables_it_uses() {
    let content = TemplateContent {
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("{{ competition_name }}".into()),
        email_text: Some("{{ first_name }} {{ attributes.x | default(value=\"\") }}".into()),
        ..telegram("{{ city }} {{ first_name }}", ParseMode::Plain)
    };
    let template = TeraRenderer::new().compile_template(&content).unwrap();
    assert_eq!(
        template.used_variables(),
        ["first_name", "city", "competition_name", "attributes"]
    );
    assert_eq!(
        format!("{template:?}"),
        r#"TeraTemplate { parse_mode: Plain, link_preview: false, parts: ["telegram_text", "email_subject", "email_text"] }"#
    );
}
