//! One row's delivery: render it into a message (or its final result when it cannot be sent),
//! hold it back while its channel has a fault or the worker stops, send it, and turn the
//! channel's answer into an outcome (the retry policy: retry with backoff, wait out a rate
//! limit, fail, flag the user, fall back to e-mail).

use super::*;

impl Orchestrator {
    /// Renders a claimed row into the message to send, or its final result when it cannot be
    /// sent (the template does not compile or render, the address is malformed).
    pub(super) fn prepare(
        &self,
        row: Recipient,
        context: &RecipientContext,
        compiled: Option<Arc<Compiled>>,
    ) -> std::result::Result<Ready, Done> {
        let fail = |row: &Recipient, kind: ErrorKind, error: String| {
            let outcome = Outcome::Failed {
                at: self.ports.clock.now(),
                kind,
                error,
            };
            Done::early(self.result(row, outcome, false))
        };
        let Some(compiled) = compiled else {
            let error = format!(
                "the template of broadcast {} does not compile",
                row.broadcast_id
            );
            return Err(fail(&row, ErrorKind::Render, error));
        };
        let body = match self.body_for(&row, context, &compiled) {
            Ok(body) => body,
            Err((kind, error)) => return Err(fail(&row, kind, error)),
        };
        if let Err(e) = self.channel(row.channel) {
            return Err(fail(&row, ErrorKind::Permanent, e.to_string()));
        }
        let message = OutgoingMessage {
            broadcast_id: Some(row.broadcast_id),
            recipient_id: Some(row.id),
            user_id: Some(row.user_id),
            body,
        };
        Ok(Ready {
            row,
            message,
            compiled,
        })
    }

    #[inline]
    pub(super) fn result(
        &self,
        row: &Recipient,
        outcome: Outcome,
        uncertain: bool,
    ) -> DeliveryResult {
        DeliveryResult {
            recipient_id: row.id,
            worker_id: self.settings.worker_id.clone(),
            outcome,
            uncertain,
        }
    }

    /// The row handed back untried: pending, due now, no attempt and no error kind.
    #[inline]
    pub(super) fn released(&self, row: &Recipient, why: String) -> DeliveryResult {
        let outcome = Outcome::Released {
            next_attempt_at: self.ports.clock.now(),
            note: why,
        };
        self.result(row, outcome, false)
    }

    /// The row handed back untried, if it must not be sent now: the worker is stopping, the
    /// lane's circuit breaker is open, the channel's service asked to wait (then due when the
    /// wait ends), or the channel has a fault.
    #[inline]
    pub(super) fn held_back(&self, row: &Recipient, stopping: bool) -> Option<DeliveryResult> {
        if stopping {
            return Some(self.released(row, "held back: the worker is stopping".into()));
        }
        let lane = (row.broadcast_id, row.channel);
        if self
            .breaker
            .lock()
            .expect("breaker poisoned")
            .is_tripped(lane)
        {
            let why = "held back: the channel's circuit breaker tripped".into();
            return Some(self.released(row, why));
        }
        if let Some(until) = self.known_hold(row.channel) {
            return Some(self.released_until(row, until));
        }
        let fault = self
            .faults
            .lock()
            .expect("faults poisoned")
            .get(&row.channel)
            .map(|fault| fault_note(row.channel, fault))?;
        Some(self.released(row, fault))
    }

    /// The row handed back untried, due when its channel's wait ends.
    fn released_until(&self, row: &Recipient, until: DateTime<Utc>) -> DeliveryResult {
        let outcome = Outcome::Released {
            next_attempt_at: until,
            note: hold_note(row.channel, until),
        };
        self.result(row, outcome, false)
    }

