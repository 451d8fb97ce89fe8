//! In-memory implementations of every store port and of the audience source.
//!
//! For unit tests, examples and programs that embed the orchestrator without a database. It
//! keeps the same semantics as the SQL store (leases, compare-and-set transitions, one row per
//! user and channel) but nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use broadcast_domain::*;

/// Every store port and [`AudienceSource`] over maps in memory. Clones share the same data.
///
/// Implements [`TemplateStore`], [`BroadcastStore`], [`DeliveryStore`], [`AudienceStore`],
/// [`AudienceSource`], [`AdminStore`], [`AuditLog`] and [`SendBudget`], so one
/// `Arc<MemoryStore>` fills every store field of [`Ports`](crate::Ports) (see the crate
/// documentation). Fill the audience with [`AudienceStore::import_users`] (and
/// `import_competitions` / `import_registrations`) or [`MemoryStore::add_user`].
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: i64,
    users: BTreeMap<UserId, User>,
    competitions: BTreeMap<CompetitionId, Competition>,
    registrations: BTreeMap<RegistrationId, Registration>,
    templates: BTreeMap<TemplateId, MessageTemplate>,
    broadcasts: BTreeMap<BroadcastId, Broadcast>,
    recipients: BTreeMap<RecipientId, Recipient>,
    admins: Vec<AdminUser>,
    audit: Vec<AuditEntry>,
    budgets: BTreeMap<String, DateTime<Utc>>,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory store poisoned")
    }

    /// Adds a user directly (for embedding programs that own their audience elsewhere).
    pub fn add_user(&self, mut user: User) -> User {
        let mut s = self.lock();
        user.id = s.id();
        s.users.insert(user.id, user.clone());
        user
    }

    /// Every recipient row (for tests).
    pub fn recipients(&self) -> Vec<Recipient> {
        self.lock().recipients.values().cloned().collect()
    }

    /// Changes a recipient row in place (for tests that simulate crashes or clock skew).
    pub fn update_recipient(&self, id: RecipientId, f: impl FnOnce(&mut Recipient)) {
        if let Some(r) = self.lock().recipients.get_mut(&id) {
            f(r);
        }
    }
}

fn reachable_telegram(u: &User) -> Result<String, SkipReason> {
    match (u.telegram_chat_id, u.telegram_blocked_at) {
        (None, _) => Err(SkipReason::NoTelegram),
        (Some(_), Some(_)) => Err(SkipReason::TelegramBlocked),
        (Some(id), None) => Ok(id.to_string()),
    }
}

fn reachable_email(u: &User) -> Result<String, SkipReason> {
    match &u.email {
        None => Err(SkipReason::NoEmail),
        Some(_) if u.email_unsubscribed_at.is_some() => Err(SkipReason::EmailUnsubscribed),
        Some(_) if u.email_bounced_at.is_some() => Err(SkipReason::EmailBounced),
        Some(e) => Ok(e.to_string()),
    }
}

fn ieq_any(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
}

impl State {
    /// Users matching the filter with their first matching registration.
    fn audience(&self, f: &AudienceFilter) -> Vec<(UserId, Option<RegistrationId>)> {
        let mut out = Vec::new();
        for u in self.users.values() {
            let user_ok = ieq_any(&f.countries, u.country.as_deref())
                && ieq_any(&f.cities, u.city.as_deref())
                && f.has_email.is_none_or(|b| b == u.email.is_some())
                && f.has_telegram
                    .is_none_or(|b| b == u.telegram_chat_id.is_some())
                && (f.user_ids.is_empty() || f.user_ids.contains(&u.id))
                && (f.emails.is_empty()
                    || u.email.as_ref().is_some_and(|e| {
                        f.emails
                            .iter()
                            .any(|x| x.as_ref().eq_ignore_ascii_case(e.as_ref()))
                    }))
                && !f.exclude_user_ids.contains(&u.id);
            if !user_ok {
                continue;
            }
            if !f.uses_registrations() {
                out.push((u.id, None));
                continue;
            }
            let reg = self.registrations.values().find(|r| {
                r.user_id == u.id
                    && (f.competition_ids.is_empty()
                        || f.competition_ids.contains(&r.competition_id))
                    && (f.roles.is_empty() || f.roles.contains(&r.role))
                    && (f.registration_statuses.is_empty()
                        || f.registration_statuses.contains(&r.status))
            });
            if let Some(r) = reg {
                out.push((u.id, Some(r.id)));
            }
        }
        out
    }

