//! Shows a Telegram HTML message in a web page "as Telegram would show it": the tags of
//! Telegram's HTML subset become the equivalent HTML, everything else is escaped. The result is
//! safe to insert into a page (no attribute but a checked `href`, no other tag).

use crate::error::escape_html;

/// Tags Telegram accepts, and what they become.
fn mapped(name: &str) -> Option<&'static str> {
    Some(match name {
        "b" | "strong" => "b",
        "i" | "em" => "i",
        "u" | "ins" => "u",
        "s" | "strike" | "del" => "s",
        "code" => "code",
        "pre" => "pre",
        "blockquote" => "blockquote",
        "a" => "a",
        "span" | "tg-spoiler" | "tg-emoji" => "span",
        _ => return None,
    })
}

/// The value of attribute `name` in the attribute text of a tag.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    while let Some(pos) = rest.find(name) {
        let before_ok = pos == 0 || rest[..pos].chars().last().is_some_and(char::is_whitespace);
        let after = rest[pos + name.len()..].trim_start();
        if before_ok && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let inner = &value[1..];
                return inner.find(quote).map(|end| &inner[..end]);
            }
            let end = value
                .find(|c: char| c.is_whitespace())
                .unwrap_or(value.len());
            return Some(&value[..end]);
        }
        rest = &rest[pos + name.len()..];
    }
    None
}

fn safe_href(href: &str) -> bool {
    let lower = href.trim().to_ascii_lowercase();
    ["http://", "https://", "tg://", "mailto:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// Converts a Telegram HTML message into safe HTML for the preview.
pub(crate) fn to_safe_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 32);
    let mut open: Vec<&'static str> = Vec::new();
    let mut rest = input;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt].replace('"', "&quot;").replace('>', "&gt;"));
        let tail = &rest[lt..];
        let Some(gt) = tail.find('>') else {
            out.push_str(&escape_html(tail));
            rest = "";
            break;
        };
        let tag = &tail[1..gt];
        rest = &tail[gt + 1..];
        let (closing, body) = match tag.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, tag),
        };
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let attrs = &body[name_end..];
        let Some(html) = mapped(&name) else {
            out.push_str(&escape_html(&tail[..=gt]));
            continue;
        };
        if closing {
            if let Some(pos) = open.iter().rposition(|t| *t == html) {
                while open.len() > pos {
                    let t = open.pop().unwrap_or(html);
                    out.push_str(&format!("</{t}>"));
                }
            }
            continue;
        }
        match name.as_str() {
            "a" => {
                out.push_str("<a");
                if let Some(href) = attribute(attrs, "href").filter(|h| safe_href(h)) {
                    out.push_str(" href=\"");
                    out.push_str(&href.replace('"', "&quot;").replace('<', "&lt;"));
                    out.push_str("\" rel=\"noopener noreferrer\" target=\"_blank\"");
                }
                out.push('>');
            }
            "tg-spoiler" => out.push_str("<span class=\"tg-spoiler\">"),
            "span" if attribute(attrs, "class") == Some("tg-spoiler") => {
                out.push_str("<span class=\"tg-spoiler\">");
            }
            _ => out.push_str(&format!("<{html}>")),
        }
        open.push(html);
    }
    out.push_str(&rest.replace('"', "&quot;").replace('>', "&gt;"));
    while let Some(t) = open.pop() {
        out.push_str(&format!("</{t}>"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_telegram_tags_and_escapes_the_rest() {
        assert_eq!(
            to_safe_html("Hi <b>Ann</b> &lt;script&gt; <i>x</i>"),
            "Hi <b>Ann</b> &lt;script&gt; <i>x</i>"
        );
        assert_eq!(
            to_safe_html("<script>alert(1)</script><strong>ok</strong>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;<b>ok</b>"
        );
        assert_eq!(
            to_safe_html("<a href=\"https://x.org/?a=1&amp;b=2\">link</a>"),
            "<a href=\"https://x.org/?a=1&amp;b=2\" rel=\"noopener noreferrer\" target=\"_blank\">link</a>"
        );
        assert_eq!(
            to_safe_html("<a href='javascript:alert(1)' onclick=x>bad</a>"),
            "<a>bad</a>"
        );
        assert_eq!(
            to_safe_html("<b onmouseover=\"x\">a<i>b</b> c</i> <tg-spoiler>s</tg-spoiler> 1 < 2"),
            "<b>a<i>b</i></b> c <span class=\"tg-spoiler\">s</span> 1 &lt; 2"
        );
        assert_eq!(to_safe_html("<b>unclosed"), "<b>unclosed</b>");
    }
}