    /// Sends one marked row and classifies the answer. The row holds its channel's in-flight
    /// place until the loop writes the result; the channel's send permit is released as soon
    /// as the send returns.
    pub(super) async fn send(&self, ready: Ready, stop: Option<&watch::Receiver<bool>>) -> Done {
        let Ready {
            row,
            message,
            compiled,
        } = ready;
        let now = || self.ports.clock.now();
        let lane = (row.broadcast_id, row.channel);
        let mut effects = Vec::new();
        let done = |result: DeliveryResult, effects: Vec<Effect>| Done {
            result,
            in_flight: Some(row.channel),
            effects,
        };
        let sending = match self.permits.get(&row.channel) {
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        // Checked with the send permit held: sends queued behind a failing one see the trip,
        // and a stopping worker hands its rows back at once.
        let stopping = stop.is_some_and(|s| *s.borrow());
        if let Some(released) = self.held_back(&row, stopping) {
            return done(released, effects);
        }
        let slot = match self.take_slot(row.channel).await {
            Ok(slot) => slot,
            Err(e) => {
                let why = format!("held back: no send slot: {e}");
                return done(self.released(&row, why), effects);
            }
        };
        if let Some(slot) = slot {
            let wait = (slot.at - self.ports.clock.now())
                .to_std()
                .unwrap_or_default();
            // A slot this far ahead usually means another worker's 429 holds the budget: the
            // row waits in the queue, not in a started send.
            if wait > FAR_SLOT
                && let Some(released) = self.held_by_budget(&row, FAR_SLOT).await
            {
                return done(released, effects);
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // The last look before the wire: a hold written since this slot was reserved.
            if let Some(released) = self
                .held_by_budget(&row, self.hold_max_age(row.channel))
                .await
            {
                return done(released, effects);
            }
        }
        let Ok(channel) = self.channel(row.channel) else {
            unreachable!("prepare checked the channel");
        };
        let sent = channel.send(&message).await;
        // Only a quick, real answer tells when the message was at the server: a 5xx or a
        // dropped connection comes back late by design (teloxide waits 10 s after a 5xx) or
        // after a timeout, and moving every worker's slots back by that long would stall the
        // bot for nothing.
        let answered = match &sent {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind,
                FailureKind::Permanent | FailureKind::Blocked | FailureKind::InvalidAddress
            ),
        };
        if let Some(slot) = slot.filter(|_| answered)
            && let Err(e) = self.answered_in(row.channel, slot).await
        {
            tracing::warn!(channel = %row.channel, error = %e, "could not move the shared send slots back after a late answer");
        }
        // The channel is free for the next message; the in-flight place stays taken until the
        // result is written.
        drop(sending);
        if let Err(DeliveryError {
            kind: FailureKind::RateLimited { retry_after },
            ..
        }) = &sent
            && let Err(e) = self.hold_back_for(row.channel, *retry_after).await
        {
            tracing::warn!(channel = %row.channel, error = %e, "could not hold the other workers back after a 429");
        }
        let result = match sent {
            Ok(delivered) => {
                self.breaker.lock().expect("breaker poisoned").record(
                    lane,
                    false,
                    self.limits(),
                    "",
                );
                let chat_ids = self.ports.channels.spec(row.channel).is_some_and(|spec| {
                    spec.reach.address == AddressSource::Field(UserField::TelegramChatId)
                });
                if let Some(new_chat) = delivered.migrated_to.filter(|_| chat_ids) {
                    effects.push(Effect::UpdateChat(row.user_id, new_chat));
                }
                let outcome = Outcome::Sent {
                    at: now(),
                    provider_message_id: delivered.provider_message_id,
                };
                self.result(&row, outcome, false)
            }
            Err(e) if e.kind == FailureKind::ChannelFault => {
                tracing::warn!(channel = %row.channel, error = %e.message, "channel fault");
                self.faults
                    .lock()
                    .expect("faults poisoned")
                    .entry(row.channel)
                    .or_insert_with(|| e.message.clone());
                let mut result = self.released(&row, fault_note(row.channel, &e.message));
                result.uncertain = e.outcome_unknown;
                result
            }
            Err(e) => {
                let counts = matches!(e.kind, FailureKind::Transient | FailureKind::Permanent);
                let message = e.message.clone();
                let uncertain = e.outcome_unknown;
                // The user's refusal, on channels whose users can refuse that way.
                let refusable = |field: UserField| {
                    self.ports
                        .channels
                        .spec(row.channel)
                        .is_some_and(|spec| spec.reach.refusals.iter().any(|(f, _)| *f == field))
                };
                match e.kind {
                    FailureKind::Blocked if refusable(UserField::TelegramBlockedAt) => {
                        effects.push(Effect::MarkBlocked(row.user_id));
                    }
                    FailureKind::InvalidAddress if refusable(UserField::EmailBouncedAt) => {
                        effects.push(Effect::MarkBounced(row.user_id));
                    }
                    _ => {}
                }
                let outcome = self.outcome_of_failure(&row, e);
                if counts {
                    self.breaker.lock().expect("breaker poisoned").record(
                        lane,
                        true,
                        self.limits(),
                        &message,
                    );
                }
                let chain = compiled.policy.after(row.channel);
                if matches!(outcome, Outcome::Failed { .. }) && !chain.is_empty() {
                    effects.push(Effect::Fallback(
                        row.broadcast_id,
                        row.user_id,
                        row.registration_id,
                        chain.to_vec(),
                    ));
                }
                self.result(&row, outcome, uncertain)
            }
        };
        done(result, effects)
    }

    /// Applies a delivery's store update; a failure is logged, not fatal: the delivery result
    /// itself is what must be recorded.
    pub(super) async fn apply(&self, effect: Effect) {
        let now = self.ports.clock.now();
        let (user, what, res) = match effect {
            Effect::MarkBlocked(u) => (
                u,
                "mark the user as blocked",
                self.ports.audience.mark_telegram_blocked(u, now).await,
            ),
            Effect::MarkBounced(u) => (
                u,
                "mark the address as bounced",
                self.ports.audience.mark_email_bounced(u, now).await,
            ),
            Effect::UpdateChat(u, chat) => (
                u,
                "store the migrated chat id",
                self.ports.audience.update_chat_id(u, chat).await,
            ),
            Effect::Fallback(b, u, r, chain) => (
                u,
                "add the fallback row",
                self.ports
                    .deliveries
                    .add_fallback(b, u, r, &chain, now)
                    .await
                    .map(|_| ()),
            ),
        };
        if let Err(e) = res {
            tracing::warn!(user, error = %e, "could not {what}");
        }
    }

    /// The row handed back, due when the hold ends, when the rate-shared budget of its
    /// channel is held (read unless this worker read it within `max_age`).
    async fn held_by_budget(&self, row: &Recipient, max_age: Duration) -> Option<DeliveryResult> {
        if let Err(e) = self.refresh_hold(row.channel, max_age).await {
            tracing::warn!(channel = %row.channel, error = %e, "could not read the send budget's hold");
        }
        let until = self.known_hold(row.channel)?;
        Some(self.released_until(row, until))
    }

    #[inline]
    pub(super) fn limits(&self) -> Limits {
        Limits {
            consecutive: self.settings.breaker_consecutive,
            window: self.settings.breaker_window,
            ratio: self.settings.breaker_ratio,
        }
    }

    #[inline]
    pub(super) fn outcome_of_failure(&self, row: &Recipient, e: DeliveryError) -> Outcome {
        let now = self.ports.clock.now();
        let kind = e.kind.error_kind();
        let error = e.message;
        match e.kind {
            FailureKind::RateLimited { retry_after } => Outcome::Retry {
                next_attempt_at: now + chrono::Duration::from_std(retry_after).unwrap_or_default(),
                kind,
                error,
                count_attempt: false,
            },
            FailureKind::Transient => {
                let attempt = row.attempts + 1;
                if attempt >= self.settings.max_attempts {
                    Outcome::Failed {
                        at: now,
                        kind,
                        error: format!("{error} (gave up after {attempt} attempts)"),
                    }
                } else {
                    let delay = self.backoff.delay(attempt, row.id);
                    Outcome::Retry {
                        next_attempt_at: now
                            + chrono::Duration::from_std(delay).unwrap_or_default(),
                        kind,
                        error,
                        count_attempt: true,
                    }
                }
            }
            // `send` holds the row back itself; here for completeness.
            FailureKind::ChannelFault => Outcome::Released {
                next_attempt_at: now,
                note: format!("held back: channel fault: {error}"),
            },
            FailureKind::Blocked | FailureKind::InvalidAddress | FailureKind::Permanent => {
                Outcome::Failed {
                    at: now,
                    kind,
                    error,
                }
            }
        }
    }

    #[inline]
    pub(super) fn body_for(
        &self,
        row: &Recipient,
        context: &RecipientContext,
        compiled: &Compiled,
    ) -> std::result::Result<MessageBody, (ErrorKind, String)> {
        let env = self.env(&compiled.broadcast_name);
        let format = self
            .format(row.channel)
            .map_err(|e| (ErrorKind::Permanent, e.to_string()))?;
        self.body(format, &row.address, context, &*compiled.template, &env)
            .map_err(|e| match e {
                BodyError::Render(e) => (ErrorKind::Render, e.to_string()),
                BodyError::Address(e) => (ErrorKind::InvalidAddress, e.0),
            })
    }

    /// A message of `format` to `to`, rendered for `context` (with the user's unsubscribe
    /// link, when there is one).
    pub(super) fn body(
        &self,
        format: MessageFormat,
        to: &str,
        context: &RecipientContext,
        template: &dyn CompiledTemplate,
        env: &RenderEnv,
    ) -> std::result::Result<MessageBody, BodyError> {
        let url = self.unsubscribe_url(context.user.id);
        Ok(match format {
            MessageFormat::Chat => MessageBody::Chat {
                to: to.to_owned(),
                message: template
                    .render_telegram(context, env, url.as_deref())
                    .map_err(BodyError::Render)?,
            },
            MessageFormat::Email => MessageBody::Email {
                to: EmailAddress::parse(to).map_err(BodyError::Address)?,
                to_name: Some(context.user.full_name()).filter(|n| !n.is_empty()),
                message: template
                    .render_email(context, env, url.as_deref())
                    .map_err(BodyError::Render)?,
                unsubscribe_url: url,
            },
        })
    }

    #[inline]
    pub(super) fn channel(&self, kind: ChannelKind) -> Result<&Arc<dyn Channel>> {
        self.ports
            .channels
            .get(kind)
            .ok_or_else(|| Error::Invalid(format!("no {kind} channel is configured")))
    }

    #[inline]
    pub(super) fn env(&self, broadcast_name: &str) -> RenderEnv {
        RenderEnv {
            broadcast_name: broadcast_name.to_owned(),
            app_name: self.settings.app_name.clone(),
            current_date: self.ports.clock.now().date_naive(),
        }
    }

    #[inline]
    pub(super) fn unsubscribe_url(&self, user: UserId) -> Option<String> {
        self.ports.links.as_ref().and_then(|l| l.url_for(user))
    }
}
