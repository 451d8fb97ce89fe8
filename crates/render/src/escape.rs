//! Escaping of variable values by target. These functions are installed as tera's escape
//! function, so they apply to what `{{ ... }}` prints, never to the template's own markup.

use std::io::{self, Write};

/// Writes `input`, replacing each byte for which `replace` gives a replacement.
/// Every byte escaped here is ASCII, so cutting at those bytes keeps UTF-8 intact.
#[inline]
fn escape_bytes(
    input: &str,
    out: &mut dyn Write,
    replace: impl Fn(u8) -> Option<&'static [u8]>,
) -> io::Result<()> {
    let bytes = input.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(with) = replace(b) {
            out.write_all(&bytes[start..i])?;
            out.write_all(with)?;
            start = i + 1;
        }
    }
    out.write_all(&bytes[start..])
}

/// Telegram's HTML: `&`, `<`, `>` and `"` (the named entities Telegram knows).
pub(crate) fn telegram_html(input: &str, out: &mut dyn Write) -> io::Result<()> {
    escape_bytes(input, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'"' => Some(b"&quot;"),
        _ => None,
    })
}

/// E-mail HTML: `&`, `<`, `>`, `"` and `'` (so values are also safe in single-quoted attributes).
pub(crate) fn email_html(input: &str, out: &mut dyn Write) -> io::Result<()> {
    escape_bytes(input, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'"' => Some(b"&quot;"),
        b'\'' => Some(b"&#39;"),
        _ => None,
    })
}

/// Telegram's MarkdownV2: a backslash before each reserved character and before `\` itself.
/// Telegram accepts such an escape anywhere, including inside code and link URLs.
pub(crate) fn markdown_v2(input: &str, out: &mut dyn Write) -> io::Result<()> {
    escape_bytes(input, out, |b| {
        Some(match b {
            b'_' => b"\\_",
            b'*' => b"\\*",
            b'[' => b"\\[",
            b']' => b"\\]",
            b'(' => b"\\(",
            b')' => b"\\)",
            b'~' => b"\\~",
            b'`' => b"\\`",
            b'>' => b"\\>",
            b'#' => b"\\#",
            b'+' => b"\\+",
            b'-' => b"\\-",
            b'=' => b"\\=",
            b'|' => b"\\|",
            b'{' => b"\\{",
            b'}' => b"\\}",
            b'.' => b"\\.",
            b'!' => b"\\!",
            b'\\' => b"\\\\",
            _ => return None,
        })
    })
}

/// The `urlencode` filter: every byte outside RFC 3986's unreserved characters (letters,
/// digits, `-`, `.`, `_` and `~`) percent-encoded, so that a value is one safe component of a
/// URL: `?name={{ first_name | urlencode }}`.
pub(crate) fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters Telegram's MarkdownV2 reserves, and the backslash.
    const MARKDOWN_V2_RESERVED: &str = "_*[]()~`>#+-=|{}.!\\";

    fn run(f: fn(&str, &mut dyn Write) -> io::Result<()>, s: &str) -> String {
        let mut out = Vec::new();
        f(s, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn telegram_html_escapes_markup_characters_only() {
        assert_eq!(
            run(telegram_html, r#"<script>alert("x & y")</script> it's"#),
            "&lt;script&gt;alert(&quot;x &amp; y&quot;)&lt;/script&gt; it's"
        );
    }

    #[test]
    fn email_html_also_escapes_single_quotes() {
        assert_eq!(
            run(email_html, "<a href='x'>Zoë</a>"),
            "&lt;a href=&#39;x&#39;&gt;Zoë&lt;/a&gt;"
        );
    }

    #[test]
    fn markdown_v2_escapes_every_reserved_character() {
        assert_eq!(
            run(markdown_v2, MARKDOWN_V2_RESERVED),
            r"\_\*\[\]\(\)\~\`\>\#\+\-\=\|\{\}\.\!\\"
        );
        assert_eq!(run(markdown_v2, "Jörg-Ünal O'Neil"), r"Jörg\-Ünal O'Neil");
        assert_eq!(run(markdown_v2, "plain"), "plain");
    }
}
