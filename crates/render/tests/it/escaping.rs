//! Escaping by target: values (user data) are escaped for Telegram HTML, MarkdownV2 and e-mail
//! HTML; the template's own markup never is; plain text, subject and e-mail text are left alone.

use broadcast_domain::ParseMode;
use expect_test::expect;

use super::*;

const SCRIPT: &str = r#"<script>alert("hi & bye")</script>"#;
const MARKDOWN_SPECIALS: &str = r"a_b*c[d]e(f)g~h`i>j#k+l-m=n|o{p}q.r!s\t";

fn with_names(first: &str, last: &str) -> RecipientContext {
    let mut r = named(first);
    r.user.last_name = last.to_owned();
    r
}

#[test]
fn telegram_html_escapes_values_but_keeps_the_template_markup() {
    let content = telegram(
        "<b>Hi {{ first_name }}</b> <a href=\"{{ unsubscribe_url }}\">{{ last_name }}</a>",
        ParseMode::Html,
    );
    let r = with_names(SCRIPT, MARKDOWN_SPECIALS);
    expect![[r#"<b>Hi &lt;script&gt;alert(&quot;hi &amp; bye&quot;)&lt;/script&gt;</b> <a href="https://example.org/u/1">a_b*c[d]e(f)g~h`i&gt;j#k+l-m=n|o{p}q.r!s\t</a>"#]]
        .assert_eq(&render_telegram(&content, &r).unwrap());
}

#[test]
fn telegram_markdown_v2_escapes_reserved_characters_in_values_only() {
    let content = telegram(
        "*Hi {{ first_name }}*\n_{{ last_name }}_",
        ParseMode::MarkdownV2,
    );
    let r = with_names(SCRIPT, MARKDOWN_SPECIALS);
    expect![[r#"
        *Hi <script\>alert\("hi & bye"\)</script\>*
        _a\_b\*c\[d\]e\(f\)g\~h\`i\>j\#k\+l\-m\=n\|o\{p\}q\.r\!s\\t_"#]]
    .assert_eq(&render_telegram(&content, &r).unwrap());
}

#[test]
fn telegram_plain_leaves_values_alone() {
    let content = telegram("Hi {{ first_name }} {{ last_name }}", ParseMode::Plain);
    let r = with_names(SCRIPT, MARKDOWN_SPECIALS);
    assert_eq!(
        render_telegram(&content, &r).unwrap(),
        format!("Hi {SCRIPT} {MARKDOWN_SPECIALS}")
    );
}

#[test]
fn email_html_escapes_values_while_subject_and_text_do_not() {
    let content = email(
        "Hello {{ first_name }}\n  and welcome",
        Some("<p class='x'>Hello {{ first_name }} {{ attributes.quote }}</p>"),
        Some("Hello {{ first_name }} {{ attributes.quote }}"),
    );
    let mut r = named(SCRIPT);
    r.user.attributes.insert("quote".into(), "it's <b>".into());
    let message = compile(&content).render_email(&r, &env(), None).unwrap();
    expect![[r#"Hello <script>alert("hi & bye")</script> and welcome"#]]
        .assert_eq(&message.subject);
    expect![[r#"<p class='x'>Hello &lt;script&gt;alert(&quot;hi &amp; bye&quot;)&lt;/script&gt; it&#39;s &lt;b&gt;</p>"#]]
        .assert_eq(message.html.as_deref().unwrap());
    expect![[r#"Hello <script>alert("hi & bye")</script> it's <b>"#]]
        .assert_eq(message.text.as_deref().unwrap());
}

#[test]
fn a_newline_in_a_value_cannot_break_the_subject_line() {
    let content = email("Hi {{ first_name }}!", None, Some("x"));
    let message = compile(&content)
        .render_email(&named("Ann\r\nBcc: evil@example.org"), &env(), None)
        .unwrap();
    assert_eq!(message.subject, "Hi Ann Bcc: evil@example.org!");
}

#[test]
fn filters_and_comparisons_see_raw_values_and_escaping_happens_once_on_output() {
    let content = telegram(
        "{{ first_name | truncate(length=4) }}|{{ first_name | upper }}|{{ first_name | length }}|\
         {% if city == \"St. Gallen\" %}match{% endif %}",
        ParseMode::MarkdownV2,
    );
    let mut r = named("a.b-c!d");
    r.user.city = Some("St. Gallen".into());
    assert_eq!(
        render_telegram(&content, &r).unwrap(),
        r"a\.b\-…|A\.B\-C\!D|7|match"
    );

    let html = telegram("{{ first_name | truncate(length=3) }}", ParseMode::Html);
    // Truncation happens before escaping, so no entity is cut in half.
    assert_eq!(
        render_telegram(&html, &named("<<<<<")).unwrap(),
        "&lt;&lt;&lt;…"
    );
}

#[test]
fn string_literals_and_concatenations_are_escaped_like_values() {
    let content = telegram("{{ first_name ~ \" & co.\" }}", ParseMode::MarkdownV2);
    assert_eq!(render_telegram(&content, &named("A")).unwrap(), r"A & co\.");
}
