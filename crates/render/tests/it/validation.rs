//! Validation: every problem, each naming its part, with line and column where there is one.

use broadcast_domain::{ParseMode, Renderer, TemplateErrorKind, TemplatePart};
use broadcast_render::{TeraRenderer, catalogue};
use expect_test::expect;

use super::*;

#[test]
fn a_valid_template_has_no_problems_and_compiles() {
    let content = TemplateContent {
        telegram_text: Some("Hi <b>{{ first_name }}</b>, see you on {{ competition_date }}.".into()),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("{{ competition_name }}: your {{ role }} briefing".into()),
        email_html: Some("<p>Dear {{ full_name }},</p>\n<p>Size {{ attributes.shirt_size | default(value=\"?\") }}</p>".into()),
        email_text: Some("Dear {{ full_name }},\nsize {{ attributes.shirt_size }}.".into()),
    };
    assert_eq!(problems(&content), "");
    assert!(TeraRenderer::new().compile(&content).is_ok());
}

#[test]
fn a_syntax_error_names_the_part_line_and_column() {
    let content = email(
        "Hi",
        Some("<p>Hello</p>\n<p>Dear\n{{ first_name </p>"),
        None,
    );
    let errors = TeraRenderer::new().validate(&content);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].part, TemplatePart::EmailHtml);
    let TemplateErrorKind::Syntax { line, column, .. } = &errors[0].kind else {
        panic!("expected a syntax error: {errors:#?}");
    };
    assert_eq!((*line, *column), (3, 15));
    expect![[r#"
        email_html: syntax error at line 3, column 15: Found `</` but expected }}.
    "#]]
    .assert_eq(&problems(&content));
    let compile_error = TeraRenderer::new().compile(&content).unwrap_err();
    assert_eq!(compile_error, errors[0]);
}

