//! [`AudienceStore`]: users, competitions and registrations, imported all or nothing by the
//! domain's import rules.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::{DateTime, Utc};

use super::MemoryStore;

#[async_trait]
impl AudienceStore for MemoryStore {
    async fn import_users(&self, rows: Vec<NewUser>, now: DateTime<Utc>) -> Result<ImportReport> {
        check_users(&rows)?;
        let mut s = self.lock();
        check_holders(
            &rows,
            s.users.values().map(|u| Holder {
                id: u.id,
                external_id: u.external_id.as_deref(),
                telegram_chat_id: u.telegram_chat_id.map(TelegramChatId::get),
                email: u.email.as_ref().map(AsRef::as_ref),
            }),
        )?;
        let mut report = ImportReport::default();
        for row in rows {
            let existing = s
                .users
                .values()
                .find(|u| u.external_id.as_deref() == Some(row.external_id.as_str()))
                .map(|u| u.id);
            let id = match existing {
                Some(id) => {
                    report.updated += 1;
                    id
                }
                None => {
                    report.inserted += 1;
                    s.id()
                }
            };
            let old = s.users.get(&id).cloned();
            let user = User {
                id,
                external_id: Some(row.external_id),
                telegram_chat_id: row.telegram_chat_id,
                email: row.email,
                first_name: row.first_name,
                last_name: row.last_name,
                username: row.username,
                language: row.language,
                country: row.country,
                city: row.city,
                attributes: row.attributes,
                telegram_blocked_at: old
                    .as_ref()
                    .and_then(|o| o.telegram_blocked_at)
                    .or(row.telegram_blocked.then_some(now)),
                email_unsubscribed_at: old
                    .as_ref()
                    .and_then(|o| o.email_unsubscribed_at)
                    .or(row.email_unsubscribed.then_some(now)),
                email_bounced_at: old.as_ref().and_then(|o| o.email_bounced_at),
                created_at: old.as_ref().map_or(now, |o| o.created_at),
                updated_at: now,
            };
            s.users.insert(id, user);
        }
        Ok(report)
    }

    async fn import_competitions(
        &self,
        rows: Vec<NewCompetition>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        check_competitions(&rows)?;
        let mut s = self.lock();
        let mut report = ImportReport::default();
        for row in rows {
            let existing = s
                .competitions
                .values()
                .find(|c| c.slug == row.slug)
                .map(|c| c.id);
            let id = match existing {
                Some(id) => {
                    report.updated += 1;
                    id
                }
                None => {
                    report.inserted += 1;
                    s.id()
                }
            };
            let created_at = s.competitions.get(&id).map_or(now, |c| c.created_at);
            s.competitions.insert(
                id,
                Competition {
                    id,
                    slug: row.slug,
                    name: row.name,
                    starts_on: row.starts_on,
                    city: row.city,
                    country: row.country,
                    created_at,
                },
            );
        }
        Ok(report)
    }

    async fn import_registrations(
        &self,
        rows: Vec<NewRegistration>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        check_registrations(&rows)?;
        let mut s = self.lock();
        // Resolve everything first: all or nothing.
        let mut resolved = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let user = s
                .users
                .values()
                .find(|u| u.external_id.as_deref() == Some(row.user_external_id.as_str()))
                .map(|u| u.id)
                .ok_or_else(|| unknown_in_import(row.line, i, "user", &row.user_external_id))?;
            let comp = s
                .competitions
                .values()
                .find(|c| c.slug == row.competition_slug)
                .map(|c| c.id)
                .ok_or_else(|| {
                    unknown_in_import(row.line, i, "competition", &row.competition_slug)
                })?;
            resolved.push((user, comp, row.role, row.status));
        }
        let mut report = ImportReport::default();
        for (user_id, competition_id, role, status) in resolved {
            let existing = s
                .registrations
                .values()
                .find(|r| r.user_id == user_id && r.competition_id == competition_id)
                .map(|r| r.id);
            let id = match existing {
                Some(id) => {
                    report.updated += 1;
                    id
                }
                None => {
                    report.inserted += 1;
                    s.id()
                }
            };
            let created_at = s.registrations.get(&id).map_or(now, |r| r.created_at);
            s.registrations.insert(
                id,
                Registration {
                    id,
                    user_id,
                    competition_id,
                    role,
                    status,
                    created_at,
                },
            );
        }
        Ok(report)
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.lock()
            .users
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("user", id))
    }

    async fn list_users(&self, q: &UserQuery) -> Result<Page<User>> {
        let s = self.lock();
        let needle = q.search.as_deref().map(str::to_lowercase);
        let matching: Vec<&User> = s
            .users
            .values()
            .filter(|u| match &needle {
                None => true,
                Some(n) => [
                    Some(u.full_name()),
                    u.email.as_ref().map(ToString::to_string),
                    u.username.clone(),
                ]
                .into_iter()
                .flatten()
                .any(|h| h.to_lowercase().contains(n.as_str())),
            })
            .collect();
        let limit = if q.limit == 0 {
            usize::MAX
        } else {
            q.limit as usize
        };
        Ok(Page {
            total: matching.len() as u64,
            items: matching
                .into_iter()
                .skip(q.offset as usize)
                .take(limit)
                .cloned()
                .collect(),
        })
    }

    async fn list_competitions(&self) -> Result<Vec<Competition>> {
        Ok(self.lock().competitions.values().cloned().collect())
    }

    async fn registrations_of(&self, user: UserId) -> Result<Vec<(Registration, Competition)>> {
        let s = self.lock();
        Ok(s.registrations
            .values()
            .filter(|r| r.user_id == user)
            .filter_map(|r| Some((r.clone(), s.competitions.get(&r.competition_id)?.clone())))
            .collect())
    }

    async fn contexts(&self, recipients: &[Recipient]) -> Result<Vec<RecipientContext>> {
        let s = self.lock();
        recipients
            .iter()
            .map(|r| s.context(r.user_id, r.registration_id))
            .collect()
    }

    async fn mark_telegram_blocked(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        self.mark(user, |u| {
            u.telegram_blocked_at.get_or_insert(at);
        })
    }

    async fn mark_email_unsubscribed(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        self.mark(user, |u| {
            u.email_unsubscribed_at.get_or_insert(at);
        })
    }

    async fn mark_email_bounced(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        self.mark(user, |u| {
            u.email_bounced_at.get_or_insert(at);
        })
    }

    async fn update_chat_id(&self, user: UserId, chat_id: TelegramChatId) -> Result<()> {
        self.mark(user, |u| u.telegram_chat_id = Some(chat_id))
    }
}

impl MemoryStore {
    /// Changes one user, or answers that there is none.
    fn mark(&self, user: UserId, change: impl FnOnce(&mut User)) -> Result<()> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        change(u);
        Ok(())
    }
}
