//! Documents both front-ends print: the CLI's `--json` and the JSON API serialise these, so the
//! same thing has the same keys in both.

use broadcast_domain::{MediaKind, Medium};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A medium of the library (`media add|list|show|rm --json`, `/api/v1/media`); never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediumDoc {
    id: i64,
    name: String,
    kind: MediaKind,
    content_type: String,
    size: u64,
    sha256: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Medium> for MediumDoc {
    fn from(m: &Medium) -> Self {
        Self {
            id: m.id,
            name: m.name.clone(),
            kind: m.kind,
            content_type: m.content_type.clone(),
            size: m.size,
            sha256: m.sha256.clone(),
            created_by: m.created_by.clone(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}
