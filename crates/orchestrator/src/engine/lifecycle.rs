//! Every operation that changes what the system holds: creating, launching, scheduling,
//! pausing, resuming, cancelling and retrying broadcasts, changing templates and importing the
//! audience. Each takes the [`Actor`] and writes one audit entry naming them, whichever
//! front-end or embedding program calls it; the allowed statuses come from the domain's
//! [`Transition`] rules.

use broadcast_domain::{
    Actor, AuditEntry, Broadcast, BroadcastId, BroadcastStatus, ErrorKind, ImportReport,
    MAX_TELEGRAM_MEDIA, MediaRef, MessageTemplate, NewBroadcast, NewCompetition, NewRegistration,
    NewTemplate, NewUser, StatusChange, TemplateContent, TemplateId, TemplatePart, Transition,
};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Error, LaunchReport, Orchestrator, Result};

impl Orchestrator {
    /// Writes an audit entry, when the ports have an audit log. A failure is logged, never
    /// returned: the change it records has happened.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: (&str, Option<i64>),
        details: serde_json::Value,
    ) {
        let Some(log) = &self.ports.audit else {
            return;
        };
        let entry = AuditEntry {
            id: 0,
            actor: actor.as_str().to_owned(),
            action: action.to_owned(),
            target_type: target.0.to_owned(),
            target_id: target.1,
            details,
            at: self.ports.clock.now(),
        };
        if let Err(e) = log.record(entry).await {
            tracing::warn!(action, %actor, error = %e, "could not write the audit log");
        }
    }

    pub(super) async fn audit_broadcast(
        &self,
        actor: &Actor,
        action: &str,
        id: BroadcastId,
        details: serde_json::Value,
    ) {
        self.audit(actor, action, ("broadcast", Some(id)), details)
            .await;
    }

    /// Creates a draft (or scheduled) broadcast after checking its template and filter
    /// (`broadcast.create`).
    pub async fn create_broadcast(&self, actor: &Actor, new: NewBroadcast) -> Result<Broadcast> {
        if new.name.trim().is_empty() {
            return Err(Error::Invalid("a broadcast needs a name".into()));
        }
        new.filter.validate()?;
        let template = self.ports.templates.get_template(new.template_id).await?;
        self.check_template(&template.content, new.channel_policy)?;
        let b = self
            .ports
            .broadcasts
            .create_broadcast(new, self.ports.clock.now())
            .await?;
        self.audit_broadcast(
            actor,
            "broadcast.create",
            b.id,
            json!({
                "name": b.name,
                "template_id": b.template_id,
                "channel_policy": b.channel_policy,
                "filter": b.filter,
                "scheduled_at": b.scheduled_at,
            }),
        )
        .await;
        Ok(b)
    }

    /// Launches a draft or scheduled broadcast (`broadcast.launch`): checks and freezes its
    /// template, writes one recipient row per user and channel, and sets it running. Safe to
    /// call again after a crash half-way: rows already written are kept, and the status change
    /// happens once.
    #[tracing::instrument(skip(self))]
    pub async fn launch(&self, actor: &Actor, id: BroadcastId) -> Result<LaunchReport> {
        let broadcast = self.ports.broadcasts.get_broadcast(id).await?;
        Transition::Launch.check(id, broadcast.status)?;
        let mut content = self.content_of(&broadcast).await?;
        // The library's bytes now are the ones the broadcast keeps.
        self.resolve_media(&mut content).await?;
        self.check_template(&content, broadcast.channel_policy)?;
        let now = self.ports.clock.now();
        let materialised = self
            .ports
            .source
            .materialise(id, &broadcast.filter, broadcast.channel_policy, now)
            .await?;
        let broadcast = self
            .ports
            .broadcasts
            .change_status(id, Transition::Launch.change(now, None, Some(content)))
            .await?;
        tracing::info!(broadcast = id, rows = ?materialised.queued, skipped = ?materialised.skipped, "launched");
        self.audit_broadcast(
            actor,
            "broadcast.launch",
            id,
            json!({
                "queued": materialised.queued,
                "skipped": materialised.skipped,
            }),
        )
        .await;
        let broadcast = match self.complete_if_done(id).await? {
            true => self.ports.broadcasts.get_broadcast(id).await?,
            false => broadcast,
        };
        self.publish(id, true).await?;
        Ok(LaunchReport {
            broadcast,
            materialised,
        })
    }

    /// Sets (or with `None` removes) the start time of a draft or scheduled broadcast
    /// (`broadcast.schedule`); it becomes scheduled (or a draft).
    pub async fn schedule(
        &self,
        actor: &Actor,
        id: BroadcastId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Broadcast> {
        let b = self
            .ports
            .broadcasts
            .set_schedule(id, at, self.ports.clock.now())
            .await?;
        self.audit_broadcast(
            actor,
            "broadcast.schedule",
            id,
            json!({ "scheduled_at": at }),
        )
        .await;
        Ok(b)
    }

    /// Stops workers from claiming and from starting the broadcast's rows: sends already
    /// started finish (at most a channel's places per worker), and rows claimed but not
    /// started go back `pending` untried (`broadcast.pause`). Without a reason, `paused by
    /// <actor>`.
    pub async fn pause(
        &self,
        actor: &Actor,
        id: BroadcastId,
        reason: Option<String>,
    ) -> Result<Broadcast> {
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| format!("paused by {actor}"));
        let b = self
            .transition(id, Transition::Pause, Some(reason.clone()))
            .await?;
        self.audit_broadcast(actor, "broadcast.pause", id, json!({ "reason": reason }))
            .await;
        Ok(b)
    }

    /// Lets workers claim a paused broadcast's rows again (`broadcast.resume`).
    pub async fn resume(&self, actor: &Actor, id: BroadcastId) -> Result<Broadcast> {
        let b = self.transition(id, Transition::Resume, None).await?;
        self.breaker.lock().expect("breaker poisoned").reset(id);
        self.audit_broadcast(actor, "broadcast.resume", id, json!({}))
            .await;
        self.complete_if_done(id).await?;
        self.ports.broadcasts.get_broadcast(id).await.or(Ok(b))
    }

    /// Cancels a broadcast: pending rows become cancelled and nothing more is started; sends
    /// already started finish and are recorded, rows claimed but not started become
    /// cancelled when their workers hand them back (`broadcast.cancel`). Returns the broadcast
    /// and how many rows were cancelled here.
    pub async fn cancel(&self, actor: &Actor, id: BroadcastId) -> Result<(Broadcast, u64)> {
        let b = self
            .transition(
                id,
                Transition::Cancel,
                Some(format!("cancelled by {actor}")),
            )
            .await?;
        let cancelled = self
            .ports
            .deliveries
            .cancel_pending(id, self.ports.clock.now())
            .await?;
        self.forget(id);
        self.audit_broadcast(
            actor,
            "broadcast.cancel",
            id,
            json!({ "cancelled_rows": cancelled }),
        )
        .await;
        self.publish(id, true).await?;
        Ok((b, cancelled))
    }

    /// Puts failed rows of a completed, failed or paused broadcast back in the queue (only the
    /// given error kinds; all when empty) and sets it running again (`broadcast.retry`). Rows of
    /// users who blocked the bot, unsubscribed or bounced are never retried. Returns how many
    /// rows were queued.
    pub async fn retry(&self, actor: &Actor, id: BroadcastId, kinds: &[ErrorKind]) -> Result<u64> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        Transition::Retry.check(id, b.status)?;
        let now = self.ports.clock.now();
        let queued = self.ports.deliveries.requeue_failed(id, kinds, now).await?;
        if queued > 0 && b.status != BroadcastStatus::Paused {
            // Completed or failed: running again (a paused one stays paused).
            let reopen = StatusChange {
                from: vec![BroadcastStatus::Completed, BroadcastStatus::Failed],
                to: BroadcastStatus::Running,
                at: now,
                reason: None,
                freeze: None,
                probe: None,
            };
            self.ports.broadcasts.change_status(id, reopen).await?;
        }
        self.audit_broadcast(
            actor,
            "broadcast.retry",
            id,
            json!({ "error_kinds": kinds, "queued": queued }),
        )
        .await;
        self.publish(id, true).await?;
        Ok(queued)
    }

    /// Moves a broadcast along `transition`, from the statuses it allows.
    pub(super) async fn transition(
        &self,
        id: BroadcastId,
        transition: Transition,
        reason: Option<String>,
    ) -> Result<Broadcast> {
        let change = transition.change(self.ports.clock.now(), reason, None);
        self.ports.broadcasts.change_status(id, change).await
    }

    /// Launches scheduled broadcasts whose time has come, as `worker:<id>`; returns how many.
    pub async fn launch_due(&self) -> Result<u64> {
        let worker = Actor::worker(&self.settings.worker_id);
        let now = self.ports.clock.now();
        let mut launched = 0;
        for b in self
            .ports
            .broadcasts
            .list_broadcasts(&[BroadcastStatus::Scheduled], 1000)
            .await?
        {
            let Some(at) = b.scheduled_at.filter(|at| *at <= now) else {
                continue;
            };
            let grace =
                chrono::Duration::from_std(self.settings.schedule_grace).unwrap_or_default();
            if now - at > grace {
                if b.status_reason.is_none() {
                    let reason = format!(
                        "missed its start time {at} by more than the grace period ({} s); \
                         launch or reschedule it",
                        self.settings.schedule_grace.as_secs()
                    );
                    tracing::warn!(broadcast = b.id, %reason, "not launching a stale broadcast");
                    // A note on the broadcast; its status stays.
                    let note = StatusChange {
                        from: vec![BroadcastStatus::Scheduled],
                        to: BroadcastStatus::Scheduled,
                        at: now,
                        reason: Some(reason),
                        freeze: None,
                        probe: None,
                    };
                    match self.ports.broadcasts.change_status(b.id, note).await {
                        Ok(_) | Err(Error::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            match self.launch(&worker, b.id).await {
                Ok(_) => launched += 1,
                // Another worker launched it first.
                Err(Error::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(broadcast = b.id, error = %e, "scheduled launch failed");
                    let reason = format!("scheduled launch failed: {e}");
                    self.transition(b.id, Transition::Fail, Some(reason.clone()))
                        .await?;
                    self.audit_broadcast(
                        &worker,
                        "broadcast.fail",
                        b.id,
                        json!({ "reason": reason }),
                    )
                    .await;
                }
            }
        }
        Ok(launched)
    }

    /// Marks a running broadcast completed when no row is open; true when it did.
    pub async fn complete_if_done(&self, id: BroadcastId) -> Result<bool> {
        if self.ports.deliveries.open_count(id).await? > 0 {
            return Ok(false);
        }
        let change = Transition::Complete.change(self.ports.clock.now(), None, None);
        match self.ports.broadcasts.change_status(id, change).await {
            Ok(_) => {
                tracing::info!(broadcast = id, "completed");
                self.forget(id);
                Ok(true)
            }
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks and stores a new template (`template.create`).
    pub async fn create_template(
        &self,
        actor: &Actor,
        mut new: NewTemplate,
    ) -> Result<MessageTemplate> {
        self.resolve_media(&mut new.content).await?;
        self.validate_template(&new)?;
        let t = self.ports.templates.create_template(new).await?;
        self.audit(
            actor,
            "template.create",
            ("template", Some(t.id)),
            json!({ "name": t.name }),
        )
        .await;
        Ok(t)
    }

    /// Checks and replaces a template; broadcasts launched with it keep their frozen copy
    /// (`template.update`).
    pub async fn update_template(
        &self,
        actor: &Actor,
        id: TemplateId,
        mut new: NewTemplate,
    ) -> Result<MessageTemplate> {
        self.resolve_media(&mut new.content).await?;
        self.validate_template(&new)?;
        let t = self.ports.templates.update_template(id, new).await?;
        self.audit(
            actor,
            "template.update",
            ("template", Some(t.id)),
            json!({ "name": t.name, "version": t.version }),
        )
        .await;
        Ok(t)
    }

    /// Deletes a template no broadcast still needs (`template.delete`).
    pub async fn delete_template(&self, actor: &Actor, id: TemplateId) -> Result<()> {
        let t = self.ports.templates.get_template(id).await?;
        self.ports.templates.delete_template(id).await?;
        self.audit(
            actor,
            "template.delete",
            ("template", Some(id)),
            json!({ "name": t.name }),
        )
        .await;
        Ok(())
    }

    /// Looks the media a template shows up in the library: each reference, by id or (from a
    /// template file or a form) by name, becomes what the library holds under it now. Done at
    /// save and again at launch, which freezes the bytes the library holds then. A medium not in
    /// the library, more media than a message carries, or a medium without the text that is its
    /// caption is refused naming it. Front-ends call it to preview a template not yet saved.
    pub async fn resolve_media(&self, content: &mut TemplateContent) -> Result<()> {
        if content.telegram_media.is_empty() {
            return Ok(());
        }
        if content.telegram_media.len() > MAX_TELEGRAM_MEDIA {
            return Err(Error::Invalid(format!(
                "a Telegram message shows at most {MAX_TELEGRAM_MEDIA} medium; this template \
                 names {}",
                content.telegram_media.len()
            )));
        }
        if content.part(TemplatePart::TelegramText).is_none() {
            return Err(Error::Invalid(
                "a medium is sent with the Telegram text as its caption: give the template a \
                 Telegram text"
                    .into(),
            ));
        }
        let media = self.media()?;
        for r in &mut content.telegram_media {
            let found = match r.medium {
                0 => media.find_medium(&r.name).await?,
                id => match media.get_medium(id).await {
                    Ok(m) => Some(m),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                },
            };
            let medium = found.ok_or_else(|| {
                Error::Invalid(format!(
                    "medium `{}` is not in the media library (add it, or choose another)",
                    r.name
                ))
            })?;
            *r = MediaRef::of(&medium);
        }
        Ok(())
    }

    /// Every problem of a template's parts, as one [`Error::Template`] (the first) or `Ok`.
    fn validate_template(&self, new: &NewTemplate) -> Result<()> {
        match self
            .ports
            .renderer
            .validate(&new.content)
            .into_iter()
            .next()
        {
            Some(e) => Err(Error::Template(e)),
            None => Ok(()),
        }
    }

    /// Imports users, all rows or none (`audience.import`, kind `users`).
    pub async fn import_users(
        &self,
        actor: &Actor,
        source: &str,
        rows: Vec<NewUser>,
    ) -> Result<ImportReport> {
        let report = self
            .ports
            .audience
            .import_users(rows, self.ports.clock.now())
            .await?;
        self.audit_import(actor, "users", source, report).await;
        Ok(report)
    }

    /// Imports competitions, all rows or none (`audience.import`, kind `competitions`).
    pub async fn import_competitions(
        &self,
        actor: &Actor,
        source: &str,
        rows: Vec<NewCompetition>,
    ) -> Result<ImportReport> {
        let report = self
            .ports
            .audience
            .import_competitions(rows, self.ports.clock.now())
            .await?;
        self.audit_import(actor, "competitions", source, report)
            .await;
        Ok(report)
    }

    /// Imports registrations, all rows or none (`audience.import`, kind `registrations`).
    pub async fn import_registrations(
        &self,
        actor: &Actor,
        source: &str,
        rows: Vec<NewRegistration>,
    ) -> Result<ImportReport> {
        let report = self
            .ports
            .audience
            .import_registrations(rows, self.ports.clock.now())
            .await?;
        self.audit_import(actor, "registrations", source, report)
            .await;
        Ok(report)
    }

    async fn audit_import(&self, actor: &Actor, kind: &str, source: &str, report: ImportReport) {
        self.audit(
            actor,
            "audience.import",
            ("audience", None),
            json!({
                "kind": kind, "file": source,
                "inserted": report.inserted, "updated": report.updated,
            }),
        )
        .await;
    }
}
