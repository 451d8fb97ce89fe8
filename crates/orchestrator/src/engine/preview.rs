//! Previews and test sends: a broadcast's (or a template's) messages rendered for sample
//! recipients, and one message sent to an address of the operator's choice.

use super::*;

impl Orchestrator {
    /// Renders a broadcast's template for up to `limit` recipients of its audience.
    pub async fn preview(&self, id: BroadcastId, limit: u64) -> Result<Vec<Preview>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        self.preview_content(&content, &b.name, &b.filter, limit)
            .await
    }

    /// Renders a template for up to `limit` users of an audience, without sending anything.
    pub async fn preview_content(
        &self,
        content: &TemplateContent,
        broadcast_name: &str,
        filter: &AudienceFilter,
        limit: u64,
    ) -> Result<Vec<Preview>> {
        let compiled = self.ports.renderer.compile(content)?;
        let env = self.env(broadcast_name);
        let samples = self.ports.source.sample(filter, limit).await?;
        Ok(samples
            .iter()
            .map(|ctx| {
                let url = self.unsubscribe_url(ctx.user.id);
                Preview {
                    user_id: ctx.user.id,
                    full_name: ctx.user.full_name(),
                    telegram: content.supports(ChannelKind::Telegram).then(|| {
                        compiled
                            .render_telegram(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                    email: content.supports(ChannelKind::Email).then(|| {
                        compiled
                            .render_email(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect())
    }

    /// Sends the broadcast's message once, now, to a test target, without touching the
    /// broadcast's ledger or statistics. Returns one result per channel tried.
    pub async fn test_send(
        &self,
        id: BroadcastId,
        target: TestTarget,
    ) -> Result<Vec<(ChannelKind, std::result::Result<Delivered, DeliveryError>)>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = self.ports.renderer.compile(&content)?;
        let env = self.env(&b.name);
        let context = match &target {
            TestTarget::User(user) => {
                let user = self.ports.audience.get_user(*user).await?;
                // The registration the broadcast's filter would match, else the first one.
                let f = &b.filter;
                let mut regs = self.ports.audience.registrations_of(user.id).await?;
                let pick = regs
                    .iter()
                    .position(|(r, _)| {
                        (f.competition_ids.is_empty()
                            || f.competition_ids.contains(&r.competition_id))
                            && (f.roles.is_empty() || f.roles.contains(&r.role))
                            && (f.registration_statuses.is_empty()
                                || f.registration_statuses.contains(&r.status))
                    })
                    .unwrap_or(0);
                let (registration, competition) = if regs.is_empty() {
                    (None, None)
                } else {
                    let (r, c) = regs.swap_remove(pick);
                    (Some(r), Some(c))
                };
                RecipientContext {
                    user,
                    competition,
                    registration,
                }
            }
            TestTarget::Chat(_) | TestTarget::Email(_) => {
                let mut sample = self.ports.source.sample(&b.filter, 1).await?;
                sample.pop().ok_or_else(|| {
                    Error::Invalid(format!(
                        "broadcast {id} has an empty audience; test with --user to pick the data"
                    ))
                })?
            }
        };
        let mut bodies = Vec::new();
        let url = self.unsubscribe_url(context.user.id);
        let wants =
            |k: ChannelKind| b.channel_policy.channels().contains(&k) && content.supports(k);
        let chat = match &target {
            TestTarget::Chat(c) => Some(*c),
            TestTarget::User(_) => context.user.telegram_chat_id,
            TestTarget::Email(_) => None,
        };
        let email = match &target {
            TestTarget::Email(e) => Some(e.clone()),
            TestTarget::User(_) => context.user.email.clone(),
            TestTarget::Chat(_) => None,
        };
        if let (Some(chat_id), true) = (chat, wants(ChannelKind::Telegram)) {
            let message = compiled.render_telegram(&context, &env, url.as_deref())?;
            bodies.push(MessageBody::Telegram { chat_id, message });
        }
        if let (Some(to), true) = (email, wants(ChannelKind::Email)) {
            let message = compiled.render_email(&context, &env, url.as_deref())?;
            bodies.push(MessageBody::Email {
                to,
                to_name: Some(context.user.full_name()).filter(|n| !n.is_empty()),
                message,
                unsubscribe_url: url.clone(),
            });
        }
        if bodies.is_empty() {
            return Err(Error::Invalid(format!(
                "nothing to send: the target has no address on the channels of policy `{}`",
                b.channel_policy
            )));
        }
        let mut results = Vec::new();
        for body in bodies {
            let kind = body.channel();
            let channel = self.channel(kind)?;
            let message = OutgoingMessage {
                broadcast_id: None,
                recipient_id: None,
                user_id: Some(context.user.id),
                body,
            };
            results.push((kind, channel.send(&message).await));
        }
        Ok(results)
    }
}
