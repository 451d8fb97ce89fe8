//! Link targets in HTML (Telegram's HTML parse mode and e-mail HTML): only `http`, `https`,
//! `mailto` and `tg` links may be sent. A `javascript:` (or `data:`, `vbscript:`, ...) link in a
//! template is refused at save and at launch, with its line and column.
//!
//! A scheme is read the way a browser reads it: HTML entities decoded, ASCII whitespace and
//! control characters dropped (`java&#x09;script:` is `javascript:`), case ignored. A target
//! without a scheme (`#top`, `/path`) is left alone. A target that starts with a template
//! expression (`href="{{ unsubscribe_url }}"`) is checked in the rendered text instead.

use crate::source::line_col;
use crate::telegram::{MarkupProblem, decode_entity};

/// The schemes a link may use.
pub(crate) const ALLOWED_SCHEMES: [&str; 4] = ["http", "https", "mailto", "tg"];

/// Every `href` of `html` whose scheme is not allowed, at the position of its value.
pub(crate) fn check_links(html: &str) -> Vec<MarkupProblem> {
    let mut problems = Vec::new();
    for (offset, value) in hrefs(html) {
        let literal = value.split("{{").next().unwrap_or_default();
        let literal = literal.split("{%").next().unwrap_or_default();
        if literal.trim().is_empty() && value.trim_start().starts_with('{') {
            continue; // all of it comes from a template expression: checked once rendered
        }
        if let Some(scheme) = scheme(literal)
            && !ALLOWED_SCHEMES.contains(&scheme.as_str())
        {
            let (line, column) = line_col(html, offset);
            problems.push(MarkupProblem {
                line,
                column,
                message: format!(
                    "a link to `{scheme}:` is not allowed; links must be {}",
                    ALLOWED_SCHEMES
                        .iter()
                        .map(|s| format!("`{s}:`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    problems
}

/// The scheme of a link target as a browser reads it, lower-cased; `None` without one.
fn scheme(target: &str) -> Option<String> {
    let mut decoded = String::new();
    let mut rest = target;
    while let Some(c) = rest.chars().next() {
        if c == '&'
            && let Some((ch, len)) = decode_entity(rest)
        {
            decoded.push(ch);
            rest = &rest[len..];
            continue;
        }
        decoded.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let cleaned: String = decoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect();
    let end = cleaned.find([':', '/', '?', '#'])?;
    if !cleaned[end..].starts_with(':') || end == 0 {
        return None;
    }
    let scheme = &cleaned[..end];
    scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .then(|| scheme.to_ascii_lowercase())
}

/// The `href` attribute values of the tags in `html`, each with the byte offset of its start.
fn hrefs(html: &str) -> Vec<(usize, &str)> {
    let lower = html.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("href") {
        let start = from + at;
        from = start + 4;
        // An attribute name: after whitespace (or a quote) inside a tag, followed by `=`.
        let after_space = start > 0 && matches!(bytes[start - 1], b' ' | b'\t' | b'\n' | b'\r');
        let in_tag = lower[..start].rfind('<') > lower[..start].rfind('>');
        if !after_space || !in_tag {
            continue;
        }
        let mut i = from;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (value_start, value_end) = match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = lower[i + 1..]
                    .find(q as char)
                    .map_or(html.len(), |e| i + 1 + e);
                (i + 1, end)
            }
            Some(_) => {
                let end = lower[i..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .map_or(html.len(), |e| i + e);
                (i, end)
            }
            None => continue,
        };
        found.push((value_start, &html[value_start..value_end]));
        from = value_end;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_https_mailto_and_tg_links_pass() {
        for ok in [
            r#"<a href="https://example.org/?a=1&amp;b=2">x</a>"#,
            r#"<a href='http://example.org'>x</a>"#,
            r#"<a href="mailto:info@example.org">x</a>"#,
            r#"<a href="tg://resolve?domain=x">x</a>"#,
            r#"<a href="{{ unsubscribe_url }}">x</a>"#,
            r#"<a href="https://example.org/{{ user_id }}">x</a>"#,
            r##"<a href="#top">x</a> <a href="/path">y</a>"##,
            r#"<p>the href attribute: javascript: is text here</p>"#,
            r#"<a HREF = "HTTPS://example.org">x</a>"#,
        ] {
            assert_eq!(check_links(ok), Vec::new(), "{ok}");
        }
        for (bad, line, column) in [
            (r#"<a href="javascript:alert(1)">x</a>"#, 1, 10),
            (
                "<p>hi</p>\n  <a title=\"t\" href='JavaScript:alert(1)'>x</a>",
                2,
                22,
            ),
            (r#"<a href="java&#x09;script:alert(1)">x</a>"#, 1, 10),
            (r#"<a href="  java script:alert(1)">x</a>"#, 1, 10),
            (r#"<a href=javascript:alert(1)>x</a>"#, 1, 9),
            (r#"<a href="data:text/html,<script>">x</a>"#, 1, 10),
            (r#"<a href="vbscript:x{{ first_name }}">x</a>"#, 1, 10),
        ] {
            let problems = check_links(bad);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(
                (problems[0].line, problems[0].column),
                (line, column),
                "{bad}"
            );
            assert!(problems[0].message.contains("is not allowed"), "{bad}");
        }
    }
}
