//! Just enough MIME decoding to compare what the SMTP sink received with what was rendered:
//! RFC 2047 encoded words in headers, multipart bodies, quoted-printable and base64 parts.

use base64::Engine as _;
use broadcast_testkit::smtp::ReceivedMail;

/// One body part: its content type (lower case, without parameters) and decoded text, with
/// line ends as `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) content_type: String,
    pub(crate) text: String,
}

/// A header value with RFC 2047 encoded words decoded.
pub(crate) fn header(mail: &ReceivedMail, name: &str) -> Option<String> {
    mail.header(name).map(|v| decode_words(&v))
}

/// The body parts of a message: the parts of a multipart body, or the body itself.
pub(crate) fn parts(mail: &ReceivedMail) -> Vec<Part> {
    let raw = mail.raw();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    entity_parts(&unfold(head), body)
}

fn entity_parts(headers: &[(String, String)], body: &str) -> Vec<Part> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let content_type = get("Content-Type");
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if kind.starts_with("multipart/") {
        let boundary = parameter(&content_type, "boundary")
            .unwrap_or_else(|| panic!("multipart without boundary: {content_type}"));
        let delimiter = format!("--{boundary}");
        let mut out = Vec::new();
        // The preamble comes before the first delimiter, the epilogue after `--boundary--`.
        for chunk in body.split(&delimiter).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
            // The CRLF before the next delimiter belongs to the delimiter.
            let chunk = chunk.strip_suffix("\r\n").unwrap_or(chunk);
            let (head, inner) = chunk.split_once("\r\n\r\n").unwrap_or((chunk, ""));
            out.extend(entity_parts(&unfold(head), inner));
        }
        return out;
    }
    let encoding = get("Content-Transfer-Encoding").trim().to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a valid base64 part")
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    let text = String::from_utf8(bytes).expect("a UTF-8 part");
    vec![Part {
        content_type: kind,
        text: text.replace("\r\n", "\n"),
    }]
}

/// Header lines unfolded into `(name, value)`.
fn unfold(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

/// A parameter of a structured header value, e.g. `boundary` of a Content-Type.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Quoted-printable (RFC 2045): `=XX` bytes and `=` soft line breaks.
fn quoted_printable(body: &str) -> Vec<u8> {
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if b[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); whitespace between
/// two adjacent encoded words is dropped, as the RFC says.
pub(crate) fn decode_words(value: &str) -> String {
    let mut out: Vec<u8> = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((bytes, len)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.extend_from_slice(before.as_bytes());
                }
                out.extend_from_slice(&bytes);
                rest = &candidate[len..];
                after_word = true;
            }
            None => {
                out.extend_from_slice(before.as_bytes());
                out.extend_from_slice(b"=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out).expect("a UTF-8 header")
}

/// One encoded word at the start of `s`: its bytes and its length in `s`.
fn encoded_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let inner = s.strip_prefix("=?")?;
    let mut fields = inner.splitn(3, '?');
    let charset = fields.next()?;
    let encoding = fields.next()?;
    let rest = fields.next()?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let bytes = match encoding {
        "b" | "B" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "q" | "Q" => quoted_printable(&text.replace('_', " ")),
        _ => return None,
    };
    let len = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((bytes, len))
}

#[test]
fn decoders_handle_what_mail_clients_send() {
    assert_eq!(
        decode_words("Hi =?utf-8?b?0J7Qu9C10L3QsA==?= =?utf-8?q?_=D0=A8?= x"),
        "Hi Олена Ш x"
    );
    assert_eq!(decode_words("plain =? text"), "plain =? text");
    assert_eq!(quoted_printable("a=3Db=\r\nc =C3=BC"), "a=bc ü".as_bytes());
    assert_eq!(
        parameter("multipart/alternative; boundary=\"abc\"", "boundary").as_deref(),
        Some("abc")
    );
}
