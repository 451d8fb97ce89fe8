//! Telegram specifics: the message length as Telegram counts it, and checks of the template's own
//! markup that Telegram would refuse for every recipient.

use broadcast_domain::ParseMode;

use crate::source::{Segment, line_col, segments};

/// Telegram's limit on a message text, in UTF-16 code units after entity parsing.
pub const TELEGRAM_TEXT_LIMIT: usize = 4096;

/// Telegram's limit on the caption of a photo, video, animation or document, counted the same
/// way.
pub const TELEGRAM_CAPTION_LIMIT: usize = 1024;

/// The length Telegram sees: UTF-16 code units of the text left after entity parsing.
///
/// - `plain`: every character.
/// - `html`: tags are removed and each entity (`&lt;`, `&#128512;`, ...) counts as the
///   character it stands for.
/// - `markdownv2`: an escape `\x` counts as `x`; the markup characters `*`, `_`, `~`, `|`, `` ` ``,
///   `[`, `]` and `>` are removed, and so are link targets (`](...)`); inside code and pre blocks
///   every character counts except the fences.
///
/// Emoji and other characters outside the Basic Multilingual Plane count twice, as they do for
/// Telegram. Markup that Telegram would reject is counted as text (never less than Telegram).
pub fn telegram_length(text: &str, mode: ParseMode) -> usize {
    match mode {
        ParseMode::Plain => text.encode_utf16().count(),
        ParseMode::Html => html_length(text),
        ParseMode::MarkdownV2 => markdown_v2_length(text),
    }
}

fn html_length(text: &str) -> usize {
    let mut n = 0;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/') => {
                match rest.find('>') {
                    Some(end) => rest = &rest[end + 1..],
                    None => {
                        n += rest.encode_utf16().count();
                        rest = "";
                    }
                }
            }
            '&' => match decode_entity(rest) {
                Some((ch, len)) => {
                    n += ch.len_utf16();
                    rest = &rest[len..];
                }
                None => {
                    n += 1;
                    rest = &rest[1..];
                }
            },
            _ => {
                n += c.len_utf16();
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    n
}

/// Decodes an entity at the start of `s`: the character and the entity's length in bytes.
/// The character an HTML entity at the start of `s` stands for (`&lt;`, `&gt;`, `&amp;`,
/// `&quot;`, `&#NN;`, `&#xNN;`) and the entity's length.
pub(crate) fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s.bytes().take(12).position(|b| b == b';')?;
    let body = &s[1..end];
    let ch = match body {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let num = body.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((ch, end + 1))
}

fn markdown_v2_length(text: &str) -> usize {
    let mut n = 0;
    let mut chars = text.chars().peekable();
    let (mut in_code, mut in_pre, mut in_url) = (false, false, false);
    while let Some(c) = chars.next() {
        if in_url {
            // A link target is not text; `\)` inside it does not end it.
            if c == '\\' {
                chars.next();
            }
            in_url = c != ')';
            continue;
        }
        if c == '\\' {
            n += chars.next().map_or(1, char::len_utf16);
            continue;
        }
        if c == '`' {
            if !in_code && chars.peek() == Some(&'`') {
                chars.next();
                if chars.peek() == Some(&'`') {
                    chars.next();
                    if !in_pre {
                        // The language after the opening fence, and the line break ending it,
                        // are not text.
                        while chars.peek().is_some_and(|c| !c.is_whitespace()) {
                            chars.next();
                        }
                        if chars.peek() == Some(&'\n') {
                            chars.next();
                        }
                    }
                    in_pre = !in_pre;
                    continue;
                }
                // "``": an empty inline code span.
                continue;
            }
            if !in_pre {
                in_code = !in_code;
                continue;
            }
        }
        if in_code || in_pre {
            n += c.len_utf16();
            continue;
        }
        match c {
            ']' if chars.peek() == Some(&'(') => {
                chars.next();
                in_url = true;
            }
            '*' | '_' | '~' | '|' | '[' | ']' | '>' => {}
            '!' if chars.peek() == Some(&'[') => {}
            _ => n += c.len_utf16(),
        }
    }
    n
}

