//! URL buttons: labels and URLs are templates, checked once rendered, for the sample recipient
//! at validation and for each recipient at send.

use broadcast_domain::{ParseMode, TemplateErrorKind, TemplatePart, UrlButton};

use super::*;

fn button(text: &str, url: &str) -> UrlButton {
    UrlButton {
        text: text.to_owned(),
        url: url.to_owned(),
    }
}

fn with_buttons(rows: Vec<Vec<UrlButton>>) -> TemplateContent {
    TemplateContent {
        telegram_buttons: rows,
        ..telegram("Hi {{ first_name }}", ParseMode::Html)
    }
}

#[test]
fn labels_and_urls_are_rendered_per_recipient() {
    let content = with_buttons(vec![
        vec![
            button(
                "Register, {{ first_name }}",
                "https://example.org/register?name={{ first_name | urlencode }}",
            ),
            button("Schedule", "https://example.org/schedule"),
        ],
        vec![button("Chat", "tg://resolve?domain=example")],
    ]);
    let problems = TeraRenderer::new().validate(&content);
    assert!(problems.is_empty(), "{problems:?}");
    let message = compile(&content)
        .render_telegram(&named("Zoë & Co"), &env(), None)
        .unwrap();
    assert_eq!(
        message.buttons,
        vec![
            vec![
                button(
                    "Register, Zoë & Co",
                    "https://example.org/register?name=Zo%C3%AB%20%26%20Co"
                ),
                button("Schedule", "https://example.org/schedule"),
            ],
            vec![button("Chat", "tg://resolve?domain=example")],
        ]
    );
}

#[test]
fn a_url_telegram_would_not_open_is_refused_naming_the_button() {
    let problems = |rows| {
        TeraRenderer::new()
            .validate(&with_buttons(rows))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        problems(vec![vec![
            button("Fine", "https://example.org"),
            button("Evil", "javascript:alert(1)"),
        ]]),
        [
            "telegram_buttons: render error: row 1, button 2, once rendered: the URL \
          `javascript:alert(1)` is `javascript:`; a button opens only http, https or tg URLs"
        ]
    );
    assert_eq!(
        problems(vec![vec![button("", "https://example.org")]]),
        ["telegram_buttons: render error: row 1, button 1, once rendered: the label is empty"]
    );
    let unknown = problems(vec![vec![button("Go", "{{ first_nam }}")]]);
    assert!(
        unknown[0]
            .starts_with("telegram_buttons: render error: row 1, button 1, URL: unknown variable"),
        "{unknown:?}"
    );
    let wide: Vec<UrlButton> = (0..9)
        .map(|i| button(&i.to_string(), "https://e.org"))
        .collect();
    assert_eq!(
        problems(vec![wide]),
        ["telegram_buttons: render error: row 1 has 9 buttons; the limit is 8"]
    );
    // A value that makes the URL bad is caught for the recipient who has it.
    let content = with_buttons(vec![vec![button("Go", "{{ city }}")]]);
    let err = compile(&content)
        .render_telegram(&named("Ann"), &env(), None)
        .unwrap_err();
    assert_eq!(err.part, TemplatePart::TelegramButtons);
    assert!(
        matches!(&err.kind, TemplateErrorKind::Render(m) if m.contains("is not a URL")),
        "{err}"
    );
}
