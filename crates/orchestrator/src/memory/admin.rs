//! [`AdminStore`] and [`AuditLog`]: administrators and the audit log.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl AdminStore for MemoryStore {
    async fn create_admin(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<AdminUser> {
        let mut s = self.lock();
        if s.admins.iter().any(|a| a.username == username) {
            return Err(Error::Conflict(format!(
                "an admin named `{username}` already exists"
            )));
        }
        let a = AdminUser {
            id: s.id(),
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            created_at: now,
            last_login_at: None,
        };
        s.admins.push(a.clone());
        Ok(a)
    }

    async fn find_admin(&self, username: &str) -> Result<Option<AdminUser>> {
        Ok(self
            .lock()
            .admins
            .iter()
            .find(|a| a.username == username)
            .cloned())
    }

    async fn set_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        let mut s = self.lock();
        let a = s
            .admins
            .iter_mut()
            .find(|a| a.username == username)
            .ok_or_else(|| Error::not_found("admin", username))?;
        a.password_hash = password_hash.to_owned();
        s.sessions.retain(|_, session| session.username != username);
        Ok(())
    }

    async fn create_session(&self, session: AdminSession) -> Result<()> {
        let mut s = self.lock();
        if s.sessions.contains_key(&session.id_hash) {
            return Err(Error::Conflict("that session already exists".into()));
        }
        s.sessions.insert(session.id_hash.clone(), session);
        Ok(())
    }

    async fn find_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AdminSession>> {
        Ok(self
            .lock()
            .sessions
            .get(id_hash)
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        self.lock().sessions.remove(id_hash);
        Ok(())
    }

    async fn end_sessions(&self, username: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut s = self.lock();
        let before = s.sessions.len();
        s.sessions.retain(|_, session| session.username != username);
        let ended = (before - s.sessions.len()) as u64;
        s.sessions.retain(|_, session| session.expires_at > now);
        Ok(ended)
    }

    async fn record_login(&self, username: &str, at: DateTime<Utc>) -> Result<()> {
        let mut s = self.lock();
        if let Some(a) = s.admins.iter_mut().find(|a| a.username == username) {
            a.last_login_at = Some(at);
        }
        Ok(())
    }

    async fn list_admins(&self) -> Result<Vec<AdminUser>> {
        Ok(self.lock().admins.clone())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn record(&self, mut entry: AuditEntry) -> Result<()> {
        let mut s = self.lock();
        entry.id = s.id();
        s.audit.push(entry);
        Ok(())
    }

    async fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let s = self.lock();
        let mut found: Vec<&AuditEntry> = s.audit.iter().filter(|e| query.matches(e)).collect();
        found.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
        let limit = match query.limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Ok(found
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(limit)
            .cloned()
            .collect())
    }
}