/// A problem in the template's own markup: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkupProblem {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// Checks the literal text of a Telegram template (not the values, which are escaped) for markup
/// Telegram refuses: reserved MarkdownV2 characters without a backslash, unsupported HTML tags and
/// bare `<`. At most one problem per offending character or tag name, at its first occurrence.
pub(crate) fn check_markup(src: &str, mode: ParseMode) -> Vec<MarkupProblem> {
    match mode {
        ParseMode::Plain => Vec::new(),
        ParseMode::Html => check_html(src),
        ParseMode::MarkdownV2 => check_markdown_v2(src),
    }
}

/// The tags Telegram's HTML parse mode understands.
const TELEGRAM_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

fn check_html(src: &str) -> Vec<MarkupProblem> {
    let mut found: Vec<(String, usize)> = Vec::new();
    for seg in segments(src) {
        let Segment::Literal(range) = seg else {
            continue;
        };
        let text = &src[range.clone()];
        for (i, _) in text.match_indices('<') {
            let after = &text[i + 1..];
            let name_part = after.strip_prefix('/').unwrap_or(after);
            let name: String = name_part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .to_ascii_lowercase();
            let key = if name.is_empty() {
                // Tags split by a variable (`<{{ tag }}>`) cannot be judged here.
                if after.is_empty() && range.end < src.len() {
                    continue;
                }
                "<".to_owned()
            } else if TELEGRAM_TAGS.contains(&name.as_str()) {
                continue;
            } else {
                name
            };
            if !found.iter().any(|(k, _)| *k == key) {
                found.push((key, range.start + i));
            }
        }
    }
    found
        .into_iter()
        .map(|(key, offset)| {
            let (line, column) = line_col(src, offset);
            let message = if key == "<" {
                "a `<` that does not start a tag must be written as `&lt;` in Telegram HTML"
                    .to_owned()
            } else {
                format!(
                    "Telegram HTML does not support the <{key}> tag; supported: {} (use a new line \
                     instead of <br>, and `&lt;` for a literal `<`)",
                    TELEGRAM_TAGS.join(", ")
                )
            };
            MarkupProblem {
                line,
                column,
                message,
            }
        })
        .collect()
}

