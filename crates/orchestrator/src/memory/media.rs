//! [`MediaStore`]: the media library in memory, bytes once per SHA-256.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl MediaStore for MemoryStore {
    async fn add_medium(
        &self,
        new: NewMedium,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Medium> {
        let mut s = self.lock();
        let existing = s.media.values().find(|m| m.name == new.name).map(|m| m.id);
        let medium = match existing {
            Some(_) if !replace => return Err(name_taken(&new.name)),
            Some(id) => {
                let m = s.media.get_mut(&id).expect("found above");
                let changed = m.sha256 != new.sha256;
                m.sha256 = new.sha256.clone();
                m.content_type = new.content_type;
                m.kind = new.kind;
                m.size = new.bytes.len() as u64;
                m.created_by = new.created_by;
                m.updated_at = now;
                let medium = m.clone();
                s.blobs.entry(new.sha256).or_insert(new.bytes);
                if changed {
                    s.sweep_blobs();
                }
                medium
            }
            None => {
                let medium = Medium {
                    id: s.id(),
                    name: new.name,
                    content_type: new.content_type,
                    kind: new.kind,
                    size: new.bytes.len() as u64,
                    sha256: new.sha256.clone(),
                    created_by: new.created_by,
                    created_at: now,
                    updated_at: now,
                };
                s.blobs.entry(new.sha256).or_insert(new.bytes);
                s.media.insert(medium.id, medium.clone());
                medium
            }
        };
        Ok(medium)
    }

    async fn list_media(&self) -> Result<Vec<Medium>> {
        let mut media: Vec<Medium> = self.lock().media.values().cloned().collect();
        media.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(media)
    }

    async fn get_medium(&self, id: MediaId) -> Result<Medium> {
        self.lock()
            .media
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("medium", id))
    }

    async fn find_medium(&self, name: &str) -> Result<Option<Medium>> {
        Ok(self.lock().media.values().find(|m| m.name == name).cloned())
    }

    async fn medium_bytes(&self, sha256: &str) -> Result<Vec<u8>> {
        self.lock()
            .blobs
            .get(sha256)
            .cloned()
            .ok_or_else(|| Error::not_found("media bytes", sha256))
    }

    async fn remove_medium(&self, id: MediaId) -> Result<Medium> {
        let mut s = self.lock();
        let name = s
            .media
            .get(&id)
            .map(|m| m.name.clone())
            .ok_or_else(|| Error::not_found("medium", id))?;
        let templates: Vec<String> = s
            .templates
            .values()
            .filter(|t| t.content.telegram_media.iter().any(|m| m.medium == id))
            .map(|t| t.name.to_string())
            .collect();
        let broadcasts: Vec<(BroadcastId, String)> = s
            .frozen_uses()
            .filter(|(_, _, media)| media.iter().any(|m| m.medium == id))
            .map(|(b, name, _)| (b, name.to_owned()))
            .collect();
        refuse_if_used(&name, &templates, &broadcasts)?;
        let medium = s.media.remove(&id).expect("found above");
        s.sweep_blobs();
        Ok(medium)
    }

    async fn telegram_file_id(&self, bot: i64, sha256: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .telegram_files
            .get(&(bot, sha256.to_owned()))
            .cloned())
    }

    async fn keep_telegram_file_id(
        &self,
        bot: i64,
        sha256: &str,
        _kind: MediaKind,
        file_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        self.lock()
            .telegram_files
            .insert((bot, sha256.to_owned()), file_id.to_owned());
        Ok(())
    }

    async fn forget_telegram_file_id(&self, bot: i64, sha256: &str, file_id: &str) -> Result<()> {
        let mut s = self.lock();
        let key = (bot, sha256.to_owned());
        if s.telegram_files.get(&key).is_some_and(|id| id == file_id) {
            s.telegram_files.remove(&key);
        }
        Ok(())
    }
}
