//! The media library: files a template can send (a poster, a schedule in PDF), kept by their
//! content's SHA-256 so that a launched broadcast keeps the bytes it launched with.
//!
//! An upload is checked here, before any store sees it ([`NewMedium::check`]): its type comes
//! from its bytes (their magic number), never from its name, and a name that says otherwise
//! (`poster.jpg` holding a PDF) is refused; what Telegram cannot take through the Bot API (a
//! photo over 10 MB, any file over 50 MB) is refused with the size and the limit.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Identifier of a medium.
pub type MediaId = i64;

/// A megabyte as Telegram counts its limits.
const MB: u64 = 1024 * 1024;

/// How Telegram sends a medium: the Bot API method it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// JPEG, PNG or WebP: `sendPhoto`, shown inline, up to 10 MB.
    Photo,
    /// MP4: `sendVideo`, up to 50 MB.
    Video,
    /// GIF: `sendAnimation`, up to 50 MB.
    Animation,
    /// Anything else: `sendDocument`, up to 50 MB.
    Document,
}

impl MediaKind {
    /// Every kind.
    pub const ALL: [MediaKind; 4] = [
        MediaKind::Photo,
        MediaKind::Video,
        MediaKind::Animation,
        MediaKind::Document,
    ];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Animation => "animation",
            MediaKind::Document => "document",
        }
    }

    /// A stored name back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind Telegram gives a content type.
    pub fn of(content_type: &str) -> Self {
        match content_type {
            "image/jpeg" | "image/png" | "image/webp" => MediaKind::Photo,
            "image/gif" => MediaKind::Animation,
            "video/mp4" => MediaKind::Video,
            _ => MediaKind::Document,
        }
    }

    /// The Bot API method that sends it with a caption.
    pub fn telegram_method(self) -> &'static str {
        match self {
            MediaKind::Photo => "sendPhoto",
            MediaKind::Video => "sendVideo",
            MediaKind::Animation => "sendAnimation",
            MediaKind::Document => "sendDocument",
        }
    }

    /// The largest file of this kind the Bot API takes as an upload.
    pub fn telegram_limit(self) -> u64 {
        match self {
            MediaKind::Photo => 10 * MB,
            _ => 50 * MB,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A medium of the library, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Medium {
    /// Its identifier.
    pub id: MediaId,
    /// Its unique name (a file name: `poster.jpg`).
    pub name: String,
    /// Its content type, from its bytes.
    pub content_type: String,
    /// How Telegram sends it.
    pub kind: MediaKind,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, in lowercase hex: where the bytes are kept.
    pub sha256: String,
    /// Who added it (or last replaced its bytes).
    pub created_by: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A medium as a template carries it: the library entry, and what it held when the template was
/// saved or, in a launched broadcast's frozen template, when the broadcast launched. The bytes
/// are found by `sha256`, so a launched broadcast sends what it launched with whatever happens
/// to the library entry later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// The library entry (0 in a reference by name not yet looked up, [`MediaRef::named`]);
    /// `id` in JSON, as in the library's own documents.
    #[serde(rename = "id", default)]
    pub medium: MediaId,
    /// Its name: the file name Telegram and e-mail clients show.
    pub name: String,
    /// Its content type.
    #[serde(default)]
    pub content_type: String,
    /// How Telegram sends it.
    pub kind: MediaKind,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The SHA-256 of its bytes (empty in a reference by name not yet looked up).
    #[serde(default)]
    pub sha256: String,
}

impl MediaRef {
    /// What `medium` holds now.
    pub fn of(medium: &Medium) -> Self {
        Self {
            medium: medium.id,
            name: medium.name.clone(),
            content_type: medium.content_type.clone(),
            kind: medium.kind,
            size: medium.size,
            sha256: medium.sha256.clone(),
        }
    }

    /// A reference by name, as a template file or a form gives it; saving the template looks the
    /// name up in the library and fills in the rest.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            medium: 0,
            name: name.into(),
            content_type: String::new(),
            kind: MediaKind::Document,
            size: 0,
            sha256: String::new(),
        }
    }

    /// True once looked up in the library.
    pub fn is_resolved(&self) -> bool {
        self.medium > 0 && !self.sha256.is_empty()
    }
}

/// Most media one Telegram message carries: one photo, video, animation or document, sent with
/// the rendered Telegram text as its caption.
pub const MAX_TELEGRAM_MEDIA: usize = 1;

