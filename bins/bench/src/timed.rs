//! The store behind `bench engine`, timing each call of the delivery and audience ports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broadcast_domain::{ClaimRequest, DeliveryResult, DeliveryStore};
use broadcast_store::Store;
use serde_json::{Value, json};

/// The store, timing each call of the delivery and audience ports: where the engine's time goes.
#[derive(Debug)]
pub(crate) struct Timed {
    pub(crate) store: Store,
    pub(crate) calls: std::sync::Mutex<BTreeMap<&'static str, (u64, Duration)>>,
}

impl Timed {
    async fn time<T>(&self, name: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let e = calls.entry(name).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        out
    }

    pub(crate) fn report(&self, messages: u64) -> Value {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .map(|(name, (n, d))| {
                (
                    (*name).to_owned(),
                    json!({
                        "calls": n,
                        "seconds": d.as_secs_f64(),
                        "us_per_message": d.as_secs_f64() * 1e6 / messages.max(1) as f64,
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

type DResult<T> = broadcast_domain::Result<T>;

#[async_trait::async_trait]
impl DeliveryStore for Timed {
    async fn claim_due(&self, request: &ClaimRequest) -> DResult<Vec<broadcast_domain::Recipient>> {
        self.time("claim_due", self.store.claim_due(request)).await
    }
    async fn claim_probe(
        &self,
        broadcast: i64,
        channel: broadcast_domain::ChannelKind,
        worker_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_for: chrono::Duration,
    ) -> DResult<Option<broadcast_domain::Recipient>> {
        self.store
            .claim_probe(broadcast, channel, worker_id, now, lease_for)
            .await
    }
    async fn release_expired(&self, now: chrono::DateTime<chrono::Utc>) -> DResult<u64> {
        self.store.release_expired(now).await
    }
    async fn record_results(&self, results: &[DeliveryResult]) -> DResult<u64> {
        self.time("record_results", self.store.record_results(results))
            .await
    }
    async fn mark_started(
        &self,
        worker_id: &str,
        rows: &[i64],
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<Vec<i64>> {
        self.time("mark_started", self.store.mark_started(worker_id, rows, at))
            .await
    }
    async fn status_counts(&self, broadcast: i64) -> DResult<Vec<broadcast_domain::StatusCount>> {
        self.time("status_counts", self.store.status_counts(broadcast))
            .await
    }
    async fn stats(&self, broadcast: i64) -> DResult<broadcast_domain::DeliveryStats> {
        self.time("stats", self.store.stats(broadcast)).await
    }
    async fn open_count(&self, broadcast: i64) -> DResult<u64> {
        self.time("open_count", self.store.open_count(broadcast))
            .await
    }
    async fn cancel_pending(
        &self,
        broadcast: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<u64> {
        self.store.cancel_pending(broadcast, now).await
    }
    async fn list_recipients(
        &self,
        broadcast: i64,
        query: &broadcast_domain::RecipientQuery,
    ) -> DResult<broadcast_domain::Page<broadcast_domain::Recipient>> {
        self.store.list_recipients(broadcast, query).await
    }
    async fn add_fallback(
        &self,
        broadcast: i64,
        user: i64,
        registration: Option<i64>,
        chain: &[broadcast_domain::ChannelKind],
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<bool> {
        self.store
            .add_fallback(broadcast, user, registration, chain, now)
            .await
    }
    async fn requeue_failed(
        &self,
        broadcast: i64,
        kinds: &[broadcast_domain::ErrorKind],
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<u64> {
        self.store.requeue_failed(broadcast, kinds, now).await
    }
    async fn recount(&self, broadcast: i64) -> DResult<()> {
        self.store.recount(broadcast).await
    }
}

#[async_trait::async_trait]
impl broadcast_domain::AudienceStore for Timed {
    async fn import_users(
        &self,
        rows: Vec<broadcast_domain::NewUser>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_users(rows, now).await
    }
    async fn import_competitions(
        &self,
        rows: Vec<broadcast_domain::NewCompetition>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_competitions(rows, now).await
    }
    async fn import_registrations(
        &self,
        rows: Vec<broadcast_domain::NewRegistration>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DResult<broadcast_domain::ImportReport> {
        self.store.import_registrations(rows, now).await
    }
    async fn get_user(&self, id: i64) -> DResult<broadcast_domain::User> {
        self.store.get_user(id).await
    }
    async fn list_users(
        &self,
        query: &broadcast_domain::UserQuery,
    ) -> DResult<broadcast_domain::Page<broadcast_domain::User>> {
        self.store.list_users(query).await
    }
    async fn list_competitions(&self) -> DResult<Vec<broadcast_domain::Competition>> {
        self.store.list_competitions().await
    }
    async fn registrations_of(
        &self,
        user: i64,
    ) -> DResult<
        Vec<(
            broadcast_domain::Registration,
            broadcast_domain::Competition,
        )>,
    > {
        self.store.registrations_of(user).await
    }
    async fn contexts(
        &self,
        recipients: &[broadcast_domain::Recipient],
    ) -> DResult<Vec<broadcast_domain::RecipientContext>> {
        self.time("contexts", self.store.contexts(recipients)).await
    }
    async fn mark_telegram_blocked(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_telegram_blocked(user, at).await
    }
    async fn mark_email_unsubscribed(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_email_unsubscribed(user, at).await
    }
    async fn mark_email_bounced(
        &self,
        user: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> DResult<()> {
        self.store.mark_email_bounced(user, at).await
    }
    async fn update_chat_id(
        &self,
        user: i64,
        chat_id: broadcast_domain::TelegramChatId,
    ) -> DResult<()> {
        self.store.update_chat_id(user, chat_id).await
    }
}