    fn context(&self, user: UserId, reg: Option<RegistrationId>) -> Result<RecipientContext> {
        let user = self
            .users
            .get(&user)
            .cloned()
            .ok_or_else(|| Error::not_found("user", user))?;
        let registration = reg.and_then(|r| self.registrations.get(&r).cloned());
        let competition = registration
            .as_ref()
            .and_then(|r| self.competitions.get(&r.competition_id).cloned());
        Ok(RecipientContext {
            user,
            competition,
            registration,
        })
    }

    fn broadcast(&mut self, id: BroadcastId) -> Result<&mut Broadcast> {
        self.broadcasts
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("broadcast", id))
    }
}

#[async_trait]
impl TemplateStore for MemoryStore {
    async fn create_template(&self, new: NewTemplate) -> Result<MessageTemplate> {
        let mut s = self.lock();
        if s.templates.values().any(|t| t.name == new.name) {
            return Err(Error::Conflict(format!(
                "a template named `{}` already exists",
                new.name
            )));
        }
        let now = Utc::now();
        let t = MessageTemplate {
            id: s.id(),
            name: new.name,
            description: new.description,
            content: new.content,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        s.templates.insert(t.id, t.clone());
        Ok(t)
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: NewTemplate,
    ) -> Result<MessageTemplate> {
        let mut s = self.lock();
        if s.templates
            .values()
            .any(|t| t.name == update.name && t.id != id)
        {
            return Err(Error::Conflict(format!(
                "a template named `{}` already exists",
                update.name
            )));
        }
        let t = s
            .templates
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("template", id))?;
        t.name = update.name;
        t.description = update.description;
        t.content = update.content;
        t.version += 1;
        t.updated_at = Utc::now();
        Ok(t.clone())
    }

