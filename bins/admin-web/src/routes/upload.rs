//! A multipart form carrying one file (the audience import, the media library): its text
//! fields and the file, read whole, with one error for an upload that cannot be read.

use std::collections::BTreeMap;

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;

use crate::auth::Session;
use crate::error::PageError;

/// The form's text fields by name, and its `file` field: the name the browser gave it (empty
/// when none) and the bytes.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    fields: BTreeMap<String, String>,
    pub(crate) file: Option<(String, Vec<u8>)>,
}

impl Upload {
    /// Reads every field; a second field of one name replaces the first.
    pub(crate) async fn read(mut multipart: Multipart) -> Result<Self, PageError> {
        let bad =
            |e: MultipartError| PageError::BadRequest(format!("the upload could not be read: {e}"));
        let mut upload = Self::default();
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "file" {
                let file_name = field.file_name().unwrap_or_default().to_owned();
                upload.file = Some((file_name, field.bytes().await.map_err(bad)?.to_vec()));
            } else {
                let text = field.text().await.map_err(bad)?;
                upload.fields.insert(name, text);
            }
        }
        Ok(upload)
    }

    /// A text field.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// True when the form's `csrf` field is the session's token.
    pub(crate) fn csrf_matches(&self, session: &Session) -> bool {
        self.field("csrf").is_some_and(|t| session.csrf_matches(t))
    }
}