fn check_markdown_v2(src: &str) -> Vec<MarkupProblem> {
    // (character, offset of first occurrence, occurrences)
    let mut found: Vec<(char, usize, usize)> = Vec::new();
    let (mut in_code, mut in_pre, mut in_url) = (false, false, false);
    let mut line_prefix_is_markup = true;
    let mut report = |c: char, offset: usize| match found.iter_mut().find(|(k, _, _)| *k == c) {
        Some(entry) => entry.2 += 1,
        None => found.push((c, offset, 1)),
    };
    for seg in segments(src) {
        let Segment::Literal(range) = seg else {
            // A value: escaped, so it neither opens nor closes markup.
            line_prefix_is_markup = false;
            continue;
        };
        let text = &src[range.clone()];
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let offset = range.start + i;
            if c == '\n' {
                line_prefix_is_markup = true;
                continue;
            }
            let at_line_start = line_prefix_is_markup;
            line_prefix_is_markup = line_prefix_is_markup && c == '*';
            if c == '\\' {
                chars.next();
                continue;
            }
            if in_url {
                in_url = c != ')';
                continue;
            }
            if c == '`' {
                let rest = &text[i..];
                if !in_code && rest.starts_with("```") {
                    chars.next();
                    chars.next();
                    in_pre = !in_pre;
                } else if !in_pre {
                    in_code = !in_code;
                }
                continue;
            }
            if in_code || in_pre {
                continue;
            }
            let next = chars.peek().map(|&(_, c)| c);
            match c {
                ']' if next == Some('(') => {
                    chars.next();
                    in_url = true;
                }
                '!' if next == Some('[') => {}
                '>' if at_line_start => {}
                '#' | '+' | '-' | '=' | '{' | '}' | '.' | '!' | '(' | ')' | '>' => {
                    report(c, offset);
                }
                _ => {}
            }
        }
    }
    found
        .into_iter()
        .map(|(c, offset, count)| {
            let (line, column) = line_col(src, offset);
            let times = if count == 1 {
                String::new()
            } else {
                format!(" ({count} times in this part; this is the first)")
            };
            MarkupProblem {
                line,
                column,
                message: format!(
                    "`{c}` is reserved in Telegram MarkdownV2 and must be written as `\\{c}`{times}"
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_length_counts_utf16_code_units() {
        assert_eq!(telegram_length("abc", ParseMode::Plain), 3);
        assert_eq!(telegram_length("Zoë", ParseMode::Plain), 3);
        // An emoji outside the BMP is two UTF-16 code units, as Telegram counts it.
        assert_eq!(telegram_length("ok 👍", ParseMode::Plain), 5);
    }

    #[test]
    fn html_length_ignores_tags_and_decodes_entities() {
        assert_eq!(
            telegram_length(
                r#"<b>Hi</b> <a href="https://x.org/?a=1&amp;b=2">Ann</a>"#,
                ParseMode::Html
            ),
            6
        );
        assert_eq!(
            telegram_length("&lt;script&gt; &amp; &quot;", ParseMode::Html),
            12
        );
        assert_eq!(telegram_length("&#128077;&#x41;", ParseMode::Html), 3);
        assert_eq!(telegram_length("a < b & c", ParseMode::Html), 9);
    }

    #[test]
    fn markdown_v2_length_counts_visible_text() {
        assert_eq!(telegram_length(r"*Hi* _Ann_\!", ParseMode::MarkdownV2), 7);
        assert_eq!(
            telegram_length(r"[site](https://x.org/a\)b) ok", ParseMode::MarkdownV2),
            7
        );
        assert_eq!(
            telegram_length("`a*b` ```rust\nx_y```", ParseMode::MarkdownV2),
            7
        );
        assert_eq!(telegram_length(r"\\", ParseMode::MarkdownV2), 1);
    }

    fn problems(src: &str, mode: ParseMode) -> Vec<String> {
        check_markup(src, mode)
            .into_iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn markdown_v2_literal_reserved_characters_are_reported() {
        assert_eq!(
            problems(
                "Hello {{ first_name }}!\nSee you at 10.00. Bye.",
                ParseMode::MarkdownV2
            ),
            [
                "1:23 `!` is reserved in Telegram MarkdownV2 and must be written as `\\!`",
                "2:14 `.` is reserved in Telegram MarkdownV2 and must be written as `\\.` (3 times in this part; this is the first)",
            ]
        );
        let fine = "*Hi* {{ first_name }}\\!\n> quote\n[link](https://x.org/a-b.c) `a.b` ```\nx.y\n``` ![👍](tg://emoji?id=1)";
        assert_eq!(problems(fine, ParseMode::MarkdownV2), Vec::<String>::new());
        assert_eq!(
            problems("a > b", ParseMode::MarkdownV2),
            ["1:3 `>` is reserved in Telegram MarkdownV2 and must be written as `\\>`"]
        );
    }

    #[test]
    fn html_unsupported_tags_and_bare_angle_brackets_are_reported() {
        let found = problems(
            "<b>Hi</b><br>\n<p>x</p><br/> 1 < 2 <a href=\"{{ unsubscribe_url }}\">u</a>",
            ParseMode::Html,
        );
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("1:10 Telegram HTML does not support the <br> tag"));
        assert!(found[1].starts_with("2:1 Telegram HTML does not support the <p> tag"));
        assert!(found[2].starts_with("2:17 a `<` that does not start a tag"));
        assert!(problems("<b>{{ x }}</b> &amp;", ParseMode::Html).is_empty());
        assert!(problems("1 < 2.", ParseMode::Plain).is_empty());
    }
}