/// A checked upload ([`NewMedium::check`]), ready for a [`MediaStore`](crate::MediaStore).
#[derive(Clone, PartialEq, Eq)]
pub struct NewMedium {
    /// The name it is added under.
    pub name: String,
    /// Its content type, from its bytes.
    pub content_type: String,
    /// How Telegram sends it.
    pub kind: MediaKind,
    /// The SHA-256 of its bytes, in lowercase hex.
    pub sha256: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Who adds it.
    pub created_by: String,
}

impl fmt::Debug for NewMedium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMedium")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("kind", &self.kind)
            .field("sha256", &self.sha256)
            .field("size", &self.bytes.len())
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// Longest medium name.
pub const MAX_MEDIA_NAME: usize = 200;

/// What a file name's extension promises, for the extensions whose files have a magic number.
const PROMISED: [(&str, &str); 16] = [
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("mp4", "video/mp4"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("ics", "text/calendar"),
];

/// Text files have no magic number: their extension names their type when the bytes are
/// UTF-8.
const TEXT: [(&str, &str); 5] = [
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("md", "text/markdown"),
    ("ics", "text/calendar"),
    ("html", "text/html"),
];

impl NewMedium {
    /// Checks an upload named `name` (a file name; only its last path component counts) holding
    /// `bytes`: a clear error names what is wrong (an empty or over-long name, an empty file,
    /// bytes that are not what the name says, a file too large for Telegram).
    pub fn check(name: &str, bytes: Vec<u8>, created_by: &str) -> Result<Self> {
        let name = check_name(name)?;
        if bytes.is_empty() {
            return Err(Error::Invalid(format!("{name}: the file is empty")));
        }
        let content_type = content_type(&name, &bytes)?;
        let kind = MediaKind::of(&content_type);
        let size = bytes.len() as u64;
        if size > kind.telegram_limit() {
            return Err(Error::Invalid(format!(
                "{name}: {} is too large: Telegram takes a {kind} of at most {} through the Bot \
                 API",
                human_size(size),
                human_size(kind.telegram_limit())
            )));
        }
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(NewMedium {
            name,
            content_type,
            kind,
            sha256,
            bytes,
            created_by: created_by.to_owned(),
        })
    }
}

/// The refusal of a name another medium has.
pub fn name_taken(name: &str) -> Error {
    Error::Conflict(format!(
        "a medium named `{name}` already exists (replace it, or choose another name)"
    ))
}

/// Refuses to remove the medium `name` while it is in use: shown by the templates named, or frozen
/// into the broadcasts (id, name) that have not finished.
pub fn refuse_if_used(
    name: &str,
    templates: &[String],
    broadcasts: &[(i64, String)],
) -> Result<()> {
    let mut users: Vec<String> = templates
        .iter()
        .map(|t| format!("template `{t}`"))
        .collect();
    users.extend(
        broadcasts
            .iter()
            .map(|(id, b)| format!("broadcast {id} `{b}`, which has not finished")),
    );
    match users.as_slice() {
        [] => Ok(()),
        users => Err(Error::Conflict(format!(
            "medium `{name}` is in use by {}; take it out of the templates, and wait for the \
             broadcasts to finish or cancel them, before removing it",
            users.join(", ")
        ))),
    }
}

/// Checks, as a launch freezes `frozen`, that the library still holds the same bytes under its
/// id (`current`: the SHA-256 there now, `None` when it was removed).
pub fn check_still_held(frozen: &MediaRef, current: Option<&str>) -> Result<()> {
    match current {
        Some(sha) if sha == frozen.sha256 => Ok(()),
        Some(_) => Err(Error::Conflict(format!(
            "medium `{}` was replaced while the broadcast was launching; launch it again",
            frozen.name
        ))),
        None => Err(Error::Conflict(format!(
            "medium `{}` was removed from the library while the broadcast was launching",
            frozen.name
        ))),
    }
}

/// A medium's name, checked: the last component of a path, trimmed, not empty, at most
/// [`MAX_MEDIA_NAME`] characters, no control characters.
pub fn check_name(name: &str) -> Result<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    if base.is_empty() {
        return Err(Error::Invalid(format!(
            "a medium needs a name; `{name}` has none"
        )));
    }
    if base.chars().count() > MAX_MEDIA_NAME {
        return Err(Error::Invalid(format!(
            "a medium's name has at most {MAX_MEDIA_NAME} characters; `{}…` has {}",
            base.chars().take(40).collect::<String>(),
            base.chars().count()
        )));
    }
    if base.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "a medium's name cannot hold control characters: {base:?}"
        )));
    }
    Ok(base.to_owned())
}

