//! A light scanner over template sources: which parts are literal text and which are tera tags,
//! where a variable is first used, which attribute keys are named. Used for error locations and
//! for checks tera does not make; tera itself does the real parsing.

use std::ops::Range;

/// A stretch of a template source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Text copied to the output as written (including the body of `{% raw %}` blocks).
    Literal(Range<usize>),
    /// The inside of `{{ ... }}` or `{% ... %}`, without the delimiters.
    Code(Range<usize>),
}

/// Byte offset of the end of a tag whose inside starts at `from` and that ends with `close`
/// (`}}` or `%}`), skipping string literals. Returns (end of inside, end of tag).
fn tag_end(src: &str, from: usize, close: &str) -> (usize, usize) {
    let bytes = src.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            _ if src[i..].starts_with(close) => return (i, i + close.len()),
            _ => i += 1,
        }
    }
    (bytes.len(), bytes.len())
}

/// The inside of a block tag, without whitespace-control dashes and spaces.
fn tag_word(inside: &str) -> &str {
    inside.trim().trim_matches('-').trim()
}

/// Splits a source into literal text and tag insides; comments are dropped.
pub(crate) fn segments(src: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    let mut in_raw = false;
    while let Some(pos) = src[i..].find('{') {
        let at = i + pos;
        let rest = &src[at..];
        let (open, close) = if rest.starts_with("{{") {
            ("{{", "}}")
        } else if rest.starts_with("{%") {
            ("{%", "%}")
        } else if rest.starts_with("{#") {
            ("{#", "#}")
        } else {
            i = at + 1;
            continue;
        };
        let (inside_end, end) = if open == "{#" {
            match src[at + 2..].find("#}") {
                Some(p) => (at + 2 + p, at + 2 + p + 2),
                None => (src.len(), src.len()),
            }
        } else {
            tag_end(src, at + 2, close)
        };
        let inside = at + 2..inside_end;
        if in_raw {
            if open == "{%" && tag_word(&src[inside.clone()]) == "endraw" {
                in_raw = false;
            } else {
                i = at + 1;
                continue;
            }
        }
        if literal_start < at {
            out.push(Segment::Literal(literal_start..at));
        }
        if open != "{#" {
            if open == "{%" && tag_word(&src[inside.clone()]) == "raw" {
                in_raw = true;
            }
            out.push(Segment::Code(inside));
        }
        literal_start = end;
        i = end;
    }
    if literal_start < src.len() {
        out.push(Segment::Literal(literal_start..src.len()));
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// An identifier token inside a tag.
#[derive(Debug)]
struct Ident<'a> {
    name: &'a str,
    start: usize,
    /// The previous non-space character inside the tag.
    before: Option<char>,
    /// The previous token when it was a word (to recognise `is` tests).
    word_before: Option<&'a str>,
    /// The rest of the tag after the identifier, without leading spaces.
    after: &'a str,
}

/// Identifier tokens of one tag inside, skipping string literals.
fn idents(src: &str, range: Range<usize>) -> Vec<Ident<'_>> {
    let code = &src[range.clone()];
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut before = None;
    let mut word_before = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\'' || b == b'`' {
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                i += 1;
            }
            i += 1;
            before = Some(b as char);
            word_before = None;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let name = &code[start..i];
            out.push(Ident {
                name,
                start: range.start + start,
                before,
                word_before,
                after: code[i..].trim_start(),
            });
            before = name.chars().last();
            word_before = Some(name);
        } else if b.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            before = Some('0');
            word_before = None;
        } else {
            if !b.is_ascii_whitespace() {
                before = Some(b as char);
                word_before = None;
            }
            i += 1;
        }
    }
    out
}

/// True when what follows an identifier makes it a keyword argument (`f(name=1)`), not `==`.
fn is_keyword_argument(after: &str) -> bool {
    after
        .strip_prefix('=')
        .is_some_and(|rest| !rest.starts_with('='))
}

/// Where `name` is first used as a variable (not as an attribute, filter, test, function or
/// keyword argument): 1-based line and column.
pub(crate) fn find_variable(src: &str, name: &str) -> Option<(usize, usize)> {
    segments(src).into_iter().find_map(|seg| {
        let Segment::Code(range) = seg else {
            return None;
        };
        idents(src, range)
            .into_iter()
            .find(|id| {
                id.name == name
                    && !matches!(id.before, Some('.' | '|'))
                    && id.word_before != Some("is")
                    && !id.after.starts_with('(')
                    && !is_keyword_argument(id.after)
            })
            .map(|id| line_col(src, id.start))
    })
}

/// Attribute keys a template names: `attributes.key`, `attributes?.key`, `attributes["key"]`.
pub(crate) fn attribute_keys(src: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for seg in segments(src) {
        let Segment::Code(range) = seg else {
            continue;
        };
        for id in idents(src, range) {
            if id.name != "attributes" || matches!(id.before, Some('.')) {
                continue;
            }
            let rest = id.after.strip_prefix('?').unwrap_or(id.after);
            let key = if let Some(r) = rest.strip_prefix('.') {
                let end = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(r.len());
                &r[..end]
            } else if let Some(r) = rest.strip_prefix('[') {
                let r = r.trim_start();
                match r.chars().next() {
                    Some(q @ ('"' | '\'')) => r[1..].split(q).next().unwrap_or(""),
                    _ => "",
                }
            } else {
                ""
            };
            if !key.is_empty() && !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(src: &str) -> Vec<String> {
        segments(src)
            .into_iter()
            .map(|s| match s {
                Segment::Literal(r) => format!("L{:?}", &src[r]),
                Segment::Code(r) => format!("C{:?}", &src[r]),
            })
            .collect()
    }

    #[test]
    fn splits_literal_text_from_tags() {
        assert_eq!(
            show("Hi {{ name }}!{# note #} {% if x %}a{% endif %}"),
            [
                r#"L"Hi ""#,
                r#"C" name ""#,
                r#"L"!""#,
                r#"L" ""#,
                r#"C" if x ""#,
                r#"L"a""#,
                r#"C" endif ""#
            ]
        );
        assert_eq!(
            show(r#"{{ "}}" ~ a }}b"#),
            [r#"C" \"}}\" ~ a ""#, r#"L"b""#]
        );
        assert_eq!(
            show("{%- raw -%}{{ x }}.{% endraw %}."),
            [
                r#"C"- raw -""#,
                r#"L"{{ x }}.""#,
                r#"C" endraw ""#,
                r#"L".""#
            ]
        );
        assert_eq!(show("a { b } {{ c"), [r#"L"a { b } ""#, r#"C" c""#]);
    }

    #[test]
    fn finds_the_first_use_of_a_variable() {
        let src = "Hi {{ user.city }}\n{{ x | city }} {{ 'city' }}\n  {% if a is city %}{{ city(x=1) }}{{ f(city=1) }}{{ city }}";
        assert_eq!(find_variable(src, "city"), Some((3, 54)));
        assert_eq!(find_variable("{{ a == city }}", "city"), Some((1, 9)));
        assert_eq!(find_variable("{{ frist }}", "first"), None);
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
    }

    #[test]
    fn collects_attribute_keys() {
        let src = r#"{{ attributes.shirt_size }} {{ attributes["team name"] | default(value="") }}
{% if attributes?.vip %}{{ attributes.shirt_size }}{% endif %}{{ x.attributes.no }}"#;
        assert_eq!(attribute_keys(src), ["shirt_size", "team name", "vip"]);
    }
}
