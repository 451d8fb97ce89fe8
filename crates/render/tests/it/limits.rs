//! Telegram's 4096-character limit, counted as Telegram counts: UTF-16 code units of the text
//! after entity parsing.

use broadcast_domain::{ParseMode, TemplateErrorKind, TemplatePart};
use broadcast_render::{TELEGRAM_TEXT_LIMIT, telegram_length};

use super::*;

fn too_long(length: usize) -> TemplateErrorKind {
    TemplateErrorKind::TooLong {
        length,
        limit: TELEGRAM_TEXT_LIMIT,
    }
}

#[test]
fn a_rendered_text_over_4096_characters_is_too_long() {
    let content = telegram(
        &format!("{}{{{{ first_name }}}}", "a".repeat(4090)),
        ParseMode::Plain,
    );
    assert_eq!(
        render_telegram(&content, &named("Sixsix")).unwrap().len(),
        4096
    );
    let err = render_telegram(&content, &named("Sevenxx")).unwrap_err();
    assert_eq!(err.part, TemplatePart::TelegramText);
    assert_eq!(err.kind, too_long(4097));
    assert_eq!(
        err.to_string(),
        "telegram_text: rendered text is 4097 characters long; the limit is 4096"
    );
}

#[test]
fn markup_does_not_count_but_escaped_values_count_once() {
    // 4096 visible characters wrapped in a tag, with a value escaped to `&lt;`: fits.
    let html = telegram(
        &format!("<b>{}{{{{ first_name }}}}</b>", "a".repeat(4095)),
        ParseMode::Html,
    );
    let text = render_telegram(&html, &named("<")).unwrap();
    assert_eq!(text.len(), 4095 + 4 + 7);
    assert_eq!(telegram_length(&text, ParseMode::Html), 4096);

    // The same in MarkdownV2: `\.` is one character.
    let md = telegram(
        &format!("*{}{{{{ first_name }}}}*", "a".repeat(4095)),
        ParseMode::MarkdownV2,
    );
    assert!(render_telegram(&md, &named(".")).is_ok());
    assert_eq!(
        render_telegram(&md, &named("..")).unwrap_err().kind,
        too_long(4097)
    );
}

#[test]
fn characters_outside_the_basic_plane_count_twice() {
    let content = telegram("{{ first_name }}", ParseMode::Plain);
    assert!(render_telegram(&content, &named(&"👍".repeat(2048))).is_ok());
    assert_eq!(
        render_telegram(&content, &named(&"👍".repeat(2049)))
            .unwrap_err()
            .kind,
        too_long(4098)
    );
}

#[test]
fn validation_reports_a_template_too_long_for_the_sample_recipient() {
    let content = telegram(
        &format!("{} {{{{ full_name }}}}", "x".repeat(4090)),
        ParseMode::Plain,
    );
    expect_test::expect![[r#"
        telegram_text: rendered text is 4103 characters long; the limit is 4096
    "#]]
    .assert_eq(&problems(&content));
}

#[test]
fn an_empty_rendered_text_is_refused() {
    let content = telegram("{{ username }}<b></b>", ParseMode::Html);
    let err = render_telegram(&content, &bare_recipient()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "telegram_text: render error: the rendered text is empty, and Telegram refuses empty messages"
    );
}

/// The text under a medium is its caption: 1024 characters, counted the same way, at
/// validation (for the sample recipient) and for every recipient.
#[test]
fn the_caption_of_a_medium_is_limited_to_1024_characters() {
    use broadcast_domain::{MediaKind, MediaRef};
    use broadcast_render::TELEGRAM_CAPTION_LIMIT;
    let mut content = telegram(
        &format!("<b>{}</b>{{{{ first_name }}}}", "a".repeat(1018)),
        ParseMode::Html,
    );
    // Without a medium the same text is an ordinary message.
    assert!(render_telegram(&content, &named("Sevenxx")).is_ok());
    content.telegram_media = vec![MediaRef {
        kind: MediaKind::Photo,
        ..MediaRef::named("poster.png")
    }];
    assert_eq!(
        render_telegram(&content, &named("Sixsix")).unwrap().len(),
        1018 + 7 + 6
    );
    let err = render_telegram(&content, &named("Sevenxx")).unwrap_err();
    assert_eq!(
        err.kind,
        TemplateErrorKind::CaptionTooLong {
            length: 1025,
            limit: TELEGRAM_CAPTION_LIMIT,
        }
    );
    assert_eq!(
        err.to_string(),
        "telegram_text: rendered caption is 1025 characters long; the limit for the text of a \
         message with a medium is 1024"
    );
    content.telegram_text = Some(format!("{} {{{{ full_name }}}}", "x".repeat(1015)));
    expect_test::expect![[r#"
        telegram_text: rendered caption is 1028 characters long; the limit for the text of a message with a medium is 1024
    "#]]
    .assert_eq(&problems(&content));
}
