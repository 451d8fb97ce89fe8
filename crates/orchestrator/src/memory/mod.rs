//! In-memory implementations of every store port and of the audience source.
//!
//! For unit tests, examples and programs that embed the orchestrator without a database. It
//! keeps the same semantics as the SQL store (leases, compare-and-set transitions, one row per
//! user and channel, the domain's audience and import rules), which `broadcast-store`'s contract
//! suite checks on both, but nothing survives the process. One module per port.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use broadcast_domain::*;

mod admin;
mod audience;
mod broadcasts;
mod budget;
mod deliveries;
mod media;
mod source;
mod templates;

/// Every store port and [`AudienceSource`] over maps in memory. Clones share the same data.
///
/// Implements [`TemplateStore`], [`BroadcastStore`], [`DeliveryStore`], [`AudienceStore`],
/// [`AudienceSource`], [`AdminStore`], [`AuditLog`], [`SendBudget`] and [`MediaStore`], so one
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
    /// Admin panel sessions by id hash.
    sessions: BTreeMap<String, AdminSession>,
    audit: Vec<AuditEntry>,
    /// Per key, the next free slot and how far the slots have been moved back in all.
    budgets: BTreeMap<String, BudgetState>,
    /// How each channel reaches users.
    reaches: Reaches,
    /// The media library by id, and its bytes by SHA-256.
    media: BTreeMap<MediaId, Medium>,
    blobs: BTreeMap<String, Vec<u8>>,
    /// Telegram's `file_id` per bot and SHA-256.
    telegram_files: BTreeMap<(i64, String), String>,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Forgets the bytes no medium names and no unfinished broadcast launched with.
    fn sweep_blobs(&mut self) {
        let mut keep: BTreeSet<String> = self.media.values().map(|m| m.sha256.clone()).collect();
        let frozen: Vec<String> = self
            .frozen_uses()
            .flat_map(|(_, _, media)| media.iter().map(|m| m.sha256.clone()))
            .collect();
        keep.extend(frozen);
        self.blobs.retain(|sha, _| keep.contains(sha));
    }

    /// The media frozen into broadcasts that have not finished: (id, name, media) of each.
    fn frozen_uses(&self) -> impl Iterator<Item = (BroadcastId, &str, &[MediaRef])> {
        self.broadcasts.values().filter_map(|b| {
            let frozen = b.frozen_template.as_ref()?;
            (!b.status.is_final() && !frozen.telegram_media.is_empty()).then_some((
                b.id,
                b.name.as_str(),
                frozen.telegram_media.as_slice(),
            ))
        })
    }

    /// The broadcasts in `status`.
    fn broadcasts_in(&self, status: BroadcastStatus) -> BTreeSet<BroadcastId> {
        self.broadcasts
            .values()
            .filter(|b| b.status == status)
            .map(|b| b.id)
            .collect()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store (and its clones), reaching users on the channels of `reaches`.
    pub fn with_reaches(self, reaches: Reaches) -> Self {
        self.lock().reaches = reaches;
        self
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

impl State {
    /// Users matching the filter with their matching registration ([`AudienceFilter::matches`]).
    fn audience(&self, f: &AudienceFilter) -> Vec<(UserId, Option<RegistrationId>)> {
        self.users
            .values()
            .filter_map(|u| Some((u.id, f.matches(u, self.registrations.values())?)))
            .collect()
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