#[test]
fn an_unclosed_tag_at_the_end_is_reported_where_the_input_ends() {
    let content = telegram("line one\nline two\nHi {{ first_name", ParseMode::Plain);
    expect![[r#"
        telegram_text: syntax error at line 3, column 17: Unexpected end of input
    "#]]
    .assert_eq(&problems(&content));
}

#[test]
fn an_unknown_variable_is_named_with_its_place_and_the_known_ones() {
    let content = telegram(
        "Hello\n  {{ frist_name }} from {{ city }}",
        ParseMode::Plain,
    );
    let err = TeraRenderer::new().compile(&content).unwrap_err();
    let known: Vec<String> = catalogue().iter().map(|v| v.name.to_owned()).collect();
    assert_eq!(
        err.kind,
        TemplateErrorKind::UnknownVariable {
            name: "frist_name".into(),
            line: Some(2),
            column: Some(6),
            known,
        }
    );
    expect![[r#"
        telegram_text: unknown variable `frist_name` at line 2, column 6; known variables: first_name, last_name, full_name, username, email, telegram_id, language, country, city, competition_name, competition_date, role, registration_status, broadcast_name, current_date, app_name, unsubscribe_url, attributes
    "#]]
    .assert_eq(&problems(&content));
}

#[test]
fn every_problem_of_every_part_is_reported_in_part_order() {
    let content = TemplateContent {
        telegram_text: Some("{{ nme }} and {{ surname.x }}".into()),
        parse_mode: ParseMode::Plain,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("{% if %}".into()),
        email_html: None,
        email_text: Some("{{ first_name | uper }}".into()),
    };
    let found: Vec<String> = TeraRenderer::new()
        .validate(&content)
        .iter()
        .map(|e| match &e.kind {
            TemplateErrorKind::UnknownVariable {
                name, line, column, ..
            } => {
                format!("{}: unknown {name} {line:?}:{column:?}", e.part)
            }
            _ => e.to_string(),
        })
        .collect();
    expect![[r#"
        [
            "telegram_text: unknown nme Some(1):Some(4)",
            "telegram_text: unknown surname Some(1):Some(18)",
            "email_subject: syntax error at line 1, column 7: Found `%}` but expected one of: integer, float, string, bool, ident, `-`, `not`, `<`, `{`, `[` or `(`",
            "email_text: syntax error at line 1, column 17: Unknown filter `uper`",
        ]
    "#]]
    .assert_debug_eq(&found);
}

#[test]
fn variables_set_in_the_template_and_loop_variables_are_not_unknown() {
    let content = telegram(
        "{% set greeting = \"Hi\" %}{{ greeting }} {% for k, v in attributes %}{{ k }}={{ v }} {{ loop.index }}{% endfor %}",
        ParseMode::Plain,
    );
    assert_eq!(problems(&content), "");
}

#[test]
fn templates_cannot_include_or_extend_others() {
    let content = telegram("Hi\n{% include \"footer\" %}", ParseMode::Plain);
    expect![[r#"
        telegram_text: syntax error at line 2, column 12: Unknown template `footer`
    "#]]
    .assert_eq(&problems(&content));
    let content = telegram("{% extends \"base\" %}", ParseMode::Plain);
    expect![[r#"
        telegram_text: syntax error at line 1, column 4: a template part cannot extend another template (`base`)
    "#]]
    .assert_eq(&problems(&content));
}

#[test]
fn missing_parts_are_reported() {
    let empty = TemplateContent {
        telegram_text: Some("  ".into()),
        parse_mode: ParseMode::Plain,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: None,
        email_html: None,
        email_text: None,
    };
    expect![[r#"
        telegram_text: missing: the template is empty: write a Telegram text, an e-mail subject and body, or both
    "#]]
    .assert_eq(&problems(&empty));
    expect![[r#"
        email_subject: missing: the template has an e-mail body but no subject
    "#]]
    .assert_eq(&problems(&TemplateContent {
        email_text: Some("Body".into()),
        ..empty.clone()
    }));
    expect![[r#"
        email_text: missing: the template has an e-mail subject but no body (neither HTML nor plain text)
    "#]]
    .assert_eq(&problems(&TemplateContent {
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("Subject".into()),
        ..empty
    }));
}

#[test]
fn markdown_v2_text_with_unescaped_reserved_characters_is_reported() {
    let content = telegram(
        "*Hello {{ first_name }}*!\nThe event starts at 10.00 in {{ city }}. Be there\\!",
        ParseMode::MarkdownV2,
    );
    expect![[r#"
        telegram_text: syntax error at line 1, column 25: `!` is reserved in Telegram MarkdownV2 and must be written as `\!`
        telegram_text: syntax error at line 2, column 23: `.` is reserved in Telegram MarkdownV2 and must be written as `\.` (2 times in this part; this is the first)
    "#]]
    .assert_eq(&problems(&content));
}

#[test]
fn telegram_html_with_unsupported_tags_is_reported() {
    let content = telegram("<b>Hi</b><br>\n<p>{{ first_name }}</p>", ParseMode::Html);
    let found = problems(&content);
    assert!(found.starts_with("telegram_text: syntax error at line 1, column 10: Telegram HTML does not support the <br> tag"), "{found}");
    assert!(
        found.contains("line 2, column 1: Telegram HTML does not support the <p> tag"),
        "{found}"
    );
    assert_eq!(found.lines().count(), 2, "{found}");
}

#[test]
fn attributes_named_by_the_template_are_filled_in_for_the_sample() {
    // Validation cannot know which users have which keys, so it does not fail on them...
    let content = telegram(
        "Team {{ attributes.team }}, size {{ attributes[\"shirt_size\"] }}",
        ParseMode::Plain,
    );
    assert_eq!(problems(&content), "");
    // ...but a real recipient without the key is a render error there, and validate_with says so.
    let errors = TeraRenderer::new().validate_with(&content, &bare_recipient(), &env());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .to_string()
            .contains("Field `team` is not defined"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_render_error_for_the_sample_is_reported() {
    let content = email("{{ first_name | int }}", None, Some("ok"));
    let found = problems(&content);
    assert!(found.starts_with("email_subject: render error: line 1, column 17: The string `Anna` cannot be converted to an int"), "{found}");
}

#[test]
fn numeric_attributes_pass_validation_when_used_in_arithmetic() {
    let content = telegram(
        "Next round: {{ attributes.points + 1 }}, team {{ attributes.team }}",
        ParseMode::Plain,
    );
    assert_eq!(problems(&content), "");
}

#[test]
fn a_javascript_link_is_refused_in_each_html_part_with_its_place() {
    let content = TemplateContent {
        telegram_text: Some("Hi {{ first_name }}\n<a href=\"javascript:alert(1)\">open</a>".into()),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("News".into()),
        email_html: Some("<p>Dear {{ full_name }}</p>\n<p><a title=\"x\" href='JaVa&#x09;Script:go()'>here</a></p>".into()),
        email_text: Some("Dear {{ full_name }}, see javascript:void(0) as text".into()),
    };
    expect![[r#"
        telegram_text: syntax error at line 2, column 10: a link to `javascript:` is not allowed; links must be `http:`, `https:`, `mailto:`, `tg:`
        email_html: syntax error at line 2, column 23: a link to `javascript:` is not allowed; links must be `http:`, `https:`, `mailto:`, `tg:`
    "#]]
    .assert_eq(&problems(&content));
    // Allowed schemes, a link from a value, and Telegram's plain mode pass.
    let fine = TemplateContent {
        telegram_text: Some(
            "<a href=\"tg://resolve?domain=x\">bot</a> <a href=\"{{ unsubscribe_url }}\">stop</a>"
                .into(),
        ),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("News".into()),
        email_html: Some(
            "<a href=\"mailto:x@example.org\">mail</a> <a href=\"https://example.org\">web</a>"
                .into(),
        ),
        email_text: None,
    };
    assert_eq!(problems(&fine), "");
    let plain = telegram("javascript:alert(1) is just text here", ParseMode::Plain);
    assert_eq!(problems(&plain), "");
}