    async fn get_template(&self, id: TemplateId) -> Result<MessageTemplate> {
        self.lock()
            .templates
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("template", id))
    }

    async fn find_template(&self, name: &TemplateName) -> Result<Option<MessageTemplate>> {
        Ok(self
            .lock()
            .templates
            .values()
            .find(|t| &t.name == name)
            .cloned())
    }

    async fn list_templates(&self) -> Result<Vec<MessageTemplate>> {
        let mut v: Vec<_> = self.lock().templates.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn delete_template(&self, id: TemplateId) -> Result<()> {
        let mut s = self.lock();
        s.templates
            .remove(&id)
            .ok_or_else(|| Error::not_found("template", id))?;
        for b in s.broadcasts.values_mut() {
            if b.template_id == Some(id) {
                b.template_id = None;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BroadcastStore for MemoryStore {
    async fn create_broadcast(&self, new: NewBroadcast, now: DateTime<Utc>) -> Result<Broadcast> {
        let mut s = self.lock();
        if !s.templates.contains_key(&new.template_id) {
            return Err(Error::not_found("template", new.template_id));
        }
        let b = Broadcast {
            id: s.id(),
            name: new.name,
            template_id: Some(new.template_id),
            frozen_template: None,
            channel_policy: new.channel_policy,
            filter: new.filter,
            status: if new.scheduled_at.is_some() {
                BroadcastStatus::Scheduled
            } else {
                BroadcastStatus::Draft
            },
            status_reason: None,
            scheduled_at: new.scheduled_at,
            started_at: None,
            finished_at: None,
            created_by: new.created_by,
            total_recipients: 0,
            created_at: now,
            updated_at: now,
        };
        s.broadcasts.insert(b.id, b.clone());
        Ok(b)
    }

    async fn get_broadcast(&self, id: BroadcastId) -> Result<Broadcast> {
        self.lock().broadcast(id).cloned()
    }

    async fn list_broadcasts(
        &self,
        statuses: &[BroadcastStatus],
        limit: u64,
    ) -> Result<Vec<Broadcast>> {
        Ok(self
            .lock()
            .broadcasts
            .values()
            .rev()
            .filter(|b| statuses.is_empty() || statuses.contains(&b.status))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn change_status(&self, id: BroadcastId, change: StatusChange) -> Result<Broadcast> {
        let mut s = self.lock();
        let b = s.broadcast(id)?;
        if !change.from.contains(&b.status) {
            return Err(Error::Conflict(format!(
                "broadcast {id} is {}; cannot move it to {}",
                b.status, change.to
            )));
        }
        b.status = change.to;
        b.status_reason = change.reason;
        if change.to == BroadcastStatus::Running && b.started_at.is_none() {
            b.started_at = Some(change.at);
        }
        if change.to.is_final() {
            b.finished_at = Some(change.at);
        }
        if let Some(content) = change.freeze {
            b.frozen_template = Some(content);
        }
        b.updated_at = change.at;
        Ok(b.clone())
    }

    async fn set_schedule(
        &self,
        id: BroadcastId,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast> {
        let mut s = self.lock();
        let b = s.broadcast(id)?;
        if !matches!(
            b.status,
            BroadcastStatus::Draft | BroadcastStatus::Scheduled
        ) {
            return Err(Error::Conflict(format!(
                "broadcast {id} is {}; only a draft or scheduled broadcast can be scheduled",
                b.status
            )));
        }
        b.scheduled_at = at;
        b.status = if at.is_some() {
            BroadcastStatus::Scheduled
        } else {
            BroadcastStatus::Draft
        };
        b.updated_at = now;
        Ok(b.clone())
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Recipient>> {
        let mut s = self.lock();
        let running: Vec<BroadcastId> = s
            .broadcasts
            .values()
            .filter(|b| b.status == BroadcastStatus::Running)
            .filter(|b| req.broadcast_id.is_none_or(|id| id == b.id))
            .map(|b| b.id)
            .collect();
        let mut due: Vec<&mut Recipient> = s
            .recipients
            .values_mut()
            .filter(|r| running.contains(&r.broadcast_id))
            .filter(|r| req.channels.is_empty() || req.channels.contains(&r.channel))
            .filter(|r| match r.status {
                DeliveryStatus::Pending => r.next_attempt_at <= req.now,
                DeliveryStatus::Sending => r.lease_expires_at.is_some_and(|t| t < req.now),
                _ => false,
            })
            .collect();
        due.sort_by_key(|r| (r.next_attempt_at, r.id));
        Ok(due
            .into_iter()
            .take(req.limit as usize)
            .map(|r| {
                // A takeover of a row whose send had started: it may have gone out.
                if r.status == DeliveryStatus::Sending && r.send_started_at.is_some() {
                    r.uncertain_sends += 1;
                }
                r.send_started_at = None;
                r.status = DeliveryStatus::Sending;
                r.lease_owner = Some(req.worker_id.clone());
                r.lease_expires_at = Some(req.now + req.lease_for);
                r.updated_at = req.now;
                r.clone()
            })
            .collect())
    }

    async fn record_results(&self, results: &[DeliveryResult]) -> Result<u64> {
        let mut s = self.lock();
        let mut n = 0;
        for res in results {
            let Some(r) = s.recipients.get_mut(&res.recipient_id) else {
                continue;
            };
            if r.status != DeliveryStatus::Sending
                || r.lease_owner.as_deref() != Some(res.worker_id.as_str())
            {
                continue;
            }
            n += 1;
            r.lease_owner = None;
            r.lease_expires_at = None;
            r.send_started_at = None;
            r.uncertain_sends += i32::from(res.uncertain);
            match &res.outcome {
                Outcome::Sent {
                    at,
                    provider_message_id,
                } => {
                    r.status = DeliveryStatus::Sent;
                    r.attempts += 1;
                    r.sent_at = Some(*at);
                    r.provider_message_id = provider_message_id.clone();
                    r.error_kind = None;
                    r.last_error = None;
                    r.updated_at = *at;
                }
                Outcome::Failed { at, kind, error } => {
                    r.status = DeliveryStatus::Failed;
                    r.attempts += 1;
                    r.error_kind = Some(*kind);
                    r.last_error = Some(error.clone());
                    r.updated_at = *at;
                }
                Outcome::Retry {
                    next_attempt_at,
                    kind,
                    error,
                    count_attempt,
                } => {
                    r.status = DeliveryStatus::Pending;
                    r.attempts += i32::from(*count_attempt);
                    r.next_attempt_at = *next_attempt_at;
                    r.error_kind = Some(*kind);
                    r.last_error = Some(error.clone());
                }
                Outcome::Released {
                    next_attempt_at,
                    note,
                } => {
                    r.status = DeliveryStatus::Pending;
                    r.next_attempt_at = *next_attempt_at;
                    r.error_kind = None;
                    r.last_error = Some(note.clone());
                }
            }
        }
        Ok(n)
    }

    async fn mark_started(
        &self,
        worker_id: &str,
        rows: &[RecipientId],
        at: DateTime<Utc>,
    ) -> Result<Vec<RecipientId>> {
        let mut s = self.lock();
        let mut marked = Vec::with_capacity(rows.len());
        for id in rows {
            if let Some(r) = s.recipients.get_mut(id)
                && r.status == DeliveryStatus::Sending
                && r.lease_owner.as_deref() == Some(worker_id)
            {
                r.send_started_at = Some(at);
                marked.push(*id);
            }
        }
        Ok(marked)
    }

    async fn status_counts(&self, broadcast: BroadcastId) -> Result<Vec<StatusCount>> {
        let s = self.lock();
        let mut map: BTreeMap<_, u64> = BTreeMap::new();
        for r in s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
        {
            *map.entry((r.channel, r.status, r.error_kind, r.skip_reason))
                .or_default() += 1;
        }
        Ok(map
            .into_iter()
            .map(
                |((channel, status, error_kind, skip_reason), count)| StatusCount {
                    channel,
                    status,
                    error_kind,
                    skip_reason,
                    count,
                },
            )
            .collect())
    }

    async fn stats(&self, broadcast: BroadcastId) -> Result<DeliveryStats> {
        let mut stats = DeliveryStats::from_counts(&self.status_counts(broadcast).await?);
        let s = self.lock();
        let rows = s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast);
        for r in rows {
            if r.uncertain_sends > 0 {
                stats.possible_duplicates += 1;
            }
            if let Some(at) = r.sent_at {
                stats.first_sent_at = Some(stats.first_sent_at.map_or(at, |f| f.min(at)));
                stats.last_sent_at = Some(stats.last_sent_at.map_or(at, |l| l.max(at)));
            }
        }
        Ok(stats)
    }

    async fn open_count(&self, broadcast: BroadcastId) -> Result<u64> {
        Ok(self
            .lock()
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast && r.status.is_open())
            .count() as u64)
    }

    async fn cancel_pending(&self, broadcast: BroadcastId, now: DateTime<Utc>) -> Result<u64> {
        let mut s = self.lock();
        let mut n = 0;
        for r in s.recipients.values_mut() {
            if r.broadcast_id == broadcast && r.status == DeliveryStatus::Pending {
                r.status = DeliveryStatus::Cancelled;
                r.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn add_email_fallback(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        registration: Option<RegistrationId>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut s = self.lock();
        let exists = s.recipients.values().any(|r| {
            r.broadcast_id == broadcast && r.user_id == user && r.channel == ChannelKind::Email
        });
        if exists {
            return Ok(false);
        }
        let u = s
            .users
            .get(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        let (status, skip_reason, address) = match reachable_email(u) {
            Ok(a) => (DeliveryStatus::Pending, None, a),
            Err(reason) => (DeliveryStatus::Skipped, Some(reason), String::new()),
        };
        let id = s.id();
        s.recipients.insert(
            id,
            Recipient {
                id,
                broadcast_id: broadcast,
                user_id: user,
                registration_id: registration,
                channel: ChannelKind::Email,
                address,
                status,
                skip_reason,
                attempts: 0,
                next_attempt_at: now,
                lease_owner: None,
                lease_expires_at: None,
                send_started_at: None,
                error_kind: None,
                last_error: None,
                provider_message_id: None,
                sent_at: None,
                uncertain_sends: 0,
                updated_at: now,
            },
        );
        s.broadcast(broadcast)?.total_recipients += 1;
        Ok(status == DeliveryStatus::Pending)
    }

    async fn requeue_failed(
        &self,
        broadcast: BroadcastId,
        kinds: &[ErrorKind],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut s = self.lock();
        let mut flagged = Vec::new();
        for u in s.users.values() {
            if u.telegram_blocked_at.is_some() {
                flagged.push((u.id, ChannelKind::Telegram));
            }
            if u.email_unsubscribed_at.is_some() || u.email_bounced_at.is_some() {
                flagged.push((u.id, ChannelKind::Email));
            }
        }
        let mut n = 0;
        for r in s.recipients.values_mut() {
            let eligible = r.broadcast_id == broadcast
                && r.status == DeliveryStatus::Failed
                && r.error_kind != Some(ErrorKind::Blocked)
                && (kinds.is_empty() || r.error_kind.is_some_and(|k| kinds.contains(&k)))
                && !flagged.contains(&(r.user_id, r.channel));
            if eligible {
                r.status = DeliveryStatus::Pending;
                r.attempts = 0;
                r.next_attempt_at = now;
                r.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn list_recipients(
        &self,
        broadcast: BroadcastId,
        q: &RecipientQuery,
    ) -> Result<Page<Recipient>> {
        let s = self.lock();
        let matching: Vec<&Recipient> = s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
            .filter(|r| q.status.is_none_or(|x| x == r.status))
            .filter(|r| q.channel.is_none_or(|x| x == r.channel))
            .filter(|r| q.error_kind.is_none_or(|x| Some(x) == r.error_kind))
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
}

#[async_trait]
impl SendBudget for MemoryStore {
    async fn reserve(
        &self,
        key: &str,
        interval: std::time::Duration,
        n: u32,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let mut s = self.lock();
        let step = chrono::Duration::from_std(interval)
            .map_err(|e| Error::Invalid(format!("budget interval: {e}")))?;
        let next = s.budgets.entry(key.to_owned()).or_insert(now);
        let first = (*next).max(now);
        *next = first + step * n as i32;
        Ok(first)
    }
}

#[async_trait]
impl AudienceStore for MemoryStore {
    async fn import_users(&self, rows: Vec<NewUser>, now: DateTime<Utc>) -> Result<ImportReport> {
        let mut s = self.lock();
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
            s.competitions.insert(
                id,
                Competition {
                    id,
                    slug: row.slug,
                    name: row.name,
                    starts_on: row.starts_on,
                    city: row.city,
                    country: row.country,
                    created_at: now,
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
        let mut s = self.lock();
        // Resolve everything first: all or nothing.
        let mut resolved = Vec::with_capacity(rows.len());
        for row in &rows {
            let user = s
                .users
                .values()
                .find(|u| u.external_id.as_deref() == Some(row.user_external_id.as_str()))
                .map(|u| u.id)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "line {}: unknown user `{}`",
                        row.line, row.user_external_id
                    ))
                })?;
            let comp = s
                .competitions
                .values()
                .find(|c| c.slug == row.competition_slug)
                .map(|c| c.id)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "line {}: unknown competition `{}`",
                        row.line, row.competition_slug
                    ))
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
            s.registrations.insert(
                id,
                Registration {
                    id,
                    user_id,
                    competition_id,
                    role,
                    status,
                    created_at: now,
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
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        u.telegram_blocked_at.get_or_insert(at);
        Ok(())
    }

    async fn mark_email_unsubscribed(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        u.email_unsubscribed_at.get_or_insert(at);
        Ok(())
    }

    async fn mark_email_bounced(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        u.email_bounced_at.get_or_insert(at);
        Ok(())
    }

    async fn update_chat_id(&self, user: UserId, chat_id: TelegramChatId) -> Result<()> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&user)
            .ok_or_else(|| Error::not_found("user", user))?;
        u.telegram_chat_id = Some(chat_id);
        Ok(())
    }
}

#[async_trait]
impl AudienceSource for MemoryStore {
    async fn count(&self, filter: &AudienceFilter) -> Result<AudienceCount> {
        let s = self.lock();
        let mut c = AudienceCount::default();
        for (uid, _) in s.audience(filter) {
            let u = &s.users[&uid];
            let (t, e) = (reachable_telegram(u).is_ok(), reachable_email(u).is_ok());
            c.users += 1;
            c.telegram += u64::from(t);
            c.email += u64::from(e);
            c.both += u64::from(t && e);
        }
        Ok(c)
    }

    async fn materialise(
        &self,
        broadcast: BroadcastId,
        filter: &AudienceFilter,
        policy: ChannelPolicy,
        now: DateTime<Utc>,
    ) -> Result<MaterialiseReport> {
        let mut s = self.lock();
        s.broadcast(broadcast)?;
        let mut report = MaterialiseReport::default();
        let mut new_rows = Vec::new();
        for (uid, reg) in s.audience(filter) {
            let u = &s.users[&uid];
            let telegram = reachable_telegram(u);
            let mut rows = Vec::new();
            if policy.channels().contains(&ChannelKind::Telegram) {
                rows.push((ChannelKind::Telegram, telegram.clone()));
            }
            let wants_email = match policy {
                ChannelPolicy::Email | ChannelPolicy::Both => true,
                ChannelPolicy::TelegramThenEmail => telegram.is_err(),
                ChannelPolicy::Telegram => false,
            };
            if wants_email {
                rows.push((ChannelKind::Email, reachable_email(u)));
            }
            for (channel, address) in rows {
                new_rows.push((uid, reg, channel, address));
            }
        }
        for (uid, reg, channel, address) in new_rows {
            let exists = s
                .recipients
                .values()
                .any(|r| r.broadcast_id == broadcast && r.user_id == uid && r.channel == channel);
            if exists {
                continue;
            }
            let (status, skip_reason, address) = match address {
                Ok(a) => (DeliveryStatus::Pending, None, a),
                Err(reason) => (DeliveryStatus::Skipped, Some(reason), String::new()),
            };
            let id = s.id();
            s.recipients.insert(
                id,
                Recipient {
                    id,
                    broadcast_id: broadcast,
                    user_id: uid,
                    registration_id: reg,
                    channel,
                    address,
                    status,
                    skip_reason,
                    attempts: 0,
                    next_attempt_at: now,
                    lease_owner: None,
                    lease_expires_at: None,
                    send_started_at: None,
                    error_kind: None,
                    last_error: None,
                    provider_message_id: None,
                    sent_at: None,
                    uncertain_sends: 0,
                    updated_at: now,
                },
            );
            report.inserted += 1;
        }
        let mut total = 0;
        for r in s
            .recipients
            .values()
            .filter(|r| r.broadcast_id == broadcast)
        {
            total += 1;
            match r.skip_reason {
                Some(reason) => *report.skipped.entry(reason).or_default() += 1,
                None => *report.queued.entry(r.channel).or_default() += 1,
            }
        }
        s.broadcast(broadcast)?.total_recipients = total;
        Ok(report)
    }

    async fn sample(&self, filter: &AudienceFilter, limit: u64) -> Result<Vec<RecipientContext>> {
        let s = self.lock();
        s.audience(filter)
            .into_iter()
            .take(limit as usize)
            .map(|(u, r)| s.context(u, r))
            .collect()
    }
}

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
        Ok(())
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

    async fn recent(&self, limit: u64, offset: u64) -> Result<Vec<AuditEntry>> {
        Ok(self
            .lock()
            .audit
            .iter()
            .rev()
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}