/// The content type of `bytes`, from their magic number, checked against what `name`'s
/// extension promises.
fn content_type(name: &str, bytes: &[u8]) -> Result<String> {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let sniffed = infer::get(bytes).map(|t| t.mime_type());
    let text = std::str::from_utf8(bytes).is_ok();
    let promised = PROMISED
        .iter()
        .chain(TEXT.iter())
        .filter(|(ext, _)| *ext == extension)
        .map(|(_, mime)| *mime)
        .collect::<Vec<_>>();
    let found = match (sniffed, text) {
        (Some(mime), _) => mime.to_owned(),
        (None, true) => TEXT
            .iter()
            .find(|(ext, _)| *ext == extension)
            .map_or("text/plain", |(_, mime)| *mime)
            .to_owned(),
        (None, false) => "application/octet-stream".to_owned(),
    };
    if !promised.is_empty() && !promised.contains(&found.as_str()) {
        let what = match sniffed {
            Some(mime) => mime.to_owned(),
            None if text => "text".to_owned(),
            None => "of no known type".to_owned(),
        };
        return Err(Error::Invalid(format!(
            "{name}: the name says {}, but the bytes are {what}",
            promised[0]
        )));
    }
    Ok(found)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A size as people read it: bytes, KB or MB (binary units, as Telegram's limits).
pub fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < MB {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / MB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52,
    ];
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";

    fn invalid(r: Result<NewMedium>) -> String {
        match r {
            Err(Error::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        let m = NewMedium::check("uploads/Poster.PNG", PNG.to_vec(), "admin").unwrap();
        assert_eq!(m.name, "Poster.PNG");
        assert_eq!(
            (m.content_type.as_str(), m.kind),
            ("image/png", MediaKind::Photo)
        );
        assert_eq!(m.sha256.len(), 64);
        // A name without a promise takes what the bytes are.
        let m = NewMedium::check("schedule", PDF.to_vec(), "admin").unwrap();
        assert_eq!(
            (m.content_type.as_str(), m.kind),
            ("application/pdf", MediaKind::Document)
        );
        let m = NewMedium::check("rules.txt", "Règles\n".as_bytes().to_vec(), "a").unwrap();
        assert_eq!(m.content_type, "text/plain");
        let m = NewMedium::check("blob", vec![0xff, 0xfe, 0x00, 0x01], "a").unwrap();
        assert_eq!(m.content_type, "application/octet-stream");
    }

    #[test]
    fn a_name_that_lies_about_the_bytes_is_refused() {
        let msg = invalid(NewMedium::check("poster.jpg", PDF.to_vec(), "a"));
        assert!(
            msg.contains("poster.jpg") && msg.contains("image/jpeg"),
            "{msg}"
        );
        assert!(msg.contains("application/pdf"), "{msg}");
        let msg = invalid(NewMedium::check(
            "poster.png",
            b"not a picture".to_vec(),
            "a",
        ));
        assert!(msg.contains("the bytes are text"), "{msg}");
        let msg = invalid(NewMedium::check("notes.txt", vec![0xff, 0xfe, 0], "a"));
        assert!(
            msg.contains("text/plain") && msg.contains("no known type"),
            "{msg}"
        );
    }

    #[test]
    fn sizes_over_telegrams_limits_and_bad_names_are_refused() {
        let mut big = PNG.to_vec();
        big.resize(10 * 1024 * 1024 + 1, 0);
        let msg = invalid(NewMedium::check("big.png", big, "a"));
        assert!(msg.contains("10.0 MB") && msg.contains("photo"), "{msg}");
        let mut doc = PDF.to_vec();
        doc.resize(30 * 1024 * 1024, 0);
        assert!(NewMedium::check("big.pdf", doc, "a").is_ok());
        assert!(invalid(NewMedium::check("empty.pdf", Vec::new(), "a")).contains("empty"));
        assert!(invalid(NewMedium::check("dir/", PDF.to_vec(), "a")).contains("needs a name"));
        let long = "x".repeat(MAX_MEDIA_NAME + 1);
        assert!(invalid(NewMedium::check(&long, PDF.to_vec(), "a")).contains("at most"));
        assert!(invalid(NewMedium::check("a\u{7}b", PDF.to_vec(), "a")).contains("control"));
    }

    #[test]
    fn kinds_round_trip_and_sizes_read_well() {
        for kind in MediaKind::ALL {
            assert_eq!(MediaKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MediaKind::parse("sticker"), None);
        assert_eq!(MediaKind::of("image/gif"), MediaKind::Animation);
        assert_eq!(MediaKind::of("video/mp4"), MediaKind::Video);
        assert_eq!(human_size(900), "900 bytes");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(50 * MB), "50.0 MB");
    }
}
